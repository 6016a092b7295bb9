//! Memory bounded in bytes, through the `sluice` binary and a real broker:
//! a burst of 200 messages of 4 MB through a Redis-stream pipeline (and a
//! RabbitMQ one) with one identity Wasm stage keeps the daemon's RSS under
//! its `max_in_flight_bytes` plus a stated overhead, and a message over
//! `max_message_bytes` is dead-lettered as `too-large` with its payload cut
//! to `too_large_keep`, while the pipeline goes on.
//!
//! The overhead above the budget is what the bytes in flight cost besides
//! themselves: the client's read buffer and the reply parsed from it, the
//! copy into the plugin's linear memory and its output (Wasm memory only
//! grows), the sink's command and its encoding, and what the allocator
//! keeps of all that. Measured here (2026-12-06) it was about 4.5 times the
//! budget on top of the idle RSS (+143 MiB for 32 MiB); the same burst with
//! a budget large enough not to bind (1 GiB, as before the budget existed)
//! took +788 MiB. The test prints its figures.

use sluice_tests::conformance::ready;
use sluice_tests::daemon::{
    eventually, free_addr, http_get, metric, plugin_literal, Daemon, Names,
};
use sluice_tests::redis_client::{add, connection, read_stream, redis_url};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const MESSAGES: usize = 200;
const MESSAGE_BYTES: usize = 4_000_000;
/// Over `max_message_bytes` (8 MiB).
const TOO_LARGE: usize = 9 * MIB as usize;
const BUDGET: u64 = 32 * MIB;
/// What the daemon may use above its idle RSS: six times the budget (the
/// copies listed above) and 64 MiB.
fn allowed(budget: u64) -> u64 {
    6 * budget + 64 * MIB
}

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes.
fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The config of pipeline `big`: `source` → identity → `out`, with `dlq`.
fn config(
    dir: &std::path::Path,
    budget: u64,
    source: &str,
    out: &str,
    dlq: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"
[pipelines.big]
max_in_flight_bytes = "{}B"
max_message_bytes = "8MiB"
too_large_keep = "1KiB"
source = {source}
sinks.out = {out}
dlq = {dlq}

[[pipelines.big.stages]]
name = "same"
kind = "transform"
plugin = {stage}
"#,
        budget,
        stage = plugin_literal("identity"),
    );
    let path = dir.join(format!("big-{budget}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// What one burst measured.
struct Burst {
    /// The most `sluice_in_flight_bytes` showed.
    peak_held: u64,
    idle: u64,
    peak_during: u64,
    after: u64,
    seconds: f64,
}

/// Start the daemon on `config`, wait until it is ready, `feed` the burst,
/// wait until `expected` deliveries were acked, and measure its RSS.
fn burst(
    config: &std::path::Path,
    log: &std::path::Path,
    expected: u64,
    feed: impl FnOnce(),
) -> Burst {
    let http = free_addr();
    let mut daemon = Daemon::start_with(config, log, &["--http", &http]);
    let pid = daemon.pid();
    assert!(
        eventually(Duration::from_secs(60), || ready(&http)),
        "the daemon did not become ready:\n{}",
        daemon.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    let (idle, _) = rss(pid).expect("the daemon's /proc status");
    let started = Instant::now();
    feed();
    let mut peak_during = idle;
    let mut peak_held = 0u64;
    let acked = |m: &str| {
        metric(
            m,
            "sluice_pipeline_messages_total{pipeline=\"big\",outcome=\"acked\"}",
        )
    };
    let done = eventually(Duration::from_secs(300), || {
        if let Some((now, _)) = rss(pid) {
            peak_during = peak_during.max(now);
        }
        let metrics = http_get(&http, "/metrics")
            .map(|(_, m)| m)
            .unwrap_or_default();
        let held = metric(&metrics, "sluice_in_flight_bytes{pipeline=\"big\"}").unwrap_or(0.0);
        peak_held = peak_held.max(held as u64);
        acked(&metrics) == Some(expected as f64)
    });
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        done,
        "not every message was acked within 300 s:\n{}",
        daemon.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    let (after, peak) = rss(pid).expect("the daemon's /proc status");
    assert!(
        daemon.running(),
        "the daemon stopped:\n{}",
        daemon.log_text()
    );
    daemon.terminate(Duration::from_secs(30));
    Burst {
        peak_held,
        idle,
        peak_during: peak_during.max(peak),
        after,
        seconds,
    }
}

fn show(broker: &str, budget: u64, b: &Burst) {
    let mib = |n: u64| n as f64 / MIB as f64;
    println!(
        "{broker}: {MESSAGES} x {MESSAGE_BYTES} B in {:.1} s, budget {} MiB (held at most {:.0} MiB): RSS idle {:.0} MiB, peak {:.0} MiB (+{:.0} MiB), after {:.0} MiB; allowed +{} MiB",
        b.seconds,
        budget / MIB,
        mib(b.peak_held),
        mib(b.idle),
        mib(b.peak_during),
        mib(b.peak_during.saturating_sub(b.idle)),
        mib(b.after),
        allowed(budget) / MIB,
    );
}

/// Message `i` of the burst: 4 MB of a byte that names it.
fn payload(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; MESSAGE_BYTES]
}

/// Run the burst through Redis with `budget`: what it measured, and the
/// DLQ's entries.
fn redis_burst(budget: u64) -> (Burst, Vec<sluice_tests::redis_client::Entry>) {
    let dir = tempfile::tempdir().unwrap();
    let url = redis_url();
    let names = Names::new("memory-redis");
    let mut conn = connection(&url);
    let config = config(
        dir.path(),
        budget,
        &format!(
            r#"{{ type = "redis-stream", url = "{url}", stream = "{}", group = "{}", block = "200ms" }}"#,
            names.input, names.group
        ),
        &format!(
            r#"{{ type = "redis-stream", url = "{url}", stream = "{}", maxlen = 5 }}"#,
            names.output
        ),
        &format!(
            r#"{{ type = "redis-stream", url = "{url}", stream = "{}" }}"#,
            names.dlq
        ),
    );
    let log = dir.path().join("daemon.log");
    let measured = burst(&config, &log, MESSAGES as u64 + 2, || {
        for i in 0..MESSAGES {
            let fields = vec![
                ("payload".to_string(), payload(i)),
                ("n".to_string(), i.to_string().into_bytes()),
            ];
            add(&mut conn, &names.input, &[fields]);
            if i == 50 || i == 150 {
                let big = vec![
                    ("payload".to_string(), vec![b'z'; TOO_LARGE]),
                    ("n".to_string(), format!("big{i}").into_bytes()),
                ];
                add(&mut conn, &names.input, &[big]);
            }
        }
    });
    let dead = read_stream(&mut conn, &names.dlq);
    for stream in [&names.input, &names.output, &names.dlq] {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(stream).query(&mut conn);
    }
    (measured, dead)
}

#[test]
fn a_burst_of_large_messages_through_redis_stays_within_the_byte_budget() {
    let (bounded, dead) = redis_burst(BUDGET);
    show("redis", BUDGET, &bounded);
    let (unbound, _) = redis_burst(1 << 30);
    show("redis", 1 << 30, &unbound);
    assert!(
        bounded.peak_held <= BUDGET,
        "the budget held {} bytes, over its {BUDGET}",
        bounded.peak_held
    );
    assert!(
        bounded.peak_during <= bounded.idle + allowed(BUDGET),
        "RSS peaked at {} MiB, over idle {} MiB + {} MiB",
        bounded.peak_during / MIB,
        bounded.idle / MIB,
        allowed(BUDGET) / MIB
    );
    assert!(
        bounded.peak_during - bounded.idle < (unbound.peak_during - unbound.idle) / 2,
        "the budget made no difference: +{} MiB with it, +{} MiB without",
        (bounded.peak_during - bounded.idle) / MIB,
        (unbound.peak_during - unbound.idle) / MIB
    );
    assert_eq!(
        dead.len(),
        2,
        "the two messages over 8 MiB are dead-lettered"
    );
    for d in &dead {
        assert_eq!(d.field("sluice-error-class").as_deref(), Some("too-large"));
        assert_eq!(
            d.field("payload").map(|p| p.len()),
            Some(1024),
            "the payload is cut to too_large_keep"
        );
        assert!(
            d.field("n").is_some_and(|n| n.starts_with("big")),
            "its other fields are kept"
        );
        assert!(
            d.field("sluice-error-source-id").is_some(),
            "with its coordinates"
        );
        let text = d.field("sluice-error-text").unwrap_or_default();
        assert!(
            text.contains("larger than max_message_bytes (8388608 bytes)"),
            "{text}"
        );
    }
}
