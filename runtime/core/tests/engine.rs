//! The engine through its public API, with native stages and in-memory
//! sources and sinks (no plugin, no broker): splits, sink outages and
//! rejections, acks only after every sink confirmed, lane order and hot swap.
//! The same engine with real components is tested in the workspace's
//! `tests/tests/engine.rs`, and with real brokers beside it.

use sluice_core::engine::EngineOptions;
use sluice_core::memory::{MemorySink, MemorySource};
use sluice_core::{
    Confirm, Fault, FaultKind, LiveStages, Message, NativeStage, Pipeline, PipelineReport,
    RetryPolicy, Shutdown, Sink, SinkError, StageError, StageKind, StageOutput, StageSpec,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A stage named `name` running `f` on each message.
fn native<F>(name: &str, kind: StageKind, f: F) -> Arc<StageSpec>
where
    F: Fn(&Message) -> Result<StageOutput, StageError> + Send + Sync + Clone + 'static,
{
    Arc::new(StageSpec::new(
        name,
        Arc::new(NativeStage::new(kind, f)),
        RetryPolicy::default(),
    ))
}

fn identity() -> Arc<StageSpec> {
    native("id", StageKind::Transform, |m: &Message| {
        Ok(StageOutput::Messages(vec![m.clone()]))
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Run to the end, bounded (a stalled engine fails the test, not CI).
fn run(pipeline: Pipeline) -> PipelineReport {
    runtime()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(120), pipeline.run(Shutdown::default())).await
        })
        .expect("the pipeline finished within 120 s")
        .expect("the pipeline ran")
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(&m.payload).into_owned()
}

#[test]
fn a_split_delivers_every_part_and_acks_the_source_once() {
    let split = native("split", StageKind::Transform, |m: &Message| {
        let parts = (0..3)
            .map(|i| Message::new(format!("{}.{i}", text(m))).with_key("k"))
            .collect();
        Ok(StageOutput::Messages(parts))
    });
    let (source, acks) = MemorySource::new("in", vec![Message::new("a"), Message::new("b")]);
    let out = MemorySink::new("out");
    let report = run(
        Pipeline::builder("split", Box::new(source), MemorySink::new("dlq"))
            .stages(vec![split])
            .sink("out", out.clone())
            .build(),
    );
    let got: Vec<String> = out.messages().iter().map(text).collect();
    assert_eq!(got, ["a.0", "a.1", "a.2", "b.0", "b.1", "b.2"]);
    assert_eq!(report.counts.delivered, 6);
    let mut acked = acks.acked.lock().unwrap().clone();
    acked.sort_unstable();
    assert_eq!(acked, vec![0, 1], "each source message acked once");
}

#[test]
fn a_sink_outage_is_retried_and_nothing_is_lost_or_dead_lettered() {
    let sink = MemorySink::new("flaky-sink");
    sink.refuse_next(5);
    let dlq = MemorySink::new("dlq");
    let input: Vec<Message> = (0..50)
        .map(|i| Message::new(format!("{i}")).with_key("k"))
        .collect();
    let (source, acks) = MemorySource::new("in", input);
    let mut options = EngineOptions::default();
    options.sink_retry.initial = Duration::from_millis(1);
    let report = run(Pipeline::builder("outage", Box::new(source), dlq.clone())
        .stages(vec![identity()])
        .sink("out", sink.clone())
        .options(options)
        .build());
    let got: Vec<String> = sink.messages().iter().map(text).collect();
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
    let report = run(Pipeline::builder("rejects", Box::new(source), dlq.clone())
        .stages(vec![identity()])
        .sink("out", sink.clone())
        .options(EngineOptions {
            concurrency: 2,
            ..EngineOptions::default()
        })
        .build());
    let number = |m: &Message| {
        text(m)
            .trim_start_matches('0')
            .parse::<usize>()
            .unwrap_or(0)
    };
    let mut delivered: Vec<usize> = sink.messages().iter().map(number).collect();
    delivered.sort_unstable();
    assert_eq!(
        delivered,
        (0..100).filter(|i| size(*i) == 10).collect::<Vec<_>>(),
        "every small message delivered, once"
    );
    let dead: Vec<usize> = dlq.messages().iter().map(number).collect();
    assert_eq!(dead.len(), 10);
    assert_eq!(
        dead.iter().copied().collect::<BTreeSet<_>>(),
        (0..100).filter(|i| size(*i) == 500).collect(),
        "the 500-byte ones dead-lettered"
    );
    for m in dlq.messages() {
        assert_eq!(
            m.header_str("sluice-error-class").as_deref(),
            Some("sink-rejected")
        );
        assert_eq!(
            m.header_str("sluice-error-stage").as_deref(),
            Some("memory:small")
        );
        let reason = m.header_str("sluice-error-text").unwrap();
        assert!(reason.contains("over the 20-byte limit"), "{m:?}");
    }
    let sorted = |v: &Mutex<Vec<u64>>| {
        let mut v = v.lock().unwrap().clone();
        v.sort_unstable();
        v
    };
    assert_eq!(
        sorted(&acks.acked),
        (0..100u64)
            .filter(|i| size(*i as usize) != 1000)
            .collect::<Vec<_>>(),
        "what neither sink nor DLQ takes is not acked"
    );
    assert_eq!(
        sorted(&acks.nacked),
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
    taken: Mutex<Vec<Message>>,
    gate: tokio::sync::watch::Receiver<bool>,
}

#[async_trait::async_trait]
impl Sink for GatedSink {
    fn describe(&self) -> String {
        "gated".into()
    }
    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError> {
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
        taken: Mutex::default(),
        gate,
    });
    let input = (0..10).map(|i| Message::new(format!("{i}"))).collect();
    let (source, acks) = MemorySource::new("in", input);
    let pipeline = Pipeline::builder("gated", Box::new(source), MemorySink::new("dlq"))
        .sink("out", sink.clone())
        .build();
    runtime().block_on(async {
        let running = tokio::spawn(pipeline.run(Shutdown::default()));
        let all_taken = async {
            while sink.taken.lock().unwrap().len() < 10 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all_taken)
            .await
            .expect("the sink was given every message");
        tokio::time::sleep(Duration::from_millis(50)).await;
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
#[derive(Default)]
struct LockedLinkSink {
    link: tokio::sync::Mutex<()>,
    failed_once: Mutex<HashSet<Vec<u8>>>,
    confirmed: Mutex<Vec<Message>>,
}

#[async_trait::async_trait]
impl Sink for LockedLinkSink {
    fn describe(&self) -> String {
        "locked-link".into()
    }
    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError> {
        let _link = self.link.lock().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        let first = self.failed_once.lock().unwrap().insert(msg.payload.clone());
        if first {
            return Ok(Box::pin(async {
                Err(SinkError::Publish {
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
    let sink = Arc::new(LockedLinkSink::default());
    let input = (0..200).map(|i| Message::new(format!("{i}"))).collect();
    let (source, acks) = MemorySource::new("in", input);
    let mut options = EngineOptions::default();
    options.sink_retry.initial = Duration::from_millis(1);
    options.sink_retry.max_delay = Duration::from_millis(5);
    let pipeline = Pipeline::builder("locked", Box::new(source), MemorySink::new("dlq"))
        .sink("out", sink.clone())
        .options(options)
        .build();
    let finished = runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), pipeline.run(Shutdown::default())).await
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
    let slow_sometimes = native("vary", StageKind::Filter, |m: &Message| {
        if m.payload.ends_with(b"0") {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(StageOutput::Keep(true))
    });
    let input: Vec<Message> = (0..400)
        .map(|i| Message::new(format!("{}:{i}", i % 3)))
        .collect();
    let lanes = (0..400).map(|i| Some((i % 3) as u64)).collect();
    let (source, _acks) = MemorySource::new("partitioned", input);
    let out = MemorySink::new("out");
    run(Pipeline::builder(
        "lanes",
        Box::new(source.with_lanes(lanes)),
        MemorySink::new("dlq"),
    )
    .stages(vec![slow_sometimes])
    .sink("out", out.clone())
    .options(EngineOptions {
        concurrency: 4,
        batch: 1,
        ..EngineOptions::default()
    })
    .build());
    let out = out.messages();
    assert_eq!(out.len(), 400);
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for m in &out {
        let text = text(m);
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
    let tagger = |stage: &'static str, version: &'static str| {
        native(stage, StageKind::Transform, move |m: &Message| {
            std::thread::sleep(Duration::from_micros(100));
            Ok(StageOutput::Messages(vec![m
                .clone()
                .with_header(stage, version)]))
        })
    };
    let total = 4000;
    let input: Vec<Message> = (0..total)
        .map(|i| Message::new(format!("{i}")).with_key(format!("k{}", i % 16)))
        .collect();
    let (source, acks) = MemorySource::new("swap", input);
    let out = MemorySink::new("out");
    let live = LiveStages::new(vec![tagger("first", "v1"), tagger("second", "v1")]);
    let pipeline = Pipeline::builder("swap", Box::new(source), MemorySink::new("dlq"))
        .stages(live.clone())
        .sink("out", out.clone())
        .options(EngineOptions {
            concurrency: 2,
            batch: 8,
            ..EngineOptions::default()
        })
        .build();
    runtime().block_on(async {
        let running = tokio::spawn(pipeline.run(Shutdown::default()));
        let started = async {
            while out.len() < 1000 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), started)
            .await
            .expect("1000 messages out");
        assert_eq!(
            live.swap(vec![tagger("first", "v2"), tagger("second", "v2")]),
            1
        );
        running.await.unwrap().unwrap();
    });
    let out = out.messages();
    assert_eq!(out.len(), total, "nothing lost or doubled");
    let distinct: BTreeSet<Vec<u8>> = out.iter().map(|m| m.payload.clone()).collect();
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

#[test]
fn only_a_fault_that_stopped_the_call_counts_as_an_instance_replacement() {
    for (kind, replaced) in [(FaultKind::Trap, 3), (FaultKind::OutputLimit, 0)] {
        let spec = native("faulty", StageKind::Filter, move |_: &Message| {
            Err(StageError::Fault(Fault {
                kind,
                detail: "test".into(),
            }))
        });
        let (source, _acks) = MemorySource::new("in", vec![Message::new("x"); 3]);
        let dlq = MemorySink::new("dlq");
        run(Pipeline::builder("faults", Box::new(source), dlq.clone())
            .stages(vec![spec.clone()])
            .sink("out", MemorySink::new("out"))
            .build());
        assert_eq!(dlq.len(), 3, "{kind:?}: every message dead-lettered");
        assert_eq!(spec.stats.snapshot().replaced, replaced, "{kind:?}");
    }
}

/// 1,000 messages of 50 keys in one lane (one Kafka partition, say), on
/// one worker; the first message of key `k7` fails twice with a retryable
/// error (backoff 2 s, then 4 s). Its key waits, every other key flows.
#[test]
fn a_parked_retry_holds_up_only_its_own_key_and_that_key_keeps_its_order() {
    let key = |i: usize| format!("k{}", i % 50);
    let calls = Arc::new(Mutex::new(Vec::<(String, u32)>::new()));
    let seen = calls.clone();
    let stage = Arc::new(StageSpec::new(
        "picky",
        Arc::new(NativeStage::new(StageKind::Filter, move |m: &Message| {
            seen.lock().unwrap().push((text(m), m.attempt));
            if text(m) == "7" && m.attempt <= 2 {
                return Err(StageError::Retryable(format!("attempt {}", m.attempt)));
            }
            Ok(StageOutput::Keep(true))
        })),
        RetryPolicy {
            initial: Duration::from_secs(2),
            jitter: 0.0,
            ..RetryPolicy::default()
        },
    ));
    let input: Vec<Message> = (0..1000)
        .map(|i| Message::new(i.to_string()).with_key(key(i)))
        .collect();
    let (source, acks) = MemorySource::new("in", input);
    let source = source.with_lanes(vec![Some(0); 1000]);
    let out = MemorySink::new("out");
    let dlq = MemorySink::new("dlq");
    let started = std::time::Instant::now();
    let report = run(Pipeline::builder("parking", Box::new(source), dlq.clone())
        .stages(vec![stage])
        .sink("out", out.clone())
        .build());
    let took = started.elapsed();
    let got: Vec<usize> = out
        .messages()
        .iter()
        .map(|m| text(m).parse().unwrap())
        .collect();
    assert_eq!(got.len(), 1000, "all delivered");
    assert!(dlq.is_empty());
    // Every other key's 980 messages before the first of k7 (which waited
    // at least 2 s), each key in its own order; then k7's 20, in order.
    let first_k7 = got.iter().position(|&i| i % 50 == 7).unwrap();
    assert_eq!(first_k7, 980, "the other keys went first: {:?}", &got[..40]);
    for k in 0..50 {
        let of_key: Vec<usize> = got.iter().copied().filter(|i| i % 50 == k).collect();
        let want: Vec<usize> = (0..20).map(|n| n * 50 + k).collect();
        assert_eq!(of_key, want, "key k{k} in order");
    }
    assert!(
        took >= Duration::from_secs(6),
        "2 s + 4 s of backoff: {took:?}"
    );
    // k7's later messages ran only after their turn came: once each, as
    // attempt 1, after the third attempt of "7".
    let calls = calls.lock().unwrap();
    let of_7: Vec<u32> = calls
        .iter()
        .filter(|(p, _)| p == "7")
        .map(|c| c.1)
        .collect();
    assert_eq!(of_7, [1, 2, 3]);
    let third = calls
        .iter()
        .position(|c| *c == ("7".to_string(), 3))
        .unwrap();
    for n in 1..20 {
        let p = (n * 50 + 7).to_string();
        let at: Vec<usize> = (0..calls.len()).filter(|&i| calls[i].0 == p).collect();
        assert_eq!(at.len(), 1, "{p} ran once (its outcome was used)");
        assert!(at[0] > third, "{p} ran after 7 settled");
    }
    assert_eq!(report.stages[0].1.retried, 2);
    assert_eq!(acks.acked.lock().unwrap().len(), 1000);
}
