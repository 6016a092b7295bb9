//! The pipeline engine: the source task, a dispatcher that picks a worker
//! per delivery ([`dispatch`]: by lane, else by key, else any with room),
//! worker threads that run the synchronous [`Chain`] ([`worker`]) and park
//! retries per key ([`parking`]), and one
//! delivery task per worker that publishes in order, awaits the confirms
//! and then settles with the source ([`deliver`]).
//!
//! ```text
//! source task ─▶ dispatch ─▶ worker thread i ─▶ delivery task i ─▶ sinks
//!                (lane/key)   Chain::process     publish, confirm, ack
//! ```
//!
//! Every hop is a bounded channel, so a slow sink slows the source.

use crate::budget::{Budget, ByteLimits, Outbox};
use crate::chain::{Chain, ChainError, ChainOutcome};
use crate::clock::Clock;
use crate::events::FailedEvents;
use crate::live::LiveStages;
use crate::message::Delivery;
use crate::retry::RetryPolicy;
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::source::{Source, SourceError};
use crate::stats::{bump, PipelineStats};
use crate::tap::Taps;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

mod builder;
mod deliver;
mod dispatch;
mod parking;
mod report;
mod worker;

pub use builder::PipelineBuilder;
use deliver::{Deliverer, Settler};
use dispatch::Dispatch;
pub use report::PipelineReport;
use worker::{Worker, SWAP_RETRY};

/// A fully built pipeline, ready to run.
pub struct Pipeline {
    pub name: String,
    pub source: Box<dyn Source>,
    /// The chain, swappable while running (hot swap): keep a clone to swap.
    pub stages: LiveStages,
    /// Named sinks (routes name them).
    pub sinks: Vec<(String, Arc<dyn Sink>)>,
    pub dlq: Arc<dyn Sink>,
    pub options: EngineOptions,
    pub clock: Arc<dyn Clock>,
    pub stats: Arc<PipelineStats>,
    /// Live copies of its messages for `sluice tap`; keep a clone to attach.
    pub taps: Arc<Taps>,
}

/// How the engine runs one pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOptions {
    /// Worker threads; messages with the same key always go to the same one.
    pub concurrency: usize,
    /// Capacity of each bounded channel between source, workers and delivery.
    pub buffer: usize,
    /// Messages per worker published but not yet confirmed.
    pub max_in_flight: usize,
    /// Most messages a worker hands to each stage in one call (the plugin's
    /// batch export). A worker never waits to fill a batch: it takes what is
    /// already queued, up to this many. 1 calls the single export only.
    pub batch: usize,
    /// Backoff for failed sink publishes. Sink failures are retried without
    /// limit (`max_attempts` is ignored): a host-side outage never
    /// dead-letters a message.
    pub sink_retry: RetryPolicy,
    /// Retry retryable stage errors through the broker instead of waiting on
    /// the worker (`retry.republish`): the source brings the message back
    /// after the backoff delay as the next attempt. Needs a source that
    /// [can](crate::Source::republishes_retries).
    pub republish_retries: bool,
    /// The byte budget of messages in flight, and the largest message.
    pub bytes: ByteLimits,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            concurrency: 1,
            buffer: 256,
            max_in_flight: 256,
            batch: 32,
            sink_retry: RetryPolicy {
                initial: Duration::from_millis(100),
                max_delay: Duration::from_secs(30),
                ..RetryPolicy::default()
            },
            republish_retries: false,
            bytes: ByteLimits::default(),
        }
    }
}

/// Why a pipeline could not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("pipeline `{pipeline}`: {source}")]
    Chain {
        pipeline: String,
        source: ChainError,
    },
    #[error("pipeline `{pipeline}`: {source}")]
    Source {
        pipeline: String,
        source: SourceError,
    },
    #[error("pipeline `{pipeline}`: cannot start worker thread: {source}")]
    Thread {
        pipeline: String,
        source: std::io::Error,
    },
    #[error("pipeline `{pipeline}`: source {source_name} cannot retry through its broker (`retry.republish`)")]
    CannotRepublish {
        pipeline: String,
        source_name: String,
    },
    /// A task of the pipeline panicked: a bug in sluice or a connector, not
    /// a clean end, whatever the source managed to settle before it.
    #[error("pipeline `{pipeline}`: the {task} panicked: {message}")]
    Panicked {
        pipeline: String,
        task: &'static str,
        message: String,
    },
}

/// Resolves once a stop was asked for and its drain deadline has passed.
async fn past_drain_deadline(shutdown: &Shutdown) {
    shutdown.cancelled().await;
    let deadline = tokio::time::Instant::from_std(shutdown.drain_deadline());
    tokio::time::sleep_until(deadline).await;
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Why a tokio task did not finish: a panic (with its message) or a cancel.
fn join_failure(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => panic_message(&*payload),
        Err(e) => e.to_string(),
    }
}

/// A delivery after the chain ran, on its way to the sinks.
struct Processed {
    delivery: Delivery,
    outcome: ChainOutcome,
    /// Claims to complete once the outcome's outputs are confirmed.
    claims: Vec<crate::claim::Claim>,
}

impl Pipeline {
    /// Run until the source ends, or `shutdown` is cancelled and everything
    /// in flight is settled or its drain deadline passed (then what is not
    /// settled is given back to the source, for its broker to redeliver).
    /// A bare `CancellationToken` drains for [`crate::shutdown::DEFAULT_DRAIN`].
    ///
    /// # Errors
    /// A stage that cannot be instantiated, a source that fails for good, or
    /// a task of the pipeline that panicked.
    pub async fn run(self, shutdown: impl Into<Shutdown>) -> Result<PipelineReport, EngineError> {
        let shutdown = shutdown.into();
        let Pipeline {
            name,
            source,
            stages,
            sinks,
            dlq,
            options,
            clock,
            stats,
            taps,
        } = self;
        let workers = options.concurrency.max(1);
        let sink_names: Arc<[String]> = sinks.iter().map(|(n, _)| n.clone()).collect();
        let sink_map: Arc<[(String, Arc<dyn Sink>)]> = sinks.iter().cloned().collect();
        if options.republish_retries && !source.republishes_retries() {
            return Err(EngineError::CannotRepublish {
                pipeline: name,
                source_name: source.describe(),
            });
        }

        // Build every chain before taking the first message.
        let first = stages.current();
        let mut chains = Vec::with_capacity(workers);
        for _ in 0..workers {
            let chain = Chain::new(&first.stages, sink_names.clone(), clock.clone())
                .map_err(|source| EngineError::Chain {
                    pipeline: name.clone(),
                    source,
                })?
                .republishing_retries(options.republish_retries)
                .for_pipeline(&name)
                .tapped(taps.clone());
            chains.push(chain);
        }

        let events = Arc::new(FailedEvents::new(&name));
        let mut worker_inputs = Vec::with_capacity(workers);
        let mut delivery_tasks = Vec::with_capacity(workers);
        // The first panic of a worker thread, set before the thread lets go
        // of its output channel, so it is there once its delivery task ends.
        let worker_panic: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        for (i, chain) in chains.into_iter().enumerate() {
            // Batches of up to `batch` deliveries, `buffer` deliveries in all.
            let batches = options.buffer.div_ceil(options.batch.max(1)).max(1);
            let (input_tx, input_rx) = mpsc::channel::<Vec<Delivery>>(batches);
            let (done_tx, done_rx) = mpsc::channel::<Vec<Processed>>(options.buffer);
            let worker = Worker {
                pipeline: name.clone(),
                chain,
                version: first.version,
                live: stages.clone(),
                sinks: sink_names.clone(),
                clock: clock.clone(),
                batch: options.batch.max(1),
                republish: options.republish_retries,
                park_capacity: options.buffer.max(1),
                runtime: tokio::runtime::Handle::current(),
                failed_swap: None,
                swap_retry: SWAP_RETRY,
                events: events.clone(),
                taps: taps.clone(),
            };
            let panicked = worker_panic.clone();
            std::thread::Builder::new()
                .name(format!("sluice-{name}-{i}"))
                .spawn(move || {
                    let work = std::panic::AssertUnwindSafe(|| worker.work(input_rx, &done_tx));
                    if let Err(payload) = std::panic::catch_unwind(work) {
                        let mut first = panicked.lock().unwrap_or_else(|e| e.into_inner());
                        first.get_or_insert_with(|| panic_message(&*payload));
                    }
                    drop(done_tx);
                })
                .map_err(|source| EngineError::Thread {
                    pipeline: name.clone(),
                    source,
                })?;
            let deliverer = Deliverer {
                sinks: sink_map.clone(),
                taps: taps.clone(),
                settler: Arc::new(Settler {
                    pipeline: name.clone(),
                    dlq: dlq.clone(),
                    stats: stats.clone(),
                    retry: options.sink_retry,
                    clock: clock.clone(),
                    events: events.clone(),
                }),
            };
            delivery_tasks.push(tokio::spawn(
                deliverer.run(done_rx, options.max_in_flight.max(1)),
            ));
            worker_inputs.push(input_tx);
        }

        let (source_tx, mut source_rx) = mpsc::channel::<Delivery>(options.buffer);
        let budget = Budget::new(options.bytes, stats.in_flight_bytes.clone());
        let source_tx = Outbox::new(source_tx, Arc::new(budget));
        let source_name = source.describe();
        tracing::info!(pipeline = %name, source = %source_name, workers, "pipeline started");
        let mut source = source;
        source.report_lag(stats.source_lag.clone());
        let source_task = tokio::spawn(source.run(source_tx, shutdown.clone()));

        // Once a stop was asked for and its drain deadline passed, the engine
        // stops waiting on the source too: what it still holds is given back.
        let past_deadline = {
            let (shutdown, pipeline) = (shutdown.clone(), name.clone());
            async move {
                past_drain_deadline(&shutdown).await;
                tracing::warn!(%pipeline, "drain deadline passed before the source stopped");
            }
        };
        let past_deadline = futures::FutureExt::fuse(past_deadline);
        tokio::pin!(past_deadline);
        let mut dispatch = Dispatch::new(worker_inputs);
        // What the source has queued, taken together (up to a batch).
        let most = options.batch.max(1);
        let mut taken = Vec::with_capacity(most);
        loop {
            let got = tokio::select! {
                got = source_rx.recv_many(&mut taken, most) => got,
                _ = &mut past_deadline => break,
            };
            if got == 0 {
                break; // the source is done
            }
            bump(&stats.received, got as u64);
            if crate::trace::enabled() {
                for delivery in &mut taken {
                    delivery.trace = Some(crate::trace::MessageTrace::start(
                        &name,
                        &delivery.message,
                        &delivery.coordinates,
                    ));
                }
            }
            tokio::select! {
                sent = dispatch.send_all(&mut taken) => if !sent {
                    break; // the worker is gone (it panicked): reported below
                },
                _ = &mut past_deadline => break,
            }
        }
        // Let a source that is still sending see the pipeline is gone, or it
        // would wait on a full channel for ever.
        drop(source_rx);
        drop(dispatch);
        let mut panicked = None;
        for mut task in delivery_tasks {
            // A sink that stays down holds its deliveries for ever; once the
            // drain deadline has passed they are given back instead.
            let finished = tokio::select! {
                finished = &mut task => finished,
                _ = past_drain_deadline(&shutdown) => {
                    tracing::warn!(pipeline = %name, "drain deadline passed with deliveries unconfirmed; giving them back to the source");
                    task.abort();
                    continue;
                }
            };
            if let Err(e) = finished {
                let message = join_failure(e);
                tracing::error!(pipeline = %name, error = %message, "delivery task panicked");
                panicked.get_or_insert(("delivery task", message));
            }
        }
        for (_, sink) in &sinks {
            if let Err(e) = sink.flush().await {
                tracing::error!(pipeline = %name, error = %e, "sink flush failed");
            }
        }
        if let Err(e) = dlq.flush().await {
            tracing::error!(pipeline = %name, error = %e, "DLQ flush failed");
        }
        let source_result = match source_task.await {
            Ok(result) => result,
            Err(e) => {
                let message = join_failure(e);
                tracing::error!(pipeline = %name, source = %source_name, error = %message, "source task panicked");
                panicked = Some(("source task", message));
                Ok(())
            }
        };
        if let Some(message) = worker_panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            tracing::error!(pipeline = %name, error = %message, "worker thread panicked");
            panicked.get_or_insert(("worker thread", message));
        }
        let report = PipelineReport {
            pipeline: name.clone(),
            counts: stats.snapshot(),
            stages: stages
                .current()
                .stages
                .iter()
                .map(|s| (s.name.clone(), s.stats.snapshot()))
                .collect(),
        };
        tracing::info!(pipeline = %name, ?report.counts, "pipeline stopped");
        if let Some((task, message)) = panicked {
            return Err(EngineError::Panicked {
                pipeline: name,
                task,
                message,
            });
        }
        source_result.map_err(|source| EngineError::Source {
            pipeline: name,
            source,
        })?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
