//! The dead-letter envelope: original key, payload and headers kept, and
//! every `sluice-error-*` header filled in.

use sha2::{Digest, Sha256};
use sluice_core::engine::EngineOptions;
use sluice_core::{Limits, Message, RetryPolicy, StageKind};
use sluice_tests::*;

#[test]
fn every_dlq_header_says_where_and_why() {
    let host = host();
    let filter = wasm_stage(
        &host,
        "big-orders",
        "json-filter",
        StageKind::Filter,
        Limits::default(),
        params(&[("field", "amount"), ("min", "100")]),
        RetryPolicy::default(),
    );
    let original = Message::new(r#"{"id":"o-1","amount":"lots"}"#)
        .with_key("c-7")
        .with_header("trace-id", "abc");
    let clock = VirtualClock::new();
    let run = run_pipeline(
        vec![original.clone()],
        vec![filter],
        &["out"],
        EngineOptions::default(),
        clock.clone(),
    );

    assert_eq!(run.dlq.len(), 1);
    let dead = &run.dlq[0];
    assert_eq!(dead.key, original.key, "key kept");
    assert_eq!(dead.payload, original.payload, "payload kept");
    assert_eq!(
        dead.headers[0],
        ("trace-id".to_string(), b"abc".to_vec()),
        "original headers first, untouched"
    );

    let path = plugin("json-filter");
    let sha = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
    let at = humantime::format_rfc3339_millis(sluice_core::Clock::now(&*clock)).to_string();
    let expected = [
        ("sluice-error-pipeline", "test".to_string()),
        ("sluice-error-stage", "big-orders".to_string()),
        ("sluice-error-plugin", path.display().to_string()),
        ("sluice-error-plugin-sha256", sha),
        ("sluice-error-class", "fatal".to_string()),
        (
            "sluice-error-text",
            "field `amount` is missing or not a number".to_string(),
        ),
        ("sluice-error-attempts", "1".to_string()),
        ("sluice-error-first-failure", at.clone()),
        ("sluice-error-last-failure", at),
        ("sluice-error-source", "input".to_string()),
        ("sluice-error-source-index", "0".to_string()),
    ];
    for (name, value) in expected {
        assert_eq!(
            dead.header_str(name).as_deref(),
            Some(value.as_str()),
            "header {name}"
        );
    }
    let added: Vec<_> = dead
        .headers
        .iter()
        .filter(|(n, _)| n.starts_with("sluice-error-"))
        .collect();
    assert_eq!(
        added.len(),
        11,
        "no other sluice-error-* headers: {added:?}"
    );
}

#[test]
fn an_unknown_route_dead_letters_that_message_and_the_pipeline_goes_on() {
    let host = host();
    let router = wasm_stage(
        &host,
        "by-country",
        "country-router",
        StageKind::Route,
        Limits::default(),
        params(&[("route.DE", "europe")]),
        RetryPolicy::default(),
    );
    let input = vec![
        json_message("a", serde_json::json!({"country": "DE"})),
        json_message("b", serde_json::json!({"country": "XX"})),
        json_message("c", serde_json::json!({"country": "DE"})),
    ];
    let run = run_pipeline(
        input,
        vec![router],
        &["europe"],
        EngineOptions::default(),
        VirtualClock::new(),
    );
    assert_eq!(run.sinks["europe"].len(), 2);
    assert_eq!(run.dlq.len(), 1);
    let dead = &run.dlq[0];
    assert_eq!(dead.key.as_deref(), Some(&b"b"[..]));
    assert_eq!(
        dead.header_str("sluice-error-class").as_deref(),
        Some("unknown-route")
    );
    assert_eq!(
        dead.header_str("sluice-error-text").as_deref(),
        Some("route `XX` is not a sink of this pipeline (sinks: europe)")
    );
    assert_eq!(run.acked(), vec![0, 1, 2]);
}
