//! A burst of large messages through the `sluice` binary and a real
//! broker, with the daemon's RSS measured before, during and after: the
//! memory test (`tests/tests/memory.rs`, asserting the bounds) and the
//! memory bench (`tests/benches/memory.rs`, a release build, printing the
//! figures) share it.
//!
//! The pipeline `big`: the broker's input → one identity Wasm stage → an
//! output on the same broker that keeps only the last few messages, with
//! `max_message_bytes = 8MiB` and `too_large_keep = 1KiB`. The burst is
//! [`Burst::messages`] of [`MESSAGE_BYTES`] and two of [`TOO_LARGE`], which
//! must be dead-lettered as `too-large`.

use crate::amqp_client;
use crate::conformance::ready;
use crate::daemon::{eventually, free_addr, http_get, metric, plugin_literal, Daemon, Names};
use crate::redis_client::{add, connection, read_stream, redis_url};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const MIB: u64 = 1 << 20;
pub const MESSAGE_BYTES: usize = 4_000_000;
/// Over `max_message_bytes` (8 MiB).
pub const TOO_LARGE: usize = 9 * MIB as usize;

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes.
pub fn rss(pid: u32) -> Option<(u64, u64)> {
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

/// What one burst measured.
pub struct Burst {
    pub broker: &'static str,
    pub messages: usize,
    pub budget: u64,
    pub rss: Measured,
    /// The dead letters, as the broker kept them.
    pub dead: Vec<DeadLetter>,
}

/// A dead letter of the burst, as the broker kept it.
pub struct DeadLetter {
    pub class: Option<String>,
    pub payload_len: usize,
    pub coordinates: bool,
    pub text: String,
}

impl Burst {
    /// RSS above idle at the peak.
    pub fn growth(&self) -> u64 {
        self.rss.peak_during.saturating_sub(self.rss.idle)
    }

    /// One line of figures, in MiB.
    pub fn show(&self) -> String {
        let mib = |n: u64| n as f64 / MIB as f64;
        format!(
            "{}: {} x {MESSAGE_BYTES} B in {:.1} s, budget {} MiB (held at most {:.0} MiB): RSS before {:.0} MiB, peak during {:.0} MiB (+{:.0} MiB), after {:.0} MiB",
            self.broker,
            self.messages,
            self.rss.seconds,
            self.budget / MIB,
            mib(self.rss.peak_held),
            mib(self.rss.idle),
            mib(self.rss.peak_during),
            mib(self.growth()),
            mib(self.rss.after),
        )
    }
}

/// The config of pipeline `big`: `source` → identity → `out`, with `dlq`.
fn config(dir: &Path, budget: u64, source: &str, out: &str, dlq: &str) -> PathBuf {
    let text = format!(
        r#"
[pipelines.big]
max_in_flight_bytes = "{budget}B"
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
        stage = plugin_literal("identity"),
    );
    let path = dir.join(format!("big-{budget}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The daemon's RSS around one burst, and how long the burst took.
pub struct Measured {
    /// The most `sluice_in_flight_bytes` showed.
    pub peak_held: u64,
    pub idle: u64,
    pub peak_during: u64,
    pub after: u64,
    pub seconds: f64,
}

/// The daemon on `config` with `--http` on a free port, once it is ready
/// (at most 60 s: a debug build compiles the plugin first), and that port.
fn start(config: &Path, log: &Path) -> (Daemon, String) {
    let http = free_addr();
    let daemon = Daemon::start_with(config, log, &["--http", &http]);
    assert!(
        eventually(Duration::from_secs(60), || ready(&http)),
        "the daemon did not become ready:\n{}",
        daemon.log_text()
    );
    (daemon, http)
}

/// Start the daemon on `config`, wait until it is ready, `feed` the burst,
/// wait until `expected` deliveries were acked, and measure its RSS.
fn measure(config: &Path, log: &Path, expected: u64, feed: impl FnOnce()) -> Measured {
    let (mut daemon, http) = start(config, log);
    let pid = daemon.pid();
    std::thread::sleep(Duration::from_millis(500));
    let (idle, _) = rss(pid).expect("the daemon's /proc status");
    let started = Instant::now();
    feed();
    let mut peak_during = idle;
    let mut peak_held = 0u64;
    let done = eventually(Duration::from_secs(300), || {
        if let Some((now, _)) = rss(pid) {
            peak_during = peak_during.max(now);
        }
        let metrics = http_get(&http, "/metrics")
            .map(|(_, m)| m)
            .unwrap_or_default();
        let held = metric(&metrics, "sluice_in_flight_bytes{pipeline=\"big\"}").unwrap_or(0.0);
        peak_held = peak_held.max(held as u64);
        let acked = metric(
            &metrics,
            "sluice_pipeline_messages_total{pipeline=\"big\",outcome=\"acked\"}",
        );
        acked == Some(expected as f64)
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
    Measured {
        peak_held,
        idle,
        peak_during: peak_during.max(peak),
        after,
        seconds,
    }
}

/// Message `i` of the burst: 4 MB of a byte that names it.
fn payload(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; MESSAGE_BYTES]
}

/// Whether message `i` of the burst is followed by one too large.
fn too_large_after(i: usize, messages: usize) -> bool {
    i == messages / 4 || i == messages * 3 / 4
}

/// Pipeline `big` on Redis streams: `names.input` → identity →
/// `names.output` (trimmed to 5 entries), DLQ `names.dlq`.
fn redis_config(dir: &Path, budget: u64, url: &str, names: &Names) -> PathBuf {
    config(
        dir,
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
    )
}

/// The burst through Redis streams with `budget` (the output stream
/// trimmed to 5 entries).
pub fn redis(messages: usize, budget: u64) -> Burst {
    let dir = tempfile::tempdir().unwrap();
    let url = redis_url();
    let names = Names::new("memory-redis");
    let mut conn = connection(&url);
    let config = redis_config(dir.path(), budget, &url, &names);
    let log = dir.path().join("daemon.log");
    let measured = measure(&config, &log, messages as u64 + 2, || {
        for i in 0..messages {
            let fields = vec![
                ("payload".to_string(), payload(i)),
                ("n".to_string(), i.to_string().into_bytes()),
            ];
            add(&mut conn, &names.input, &[fields]);
            if too_large_after(i, messages) {
                let big = vec![
                    ("payload".to_string(), vec![b'z'; TOO_LARGE]),
                    ("n".to_string(), format!("big{i}").into_bytes()),
                ];
                add(&mut conn, &names.input, &[big]);
            }
        }
    });
    let dead = read_stream(&mut conn, &names.dlq)
        .into_iter()
        .map(|d| DeadLetter {
            class: d.field("sluice-error-class"),
            payload_len: d.field("payload").map(|p| p.len()).unwrap_or(0),
            coordinates: d.field("sluice-error-source-id").is_some()
                && d.field("n").is_some_and(|n| n.starts_with("big")),
            text: d.field("sluice-error-text").unwrap_or_default(),
        })
        .collect();
    for stream in [&names.input, &names.output, &names.dlq] {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(stream).query(&mut conn);
    }
    Burst {
        broker: "redis",
        messages,
        budget,
        rss: measured,
        dead,
    }
}

/// The burst through RabbitMQ with `budget` and `prefetch` (the output a
/// queue of at most 5 messages).
pub fn rabbitmq(messages: usize, budget: u64, prefetch: u16) -> Burst {
    use lapin::types::{AMQPValue, FieldTable};
    let dir = tempfile::tempdir().unwrap();
    let url = amqp_client::amqp_url();
    let names = Names::new("memory-amqp");
    amqp_client::declare(&url, &[&names.input, &names.dlq]);
    let mut bounded = FieldTable::default();
    bounded.insert("x-max-length".into(), AMQPValue::LongInt(5));
    amqp_client::declare_with(&url, &[&names.output], bounded);
    let config = config(
        dir.path(),
        budget,
        &format!(
            r#"{{ type = "rabbitmq", url = "{url}", queue = "{}", prefetch = {prefetch} }}"#,
            names.input
        ),
        &format!(
            r#"{{ type = "rabbitmq", url = "{url}", routing_key = "{}" }}"#,
            names.output
        ),
        &format!(
            r#"{{ type = "rabbitmq", url = "{url}", routing_key = "{}" }}"#,
            names.dlq
        ),
    );
    let log = dir.path().join("daemon.log");
    let measured = measure(&config, &log, messages as u64 + 2, || {
        // One publisher that waits for the confirms at the end: faster than
        // the pipeline, so the burst piles up in front of it.
        let mut burst = Vec::with_capacity(messages + 2);
        for i in 0..messages {
            burst.push((payload(i), vec![("n".to_string(), i.to_string())]));
            if too_large_after(i, messages) {
                burst.push((vec![b'z'; TOO_LARGE], vec![("n".into(), format!("big{i}"))]));
            }
        }
        amqp_client::publish(&url, &names.input, &burst);
    });
    let dead = amqp_client::drain(&url, &names.dlq)
        .into_iter()
        .map(|d| DeadLetter {
            class: d.header("sluice-error-class"),
            payload_len: d.payload.len(),
            coordinates: d.header("sluice-error-source-queue").is_some()
                && d.header("n").is_some_and(|n| n.starts_with("big")),
            text: d.header("sluice-error-text").unwrap_or_default(),
        })
        .collect();
    amqp_client::delete(&url, &[&names.input, &names.output, &names.dlq]);
    Burst {
        broker: "rabbitmq",
        messages,
        budget,
        rss: measured,
        dead,
    }
}

/// The daemon's RSS idle, at a steady input rate and through a burst of
/// ten times that rate (goal 6 of issue 16).
pub struct Rates {
    /// Messages per second in the steady phase (the burst is ten times it).
    pub rate: usize,
    pub messages: usize,
    /// Ready, before any input.
    pub idle: u64,
    /// The median RSS over the second half of the steady phase.
    pub steady: u64,
    /// The highest RSS from the burst's start until every message was acked.
    pub peak_burst: u64,
}

/// 1 KiB messages through Redis streams (source → identity → a trimmed
/// output stream, the default byte budget): idle, then `rate` messages a
/// second for `seconds`, then `10 × rate` for `seconds`, until every one is
/// acked; the RSS sampled every 20 ms.
pub fn redis_rates(rate: usize, seconds: u64) -> Rates {
    let dir = tempfile::tempdir().unwrap();
    let url = redis_url();
    let names = Names::new("memory-rates");
    let config = redis_config(dir.path(), 64 * MIB, &url, &names);
    let log = dir.path().join("daemon.log");
    let (mut daemon, http) = start(&config, &log);
    let pid = daemon.pid();
    std::thread::sleep(Duration::from_secs(2));
    let (idle, _) = rss(pid).expect("the daemon's /proc status");

    // The feeder: one pipelined XADD of a tenth of a second's messages
    // every 100 ms, steady then ten times as fast.
    let phase = Duration::from_secs(seconds);
    let feeder = {
        let (url, stream) = (url.clone(), names.input.clone());
        std::thread::spawn(move || {
            let mut conn = connection(&url);
            let started = Instant::now();
            let mut sent = 0usize;
            for (per_second, until) in [(rate, phase), (rate * 10, phase * 2)] {
                let tick = per_second / 10;
                while started.elapsed() < until {
                    let entries: Vec<Vec<(String, Vec<u8>)>> = (sent..sent + tick)
                        .map(|i| {
                            let mut payload = format!("{{\"n\":{i}}}").into_bytes();
                            payload.resize(1024, b' ');
                            vec![("payload".to_string(), payload)]
                        })
                        .collect();
                    let t = Instant::now();
                    add(&mut conn, &stream, &entries);
                    sent += tick;
                    std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
                }
            }
            sent
        })
    };
    let started = Instant::now();
    let mut steady_samples = Vec::new();
    let mut peak_burst = 0u64;
    while !feeder.is_finished() {
        let at = started.elapsed();
        if let Some((now, _)) = rss(pid) {
            if at >= phase / 2 && at < phase {
                steady_samples.push(now);
            } else if at >= phase {
                peak_burst = peak_burst.max(now);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = feeder.join().expect("the feeder");
    let acked = || {
        let metrics = http_get(&http, "/metrics")
            .map(|(_, m)| m)
            .unwrap_or_default();
        metric(
            &metrics,
            "sluice_pipeline_messages_total{pipeline=\"big\",outcome=\"acked\"}",
        ) == Some(sent as f64)
    };
    let done = eventually(Duration::from_secs(120), || {
        if let Some((now, _)) = rss(pid) {
            peak_burst = peak_burst.max(now);
        }
        acked()
    });
    assert!(
        done,
        "not every message was acked within 120 s:\n{}",
        daemon.log_text()
    );
    assert!(
        daemon.running(),
        "the daemon stopped:\n{}",
        daemon.log_text()
    );
    daemon.terminate(Duration::from_secs(30));
    let mut conn = connection(&url);
    for stream in [&names.input, &names.output, &names.dlq] {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(stream).query(&mut conn);
    }
    steady_samples.sort_unstable();
    assert!(
        !steady_samples.is_empty(),
        "no RSS sample in the steady phase"
    );
    Rates {
        rate,
        messages: sent,
        idle,
        steady: steady_samples[steady_samples.len() / 2],
        peak_burst,
    }
}
