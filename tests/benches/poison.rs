//! Poison benchmark: what a misbehaving message costs a pipeline, and what
//! the call deadline costs a clean one.
//!
//! ```sh
//! cargo bench --workspace --bench poison
//! ```
//!
//! Environment:
//! - `SLUICE_BENCH_N`       messages per pipeline run (default 10000, at least 1000)
//! - `SLUICE_BENCH_CALLS`   calls per per-call measurement (default 200000)
//! - `SLUICE_BENCH_QUICK=1` only `timeout = "50ms"` (skips the default-limit runs, ~4 min)
//! - `SLUICE_BENCH_MD`      also write the tables as markdown to this file
//! - `SLUICE_BENCH_PARTS`   which parts to run, e.g. `a` or `a,c` (default `a,b,c`)
//!
//! A. Per-call cost of the identity transform, 1 KiB messages, warm
//!    instance, fuel and epoch on: a bare synchronous wasmtime call (its own
//!    `bindgen!`, one store, no sluice code: the mechanism sluice used before
//!    deadlines covered host calls) against `WasmStage` (a synchronous call
//!    with the deadline-aware `wasi:io/poll`, output caps, log limiter), and
//!    a bare async call (a fiber per call: the other way to bound host
//!    waits, measured to show what it would cost), single and batch (64)
//!    forms, rounds interleaved.
//! C. Fan-out: one message split into 100,000 outputs against 100,000
//!    inputs passed through the same transform, ns per output.
//! B. Poison runs: memory source → one stage → memory sink, 1 KiB messages,
//!    concurrency 2, with 0 %, 0.1 % and 1 % poison of each class (loop,
//!    sleep, poll, log flood, stdout flood, memory hog, panic), at the
//!    default limits and at `timeout = "50ms"`. Each run is checked: every
//!    poison message dead-lettered with its class, every other delivered.
//!    Printed: msg/s, the ratio to the clean run of the same plugin, the
//!    time each poison cost against its limit, and the containment bound
//!    `clean + 1.5 × poisons × limit / concurrency` (BENCHMARKS.md).

use sluice_core::engine::EngineOptions;
use sluice_core::memory::{MemorySink, MemorySource};
use sluice_core::{Limits, Message, Pipeline, RetryPolicy, Stage, StageKind, StageSpec};
use sluice_tests::goals::Goal;
use sluice_wasm::{ArtifactCache, HostOptions, WasmHost};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAYLOAD_BYTES: usize = 1024;
const BATCH: usize = 64;
const CONCURRENCY: usize = 2;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A payload of exactly 1 KiB that starts with `word`.
fn payload(word: &str, i: usize) -> Vec<u8> {
    let mut p = format!("{word} {i} ").into_bytes();
    p.resize(PAYLOAD_BYTES, b'.');
    p
}

// ------------------------------------------------------- A. the bare host

mod bare {
    //! The baseline: a synchronous wasmtime call of the identity transform,
    //! with fuel and epoch armed per call as sluice did before its calls
    //! became async.
    wasmtime::component::bindgen!({ world: "transform", path: "../wit" });

    use sluice::plugin::host::{Host, Level};
    use wasmtime::component::{HasSelf, Linker, ResourceTable};
    use wasmtime::{Config, Engine, Store};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

    pub struct State {
        wasi: WasiCtx,
        table: ResourceTable,
    }

    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    impl Host for State {
        fn log(&mut self, _: Level, _: String) {}
        fn config(&mut self, _: String) -> Option<String> {
            None
        }
    }

    impl sluice::plugin::types::Host for State {}

    pub struct Bare {
        store: Store<State>,
        bindings: Transform,
    }

    impl Bare {
        pub fn new(path: &std::path::Path) -> Bare {
            let engine = engine();
            let component = wasmtime::component::Component::from_file(&engine, path).unwrap();
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
            sluice::plugin::host::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
                .unwrap();
            let mut store = store(&engine);
            let bindings = Transform::instantiate(&mut store, &component, &linker).unwrap();
            Bare { store, bindings }
        }

        fn arm(&mut self, n: u64) {
            arm(&mut self.store, n);
        }

        pub fn call(&mut self, msg: &sluice_core::Message) -> usize {
            self.arm(1);
            let wit = to_wit(msg);
            let out = self
                .bindings
                .call_transform(&mut self.store, &wit)
                .unwrap()
                .unwrap();
            out.len()
        }

        pub fn call_batch(&mut self, msgs: &[sluice_core::Message]) -> usize {
            self.arm(msgs.len() as u64);
            let wit: Vec<_> = msgs.iter().map(to_wit).collect();
            let out = self
                .bindings
                .call_transform_batch(&mut self.store, &wit)
                .unwrap();
            out.len()
        }
    }

    /// An engine with fuel and epochs, and the thread that ticks them.
    pub fn engine() -> Engine {
        let mut config = Config::new();
        config.consume_fuel(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let weak = engine.weak();
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(5));
            match weak.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return,
            }
        });
        engine
    }

    pub fn store(engine: &Engine) -> Store<State> {
        let state = State {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(engine, state);
        store.set_fuel(u64::MAX / 2).unwrap();
        store.set_epoch_deadline(1_000);
        store
    }

    pub fn arm(store: &mut Store<State>, n: u64) {
        store.set_fuel(500_000_000 * n).unwrap();
        store.set_epoch_deadline(201 * n);
    }

    pub fn to_wit(msg: &sluice_core::Message) -> sluice::plugin::types::Message {
        sluice::plugin::types::Message {
            key: msg.key.clone(),
            payload: msg.payload.clone(),
            headers: msg.headers.clone(),
            source: msg.source.clone(),
            timestamp_ms: msg.timestamp_ms,
            attempt: msg.attempt,
        }
    }
}

mod bare_async {
    //! The same bare host with the export called async (wasmtime runs the
    //! guest on a fiber), and nothing around it: what bounding host waits
    //! with a fiber per call would cost, the design sluice measured and
    //! left for a deadline-aware `wasi:io/poll`.
    wasmtime::component::bindgen!({
        world: "transform",
        path: "../wit",
        exports: { default: async },
        with: {
            "sluice:plugin/types": super::bare::sluice::plugin::types,
            "sluice:plugin/host": super::bare::sluice::plugin::host,
        },
    });

    use super::bare::{arm, engine, store, to_wit, State};
    use futures::FutureExt;
    use wasmtime::component::{HasSelf, Linker};
    use wasmtime::Store;

    pub struct BareAsync {
        store: Store<State>,
        bindings: Transform,
    }

    impl BareAsync {
        pub fn new(path: &std::path::Path) -> BareAsync {
            let engine = engine();
            let component = wasmtime::component::Component::from_file(&engine, path).unwrap();
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
            super::bare::sluice::plugin::host::add_to_linker::<State, HasSelf<State>>(
                &mut linker,
                |s| s,
            )
            .unwrap();
            let mut store = store(&engine);
            let bindings = Transform::instantiate_async(&mut store, &component, &linker)
                .now_or_never()
                .expect("instantiates without waiting")
                .unwrap();
            BareAsync { store, bindings }
        }

        pub fn call(&mut self, msg: &sluice_core::Message) -> usize {
            arm(&mut self.store, 1);
            let wit = to_wit(msg);
            self.bindings
                .call_transform(&mut self.store, &wit)
                .now_or_never()
                .expect("identity never waits")
                .unwrap()
                .unwrap()
                .len()
        }

        pub fn call_batch(&mut self, msgs: &[sluice_core::Message]) -> usize {
            arm(&mut self.store, msgs.len() as u64);
            let wit: Vec<_> = msgs.iter().map(to_wit).collect();
            self.bindings
                .call_transform_batch(&mut self.store, &wit)
                .now_or_never()
                .expect("identity never waits")
                .unwrap()
                .len()
        }
    }
}

fn per_call(host: &WasmHost, calls: usize, md: &mut String) -> Vec<Goal> {
    let identity = sluice_tests::plugin("identity");
    let mut bare = bare::Bare::new(&identity);
    let mut bare_async = bare_async::BareAsync::new(&identity);
    let plugin = host.load(&identity).unwrap();
    let factory = host
        .stage(
            plugin,
            "identity",
            StageKind::Transform,
            Limits::default(),
            Default::default(),
            Default::default(),
        )
        .unwrap();
    let mut stage = factory.instance().unwrap();
    let msgs: Vec<Message> = (0..BATCH).map(|i| Message::new(payload("ok", i))).collect();
    // Same answers before timing.
    assert_eq!(bare.call(&msgs[0]), 1);
    assert_eq!(bare.call_batch(&msgs), BATCH);
    assert_eq!(bare_async.call(&msgs[0]), 1);
    assert_eq!(bare_async.call_batch(&msgs), BATCH);
    assert!(stage.call(&msgs[0]).is_ok());
    let refs: Vec<&Message> = msgs.iter().collect();
    assert_eq!(stage.call_batch(&refs).unwrap().len(), BATCH);

    // Per round: single calls, then batch calls, each bare sync, bare
    // async, WasmStage.
    let mut rounds: [Vec<f64>; 6] = Default::default();
    for _ in 0..5 {
        let mut time = |slot: usize, per: usize, mut f: Box<dyn FnMut() + '_>| {
            let t = Instant::now();
            f();
            rounds[slot].push(t.elapsed().as_nanos() as f64 / per as f64);
        };
        let batches = calls / BATCH;
        time(
            0,
            calls,
            Box::new(|| {
                for i in 0..calls {
                    black_box(bare.call(black_box(&msgs[i % BATCH])));
                }
            }),
        );
        time(
            1,
            calls,
            Box::new(|| {
                for i in 0..calls {
                    black_box(bare_async.call(black_box(&msgs[i % BATCH])));
                }
            }),
        );
        time(
            2,
            calls,
            Box::new(|| {
                for i in 0..calls {
                    let _ = black_box(stage.call(black_box(&msgs[i % BATCH])));
                }
            }),
        );
        time(
            3,
            batches * BATCH,
            Box::new(|| {
                for _ in 0..batches {
                    black_box(bare.call_batch(black_box(&msgs)));
                }
            }),
        );
        time(
            4,
            batches * BATCH,
            Box::new(|| {
                for _ in 0..batches {
                    black_box(bare_async.call_batch(black_box(&msgs)));
                }
            }),
        );
        time(
            5,
            batches * BATCH,
            Box::new(|| {
                for _ in 0..batches {
                    let _ = black_box(stage.call_batch(black_box(&refs)));
                }
            }),
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [a, b, c, d, e, f] = rounds.each_mut().map(median);
    let mut table = String::new();
    writeln!(table, "| identity, 1 KiB, fuel + epoch | bare sync wasmtime | bare async wasmtime (a fiber per call) | WasmStage (sync, deadline-aware poll, caps, log limit) | WasmStage / bare sync | bare async / bare sync |").unwrap();
    writeln!(table, "|---|---|---|---|---|---|").unwrap();
    writeln!(
        table,
        "| single call, ns/msg | {a:.0} | {b:.0} | {c:.0} | {:.2} | {:.2} |",
        c / a,
        b / a
    )
    .unwrap();
    writeln!(
        table,
        "| batch of {BATCH}, ns/msg | {d:.0} | {e:.0} | {f:.0} | {:.2} | {:.2} |",
        f / d,
        e / d
    )
    .unwrap();
    println!("\nA. per-call cost (median of 5 rounds of {calls} calls)\n{table}");
    md.push_str(&format!(
        "### A. Per-call cost (median of 5 rounds of {calls} calls)\n\n{table}\n"
    ));
    let goal = |goal, sluice: f64, bare: f64| Goal {
        goal,
        figure: format!("WasmStage {sluice:.0} ns/msg"),
        baseline: format!("bare wasmtime call {bare:.0} ns/msg"),
        ratio: sluice / bare,
        target: "≤ 1.15× the bare call",
        met: sluice / bare <= 1.15,
    };
    vec![
        goal("2 stage overhead, single call", c, a),
        goal("2 stage overhead, batch of 64", f, d),
    ]
}

// ------------------------------------------------------ B. poison runs

struct Class {
    name: &'static str,
    plugin: &'static str,
    kind: StageKind,
    /// The payload's first word for a poison message (plugins trigger on it).
    word: &'static str,
    /// The `sluice-error-class`es its poison may be dead-lettered with.
    class: &'static [&'static str],
}

const CLASSES: [Class; 7] = [
    Class {
        name: "loop",
        plugin: "spin-loop",
        kind: StageKind::Filter,
        word: "loop",
        class: &["timeout", "out-of-fuel"],
    },
    Class {
        name: "sleep",
        plugin: "misbehave",
        kind: StageKind::Transform,
        word: "sleep",
        class: &["timeout"],
    },
    Class {
        name: "poll",
        plugin: "misbehave",
        kind: StageKind::Transform,
        word: "poll",
        class: &["timeout"],
    },
    Class {
        name: "log flood",
        plugin: "misbehave",
        kind: StageKind::Transform,
        word: "log",
        class: &["timeout", "out-of-fuel"],
    },
    Class {
        name: "stdout flood",
        plugin: "misbehave",
        kind: StageKind::Transform,
        word: "stdout",
        class: &["timeout", "out-of-fuel"],
    },
    Class {
        name: "memory hog",
        plugin: "memory-hog",
        kind: StageKind::Transform,
        word: "hog",
        class: &["memory-limit", "timeout"],
    },
    Class {
        name: "panic",
        plugin: "panicker",
        kind: StageKind::Filter,
        word: "panic",
        class: &["trap"],
    },
];

/// One pipeline run; returns its wall time after checking the outcome.
fn run(
    rt: &tokio::runtime::Runtime,
    host: &WasmHost,
    class: &Class,
    limits: Limits,
    n: usize,
    every: Option<usize>,
) -> (Duration, usize) {
    let plugin = host.load(&sluice_tests::plugin(class.plugin)).unwrap();
    let factory = host
        .stage(
            plugin,
            "stage",
            class.kind,
            limits,
            Default::default(),
            Default::default(),
        )
        .unwrap();
    let spec = Arc::new(StageSpec::new(
        "stage",
        Arc::new(factory),
        RetryPolicy::default(),
    ));
    let mut poisons = 0;
    let input: Vec<Message> = (0..n)
        .map(|i| {
            // Keyless messages go round-robin over the workers: alternate
            // the poison's parity so every worker gets its share.
            let poison = every.is_some_and(|e| i % e == e / 2 + (i / e) % CONCURRENCY);
            poisons += poison as usize;
            Message::new(payload(if poison { class.word } else { "ok" }, i))
        })
        .collect();
    let (source, _acks) = MemorySource::new("input", input);
    let out = MemorySink::new("out");
    let dlq = MemorySink::new("dlq");
    let pipeline = Pipeline::builder("poison", Box::new(source), dlq.clone())
        .stages(vec![spec])
        .sink("out", out.clone())
        .options(EngineOptions {
            concurrency: CONCURRENCY,
            ..EngineOptions::default()
        })
        .build();
    let started = Instant::now();
    rt.block_on(pipeline.run(sluice_core::Shutdown::default()))
        .unwrap();
    let took = started.elapsed();
    let dead = dlq.messages();
    assert_eq!(
        out.messages().len(),
        n - poisons,
        "{}: every clean message delivered",
        class.name
    );
    assert_eq!(
        dead.len(),
        poisons,
        "{}: every poison dead-lettered",
        class.name
    );
    for d in &dead {
        let got = d.header_str("sluice-error-class").unwrap_or_default();
        let ok = class.class.contains(&got.as_str());
        assert!(
            ok,
            "{}: class {got}: {:?}",
            class.name,
            d.header_str("sluice-error-text")
        );
    }
    (took, poisons)
}

fn poison_runs(host: &WasmHost, n: usize, quick: bool, md: &mut String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut settings = vec![(
        "timeout 50ms",
        Limits {
            timeout: Duration::from_millis(50),
            ..Limits::default()
        },
    )];
    if !quick {
        settings.push(("default limits (1s, 500M fuel)", Limits::default()));
    }
    for (label, limits) in settings {
        let mut table = String::new();
        writeln!(table, "| class | poison | msg/s | time | ratio to clean | per poison | limit | bound (clean + 1.5 × poisons × limit / {CONCURRENCY}) | within |").unwrap();
        writeln!(table, "|---|---|---|---|---|---|---|---|---|").unwrap();
        let mut clean_of = std::collections::HashMap::new();
        for class in &CLASSES {
            let clean = *clean_of.entry(class.plugin).or_insert_with(|| {
                // Warm up (compile, instantiate), then the clean baseline.
                run(&rt, host, class, limits, 1000, None);
                run(&rt, host, class, limits, n, None).0
            });
            for (rate, every) in [("0%", None), ("0.1%", Some(1000)), ("1%", Some(100))] {
                let (took, poisons) = if every.is_none() {
                    (clean, 0)
                } else {
                    run(&rt, host, class, limits, n, every)
                };
                let per_poison = if poisons > 0 {
                    format!(
                        "{:.0} ms",
                        took.saturating_sub(clean).as_secs_f64() * 1e3 / poisons as f64
                            * CONCURRENCY as f64
                    )
                } else {
                    "–".into()
                };
                let bound = clean
                    + limits
                        .timeout
                        .mul_f64(1.5 * poisons as f64 / CONCURRENCY as f64);
                writeln!(
                    table,
                    "| {} | {rate} | {:.0} | {:.2} s | {:.2} | {per_poison} | {:?} | {:.2} s | {} |",
                    class.name,
                    n as f64 / took.as_secs_f64(),
                    took.as_secs_f64(),
                    took.as_secs_f64() / clean.as_secs_f64(),
                    limits.timeout,
                    bound.as_secs_f64(),
                    if took <= bound { "yes" } else { "NO" }
                )
                .unwrap();
            }
        }
        println!(
            "\nB. poison runs, {label}, {n} messages of 1 KiB, concurrency {CONCURRENCY}\n{table}"
        );
        md.push_str(&format!("### B. Poison runs, {label}, {n} messages of 1 KiB, concurrency {CONCURRENCY}\n\n\"per poison\" is (time − clean time) × concurrency / poisons: what one poison message cost its worker.\n\n{table}\n"));
    }
}

// ------------------------------------------------------ C. fan-out

/// One message split into `n` outputs against `n` inputs passed through,
/// both through `misbehave`, into a memory sink and into a file sink.
fn fan_out(host: &WasmHost, n: usize, md: &mut String) -> Vec<Goal> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let limits = Limits {
        max_outputs: n,
        max_call_output_bytes: u64::MAX / 2,
        ..Limits::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let time = |input: Vec<Message>, file: bool| {
        let plugin = host.load(&sluice_tests::plugin("misbehave")).unwrap();
        let factory = host
            .stage(
                plugin,
                "split",
                StageKind::Transform,
                limits,
                Default::default(),
                Default::default(),
            )
            .unwrap();
        let spec = Arc::new(StageSpec::new(
            "split",
            Arc::new(factory),
            RetryPolicy::default(),
        ));
        let (source, _acks) = MemorySource::new("input", input);
        let memory = MemorySink::new("out");
        let sink: Arc<dyn sluice_core::Sink> = if file {
            let config = sluice_brokers::SinkConfig::File(sluice_brokers::file::FileSinkConfig {
                path: "out.jsonl".into(),
                format: sluice_brokers::lines::LineFormat::Json,
                append: false,
            });
            rt.block_on(config.open(dir.path(), "out")).unwrap()
        } else {
            memory.clone()
        };
        let pipeline = Pipeline::builder("fanout", Box::new(source), MemorySink::new("dlq"))
            .stages(vec![spec])
            .sink("out", sink)
            .build();
        let started = Instant::now();
        let report = rt
            .block_on(pipeline.run(sluice_core::Shutdown::default()))
            .unwrap();
        let took = started.elapsed();
        assert_eq!(report.counts.delivered, n as u64);
        if !file {
            assert_eq!(memory.messages().len(), n);
        }
        took
    };
    let mut table = format!(
        "| {n} messages of 1 KiB | 1 input split into {n}, ns/output | {n} inputs passed through, ns/output | ratio (split / inputs) |\n|---|---|---|---|\n"
    );
    let mut goals = Vec::new();
    for (label, file) in [("memory sink", false), ("file sink (JSON lines)", true)] {
        let mut split = Vec::new();
        let mut pass = Vec::new();
        for _ in 0..3 {
            let mut one = payload("fanout", 0);
            let text = format!("fanout {n} ");
            one[..text.len()].copy_from_slice(text.as_bytes());
            split.push(time(vec![Message::new(one)], file));
            pass.push(time(
                (0..n).map(|i| Message::new(payload("ok", i))).collect(),
                file,
            ));
        }
        split.sort();
        pass.sort();
        let per = |d: Duration| d.as_nanos() as f64 / n as f64;
        let (s, p) = (per(split[1]), per(pass[1]));
        writeln!(table, "| {label} | {s:.0} | {p:.0} | {:.2} |", s / p).unwrap();
        goals.push(Goal {
            goal: if file {
                "5 fan-out, file sink"
            } else {
                "5 fan-out, memory sink"
            },
            figure: format!("1 → {n}: {s:.0} ns/output"),
            baseline: format!("{n} inputs: {p:.0} ns/output"),
            ratio: s / p,
            target: "≤ 1.0× (linear)",
            met: s <= p,
        });
    }
    println!("\nC. fan-out (median of 3)\n{table}");
    md.push_str(&format!("### C. Fan-out (median of 3)\n\n{table}\n"));
    goals
}

fn main() {
    let n = env_usize("SLUICE_BENCH_N", 10_000).max(1000);
    let calls = env_usize("SLUICE_BENCH_CALLS", 200_000).max(BATCH);
    let quick = std::env::var("SLUICE_BENCH_QUICK").is_ok_and(|v| v == "1");
    let cache = ArtifactCache::at(sluice_tests::repo().join("target/bench-artifact-cache"));
    let host = WasmHost::new(HostOptions {
        fuel: true,
        epoch: true,
        cache,
    })
    .unwrap();
    let parts = std::env::var("SLUICE_BENCH_PARTS").unwrap_or_else(|_| "a,b,c".into());
    let part = |p: &str| parts.split(',').any(|x| x.trim() == p);
    let mut md = String::new();
    let mut goals = Vec::new();
    if part("a") {
        goals.extend(per_call(&host, calls, &mut md));
    }
    if part("c") {
        goals.extend(fan_out(&host, 100_000, &mut md));
    }
    if part("b") {
        poison_runs(&host, n, quick, &mut md);
    }
    md.push_str(&sluice_tests::goals::report(&goals));
    if let Ok(path) = std::env::var("SLUICE_BENCH_MD") {
        std::fs::write(&path, md).unwrap();
        println!("tables written to {path}");
    }
}
