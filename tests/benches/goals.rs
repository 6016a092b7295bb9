//! Goals benchmark (issue 16): the engine's own cost against a bare relay,
//! three identity stages end to end, and what the limits cost them.
//!
//! ```sh
//! bash plugins/build.sh rust identity && cargo bench --workspace --bench goals
//! ```
//!
//! Environment:
//! - `SLUICE_BENCH_N`      messages per run (default 200000)
//! - `SLUICE_BENCH_ROUNDS` timed rounds, the median reported (default 5)
//! - `SLUICE_BENCH_MD`     also write the goal table as markdown to this file
//! - `SLUICE_BENCH_ONLY`   `relay`, `engine`, `identity` (fuel + epoch) or
//!   `identity-none`: run only that, `SLUICE_BENCH_ROUNDS` times (for `perf`)
//!
//! Every run moves the same 1 KiB keyless messages on one worker, in a
//! release build, on a multi-threaded tokio runtime as the daemon uses:
//! - the **relay** (the floor): a source task, a worker thread and a
//!   delivery task joined by bounded tokio channels carrying batches of 32,
//!   as the engine's hops are; no acks, no stats, no chain;
//! - the **engine**: `MemorySource` → `Pipeline` with no stage →
//!   `MemorySink`, default options;
//! - **three identity stages** (the `identity` Wasm transform) under each
//!   limit setting: none, epoch deadline only, fuel only, fuel + epoch (the
//!   default).
//!
//! Every run is checked before its time counts: the sink holds every
//! message, in order and unchanged, everything acked, the DLQ empty.
//! Rounds of the configurations are interleaved, so background load hits
//! them alike. Goals 2 and 5 are printed by the poison bench, goal 6 by the
//! memory bench, goal 7 by the broker bench.

use sluice_core::engine::EngineOptions;
use sluice_core::memory::{MemorySink, MemorySource};
use sluice_core::{Limits, Message, Pipeline, RetryPolicy, StageKind, StageSpec};
use sluice_tests::goals::{self, median, thousands, Goal};
use sluice_wasm::{ArtifactCache, HostOptions, WasmHost};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const PAYLOAD_BYTES: usize = 1024;
/// Deliveries per hand-over in the relay: the engine's default batch.
const RELAY_BATCH: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` keyless messages of exactly 1 KiB, each naming its index.
fn generate(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            let mut payload = format!("message {i} ").into_bytes();
            payload.resize(PAYLOAD_BYTES, b'.');
            let mut msg = Message::new(payload);
            msg.source = "bench".into();
            msg
        })
        .collect()
}

/// Panics unless `got` is `sent`, in order: a bench that measures a wrong
/// result is worse than none.
fn check(what: &str, sent: &[Message], got: &[Message]) {
    assert_eq!(
        got.len(),
        sent.len(),
        "WRONG RESULT: {what}: {} messages out of {}",
        got.len(),
        sent.len()
    );
    if let Some(i) = (0..sent.len()).find(|&i| got[i].payload != sent[i].payload) {
        panic!("WRONG RESULT: {what}: message {i} differs from what was sent");
    }
}

/// The floor: the messages moved through a source task, a worker thread
/// and a delivery task over bounded channels, in batches.
fn relay(rt: &tokio::runtime::Runtime, messages: Vec<Message>) -> (Duration, Vec<Message>) {
    let n = messages.len();
    let capacity = EngineOptions::default().buffer.div_ceil(RELAY_BATCH);
    let started = Instant::now();
    let got = rt.block_on(async move {
        let (source_tx, mut source_rx) = mpsc::channel::<Vec<Message>>(capacity);
        let (done_tx, mut done_rx) = mpsc::channel::<Vec<Message>>(capacity);
        tokio::spawn(async move {
            let mut messages = messages.into_iter();
            loop {
                let batch: Vec<Message> = messages.by_ref().take(RELAY_BATCH).collect();
                if batch.is_empty() || source_tx.send(batch).await.is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            while let Some(batch) = source_rx.blocking_recv() {
                if done_tx.blocking_send(batch).is_err() {
                    break;
                }
            }
        });
        let sink = tokio::spawn(async move {
            let mut got = Vec::with_capacity(n);
            while let Some(batch) = done_rx.recv().await {
                got.extend(batch);
            }
            got
        });
        sink.await.expect("relay sink")
    });
    (started.elapsed(), got)
}

/// One pipeline run on one worker; its time and what the sink got.
fn engine(
    rt: &tokio::runtime::Runtime,
    messages: Vec<Message>,
    stages: &[Arc<StageSpec>],
) -> (Duration, Vec<Message>) {
    let n = messages.len() as u64;
    let (source, _acks) = MemorySource::new("bench", messages);
    let sink = MemorySink::new("out");
    let dlq = MemorySink::new("dlq");
    let pipeline = Pipeline::builder("bench-goals", Box::new(source), dlq.clone())
        .stages(stages.to_vec())
        .sink("out", sink.clone())
        .options(EngineOptions::default())
        .build();
    let started = Instant::now();
    // On the runtime's threads, as the daemon runs it (not on this one,
    // which only prepares and checks, so a profile can leave it out).
    let run = rt.spawn(pipeline.run(sluice_core::Shutdown::default()));
    let report = rt
        .block_on(run)
        .expect("the pipeline task")
        .expect("pipeline runs");
    let elapsed = started.elapsed();
    assert!(
        report.counts.delivered == n && report.counts.acked == n && dlq.is_empty(),
        "WRONG RESULT: expected {n} delivered and acked, got\n{report}"
    );
    (elapsed, sink.messages())
}

/// The limit settings measured, as (label, fuel, epoch).
const LIMITS: [(&str, bool, bool); 4] = [
    ("no limits", false, false),
    ("epoch deadline only", false, true),
    ("fuel only", true, false),
    ("fuel + epoch (default)", true, true),
];

/// Three identity stages on a host with the given limits; the host is
/// returned too, as it keeps the engine (and its epoch thread) alive.
fn identity_chain(fuel: bool, epoch: bool) -> (WasmHost, Vec<Arc<StageSpec>>) {
    let cache = ArtifactCache::at(sluice_tests::repo().join("target/bench-artifact-cache"));
    let host = WasmHost::new(HostOptions { fuel, epoch, cache }).expect("wasm host");
    let stages = (1..=3)
        .map(|i| {
            sluice_tests::wasm_stage(
                &host,
                &format!("identity-{i}"),
                "identity",
                StageKind::Transform,
                Limits::default(),
                Default::default(),
                RetryPolicy::default(),
            )
        })
        .collect();
    (host, stages)
}

fn main() {
    let n = env_usize("SLUICE_BENCH_N", 200_000);
    let rounds = env_usize("SLUICE_BENCH_ROUNDS", 5).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let messages = generate(n);
    let chains: Vec<_> = LIMITS
        .iter()
        .map(|&(_, fuel, epoch)| identity_chain(fuel, epoch))
        .collect();
    println!(
        "goals bench: {n} messages of {PAYLOAD_BYTES} B, one worker, {rounds} rounds (median)"
    );

    // For a profiler: run one configuration `rounds` times and stop.
    if let Ok(only) = std::env::var("SLUICE_BENCH_ONLY") {
        for _ in 0..rounds {
            let took = match only.as_str() {
                "relay" => relay(&rt, messages.clone()).0,
                "engine" => engine(&rt, messages.clone(), &[]).0,
                "identity" => engine(&rt, messages.clone(), &chains[3].1).0,
                "identity-none" => engine(&rt, messages.clone(), &chains[0].1).0,
                other => panic!(
                    "SLUICE_BENCH_ONLY: relay, engine, identity or identity-none, not {other}"
                ),
            };
            println!("{only}: {} msg/s", thousands(n as f64 / took.as_secs_f64()));
        }
        return;
    }

    // Check every configuration once (also the warm-up).
    let (_, got) = relay(&rt, messages.clone());
    check("relay", &messages, &got);
    let (_, got) = engine(&rt, messages.clone(), &[]);
    check("engine, no stage", &messages, &got);
    for ((label, ..), (_, stages)) in LIMITS.iter().zip(&chains) {
        let (_, got) = engine(&rt, messages.clone(), stages);
        check(&format!("three identity stages, {label}"), &messages, &got);
    }

    // Seconds per run: relay, engine, then each limit setting.
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); 2 + LIMITS.len()];
    for _ in 0..rounds {
        times[0].push(relay(&rt, messages.clone()).0.as_secs_f64());
        times[1].push(engine(&rt, messages.clone(), &[]).0.as_secs_f64());
        for (i, (_, stages)) in chains.iter().enumerate() {
            times[2 + i].push(engine(&rt, messages.clone(), stages).0.as_secs_f64());
        }
    }
    let secs: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    let rate = |s: f64| n as f64 / s;
    let ns = |s: f64| s * 1e9 / n as f64;

    println!("\n  run                                    msg/s    ns/msg");
    let mut rows = vec![
        ("bare relay (floor)", secs[0]),
        ("engine, no stage", secs[1]),
    ];
    for (i, (label, ..)) in LIMITS.iter().enumerate() {
        rows.push((label, secs[2 + i]));
    }
    for (label, s) in &rows {
        let label = if label.starts_with("bare") || label.starts_with("engine") {
            label.to_string()
        } else {
            format!("3 identity stages, {label}")
        };
        println!("  {label:<36} {:>10} {:>8.0}", thousands(rate(*s)), ns(*s));
    }

    let (relay_s, engine_s) = (secs[0], secs[1]);
    let (none_s, epoch_s, default_s) = (secs[2], secs[3], secs[5]);
    let engine_ratio = engine_s / relay_s;
    let report = vec![
        Goal {
            goal: "1 engine floor",
            figure: format!("{} msg/s", thousands(rate(engine_s))),
            baseline: format!("bare relay {} msg/s", thousands(rate(relay_s))),
            ratio: engine_ratio,
            target: "≥ 1,000,000 msg/s and ≤ 2.0× the relay's time",
            met: rate(engine_s) >= 1e6 && engine_ratio <= 2.0,
        },
        Goal {
            goal: "3 three identity stages",
            figure: format!("{} msg/s (fuel + epoch)", thousands(rate(default_s))),
            baseline: format!("engine with no stage {} msg/s", thousands(rate(engine_s))),
            ratio: default_s / engine_s,
            target: "≥ 400,000 msg/s",
            met: rate(default_s) >= 4e5,
        },
        Goal {
            goal: "4 limits (default: fuel + epoch)",
            figure: format!("{} msg/s", thousands(rate(default_s))),
            baseline: format!("no limits {} msg/s", thousands(rate(none_s))),
            ratio: default_s / none_s,
            target: "≤ 1.10× the time without limits",
            met: default_s / none_s <= 1.10,
        },
        Goal {
            goal: "4 limits (epoch deadline only)",
            figure: format!("{} msg/s", thousands(rate(epoch_s))),
            baseline: format!("no limits {} msg/s", thousands(rate(none_s))),
            ratio: epoch_s / none_s,
            target: "≤ 1.10× the time without limits",
            met: epoch_s / none_s <= 1.10,
        },
    ];
    let md = goals::report(&report);
    if let Ok(path) = std::env::var("SLUICE_BENCH_MD") {
        std::fs::write(&path, md).expect("write SLUICE_BENCH_MD");
    }
}
