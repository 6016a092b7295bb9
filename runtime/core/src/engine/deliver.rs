//! The async half of a worker: publish each outcome to its sinks in order,
//! await the confirms, then settle the delivery with the source.

use super::Processed;
use crate::chain::ChainOutcome;
use crate::clock::Clock;
use crate::dlq;
use crate::events::{self, FailedEvents, Next};
use crate::message::{Delivery, Message};
use crate::retry::RetryPolicy;
use crate::sink::{Confirm, Sink, SinkError};
use crate::stats::{bump, PipelineStats};
use crate::tap::Taps;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use futures::FutureExt;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The async half of a worker: hands outcomes to the sinks in order and acks
/// each delivery once all of its publishes are confirmed.
pub(super) struct Deliverer {
    pub(super) pipeline: String,
    pub(super) sinks: Arc<HashMap<String, Arc<dyn Sink>>>,
    pub(super) dlq: Arc<dyn Sink>,
    pub(super) stats: Arc<PipelineStats>,
    pub(super) retry: RetryPolicy,
    /// The pipeline's clock, for the time of a sink's rejection.
    pub(super) clock: Arc<dyn Clock>,
    /// The pipeline's `failed` log events.
    pub(super) events: Arc<FailedEvents>,
    pub(super) taps: Arc<Taps>,
}

impl Deliverer {
    pub(super) async fn run(self, mut done: mpsc::Receiver<Vec<Processed>>, max_in_flight: usize) {
        let mut pending: FuturesOrdered<BoxFuture<'static, ()>> = FuturesOrdered::new();
        loop {
            tokio::select! {
                biased;
                Some(()) = pending.next(), if !pending.is_empty() => {}
                batch = done.recv(), if pending.len() < max_in_flight => match batch {
                    Some(batch) => {
                        self.events.settle();
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
        let Processed {
            delivery,
            outcome,
            claims,
        } = processed;
        let Delivery {
            message,
            coordinates,
            ack,
            trace,
            ..
        } = delivery;
        // One span per message, from the hand-over to the sinks until it is
        // settled with the source; `id` is its position in the broker.
        let span = tracing::debug_span!("message", pipeline = %self.pipeline, id = %coordinates);
        let stats = self.stats.clone();
        let mut retry_later = None;
        let (targets, counter): (Vec<(Arc<dyn Sink>, Message)>, _) = match outcome {
            ChainOutcome::Deliver(mut outputs) => {
                if let Some(trace) = &trace {
                    for (_, msg) in &mut outputs {
                        trace.inject(&mut msg.headers);
                    }
                }
                if self.taps.active() {
                    for (name, msg) in &outputs {
                        self.taps.offer_sink(name, msg);
                    }
                }
                let targets = outputs
                    .into_iter()
                    .map(|(name, msg)| (self.sinks[&name].clone(), msg))
                    .collect();
                (targets, Counter::Delivered)
            }
            ChainOutcome::Dropped => (Vec::new(), Counter::Dropped),
            ChainOutcome::DeadLetter(failure) => {
                self.events.failed(&coordinates, &failure, Next::DeadLetter);
                stats.recent_dead_letters.push(&failure, &coordinates);
                let mut envelope = dlq::envelope(&self.pipeline, &message, &coordinates, &failure);
                if let Some(trace) = &trace {
                    trace.inject(&mut envelope.headers);
                }
                (vec![(self.dlq.clone(), envelope)], Counter::DeadLettered)
            }
            ChainOutcome::RetryLater(failure) => {
                let delay = failure.retry_after.unwrap_or_default();
                // The broker brings the message back later.
                self.events
                    .failed(&coordinates, &failure, Next::Republish(delay));
                retry_later = Some((message, failure.attempts, delay));
                (Vec::new(), Counter::RetriedLater)
            }
        };
        let mut confirms: Vec<BoxFuture<'static, Option<Rejected>>> =
            Vec::with_capacity(targets.len());
        for (sink, msg) in targets {
            let confirm = tracing::Instrument::instrument(
                publish_until_taken(&self.pipeline, &sink, &msg, self.retry, &stats),
                span.clone(),
            )
            .await;
            confirms.push(Box::pin(confirmed(
                sink,
                msg,
                confirm,
                self.retry,
                stats.clone(),
            )));
        }
        let rejections = Rejections {
            pipeline: self.pipeline.clone(),
            dlq: self.dlq.clone(),
            retry: self.retry,
            stats: stats.clone(),
            clock: self.clock.clone(),
            events: self.events.clone(),
        };
        Box::pin(tracing::Instrument::instrument(
            async move {
                let pipeline = rejections.pipeline.as_str();
                let mut n = confirms.len() as u64;
                let mut kept = true;
                for rejected in all_confirmed(confirms).await {
                    n -= 1;
                    kept &= rejections.dead_letter(rejected, &coordinates).await;
                }
                if !kept {
                    // Neither the sink nor the DLQ takes it: give it back to the
                    // source, which keeps it (and redelivers it; a broker's own
                    // delivery limit or redrive policy ends the loop). Its
                    // claims are released as they drop.
                    ack.nack();
                    if let Some(trace) = trace {
                        trace.end("nacked");
                    }
                    return;
                }
                // Delivered and confirmed: record its ids before the source
                // forgets it, so a crash after this drops the redelivery.
                complete_claims(pipeline, claims).await;
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
                tracing::debug!(
                    event = events::COMPLETED, pipeline, at = %coordinates,
                    outcome = counter.as_str(), outputs = n, "message settled with the source"
                );
                if let Some(trace) = trace {
                    trace.end(counter.as_str());
                }
            },
            span,
        ))
    }
}

/// Complete a delivered message's claims (its ids recorded as delivered).
/// A store that cannot record one is logged, not retried: the message is
/// delivered either way, and only a later copy of it may then pass.
async fn complete_claims(pipeline: &str, claims: Vec<crate::claim::Claim>) {
    if claims.is_empty() {
        return;
    }
    // A clone (shared, settled once) keeps the id for the rare warning.
    let completed = claims.into_iter().map(|claim| async move {
        let result = claim.clone().complete().await;
        (claim, result)
    });
    for (claim, result) in futures::future::join_all(completed).await {
        if let Err(e) = result {
            let id = String::from_utf8_lossy(claim.id());
            tracing::warn!(pipeline, %id, error = %e, "could not record the id as delivered; a later copy of this message may pass the dedupe stage");
        }
    }
}

/// Await every confirm of one delivery; what the sinks rejected for good.
///
/// Confirms that are already in (most of them, once a delivery's outputs
/// have been handed over) are taken in one pass, outside tokio's
/// cooperative budget; only the rest are awaited together. A delivery split
/// into 100,000 outputs then settles in linear time: awaiting all of them
/// as one `join_all` cost about seven times more per output than 100,000
/// deliveries of one output each (see the fan-out benchmark).
async fn all_confirmed(confirms: Vec<BoxFuture<'static, Option<Rejected>>>) -> Vec<Rejected> {
    let (mut rejected, mut waiting) = tokio::task::unconstrained(async move {
        let mut rejected = Vec::new();
        let waiting = FuturesUnordered::new();
        for mut confirm in confirms {
            match (&mut confirm).now_or_never() {
                Some(outcome) => rejected.extend(outcome),
                None => waiting.push(confirm),
            }
        }
        (rejected, waiting)
    })
    .await;
    while let Some(outcome) = waiting.next().await {
        rejected.extend(outcome);
    }
    rejected
}

/// A message a sink rejected for good ([`SinkError::Rejected`]).
struct Rejected {
    by: Arc<dyn Sink>,
    message: Message,
    reason: String,
}

/// What a settle needs to dead-letter what a sink rejected.
struct Rejections {
    pipeline: String,
    dlq: Arc<dyn Sink>,
    retry: RetryPolicy,
    stats: Arc<PipelineStats>,
    /// For the time of a sink's rejection.
    clock: Arc<dyn Clock>,
    events: Arc<FailedEvents>,
}

impl Rejections {
    /// Dead-letter what a sink rejected, with the sink's reason (class
    /// `sink-rejected`). False when the DLQ rejects it too (or it was the
    /// DLQ that rejected it): then the source must keep the message.
    async fn dead_letter(&self, rejected: Rejected, at: &crate::message::Coordinates) -> bool {
        let Rejections {
            pipeline,
            dlq,
            retry,
            stats,
            ..
        } = self;
        let Rejected {
            by,
            message,
            reason,
        } = rejected;
        let refused = if Arc::ptr_eq(&by, dlq) {
            reason
        } else {
            let failure = dlq::Failure::once(
                by.describe(),
                dlq::FailureClass::SinkRejected,
                reason,
                self.clock.now(),
            );
            self.events.failed(at, &failure, Next::DeadLetter);
            stats.recent_dead_letters.push(&failure, at);
            let envelope = dlq::envelope(pipeline, &message, at, &failure);
            let confirm = publish_until_taken(pipeline, dlq, &envelope, *retry, stats).await;
            match confirmed(dlq.clone(), envelope, confirm, *retry, stats.clone()).await {
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

impl Counter {
    fn as_str(&self) -> &'static str {
        match self {
            Counter::Delivered => "delivered",
            Counter::Dropped => "dropped",
            Counter::DeadLettered => "dead_lettered",
            Counter::RetriedLater => "retried_later",
        }
    }
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
