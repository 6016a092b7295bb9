//! What a `dedupe` stage costs, embedded store against Redis, measured
//! against the same pipeline without it in the same run.
//!
//! ```text
//! memory source ─▶ [dedupe by key] ─▶ memory sink     N messages, unique keys
//! ```
//!
//! Three pipelines per round: no stage (the baseline), a dedupe stage on
//! the embedded store (redb, a fresh directory each round), one on Redis
//! (`SLUICE_TEST_REDIS`, skipped with a note when it does not answer). Each
//! prints msg/s, the ratio to the baseline and the µs a message's claim
//! and record add. Then the same inputs once more through each store: all
//! must be dropped as duplicates (the check that the figures measure a
//! working stage). `SLUICE_BENCH_N` (default 20,000), `SLUICE_BENCH_ROUNDS`
//! (default 3, the median reported), `SLUICE_BENCH_CONCURRENCY` (default 2).

use sluice_core::engine::EngineOptions;
use sluice_core::memory::{MemorySink, MemorySource};
use sluice_core::{Message, Pipeline, Shutdown, StageSpec};
use sluice_state::dedupe::{DedupeConfig, DedupeFactory, IdSource};
use sluice_state::{StoreConfig, Stores};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn messages(n: usize, round: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            Message::new(format!(r#"{{"order_id":"r{round}-{i}","amount":{i}}}"#))
                .with_key(format!("r{round}-{i}"))
        })
        .collect()
}

/// Run `msgs` through a pipeline with `stages`; (seconds, delivered, deduplicated).
async fn run(
    stages: Vec<Arc<StageSpec>>,
    msgs: Vec<Message>,
    concurrency: usize,
) -> (f64, usize, u64) {
    let (source, _) = MemorySource::new("in", msgs);
    let out = MemorySink::new("out");
    let pipeline = Pipeline::builder("bench", Box::new(source), MemorySink::new("dlq"))
        .stages(stages.clone())
        .sink("out", out.clone())
        .options(EngineOptions {
            concurrency,
            ..EngineOptions::default()
        })
        .build();
    let started = Instant::now();
    pipeline
        .run(Shutdown::new(Duration::from_secs(60)))
        .await
        .expect("the pipeline runs");
    let secs = started.elapsed().as_secs_f64();
    let deduplicated = stages.iter().map(|s| s.stats.snapshot().deduplicated).sum();
    (secs, out.len(), deduplicated)
}

fn dedupe_stage(store: Arc<dyn sluice_state::Store>, round: usize) -> Vec<Arc<StageSpec>> {
    let config = DedupeConfig {
        id: IdSource::Key,
        window: Duration::from_secs(600),
        capacity: DedupeConfig::DEFAULT_CAPACITY,
        claim_ttl: DedupeConfig::DEFAULT_CLAIM_TTL,
    };
    let factory = DedupeFactory::new("bench", &format!("once-{round}"), config, store);
    vec![Arc::new(StageSpec::new(
        "once",
        Arc::new(factory),
        sluice_core::RetryPolicy::default(),
    ))]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let n = env("SLUICE_BENCH_N", 20_000);
    let rounds = env("SLUICE_BENCH_ROUNDS", 3);
    let concurrency = env("SLUICE_BENCH_CONCURRENCY", 2);
    let stores = Stores::default();
    let dir = tempfile::tempdir().unwrap();
    let redis_url =
        std::env::var("SLUICE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = stores
        .open(&StoreConfig::Redis {
            url: redis_url.clone(),
        })
        .await
        .inspect_err(|e| eprintln!("no Redis store ({e}): its rows are skipped"))
        .ok();

    let mut base = Vec::new();
    let mut embedded = Vec::new();
    let mut shared = Vec::new();
    for round in 0..rounds {
        let (secs, out, _) = run(Vec::new(), messages(n, round), concurrency).await;
        assert_eq!(out, n);
        base.push(secs);

        let store = stores
            .open(&StoreConfig::Embedded {
                path: dir.path().join(format!("round-{round}")),
            })
            .await
            .expect("an embedded store");
        let (secs, out, dup) = run(
            dedupe_stage(store.clone(), round),
            messages(n, round),
            concurrency,
        )
        .await;
        assert_eq!((out, dup), (n, 0), "embedded: every message is new");
        embedded.push(secs);
        let (_, out, dup) = run(dedupe_stage(store, round), messages(n, round), concurrency).await;
        assert_eq!(
            (out, dup as usize),
            (0, n),
            "embedded: the same again is all duplicates"
        );

        if let Some(store) = &redis {
            let (secs, out, dup) = run(
                dedupe_stage(store.clone(), round + 1000 * std::process::id() as usize),
                messages(n, round),
                concurrency,
            )
            .await;
            assert_eq!((out, dup), (n, 0), "redis: every message is new");
            shared.push(secs);
        }
    }
    let base = median(base);
    println!(
        "dedupe stage, {n} messages with unique keys, concurrency {concurrency}, median of {rounds}"
    );
    println!(
        "{:<28} {:>12} {:>10} {:>16}",
        "pipeline", "msg/s", "× baseline", "µs/msg added"
    );
    println!(
        "{:<28} {:>12.0} {:>10} {:>16}",
        "no stage (baseline)",
        n as f64 / base,
        "1.00",
        "-"
    );
    let row = |name: &str, secs: f64| {
        println!(
            "{:<28} {:>12.0} {:>10.2} {:>16.1}",
            name,
            n as f64 / secs,
            base / secs,
            (secs - base) / n as f64 * 1e6
        );
    };
    row("dedupe, embedded (redb)", median(embedded));
    if !shared.is_empty() {
        row("dedupe, redis", median(shared));
        println!("(redis: {})", sluice_brokers::redact_text(&redis_url));
    }
}
