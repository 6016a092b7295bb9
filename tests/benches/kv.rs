//! What plugin state (capability `kv`) costs, per store.
//!
//! Two measurements, embedded store (redb) against Redis, with an in-memory
//! namespace ([`MemoryKv`]) as the floor:
//!
//! 1. **One operation from the host**: `get` and `set` of a 100-byte value
//!    on 1,000 keys, one at a time on one thread, as a plugin's call makes
//!    them (wait for each answer): µs per operation.
//! 2. **Through a plugin**: the `kv-tally` plugin (per message one
//!    `increment`, one `compare-and-set`, one `get`) on one warm instance,
//!    batches of 32, limits on: msg/s, the ratio to the same plugin on the
//!    in-memory namespace, and the µs each message's three operations add.
//!    Every output is checked (its count), so the figures measure a working
//!    stage.
//!
//! ```sh
//! bash plugins/build.sh rust kv-tally
//! cargo bench -p sluice-tests --bench kv
//! ```
//!
//! `SLUICE_BENCH_N` messages per round (default 20,000), `SLUICE_BENCH_ROUNDS`
//! (default 3, the median reported); Redis from `SLUICE_TEST_REDIS`
//! (default `redis://127.0.0.1:6379`; its rows are skipped with a note when it
//! does not answer).

use sluice_core::{Kv, Limits, Message, Stage, StageKind, StageOutput};
use sluice_state::{MemoryKv, StoreConfig, Stores};
use sluice_wasm::{Grants, WasmStage};
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 32;
const KEYS: usize = 1_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// µs per `get` and per `set`, one at a time.
fn raw_ops(kv: &dyn Kv, rounds: usize) -> (f64, f64) {
    let value = vec![b'v'; 100];
    let mut gets = Vec::new();
    let mut sets = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        for i in 0..KEYS {
            futures::executor::block_on(kv.set(&format!("k{i}"), value.clone(), None))
                .expect("set");
        }
        sets.push(started.elapsed().as_secs_f64() / KEYS as f64 * 1e6);
        let started = Instant::now();
        for i in 0..KEYS {
            let got = futures::executor::block_on(kv.get(&format!("k{i}"))).expect("get");
            assert_eq!(got.as_deref(), Some(value.as_slice()));
        }
        gets.push(started.elapsed().as_secs_f64() / KEYS as f64 * 1e6);
    }
    (median(gets), median(sets))
}

/// A warm `kv-tally` instance on `kv`.
fn tally(host: &sluice_wasm::WasmHost, kv: Arc<dyn Kv>) -> WasmStage {
    let plugin = host
        .load(&sluice_tests::plugin("kv-tally"))
        .expect("kv-tally loads (bash plugins/build.sh rust kv-tally)");
    host.stage(
        plugin,
        "tally",
        StageKind::Transform,
        Limits::default(),
        Default::default(),
        Grants {
            kv: Some(kv),
            http: None,
        },
    )
    .expect("a transform")
    .instance()
    .expect("instantiates")
}

/// Seconds for `n` messages through `stage` in batches, each output checked:
/// message `i` of round `round` is the first of its key.
fn through(stage: &mut WasmStage, n: usize, round: usize) -> f64 {
    let msgs: Vec<Message> = (0..n)
        .map(|i| Message::new(format!(r#"{{"n":{i}}}"#)).with_key(format!("r{round}-{i}")))
        .collect();
    let started = Instant::now();
    for chunk in msgs.chunks(BATCH) {
        let chunk: Vec<&Message> = chunk.iter().collect();
        for answer in stage.call_batch(&chunk).expect("no fault") {
            let Ok(StageOutput::Messages(out)) = answer else {
                panic!("kv-tally answered {answer:?}");
            };
            let doc: serde_json::Value = serde_json::from_slice(&out[0].payload).unwrap();
            assert_eq!(doc["seen"], 1, "{doc}");
        }
    }
    started.elapsed().as_secs_f64()
}

fn main() {
    let n = env("SLUICE_BENCH_N", 20_000);
    let rounds = env("SLUICE_BENCH_ROUNDS", 3);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let stores = Stores::default();
    let dir = tempfile::tempdir().unwrap();
    let ns = format!("bench-{}", std::process::id());
    let embedded = runtime
        .block_on(stores.open(&StoreConfig::Embedded {
            path: dir.path().to_owned(),
        }))
        .expect("an embedded store");
    let redis_url =
        std::env::var("SLUICE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = runtime
        .block_on(stores.open(&StoreConfig::Redis {
            url: redis_url.clone(),
        }))
        .inspect_err(|e| eprintln!("no Redis store ({e}): its rows are skipped"))
        .ok();
    let mut kvs: Vec<(&str, Arc<dyn Kv>)> = vec![
        ("memory (floor)", Arc::new(MemoryKv::default())),
        ("embedded (redb)", embedded.clone().kv(&ns)),
    ];
    if let Some(redis) = &redis {
        kvs.push(("redis", redis.clone().kv(&ns)));
    }

    println!("plugin key-value operations, median of {rounds} rounds");
    println!("{:<18} {:>12} {:>12}", "store", "µs per get", "µs per set");
    for (name, kv) in &kvs {
        let (get, set) = raw_ops(kv.as_ref(), rounds);
        println!("{name:<18} {get:>12.2} {set:>12.2}");
    }

    let host = sluice_tests::host();
    println!();
    println!(
        "kv-tally plugin (increment + compare-and-set + get per message), {n} messages, batches of {BATCH}, one instance"
    );
    println!(
        "{:<18} {:>12} {:>12} {:>14} {:>12}",
        "store", "msg/s", "× memory", "µs/msg added", "µs/op added"
    );
    let mut floor = None;
    for (name, kv) in &kvs {
        let mut stage = tally(&host, kv.clone());
        let secs: Vec<f64> = (0..rounds)
            .map(|round| through(&mut stage, n, round))
            .collect();
        let secs = median(secs);
        let base = *floor.get_or_insert(secs);
        let added = (secs - base) / n as f64 * 1e6;
        println!(
            "{name:<18} {:>12.0} {:>12.2} {:>14.2} {:>12.2}",
            n as f64 / secs,
            base / secs,
            added,
            added / 3.0
        );
    }
    if redis.is_some() {
        println!("(redis: {})", sluice_brokers::redact_text(&redis_url));
        let keys: Vec<String> = runtime.block_on(async {
            let client = redis::Client::open(redis_url.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("sluice:kv:{ns}:*"))
                .query_async(&mut conn)
                .await
                .unwrap();
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            keys
        });
        eprintln!("removed {} bench keys from Redis", keys.len());
    }
}
