//! The engine with real components: a full filter → transform → route chain
//! with order per key over several workers, and a split by a plugin. The
//! engine's own behaviour (outages, rejections, acks after confirms, lanes,
//! hot swap) is tested with native stages in `runtime/core/tests/engine.rs`.

use sluice_core::engine::EngineOptions;
use sluice_core::{Limits, Message, RetryPolicy, StageKind, SystemClock};
use sluice_tests::*;
use std::collections::BTreeMap;
use std::sync::Arc;

fn order(i: usize, customer: usize, country: &str, amount: f64) -> Message {
    json_message(
        &format!("c-{customer}"),
        serde_json::json!({
            "id": format!("o-{i}"), "customer_id": format!("c-{customer}"), "country": country,
            "currency": "EUR", "amount": amount, "card": "4111111111111111",
            "items": [{"sku": "A", "qty": 1, "price": amount}, {"sku": "B", "qty": 2, "price": 1.0}]
        }),
    )
}

#[test]
fn filter_transform_route_counts_add_up_and_order_is_kept_per_key() {
    let host = host();
    let stages = vec![
        wasm_stage(
            &host,
            "big",
            "json-filter",
            StageKind::Filter,
            Limits::default(),
            params(&[("field", "amount"), ("min", "100")]),
            RetryPolicy::default(),
        ),
        wasm_stage(
            &host,
            "reshape",
            "order-transform",
            StageKind::Transform,
            Limits::default(),
            params(&[("tag", "t@1")]),
            RetryPolicy::default(),
        ),
        wasm_stage(
            &host,
            "route",
            "country-router",
            StageKind::Route,
            Limits::default(),
            params(&[("route.DE", "eu"), ("route.US", "us")]),
            RetryPolicy::default(),
        ),
    ];
    let countries = ["DE", "US"];
    let input: Vec<Message> = (0..2000)
        .map(|i| {
            order(
                i,
                i % 13,
                countries[i % 2],
                if i % 5 == 0 { 50.0 } else { 150.0 },
            )
        })
        .collect();
    let options = EngineOptions {
        concurrency: 4,
        buffer: 16,
        max_in_flight: 8,
        ..EngineOptions::default()
    };
    let run = run_pipeline(
        input.clone(),
        stages,
        &["eu", "us"],
        options,
        Arc::new(SystemClock),
    );

    let dropped = input.len() / 5;
    assert_eq!(
        run.sinks["eu"].len() + run.sinks["us"].len(),
        input.len() - dropped
    );
    assert_eq!(run.report.counts.dropped as usize, dropped);
    assert!(run.dlq.is_empty());
    assert_eq!(run.acked().len(), input.len(), "every message acked once");
    for m in &run.sinks["eu"] {
        let doc: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(doc["country"], "DE");
        assert_eq!(doc["card"], "************1111", "card redacted");
        assert_eq!(m.header_str("x-sluice-transform").as_deref(), Some("t@1"));
    }
    // Per key, the orders leave each sink in the order they came in.
    for sink in ["eu", "us"] {
        let mut last: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for m in &run.sinks[sink] {
            let doc: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            let n: u64 = doc["order_id"].as_str().unwrap()[2..].parse().unwrap();
            if let Some(prev) = last.insert(m.key.clone().unwrap(), n) {
                assert!(
                    prev < n,
                    "{sink}: key {:?} out of order: {prev} then {n}",
                    m.key
                );
            }
        }
    }
}

#[test]
fn a_split_delivers_every_part_and_acks_the_source_once() {
    let host = host();
    let split = wasm_stage(
        &host,
        "items",
        "order-transform",
        StageKind::Transform,
        Limits::default(),
        params(&[("split_items", "true")]),
        RetryPolicy::default(),
    );
    let run = run_pipeline(
        vec![order(1, 1, "DE", 10.0), order(2, 1, "DE", 20.0)],
        vec![split],
        &["out"],
        EngineOptions::default(),
        Arc::new(SystemClock),
    );
    assert_eq!(run.sinks["out"].len(), 4, "two items per order");
    assert_eq!(run.report.counts.delivered, 4);
    assert_eq!(run.acked(), vec![0, 1]);
}
