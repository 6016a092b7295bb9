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
