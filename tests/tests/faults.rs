//! Misbehaving plugins are stopped by the host's limits, dead-lettered with
//! the reason, their instance replaced, and the next message goes through.

use sluice_core::engine::EngineOptions;
use sluice_core::{Limits, Message, RetryPolicy, StageKind, SystemClock};
use sluice_tests::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Three messages: fine, trigger, fine. The trigger one must be dead-lettered
/// with `class`; the other two must be delivered; all three acked.
fn misbehaves_once(
    plugin_name: &str,
    kind: StageKind,
    trigger: &str,
    limits: Limits,
    class: &str,
) -> sluice_tests::Run {
    let host = host();
    let stage = wasm_stage(
        &host,
        "bad",
        plugin_name,
        kind,
        limits,
        params(&[]),
        RetryPolicy::default(),
    );
    let input = vec![
        Message::new(r#"{"n":1}"#),
        Message::new(format!(r#"{{"n":2,"x":"{trigger}"}}"#)),
        Message::new(r#"{"n":3}"#),
    ];
    let run = run_pipeline(
        input,
        vec![stage.clone()],
        &["out"],
        EngineOptions::default(),
        Arc::new(SystemClock),
    );
    let out: Vec<_> = run.sinks["out"]
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(
        out,
        vec![r#"{"n":1}"#, r#"{"n":3}"#],
        "the messages around the bad one are processed normally"
    );
    assert_eq!(run.dlq.len(), 1);
    let dead = &run.dlq[0];
    assert_eq!(
        dead.header_str("sluice-error-class").as_deref(),
        Some(class),
        "{:?}",
        dead.header_str("sluice-error-text")
    );
    assert_eq!(
        dead.header_str("sluice-error-attempts").as_deref(),
        Some("1"),
        "faults are not retried"
    );
    assert_eq!(run.acked(), vec![0, 1, 2]);
    let stats = stage.stats.snapshot();
    assert_eq!((stats.dead_lettered, stats.retried), (1, 0));
    // Replaced once for the single call that faulted, and once more when the
    // three messages were first tried as one batch call.
    assert!(
        (1..=2).contains(&stats.replaced),
        "replaced {}",
        stats.replaced
    );
    run
}

#[test]
fn an_infinite_loop_is_stopped_by_fuel() {
    let limits = Limits {
        fuel: 20_000_000,
        timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let started = Instant::now();
    let run = misbehaves_once(
        "spin-loop",
        StageKind::Filter,
        "loop",
        limits,
        "out-of-fuel",
    );
    assert!(run.dlq[0]
        .header_str("sluice-error-text")
        .unwrap()
        .contains("20000000"));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "fuel, not the 30 s timeout, stopped it"
    );
}

#[test]
fn an_infinite_loop_is_stopped_by_the_timeout() {
    let limits = Limits {
        fuel: u64::MAX / 4,
        timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let started = Instant::now();
    let run = misbehaves_once("spin-loop", StageKind::Filter, "loop", limits, "timeout");
    assert!(run.dlq[0]
        .header_str("sluice-error-text")
        .unwrap()
        .contains("100ms"));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_memory_hog_is_stopped_by_the_cap() {
    let limits = Limits {
        memory: 16 * 1024 * 1024,
        ..Limits::default()
    };
    let run = misbehaves_once(
        "memory-hog",
        StageKind::Transform,
        "hog",
        limits,
        "memory-limit",
    );
    let text = run.dlq[0].header_str("sluice-error-text").unwrap();
    assert!(text.contains("16777216"), "{text}");
}

#[test]
fn a_panicking_plugin_is_replaced_and_the_next_message_processed() {
    let run = misbehaves_once(
        "panicker",
        StageKind::Filter,
        "panic",
        Limits::default(),
        "trap",
    );
    let text = run.dlq[0].header_str("sluice-error-text").unwrap();
    assert!(
        text.contains("unreachable"),
        "a Rust panic is an `unreachable` trap: {text}"
    );
}

#[test]
fn a_fault_in_one_worker_leaves_the_others_working() {
    // 200 messages over 4 workers, every 10th one loops: exactly 20 dead-lettered.
    let host = host();
    let limits = Limits {
        fuel: 5_000_000,
        ..Limits::default()
    };
    let stage = wasm_stage(
        &host,
        "spin",
        "spin-loop",
        StageKind::Filter,
        limits,
        params(&[]),
        RetryPolicy::default(),
    );
    let input: Vec<Message> = (0..200)
        .map(|i| {
            let body = if i % 10 == 0 {
                format!(r#"{{"i":{i},"loop":true}}"#)
            } else {
                format!(r#"{{"i":{i}}}"#)
            };
            Message::new(body).with_key(format!("k{}", i % 7))
        })
        .collect();
    let options = EngineOptions {
        concurrency: 4,
        ..EngineOptions::default()
    };
    let run = run_pipeline(input, vec![stage], &["out"], options, Arc::new(SystemClock));
    assert_eq!(run.sinks["out"].len(), 180);
    assert_eq!(run.dlq.len(), 20);
    assert_eq!(run.acked().len(), 200);
}

/// `a`, `trigger`, `b` through the `misbehave` transform: `trigger` must be
/// dead-lettered with `class` within `bound`, `a` and `b` delivered, all
/// three acked. Returns the DLQ text.
fn misbehave_once(trigger: &str, limits: Limits, class: &str, bound: Duration) -> String {
    let host = host();
    let stage = wasm_stage(
        &host,
        "bad",
        "misbehave",
        StageKind::Transform,
        limits,
        params(&[]),
        RetryPolicy::default(),
    );
    let input = vec![Message::new("a"), Message::new(trigger), Message::new("b")];
    let started = Instant::now();
    let run = run_pipeline(
        input,
        vec![stage],
        &["out"],
        EngineOptions::default(),
        Arc::new(SystemClock),
    );
    let took = started.elapsed();
    let out: Vec<_> = run.sinks["out"].iter().map(|m| m.payload.clone()).collect();
    assert_eq!(
        out,
        vec![b"a".to_vec(), b"b".to_vec()],
        "the messages around it are delivered"
    );
    assert_eq!(run.dlq.len(), 1, "only `{trigger}` is dead-lettered");
    let text = run.dlq[0]
        .header_str("sluice-error-text")
        .unwrap_or_default();
    assert_eq!(
        run.dlq[0].header_str("sluice-error-class").as_deref(),
        Some(class),
        "{text}"
    );
    assert_eq!(run.acked(), vec![0, 1, 2]);
    assert!(took < bound, "`{trigger}` took {took:?}, bound {bound:?}");
    text
}

fn timeout(limit: Duration) -> Limits {
    Limits {
        fuel: u64::MAX / 4,
        timeout: limit,
        ..Limits::default()
    }
}

#[test]
fn a_plugin_sleeping_in_wasi_is_stopped_by_the_timeout() {
    // The sleep is a host-side wait: the epoch cannot interrupt it, the
    // call's deadline must. 5x the limit (batch try + single call + margin).
    let limit = Duration::from_millis(300);
    let text = misbehave_once("sleep", timeout(limit), "timeout", 5 * 2 * limit);
    assert!(
        text.contains("300ms") && text.contains("host call"),
        "{text}"
    );
}

#[test]
fn a_plugin_polling_a_far_pollable_is_stopped_by_the_timeout() {
    let limit = Duration::from_millis(300);
    let text = misbehave_once("poll", timeout(limit), "timeout", 5 * 2 * limit);
    assert!(text.contains("300ms"), "{text}");
}

#[test]
fn a_transform_over_its_output_cap_is_dead_lettered_with_the_reason() {
    let limits = Limits {
        max_outputs: 1_000,
        ..Limits::default()
    };
    let text = misbehave_once(
        "fanout 1001",
        limits,
        "output-limit",
        Duration::from_secs(30),
    );
    assert!(
        text.contains("1001 messages") && text.contains("max_outputs is 1000"),
        "{text}"
    );
}

#[test]
fn a_fan_out_within_the_cap_is_delivered_whole() {
    let host = host();
    let stage = wasm_stage(
        &host,
        "split",
        "misbehave",
        StageKind::Transform,
        Limits::default(),
        params(&[]),
        RetryPolicy::default(),
    );
    let run = run_pipeline(
        vec![Message::new("fanout 5000")],
        vec![stage],
        &["out"],
        EngineOptions::default(),
        Arc::new(SystemClock),
    );
    assert_eq!(run.sinks["out"].len(), 5000);
    assert!(run.dlq.is_empty());
    assert_eq!(run.acked(), vec![0]);
}

/// One looping message among 64 at `timeout = "1s"`: the batch call it is in
/// must not get 32 timeouts' worth before it is split (it took 34 s).
#[test]
fn one_loop_in_a_batch_costs_about_its_own_timeout_once() {
    let host = host();
    let stage = wasm_stage(
        &host,
        "spin",
        "spin-loop",
        StageKind::Filter,
        timeout(Duration::from_secs(1)),
        params(&[]),
        RetryPolicy::default(),
    );
    let input: Vec<Message> = (0..64)
        .map(|i| {
            let body = if i == 40 {
                r#"{"loop":true}"#.to_string()
            } else {
                format!(r#"{{"i":{i}}}"#)
            };
            Message::new(body)
        })
        .collect();
    let started = Instant::now();
    let run = run_pipeline(
        input,
        vec![stage.clone()],
        &["out"],
        EngineOptions::default(),
        Arc::new(SystemClock),
    );
    let took = started.elapsed();
    assert_eq!((run.sinks["out"].len(), run.dlq.len()), (63, 1));
    assert_eq!(
        run.dlq[0].header_str("sluice-error-class").as_deref(),
        Some("timeout")
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} (it took 34 s when a batch got 32 limits)"
    );
}

/// A config running `misbehave` over `payloads` from a file, with `limits`
/// (TOML lines) on the stage; returns (dir, config path).
fn misbehave_daemon_config(
    payloads: &[&str],
    pipeline: &str,
    limits: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for p in payloads {
        input.push_str(p);
        input.push('\n');
    }
    std::fs::write(dir.path().join("in.txt"), input).unwrap();
    let config = format!(
        r#"
[pipelines.p]
{pipeline}
source = {{ type = "file", path = "in.txt", format = "lines" }}
dlq = {{ type = "file", path = "dlq.jsonl" }}
sinks.out = {{ type = "file", path = "out.txt", format = "lines" }}
[[pipelines.p.stages]]
name = "bad"
kind = "transform"
plugin = "{}"
{limits}
"#,
        plugin("misbehave").display()
    );
    let path = dir.path().join("p.toml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

fn run_daemon(config: &std::path::Path) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = std::process::Command::new(sluice_bin())
        .args(["run", config.to_str().unwrap()])
        .env(
            "SLUICE_CACHE_DIR",
            repo().join("target/test-artifact-cache"),
        )
        .output()
        .unwrap();
    (out, started.elapsed())
}

/// Log and stdout floods: the daemon's log grows by at most the configured
/// rate, a line counts what was suppressed, the flooding message is
/// dead-lettered by its timeout and the others go through.
#[test]
fn log_and_stdout_floods_are_rate_limited_and_counted() {
    for flood in ["log", "stdout"] {
        let (dir, config) = misbehave_daemon_config(
            &["a", flood, "b"],
            "",
            "timeout = \"1s\"\nfuel = 100000000000\nlog_lines_per_second = 20\nlog_line_bytes = \"1KiB\"",
        );
        let (out, took) = run_daemon(&config);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{flood}: {log}");
        assert!(took < Duration::from_secs(30), "{flood}: took {took:?}");
        let lines = log
            .lines()
            .filter(|l| l.contains("stage=\"bad\"") || l.contains("stage=bad"))
            .count();
        // 20 a second for as long as the run took (the batch try and the
        // single call, 1 s each), plus one summary a second.
        let bound = (took.as_secs() as usize + 2) * (20 + 1);
        assert!(
            lines <= bound,
            "{flood}: {lines} plugin log lines in {took:?}, bound {bound}:\n{}",
            &log[..log.len().min(4000)]
        );
        assert!(log.len() < 200_000, "{flood}: {} bytes of log", log.len());
        assert!(
            log.contains("lines suppressed"),
            "{flood}: no summary line:\n{}",
            &log[..log.len().min(4000)]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
            "a\nb\n",
            "{flood}"
        );
        let dlq = std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap();
        assert!(
            dlq.contains("\"sluice-error-class\":\"timeout\""),
            "{flood}: {dlq}"
        );
    }
}

/// A SIGTERM while a plugin sleeps in a host call: the daemon still exits
/// within `--drain-timeout`, and the message before it is delivered.
#[test]
fn sigterm_during_a_sleeping_call_exits_within_the_drain_timeout() {
    let (dir, config) = misbehave_daemon_config(&["a", "sleep"], "batch = 1", "timeout = \"60s\"");
    let log = dir.path().join("daemon.log");
    let daemon =
        sluice_tests::daemon::Daemon::start_with(&config, &log, &["--drain-timeout", "2s"]);
    assert!(
        sluice_tests::daemon::eventually(Duration::from_secs(30), || {
            std::fs::read_to_string(dir.path().join("out.txt")).is_ok_and(|t| t == "a\n")
        }),
        "the message before the sleeper is delivered: {}",
        daemon.log_text()
    );
    let started = Instant::now();
    let status = daemon.terminate(Duration::from_secs(20));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "exit took {took:?} with --drain-timeout 2s"
    );
    assert!(status.code().is_some(), "exited, not killed: {status:?}");
}
