//! The engine with real components: a full filter → transform → route chain,
//! order per key with several workers, splits, sink outages, and acks only
//! after every sink confirmed.

use sluice_core::engine::EngineOptions;
use sluice_core::memory::{MemorySink, MemorySource};
use sluice_core::{Limits, Message, Pipeline, RetryPolicy, StageKind, SystemClock};
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

#[test]
fn a_sink_outage_is_retried_and_nothing_is_lost_or_dead_lettered() {
    let host = host();
    let identity = wasm_stage(
        &host,
        "id",
        "identity",
        StageKind::Transform,
        Limits::default(),
        params(&[]),
        RetryPolicy::default(),
    );
    let sink = MemorySink::new("flaky-sink");
    sink.refuse_next(5);
    let dlq = MemorySink::new("dlq");
    let input: Vec<Message> = (0..50)
        .map(|i| Message::new(format!("{i}")).with_key("k"))
        .collect();
    let (source, acks) = MemorySource::new("in", input);
    let mut options = EngineOptions::default();
    options.sink_retry.initial = std::time::Duration::from_millis(1);
    let pipeline = Pipeline {
        name: "outage".into(),
        source: Box::new(source),
        stages: vec![identity].into(),
        sinks: vec![("out".into(), sink.clone())],
        dlq: dlq.clone(),
        options,
        clock: Arc::new(SystemClock),
        stats: Arc::default(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime
        .block_on(pipeline.run(sluice_core::Shutdown::default()))
        .unwrap();
    let got: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "all delivered, in order, no duplicates");
    assert!(dlq.is_empty(), "a sink outage never dead-letters");
    assert_eq!(report.counts.sink_retries, 5);
    assert_eq!(acks.acked.lock().unwrap().len(), 50);
}

#[test]
fn a_message_the_sink_rejects_for_good_is_dead_lettered_with_the_reason_and_the_rest_flow() {
    // The sink takes payloads up to 20 bytes (like a broker's message size
    // limit); the DLQ up to 600, so of the rejected ones the 500-byte
    // messages are dead-lettered and the 1000-byte ones stay in the source.
    let host = host();
    let identity = wasm_stage(
        &host,
        "id",
        "identity",
        StageKind::Transform,
        Limits::default(),
        params(&[]),
        RetryPolicy::default(),
    );
    let sink = MemorySink::new("small");
    sink.reject_larger_than(20);
    let dlq = MemorySink::new("dlq");
    dlq.reject_larger_than(600);
    let size = |i: usize| match i % 10 {
        3 => 500,
        6 => 1000,
        _ => 10,
    };
    let input: Vec<Message> = (0..100)
        .map(|i| {
            Message::new(format!("{i:0>width$}", width = size(i))).with_key(format!("k{}", i % 4))
        })
        .collect();
    let (source, acks) = MemorySource::new("in", input);
    let pipeline = Pipeline {
        name: "rejects".into(),
        source: Box::new(source),
        stages: vec![identity].into(),
        sinks: vec![("out".into(), sink.clone())],
        dlq: dlq.clone(),
        options: EngineOptions {
            concurrency: 2,
            ..EngineOptions::default()
        },
        clock: Arc::new(SystemClock),
        stats: Arc::default(),
    };
    let report = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(pipeline.run(sluice_core::Shutdown::default()))
        .unwrap();
    let number = |m: &Message| {
        String::from_utf8_lossy(&m.payload)
            .trim_start_matches('0')
            .parse::<usize>()
            .unwrap_or(0)
    };
    let delivered: Vec<usize> = sink.messages().iter().map(number).collect();
    let mut sorted = delivered.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..100).filter(|i| size(*i) == 10).collect::<Vec<_>>(),
        "every small message delivered, once"
    );
    let dead: Vec<usize> = dlq.messages().iter().map(number).collect();
    assert_eq!(
        dead.iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        (0..100).filter(|i| size(*i) == 500).collect(),
        "the 500-byte ones dead-lettered"
    );
    assert_eq!(dead.len(), 10);
    for m in dlq.messages() {
        assert_eq!(
            m.header_str("sluice-error-class").as_deref(),
            Some("sink-rejected")
        );
        assert_eq!(
            m.header_str("sluice-error-stage").as_deref(),
            Some("memory:small")
        );
        assert!(
            m.header_str("sluice-error-text")
                .unwrap()
                .contains("over the 20-byte limit"),
            "{m:?}"
        );
    }
    let mut acked = acks.acked.lock().unwrap().clone();
    acked.sort();
    assert_eq!(
        acked,
        (0..100u64)
            .filter(|i| size(*i as usize) != 1000)
            .collect::<Vec<_>>(),
        "what neither sink nor DLQ takes is not acked"
    );
    let mut nacked = acks.nacked.lock().unwrap().clone();
    nacked.sort();
    assert_eq!(
        nacked,
        (0..100u64)
            .filter(|i| size(*i as usize) == 1000)
            .collect::<Vec<_>>(),
        "it is given back to the source"
    );
    assert_eq!(
        (report.counts.delivered, report.counts.dead_lettered),
        (80, 10)
    );
}

/// A sink that takes messages at once but confirms them only when told.
struct GatedSink {
    taken: std::sync::Mutex<Vec<Message>>,
    gate: tokio::sync::watch::Receiver<bool>,
}

#[async_trait::async_trait]
impl sluice_core::Sink for GatedSink {
    fn describe(&self) -> String {
        "gated".into()
    }
    async fn publish(&self, msg: &Message) -> Result<sluice_core::Confirm, sluice_core::SinkError> {
        self.taken.lock().unwrap().push(msg.clone());
        let mut gate = self.gate.clone();
        Ok(Box::pin(async move {
            let _ = gate.wait_for(|open| *open).await;
            Ok(())
        }))
    }
}

#[test]
fn the_source_is_acked_only_after_the_sink_confirmed() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let sink = Arc::new(GatedSink {
        taken: Default::default(),
        gate,
    });
    let (source, acks) = MemorySource::new(
        "in",
        (0..10).map(|i| Message::new(format!("{i}"))).collect(),
    );
    let pipeline = Pipeline {
        name: "gated".into(),
        source: Box::new(source),
        stages: Vec::new().into(),
        sinks: vec![("out".into(), sink.clone())],
        dlq: MemorySink::new("dlq"),
        options: EngineOptions::default(),
        clock: Arc::new(SystemClock),
        stats: Arc::default(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let running = tokio::spawn(pipeline.run(sluice_core::Shutdown::default()));
        while sink.taken.lock().unwrap().len() < 10 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            acks.acked.lock().unwrap().is_empty(),
            "nothing acked before the sink confirmed"
        );
        open.send(true).unwrap();
        running.await.unwrap().unwrap();
    });
    assert_eq!(acks.acked.lock().unwrap().len(), 10);
}

/// A sink like the RabbitMQ one: `publish` holds a lock across an await
/// (handing the message to the connection), and the first confirm of every
/// message fails, so the engine publishes it again from inside its pending
/// confirms.
struct LockedLinkSink {
    link: tokio::sync::Mutex<()>,
    failed_once: std::sync::Mutex<std::collections::HashSet<Vec<u8>>>,
    confirmed: std::sync::Mutex<Vec<Message>>,
}

#[async_trait::async_trait]
impl sluice_core::Sink for LockedLinkSink {
    fn describe(&self) -> String {
        "locked-link".into()
    }
    async fn publish(&self, msg: &Message) -> Result<sluice_core::Confirm, sluice_core::SinkError> {
        let _link = self.link.lock().await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let first = self.failed_once.lock().unwrap().insert(msg.payload.clone());
        if first {
            return Ok(Box::pin(async {
                Err(sluice_core::SinkError::Publish {
                    sink: "locked-link".into(),
                    reason: "confirm lost (test)".into(),
                })
            }));
        }
        self.confirmed.lock().unwrap().push(msg.clone());
        Ok(Box::pin(async { Ok(()) }))
    }
}

#[test]
fn a_confirm_that_publishes_again_does_not_deadlock_with_the_next_hand_over() {
    // Regression: the delivery task awaited each hand-over without polling
    // its pending confirms, so a retry publish holding the sink's lock and a
    // hand-over waiting for it stopped the pipeline for good (the RabbitMQ
    // broker-restart stall).
    let sink = Arc::new(LockedLinkSink {
        link: Default::default(),
        failed_once: Default::default(),
        confirmed: Default::default(),
    });
    let (source, acks) = MemorySource::new(
        "in",
        (0..200).map(|i| Message::new(format!("{i}"))).collect(),
    );
    let mut options = EngineOptions::default();
    options.sink_retry.initial = std::time::Duration::from_millis(1);
    options.sink_retry.max_delay = std::time::Duration::from_millis(5);
    let pipeline = Pipeline {
        name: "locked".into(),
        source: Box::new(source),
        stages: Vec::new().into(),
        sinks: vec![("out".into(), sink.clone())],
        dlq: MemorySink::new("dlq"),
        options,
        clock: Arc::new(SystemClock),
        stats: Arc::default(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let finished = runtime.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            pipeline.run(sluice_core::Shutdown::default()),
        )
        .await
    });
    assert!(
        finished.is_ok(),
        "the pipeline stalled: {} of 200 confirmed",
        sink.confirmed.lock().unwrap().len()
    );
    assert_eq!(sink.confirmed.lock().unwrap().len(), 200);
    assert_eq!(acks.acked.lock().unwrap().len(), 200);
}

/// Keyless messages of one lane (a Kafka partition) leave in the order they
/// came, even with several workers and a stage whose speed varies.
#[test]
fn keyless_messages_keep_their_lane_order() {
    use sluice_core::{NativeStage, StageOutput};
    let slow_sometimes = NativeStage::new(StageKind::Filter, |m: &Message| {
        if m.payload.ends_with(b"0") {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(StageOutput::Keep(true))
    });
    let stages = vec![Arc::new(sluice_core::StageSpec::new(
        "vary",
        Arc::new(slow_sometimes),
        RetryPolicy::default(),
    ))];
    let input: Vec<Message> = (0..400)
        .map(|i| Message::new(format!("{}:{i}", i % 3)))
        .collect();
    let lanes = (0..400).map(|i| Some((i % 3) as u64)).collect();
    let (source, _acks) = MemorySource::new("partitioned", input);
    let sink = MemorySink::new("out");
    let pipeline = Pipeline {
        name: "lanes".into(),
        source: Box::new(source.with_lanes(lanes)),
        stages: stages.into(),
        sinks: vec![("out".into(), sink.clone() as Arc<dyn sluice_core::Sink>)],
        dlq: MemorySink::new("dlq"),
        options: EngineOptions {
            concurrency: 4,
            batch: 1,
            ..EngineOptions::default()
        },
        clock: Arc::new(SystemClock),
        stats: Arc::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(pipeline.run(sluice_core::Shutdown::default()))
        .expect("pipeline ran");
    let out = sink.messages();
    assert_eq!(out.len(), 400);
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for m in &out {
        let text = String::from_utf8(m.payload.clone()).unwrap();
        let (lane, n) = text.split_once(':').unwrap();
        let n: usize = n.parse().unwrap();
        if let Some(prev) = last.insert(lane.to_string(), n) {
            assert!(prev < n, "lane {lane} out of order: {prev} then {n}");
        }
    }
}

/// Hot swap: a new stage list swapped in while messages flow. Every message
/// runs one version from the first stage to the last, none is lost or
/// doubled, and once a key has seen the new version it never sees the old.
#[test]
fn a_swapped_chain_is_taken_up_between_batches_without_loss() {
    use sluice_core::{LiveStages, NativeStage, StageOutput, StageSpec};
    let tagger = |stage: &'static str, version: &'static str| {
        let native = NativeStage::new(StageKind::Transform, move |m: &Message| {
            std::thread::sleep(std::time::Duration::from_micros(100));
            Ok(StageOutput::Messages(vec![m
                .clone()
                .with_header(stage, version)]))
        });
        Arc::new(StageSpec::new(
            stage,
            Arc::new(native),
            RetryPolicy::default(),
        ))
    };
    let total = 4000;
    let input: Vec<Message> = (0..total)
        .map(|i| Message::new(format!("{i}")).with_key(format!("k{}", i % 16)))
        .collect();
    let (source, acks) = MemorySource::new("swap", input);
    let sink = MemorySink::new("out");
    let live = LiveStages::new(vec![tagger("first", "v1"), tagger("second", "v1")]);
    let pipeline = Pipeline {
        name: "swap".into(),
        source: Box::new(source),
        stages: live.clone(),
        sinks: vec![("out".into(), sink.clone() as Arc<dyn sluice_core::Sink>)],
        dlq: MemorySink::new("dlq"),
        options: EngineOptions {
            concurrency: 2,
            batch: 8,
            ..EngineOptions::default()
        },
        clock: Arc::new(SystemClock),
        stats: Arc::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let running = tokio::spawn(pipeline.run(sluice_core::Shutdown::default()));
        while sink.len() < 1000 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(
            live.swap(vec![tagger("first", "v2"), tagger("second", "v2")]),
            1
        );
        running.await.unwrap().unwrap();
    });
    let out = sink.messages();
    assert_eq!(out.len(), total, "nothing lost or doubled");
    let distinct: std::collections::BTreeSet<Vec<u8>> =
        out.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(distinct.len(), total);
    let mut new_seen: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for m in &out {
        let (first, second) = (
            m.header_str("first").unwrap(),
            m.header_str("second").unwrap(),
        );
        assert_eq!(first, second, "one version for the whole chain: {m:?}");
        *versions.entry(first.clone()).or_insert(0) += 1;
        let seen = new_seen.entry(m.key.clone().unwrap()).or_insert(false);
        assert!(
            !(*seen && first == "v1"),
            "key went back to the old chain: {m:?}"
        );
        *seen |= first == "v2";
    }
    assert!(
        versions["v1"] >= 1000 && versions["v2"] > 0,
        "both versions ran: {versions:?}"
    );
    assert_eq!(acks.acked.lock().unwrap().len(), total);
}
