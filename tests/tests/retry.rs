//! Retryable errors are retried with exponential backoff (virtual time);
//! fatal errors go straight to the DLQ.

use sluice_core::engine::EngineOptions;
use sluice_core::{Limits, Message, RetryPolicy, StageKind};
use sluice_tests::*;
use std::time::Duration;

fn flaky(
    fail_attempts: &str,
    retry: RetryPolicy,
    input: Vec<Message>,
) -> (sluice_tests::Run, std::sync::Arc<VirtualClock>) {
    let host = host();
    let stage = wasm_stage(
        &host,
        "flaky",
        "flaky",
        StageKind::Filter,
        Limits::default(),
        params(&[("fail_attempts", fail_attempts)]),
        retry,
    );
    let clock = VirtualClock::new();
    let run = run_pipeline(
        input,
        vec![stage],
        &["out"],
        EngineOptions::default(),
        clock.clone(),
    );
    (run, clock)
}

#[test]
fn a_retryable_error_is_retried_with_doubling_backoff_and_then_passes() {
    let (run, clock) = flaky("2", RetryPolicy::default(), vec![Message::new("{}")]);
    assert_eq!(run.sinks["out"].len(), 1, "attempt 3 passes");
    assert!(run.dlq.is_empty());
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 2, "two retries: {sleeps:?}");
    // Defaults: 1 s initial, factor 2, ±20 % jitter.
    assert!((0.8..=1.2).contains(&sleeps[0].as_secs_f64()), "{sleeps:?}");
    assert!((1.6..=2.4).contains(&sleeps[1].as_secs_f64()), "{sleeps:?}");
    assert_eq!(run.report.stages[0].1.retried, 2);
}

#[test]
fn retries_exhausted_dead_letter_with_attempts_and_failure_times() {
    let policy = RetryPolicy {
        max_attempts: 4,
        initial: Duration::from_millis(500),
        factor: 3.0,
        jitter: 0.0,
        ..RetryPolicy::default()
    };
    let (run, clock) = flaky("10", policy, vec![Message::new("{}"), Message::new("{}")]);
    assert!(run.sinks["out"].is_empty());
    assert_eq!(run.dlq.len(), 2);
    assert_eq!(
        clock.sleeps()[..3],
        [
            Duration::from_millis(500),
            Duration::from_millis(1500),
            Duration::from_millis(4500)
        ]
    );
    let dead = &run.dlq[0];
    assert_eq!(
        dead.header_str("sluice-error-class").as_deref(),
        Some("retries-exhausted")
    );
    assert_eq!(
        dead.header_str("sluice-error-attempts").as_deref(),
        Some("4")
    );
    assert_eq!(
        dead.header_str("sluice-error-text").as_deref(),
        Some("flaky: attempt 4 of 10 fails")
    );
    let first =
        humantime::parse_rfc3339(&dead.header_str("sluice-error-first-failure").unwrap()).unwrap();
    let last =
        humantime::parse_rfc3339(&dead.header_str("sluice-error-last-failure").unwrap()).unwrap();
    assert_eq!(
        last.duration_since(first).unwrap(),
        Duration::from_millis(6500),
        "first → last failure spans the three backoffs"
    );
    assert_eq!(
        run.acked(),
        vec![0, 1],
        "dead-lettered messages are acked once the DLQ confirmed"
    );
}

#[test]
fn a_per_stage_policy_of_one_attempt_means_no_retry() {
    let policy = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let (run, clock) = flaky("1", policy, vec![Message::new("{}")]);
    assert!(clock.sleeps().is_empty());
    assert_eq!(
        run.dlq[0].header_str("sluice-error-class").as_deref(),
        Some("retryable")
    );
}

#[test]
fn a_fatal_error_goes_to_the_dlq_at_once() {
    let (run, clock) = flaky(
        "0",
        RetryPolicy::default(),
        vec![Message::new(r#"{"please":"fatal"}"#), Message::new("{}")],
    );
    assert!(clock.sleeps().is_empty(), "no backoff for fatal errors");
    assert_eq!(run.dlq.len(), 1);
    assert_eq!(
        run.dlq[0].header_str("sluice-error-class").as_deref(),
        Some("fatal")
    );
    assert_eq!(
        run.dlq[0].header_str("sluice-error-attempts").as_deref(),
        Some("1")
    );
    assert_eq!(run.sinks["out"].len(), 1);
}
