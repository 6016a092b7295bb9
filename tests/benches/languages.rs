//! Per-language plugin cost: each language's example plugin, and the Rust
//! plugins as the baseline, measured in the same process on the same orders
//! (`examples/orders.jsonl`, the valid ones).
//!
//! ```sh
//! bash plugins/build.sh                      # every language's plugins into plugins/dist/
//! cargo bench --workspace --bench languages
//! ```
//!
//! Environment:
//! - `SLUICE_BENCH_N`      calls per round (default 20000)
//! - `SLUICE_BENCH_ROUNDS` timed rounds, median reported (default 5)
//! - `SLUICE_BENCH_MD`     also write the table as markdown to this file
//!
//! Per plugin: component size; compile time (Cranelift, no cache); load
//! time from the artifact cache; instantiation time; the median per-message
//! cost of the single-message export and of the batch export (64 per call)
//! on a warm instance with fuel and epoch limits on; and that cost as a
//! ratio to the Rust `identity` plugin (the host's own floor: copying a
//! message in and out) and to the Rust plugin of the same world. Every
//! plugin's answers are checked for errors before anything is timed.

use serde_json::Value;
use sluice_core::{Limits, Message, Stage, StageFactory, StageKind, StageOutput};
use sluice_wasm::{ArtifactCache, HostOptions, WasmHost};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

const BATCH: usize = 64;

struct Case {
    language: &'static str,
    plugin: &'static str,
    kind: StageKind,
    params: &'static [(&'static str, &'static str)],
    /// What it does, for the table.
    work: &'static str,
}

const SCHEMA: &str = r#"{"type": "object", "required": ["id", "country", "amount", "card", "items"], "properties": {"id": {"type": "string"}, "country": {"type": "string", "minLength": 2, "maxLength": 2}, "amount": {"type": "number", "minimum": 0}, "card": {"type": "string"}, "items": {"type": "array", "items": {"type": "object", "required": ["qty", "price"], "properties": {"qty": {"type": "integer", "minimum": 1}, "price": {"type": "number", "minimum": 0}}}}}}"#;

const CASES: &[Case] = &[
    Case {
        language: "Rust",
        plugin: "identity",
        kind: StageKind::Transform,
        params: &[],
        work: "returns the message (host floor)",
    },
    Case {
        language: "Rust",
        plugin: "json-filter",
        kind: StageKind::Filter,
        params: &[("field", "amount"), ("min", "100")],
        work: "parse JSON, compare a field",
    },
    Case {
        language: "Rust",
        plugin: "order-transform",
        kind: StageKind::Transform,
        params: &[("redact", "card")],
        work: "parse, reshape, total, mask card, serialize",
    },
    Case {
        language: "Rust",
        plugin: "country-router",
        kind: StageKind::Route,
        params: &[
            ("field", "country"),
            ("route.DE", "europe"),
            ("route.US", "americas"),
        ],
        work: "parse JSON, map a field",
    },
    Case {
        language: "Python",
        plugin: "schema-filter",
        kind: StageKind::Filter,
        params: &[("schema", SCHEMA)],
        work: "parse, validate a JSON Schema",
    },
    Case {
        language: "JavaScript",
        plugin: "mask-cards",
        kind: StageKind::Transform,
        params: &[("keep", "4")],
        work: "parse, Luhn-check and mask strings, serialize",
    },
    Case {
        language: "C",
        plugin: "country-route",
        kind: StageKind::Route,
        params: &[
            ("field", "country"),
            ("routes", "DE=europe,US=americas"),
            ("default", "other"),
        ],
        work: "scan one top-level field, map it",
    },
    Case {
        language: "Zig",
        plugin: "order-total",
        kind: StageKind::Transform,
        params: &[],
        work: "parse, sum the items, serialize",
    },
];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The valid orders of the example data, as messages.
fn orders() -> Vec<Message> {
    let text = std::fs::read_to_string(sluice_tests::repo().join("examples/orders.jsonl"))
        .expect("examples/orders.jsonl");
    text.lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["amount"].is_number()))
        .map(|l| {
            let mut m = Message::new(l.as_bytes().to_vec());
            m.source = "orders".into();
            m
        })
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

struct Row {
    case: &'static Case,
    bytes: u64,
    compile: Duration,
    cached_load: Duration,
    instantiate: Duration,
    single_us: f64,
    batch_us: f64,
}

fn measure(
    case: &'static Case,
    msgs: &[Message],
    n: usize,
    rounds: usize,
    cache_dir: &std::path::Path,
) -> Row {
    let path = sluice_tests::repo()
        .join("plugins/dist")
        .join(format!("{}.wasm", case.plugin));
    assert!(
        path.exists(),
        "{} is missing: run `bash plugins/build.sh`",
        path.display()
    );
    let bytes = std::fs::metadata(&path).unwrap().len();
    let params: BTreeMap<String, String> = case
        .params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();

    // Compile with no cache, then fill a cache and load from it with a new host.
    let cold = WasmHost::new(HostOptions {
        fuel: true,
        epoch: true,
        cache: ArtifactCache::disabled(),
    })
    .unwrap();
    let t = Instant::now();
    cold.load(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", case.plugin));
    let compile = t.elapsed();
    let cache = ArtifactCache::at(cache_dir);
    WasmHost::new(HostOptions {
        fuel: true,
        epoch: true,
        cache: cache.clone(),
    })
    .unwrap()
    .load(&path)
    .unwrap();
    let host = WasmHost::new(HostOptions {
        fuel: true,
        epoch: true,
        cache,
    })
    .unwrap();
    let t = Instant::now();
    let plugin = host.load(&path).unwrap();
    let cached_load = t.elapsed();

    let factory = host
        .stage(
            plugin,
            case.plugin,
            case.kind,
            Limits::default(),
            params,
            Default::default(),
        )
        .unwrap();
    let t = Instant::now();
    let mut stage = factory.instantiate().unwrap();
    let instantiate = t.elapsed();

    // Every answer must be an answer, not an error: otherwise we would time
    // the error path.
    for m in msgs.iter().take(500) {
        match stage.call(m) {
            Ok(StageOutput::Keep(_) | StageOutput::Routes(_)) => {}
            Ok(StageOutput::Messages(out)) => {
                assert_eq!(out.len(), 1, "{}: one message out", case.plugin)
            }
            Ok(other) => panic!("{}: a plugin answered {other:?}", case.plugin),
            Err(e) => panic!(
                "{}: {e:?} on {}",
                case.plugin,
                String::from_utf8_lossy(&m.payload)
            ),
        }
    }
    let refs: Vec<&Message> = msgs.iter().collect();
    for r in stage.call_batch(&refs[..BATCH]).unwrap() {
        r.unwrap_or_else(|e| panic!("{}: batch item failed: {e:?}", case.plugin));
    }

    let timed = |stage: &mut Box<dyn Stage>, batch: bool| -> f64 {
        let t = Instant::now();
        let mut done = 0;
        while done < n {
            if batch {
                let start = done % (msgs.len() - BATCH);
                black_box(
                    stage
                        .call_batch(black_box(&refs[start..start + BATCH]))
                        .unwrap(),
                );
                done += BATCH;
            } else {
                black_box(stage.call(black_box(&msgs[done % msgs.len()])).ok());
                done += 1;
            }
        }
        t.elapsed().as_secs_f64() * 1e6 / done as f64
    };
    let (mut single, mut batch) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        single.push(timed(&mut stage, false));
        batch.push(timed(&mut stage, true));
    }
    Row {
        case,
        bytes,
        compile,
        cached_load,
        instantiate,
        single_us: median(single),
        batch_us: median(batch),
    }
}

fn main() {
    let n = env_or("SLUICE_BENCH_N", 20_000);
    let rounds = env_or("SLUICE_BENCH_ROUNDS", 5);
    let msgs = orders();
    let cache = tempfile::tempdir().unwrap();
    eprintln!(
        "{} orders (valid ones of examples/orders.jsonl), {n} calls per round, {rounds} rounds",
        msgs.len()
    );
    let rows: Vec<Row> = CASES
        .iter()
        .map(|case| {
            eprintln!("measuring {} ({})", case.plugin, case.language);
            measure(case, &msgs, n, rounds, cache.path())
        })
        .collect();
    let floor = rows
        .iter()
        .find(|r| r.case.plugin == "identity")
        .unwrap()
        .single_us;
    let rust_of = |kind: StageKind| {
        rows.iter()
            .find(|r| {
                r.case.language == "Rust" && r.case.kind == kind && r.case.plugin != "identity"
            })
            .unwrap()
    };

    let mut md = String::new();
    writeln!(md, "| language | plugin (world) | does | size | compile | cached load | instantiate | µs/msg single | µs/msg batch of {BATCH} | × identity | × Rust same world |").unwrap();
    writeln!(md, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
    for r in &rows {
        let same = rust_of(r.case.kind);
        writeln!(
            md,
            "| {} | `{}` ({}) | {} | {:.1} MB | {:.0} ms | {:.1} ms | {:.2} ms | {:.2} | {:.2} | {:.1} | {:.1} (vs `{}`) |",
            r.case.language,
            r.case.plugin,
            r.case.kind.as_str(),
            r.case.work,
            r.bytes as f64 / 1e6,
            r.compile.as_secs_f64() * 1e3,
            r.cached_load.as_secs_f64() * 1e3,
            r.instantiate.as_secs_f64() * 1e3,
            r.single_us,
            r.batch_us,
            r.single_us / floor,
            r.single_us / same.single_us,
            same.case.plugin,
        )
        .unwrap();
    }
    println!("{md}");
    if let Ok(path) = std::env::var("SLUICE_BENCH_MD") {
        std::fs::write(&path, &md).unwrap();
        eprintln!("wrote {path}");
    }
}
