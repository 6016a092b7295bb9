//! The engine's own faults: panicked tasks and chains that fail to build.
//! (Its behaviour through the public API is tested in `runtime/core/tests/`,
//! with real plugins and brokers in the workspace's `tests/`.)

use super::*;
use crate::budget::Outbox;
use crate::memory::{MemorySink, MemorySource};
use crate::message::Message;
use crate::stage::{NativeStage, PluginInfo, Stage, StageFactory, StageKind, StageOutput};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

fn pipeline(source: Box<dyn Source>, stages: Vec<Arc<crate::StageSpec>>) -> Pipeline {
    Pipeline::builder("p1", source, MemorySink::new("dlq"))
        .stages(stages)
        .sink("out", MemorySink::new("out"))
        .build()
}

struct Panicking;

#[async_trait::async_trait]
impl Source for Panicking {
    fn describe(&self) -> String {
        "panicking".into()
    }
    async fn run(self: Box<Self>, _out: Outbox, _shutdown: Shutdown) -> Result<(), SourceError> {
        panic!("source bug")
    }
}

#[tokio::test]
async fn a_panicked_source_task_is_an_error_naming_the_pipeline() {
    let err = pipeline(Box::new(Panicking), Vec::new())
        .run(Shutdown::default())
        .await
        .expect_err("a panic is not a clean end");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            EngineError::Panicked {
                task: "source task",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains("`p1`") && text.contains("source bug"),
        "{text}"
    );
}

#[tokio::test]
async fn a_panicked_worker_thread_is_an_error_naming_the_pipeline() {
    let stage = NativeStage::new(StageKind::Filter, |_: &Message| -> Result<StageOutput, _> {
        panic!("stage bug")
    });
    let spec = Arc::new(crate::StageSpec::new(
        "boom",
        Arc::new(stage),
        RetryPolicy::default(),
    ));
    let (source, _) = MemorySource::new("in", vec![Message::new("x"); 10]);
    let run = pipeline(Box::new(source), vec![spec]).run(Shutdown::default());
    let err = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("a dead worker must not hang the pipeline")
        .expect_err("a panic is not a clean end");
    assert!(
        matches!(
            err,
            EngineError::Panicked {
                task: "worker thread",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("stage bug"), "{err}");
}

/// Waits for the stop, then reports the drain deadline it was given.
struct Drains(Arc<std::sync::Mutex<Option<Instant>>>);

#[async_trait::async_trait]
impl Source for Drains {
    fn describe(&self) -> String {
        "drains".into()
    }
    async fn run(self: Box<Self>, _out: Outbox, shutdown: Shutdown) -> Result<(), SourceError> {
        shutdown.cancelled().await;
        *self.0.lock().unwrap() = Some(shutdown.drain_deadline());
        Ok(())
    }
}

#[tokio::test]
async fn the_drain_deadline_of_the_stop_reaches_the_source() {
    let seen = Arc::default();
    let shutdown = Shutdown::new(Duration::from_secs(120));
    let run = tokio::spawn(
        pipeline(Box::new(Drains(Arc::clone(&seen))), Vec::new()).run(shutdown.child()),
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let asked = Instant::now();
    shutdown.cancel();
    run.await.unwrap().unwrap();
    let deadline = seen.lock().unwrap().expect("the source saw the stop");
    let given = deadline.duration_since(asked);
    assert!(
        given > Duration::from_secs(119) && given < Duration::from_secs(121),
        "{given:?}"
    );
}

/// Takes every message and never confirms one (a broker that went away
/// after the hand-over).
struct Unconfirming;

#[async_trait::async_trait]
impl Sink for Unconfirming {
    fn describe(&self) -> String {
        "unconfirming".into()
    }
    async fn publish(&self, _: &Message) -> Result<crate::Confirm, crate::SinkError> {
        Ok(Box::pin(futures::future::pending()))
    }
}

#[tokio::test]
async fn deliveries_that_are_never_confirmed_end_at_the_drain_deadline() {
    let (source, acks) = MemorySource::new("in", vec![Message::new("x"); 5]);
    let mut p = pipeline(Box::new(source), Vec::new());
    p.sinks = vec![("out".into(), Arc::new(Unconfirming) as Arc<dyn Sink>)];
    let shutdown = Shutdown::new(Duration::from_millis(300));
    let run = tokio::spawn(p.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    shutdown.cancel();
    let report = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the drain ends at its deadline")
        .unwrap()
        .unwrap();
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(report.counts.acked, 0);
    assert_eq!(
        acks.acked.lock().unwrap().len(),
        0,
        "nothing unconfirmed is acked"
    );
}

/// Fails to instantiate while `broken`; counts its attempts.
struct Flaky {
    broken: Arc<AtomicBool>,
    tries: Arc<AtomicUsize>,
}

impl StageFactory for Flaky {
    fn kind(&self) -> StageKind {
        StageKind::Filter
    }
    fn plugin(&self) -> PluginInfo {
        PluginInfo {
            path: "<flaky>".into(),
            sha256: String::new(),
        }
    }
    fn instantiate(&self) -> anyhow::Result<Box<dyn Stage>> {
        self.tries.fetch_add(1, Ordering::SeqCst);
        if self.broken.load(Ordering::SeqCst) {
            anyhow::bail!("cannot start (test)");
        }
        NativeStage::new(StageKind::Filter, |_: &Message| Ok(StageOutput::Keep(true))).instantiate()
    }
}

#[test]
fn a_chain_that_failed_to_build_is_tried_again_later_not_per_batch() {
    let keep = NativeStage::new(StageKind::Filter, |_: &Message| Ok(StageOutput::Keep(true)));
    let spec = |factory: Arc<dyn StageFactory>| {
        vec![Arc::new(crate::StageSpec::new(
            "s",
            factory,
            RetryPolicy::default(),
        ))]
    };
    let live = LiveStages::new(spec(Arc::new(keep)));
    let sinks: Arc<[String]> = vec!["out".to_string()].into();
    let clock: Arc<dyn Clock> = Arc::new(crate::SystemClock);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut worker = Worker {
        pipeline: "p1".into(),
        chain: Chain::new(&live.current().stages, sinks.clone(), clock.clone()).unwrap(),
        version: 0,
        live: live.clone(),
        sinks,
        clock,
        batch: 1,
        republish: false,
        park_capacity: 1,
        runtime: runtime.handle().clone(),
        failed_swap: None,
        swap_retry: Duration::from_millis(200),
        events: Arc::new(crate::events::FailedEvents::new("p1")),
        taps: Arc::default(),
    };
    let (broken, tries) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
    );
    live.swap(spec(Arc::new(Flaky {
        broken: broken.clone(),
        tries: tries.clone(),
    })));

    worker.take_up_swaps();
    assert_eq!(worker.version, 0, "a chain that failed stays the old one");
    broken.store(false, Ordering::SeqCst);
    for _ in 0..100 {
        worker.take_up_swaps(); // batch after batch, within the retry interval
    }
    assert_eq!(tries.load(Ordering::SeqCst), 1, "no retry on every batch");
    assert_eq!(worker.version, 0);

    std::thread::sleep(Duration::from_millis(250));
    worker.take_up_swaps();
    assert_eq!(
        worker.version, 1,
        "tried again after the interval, and took it up"
    );
    assert_eq!(tries.load(Ordering::SeqCst), 2);
}

/// Confirms every message with a payload that starts with `slow` only after
/// a pause, the others at once.
struct SlowOnSome;

#[async_trait::async_trait]
impl crate::Sink for SlowOnSome {
    fn describe(&self) -> String {
        "slow-on-some".into()
    }
    async fn publish(&self, msg: &Message) -> Result<crate::Confirm, crate::SinkError> {
        let slow = msg.payload.starts_with(b"slow");
        Ok(Box::pin(async move {
            if slow {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_confirmed_at_once_or_later_are_each_settled_once() {
    // Most are confirmed at once (settled on the spot), some later (each
    // settled by its own future); none is lost or settled twice.
    let messages: Vec<Message> = (0..200)
        .map(|i| {
            Message::new(if i % 7 == 3 {
                format!("slow {i}")
            } else {
                format!("fast {i}")
            })
        })
        .collect();
    let (source, acks) = MemorySource::new("in", messages);
    let report = Pipeline::builder("p1", Box::new(source), MemorySink::new("dlq"))
        .sink("out", Arc::new(SlowOnSome))
        .build()
        .run(Shutdown::default())
        .await
        .expect("the pipeline runs");
    assert_eq!(report.counts.acked, 200);
    let mut acked = acks.acked.lock().unwrap().clone();
    acked.sort_unstable();
    assert_eq!(acked, (0..200).collect::<Vec<u64>>());
    assert!(acks.nacked.lock().unwrap().is_empty());
}
