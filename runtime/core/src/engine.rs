//! The pipeline engine: source task → key-hash dispatcher → worker threads
//! (the synchronous [`Chain`]) → per-worker delivery task (publish in order,
//! await confirms, then ack the source).
//!
//! ```text
//! Source ─▶ dispatcher ─hash(key)─▶ worker thread i: Chain::process
//!                                        │ (bounded channel)
//!                                        ▼
//!                          delivery task i: publish ─▶ confirm ─▶ ack
//! ```

use crate::chain::{Chain, ChainError, ChainOutcome};
use crate::clock::Clock;
use crate::dlq;
use crate::live::LiveStages;
use crate::message::{Delivery, Message};
use crate::retry::RetryPolicy;
use crate::shutdown::Shutdown;
use crate::sink::{Confirm, Sink, SinkError};
use crate::source::{Source, SourceError};
use crate::stats::{bump, PipelineCounts, PipelineStats, StageCounts};
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    pub pipeline: String,
    pub counts: PipelineCounts,
    pub stages: Vec<(String, StageCounts)>,
}

impl std::fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "pipeline {}: received {}, delivered {}, dropped {}, dead-lettered {}, acked {}{}",
            self.pipeline,
            c.received,
            c.delivered,
            c.dropped,
            c.dead_lettered,
            c.acked,
            if c.retried_later > 0 {
                format!(", retried through the broker {}", c.retried_later)
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "  {:<24} {:>9} {:>9} {:>9} {:>9} {:>13}",
            "stage", "in", "out", "dropped", "retried", "dead-lettered"
        )?;
        for (name, s) in &self.stages {
            writeln!(
                f,
                "  {:<24} {:>9} {:>9} {:>9} {:>9} {:>13}",
                name, s.input, s.output, s.dropped, s.retried, s.dead_lettered
            )?;
        }
        Ok(())
    }
}

/// A delivery after the chain ran, on its way to the sinks.
struct Processed {
    delivery: Delivery,
    outcome: ChainOutcome,
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
        } = self;
        let workers = options.concurrency.max(1);
        let sink_names: Arc<[String]> = sinks.iter().map(|(n, _)| n.clone()).collect();
        let sink_map: Arc<HashMap<String, Arc<dyn Sink>>> =
            Arc::new(sinks.iter().cloned().collect());
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
                .for_pipeline(&name);
            chains.push(chain);
        }

        let mut worker_inputs = Vec::with_capacity(workers);
        let mut delivery_tasks = Vec::with_capacity(workers);
        // The first panic of a worker thread, set before the thread lets go
        // of its output channel, so it is there once its delivery task ends.
        let worker_panic: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        for (i, chain) in chains.into_iter().enumerate() {
            let (input_tx, input_rx) = mpsc::channel::<Delivery>(options.buffer);
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
                failed_swap: None,
                swap_retry: SWAP_RETRY,
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
                pipeline: name.clone(),
                sinks: sink_map.clone(),
                dlq: dlq.clone(),
                stats: stats.clone(),
                retry: options.sink_retry,
            };
            delivery_tasks.push(tokio::spawn(
                deliverer.run(done_rx, options.max_in_flight.max(1)),
            ));
            worker_inputs.push(input_tx);
        }

        let (source_tx, mut source_rx) = mpsc::channel::<Delivery>(options.buffer);
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
        let mut next_worker = 0usize;
        loop {
            let delivery = tokio::select! {
                delivery = source_rx.recv() => match delivery {
                    Some(delivery) => delivery,
                    None => break,
                },
                _ = &mut past_deadline => break,
            };
            bump(&stats.received, 1);
            // A lane (a partition, a FIFO group) keeps its order; otherwise
            // the key does; keyless messages spread over the workers.
            let index = match (delivery.lane, &delivery.message.key) {
                (Some(lane), _) => (lane % workers as u64) as usize,
                (None, Some(key)) => {
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    key.hash(&mut hasher);
                    (hasher.finish() % workers as u64) as usize
                }
                (None, None) => {
                    next_worker = (next_worker + 1) % workers;
                    next_worker
                }
            };
            tokio::select! {
                sent = worker_inputs[index].send(delivery) => if sent.is_err() {
                    break; // the worker is gone (it panicked): reported below
                },
                _ = &mut past_deadline => break,
            }
        }
        // Let a source that is still sending see the pipeline is gone, or it
        // would wait on a full channel for ever.
        drop(source_rx);
        drop(worker_inputs);
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

/// A worker thread: runs its chain on what is queued (up to `batch`
/// deliveries at a time) and passes the outcomes on in arrival order.
/// Between batches it takes up a new version of the stages, if one was
/// swapped in.
struct Worker {
    pipeline: String,
    chain: Chain,
    version: u64,
    live: LiveStages,
    sinks: Arc<[String]>,
    clock: Arc<dyn Clock>,
    batch: usize,
    republish: bool,
    /// A swapped-in version whose chain failed to build here, and when it
    /// was last tried: it is tried again, at most every `swap_retry`.
    failed_swap: Option<(u64, Instant)>,
    swap_retry: Duration,
}

/// How often a worker tries again to build a new chain that failed (an
/// instance that could not start may start later: memory, a flaky start
/// function). Not per message: building a chain costs milliseconds.
const SWAP_RETRY: Duration = Duration::from_secs(1);

impl Worker {
    fn work(mut self, mut input: mpsc::Receiver<Delivery>, done: &mpsc::Sender<Vec<Processed>>) {
        let mut deliveries = Vec::with_capacity(self.batch);
        while let Some(first) = input.blocking_recv() {
            self.take_up_swaps();
            deliveries.push(first);
            while deliveries.len() < self.batch {
                match input.try_recv() {
                    Ok(delivery) => deliveries.push(delivery),
                    Err(_) => break,
                }
            }
            let decoded: Vec<&Message> = deliveries
                .iter()
                .filter(|d| d.decode_error.is_none())
                .map(|d| &d.message)
                .collect();
            let mut outcomes = self.chain.process_batch(&decoded).into_iter();
            let processed = deliveries
                .drain(..)
                .map(|delivery| {
                    let outcome = match &delivery.decode_error {
                        Some(error) => ChainOutcome::DeadLetter(dlq::Failure::once(
                            "<source>",
                            "decode",
                            error.clone(),
                            self.clock.now(),
                        )),
                        None => outcomes.next().expect("one outcome per decoded delivery"),
                    };
                    Processed { delivery, outcome }
                })
                .collect();
            // One hand-over per batch: cross-thread wake-ups are a large part of
            // the per-message cost.
            if done.blocking_send(processed).is_err() {
                return;
            }
        }
    }

    /// Rebuild the chain if a new stage version was swapped in. A version
    /// that cannot be instantiated leaves this worker on its old chain and
    /// is tried again on a later batch (at most every `swap_retry`); the
    /// first failure of a version is logged as an error, the retries only
    /// at debug level.
    fn take_up_swaps(&mut self) {
        let current = self.live.current();
        if current.version == self.version {
            return;
        }
        let retry = match self.failed_swap {
            Some((version, at)) if version == current.version => {
                if at.elapsed() < self.swap_retry {
                    return;
                }
                true
            }
            _ => false,
        };
        match Chain::new(&current.stages, self.sinks.clone(), self.clock.clone()) {
            Ok(chain) => {
                self.chain = chain
                    .republishing_retries(self.republish)
                    .for_pipeline(&self.pipeline);
                self.version = current.version;
                self.failed_swap = None;
                tracing::info!(pipeline = %self.pipeline, version = current.version, retry, "worker took up the new chain");
            }
            Err(e) => {
                if retry {
                    tracing::debug!(pipeline = %self.pipeline, version = current.version, error = %e, "cannot build the new chain yet")
                } else {
                    tracing::error!(pipeline = %self.pipeline, version = current.version, error = %e, retry_every = ?self.swap_retry, "cannot build the new chain; this worker keeps the old one and tries again")
                }
                self.failed_swap = Some((current.version, Instant::now()));
            }
        }
    }
}

/// The async half of a worker: hands outcomes to the sinks in order and acks
/// each delivery once all of its publishes are confirmed.
struct Deliverer {
    pipeline: String,
    sinks: Arc<HashMap<String, Arc<dyn Sink>>>,
    dlq: Arc<dyn Sink>,
    stats: Arc<PipelineStats>,
    retry: RetryPolicy,
}

impl Deliverer {
    async fn run(self, mut done: mpsc::Receiver<Vec<Processed>>, max_in_flight: usize) {
        let mut pending: FuturesOrdered<BoxFuture<'static, ()>> = FuturesOrdered::new();
        loop {
            tokio::select! {
                biased;
                Some(()) = pending.next(), if !pending.is_empty() => {}
                batch = done.recv(), if pending.len() < max_in_flight => match batch {
                    Some(batch) => {
                        for processed in batch {
                            // Keep driving the pending confirms while this
                            // message is handed over: a confirm that failed
                            // publishes again from inside `pending`, and may
                            // hold the sink (its link lock, say) that this
                            // hand-over waits for. Left unpolled, the two
                            // would wait for each other for ever (seen after
                            // a RabbitMQ restart).
                            let hand_over = self.hand_over(processed);
                            tokio::pin!(hand_over);
                            let settle = loop {
                                tokio::select! {
                                    biased;
                                    settle = &mut hand_over => break settle,
                                    Some(()) = pending.next(), if !pending.is_empty() => {}
                                }
                            };
                            pending.push_back(settle);
                        }
                    }
                    None => break,
                },
            }
        }
        while pending.next().await.is_some() {}
    }

    /// Publish every output of one delivery (in order), and return the
    /// future that awaits their confirms and then acks the source.
    async fn hand_over(&self, processed: Processed) -> BoxFuture<'static, ()> {
        let Processed { delivery, outcome } = processed;
        let Delivery {
            message,
            coordinates,
            ack,
            ..
        } = delivery;
        // One span per message, from the hand-over to the sinks until it is
        // settled with the source; `id` is its position in the broker.
        let span = tracing::debug_span!("message", pipeline = %self.pipeline, id = %coordinates);
        let stats = self.stats.clone();
        let mut retry_later = None;
        let (targets, counter): (Vec<(Arc<dyn Sink>, Message)>, _) = match outcome {
            ChainOutcome::Deliver(outputs) => {
                let targets = outputs
                    .into_iter()
                    .map(|(name, msg)| (self.sinks[&name].clone(), msg))
                    .collect();
                (targets, Counter::Delivered)
            }
            ChainOutcome::Dropped => (Vec::new(), Counter::Dropped),
            ChainOutcome::DeadLetter(failure) => {
                tracing::warn!(
                    pipeline = %self.pipeline, stage = %failure.stage, class = %failure.class,
                    error = %failure.text, attempts = failure.attempts, at = %coordinates,
                    "message dead-lettered"
                );
                let envelope = dlq::envelope(&self.pipeline, &message, &coordinates, &failure);
                (vec![(self.dlq.clone(), envelope)], Counter::DeadLettered)
            }
            ChainOutcome::RetryLater(failure) => {
                let delay = failure.retry_after.unwrap_or_default();
                tracing::info!(
                    pipeline = %self.pipeline, stage = %failure.stage, error = %failure.text,
                    attempt = failure.attempts, ?delay, at = %coordinates,
                    "retryable error; the broker brings the message back later"
                );
                retry_later = Some((message, failure.attempts, delay));
                (Vec::new(), Counter::RetriedLater)
            }
        };
        let mut confirms = Vec::with_capacity(targets.len());
        for (sink, msg) in targets {
            let confirm = tracing::Instrument::instrument(
                publish_until_taken(&self.pipeline, &sink, &msg, self.retry, &stats),
                span.clone(),
            )
            .await;
            confirms.push(confirmed(sink, msg, confirm, self.retry, stats.clone()));
        }
        let (pipeline, dlq, retry) = (self.pipeline.clone(), self.dlq.clone(), self.retry);
        Box::pin(tracing::Instrument::instrument(
            async move {
                let mut n = confirms.len() as u64;
                let mut kept = true;
                for rejected in futures::future::join_all(confirms)
                    .await
                    .into_iter()
                    .flatten()
                {
                    n -= 1;
                    kept &= dead_letter_rejected(
                        &pipeline,
                        &dlq,
                        rejected,
                        &coordinates,
                        retry,
                        &stats,
                    )
                    .await;
                }
                if !kept {
                    // Neither the sink nor the DLQ takes it: give it back to the
                    // source, which keeps it (and redelivers it; a broker's own
                    // delivery limit or redrive policy ends the loop).
                    ack.nack();
                    return;
                }
                match counter {
                    Counter::Delivered => bump(&stats.delivered, n),
                    Counter::Dropped => bump(&stats.dropped, 1),
                    Counter::DeadLettered => bump(&stats.dead_lettered, 1),
                    Counter::RetriedLater => bump(&stats.retried_later, 1),
                }
                match retry_later {
                    Some((message, attempt, delay)) => ack.retry_later(&message, attempt, delay),
                    None => ack.ack(),
                }
                bump(&stats.acked, 1);
                tracing::debug!("message settled with the source");
            },
            span,
        ))
    }
}

/// A message a sink rejected for good ([`SinkError::Rejected`]).
struct Rejected {
    by: Arc<dyn Sink>,
    message: Message,
    reason: String,
}

/// Dead-letter what a sink rejected, with the sink's reason (class
/// `sink-rejected`). False when the DLQ rejects it too (or it was the DLQ
/// that rejected it): then the source must keep the message.
async fn dead_letter_rejected(
    pipeline: &str,
    dlq: &Arc<dyn Sink>,
    rejected: Rejected,
    at: &crate::message::Coordinates,
    retry: RetryPolicy,
    stats: &Arc<PipelineStats>,
) -> bool {
    let Rejected {
        by,
        message,
        reason,
    } = rejected;
    let refused = if Arc::ptr_eq(&by, dlq) {
        reason
    } else {
        tracing::warn!(pipeline, sink = %by.describe(), error = %reason, %at, "sink rejected the message; dead-lettered");
        let failure = dlq::Failure::once(
            by.describe(),
            "sink-rejected",
            reason,
            std::time::SystemTime::now(),
        );
        let envelope = dlq::envelope(pipeline, &message, at, &failure);
        let confirm = publish_until_taken(pipeline, dlq, &envelope, retry, stats).await;
        match confirmed(dlq.clone(), envelope, confirm, retry, stats.clone()).await {
            None => {
                bump(&stats.dead_lettered, 1);
                return true;
            }
            Some(again) => again.reason,
        }
    };
    tracing::error!(pipeline, dlq = %dlq.describe(), error = %refused, %at, "the DLQ rejected a message; it stays in the source");
    false
}

/// Publish, retrying with backoff for as long as the sink refuses. A
/// rejection comes back as a failed confirm, for [`confirmed`] to report.
async fn publish_until_taken(
    pipeline: &str,
    sink: &Arc<dyn Sink>,
    msg: &Message,
    retry: RetryPolicy,
    stats: &PipelineStats,
) -> Confirm {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match sink.publish(msg).await {
            Ok(confirm) => return confirm,
            Err(e @ SinkError::Rejected { .. }) => return Box::pin(async move { Err(e) }),
            Err(e) => {
                bump(&stats.sink_retries, 1);
                let delay = retry.delay(attempt);
                tracing::warn!(pipeline, error = %e, ?delay, "sink publish failed, retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Counter {
    Delivered,
    Dropped,
    DeadLettered,
    RetriedLater,
}

/// Await one confirm; if the sink reports a failure, publish again until
/// it is confirmed. A rejection is not retried: it comes back.
async fn confirmed(
    sink: Arc<dyn Sink>,
    msg: Message,
    mut confirm: Confirm,
    retry: RetryPolicy,
    stats: Arc<PipelineStats>,
) -> Option<Rejected> {
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        match confirm.await {
            Ok(()) => {
                stats.publish_seconds.observe(started.elapsed());
                return None;
            }
            Err(SinkError::Rejected { reason, .. }) => {
                return Some(Rejected {
                    by: sink,
                    message: msg,
                    reason,
                })
            }
            Err(e) => {
                attempt += 1;
                bump(&stats.sink_retries, 1);
                let delay = retry.delay(attempt);
                tracing::warn!(sink = %sink.describe(), error = %e, ?delay, "sink did not confirm, publishing again");
                tokio::time::sleep(delay).await;
                confirm = match sink.publish(&msg).await {
                    Ok(c) => c,
                    Err(e) => Box::pin(async move { Err(e) }),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests;
