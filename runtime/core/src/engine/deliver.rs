//! The async half of a worker: publish each outcome to its sinks in order,
//! await the confirms, then settle the delivery with the source.

use super::Processed;
use crate::ack::AckHandle;
use crate::chain::ChainOutcome;
use crate::clock::Clock;
use crate::dlq;
use crate::events::{self, FailedEvents, Next};
use crate::message::{Coordinates, Delivery, Message};
use crate::retry::RetryPolicy;
use crate::sink::{Confirm, Sink, SinkError};
use crate::stats::{bump, PipelineStats};
use crate::tap::Taps;
use crate::trace::MessageTrace;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use futures::FutureExt;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The async half of a worker: hands outcomes to the sinks in order and acks
/// each delivery once all of its publishes are confirmed.
pub(super) struct Deliverer {
    /// The named sinks (a few: found by name faster than by hash).
    pub(super) sinks: Arc<[(String, Arc<dyn Sink>)]>,
    pub(super) taps: Arc<Taps>,
    /// What settling a delivery needs; its settle futures share it.
    pub(super) settler: Arc<Settler>,
}

/// What a settle needs: to count, to log, and to dead-letter what a sink
/// rejected.
pub(super) struct Settler {
    pub(super) pipeline: String,
    pub(super) dlq: Arc<dyn Sink>,
    pub(super) stats: Arc<PipelineStats>,
    /// Backoff for failed publishes.
    pub(super) retry: RetryPolicy,
    /// The pipeline's clock, for the time of a sink's rejection.
    pub(super) clock: Arc<dyn Clock>,
    /// The pipeline's `failed` log events.
    pub(super) events: Arc<FailedEvents>,
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
                        self.settler.events.settle();
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
                            let handed = loop {
                                tokio::select! {
                                    biased;
                                    handed = &mut hand_over => break handed,
                                    Some(()) = pending.next(), if !pending.is_empty() => {}
                                }
                            };
                            // Settled as its confirms come in (a confirm
                            // that is late holds no other delivery back).
                            if handed.is_settled() {
                                handed.settlement.finish(&self.settler);
                            } else {
                                pending.push_back(handed.settle(self.settler.clone()));
                            }
                        }
                    }
                    None => break,
                },
            }
        }
        while pending.next().await.is_some() {}
    }

    /// The sink named `name` (the chain only routes to sinks it has).
    fn sink(&self, name: &str) -> Arc<dyn Sink> {
        let (_, sink) = self
            .sinks
            .iter()
            .find(|(n, _)| n == name)
            .expect("the chain routes only to the pipeline's sinks");
        sink.clone()
    }

    /// Publish every output of one delivery (in order); what it then waits
    /// for before it can be settled with the source.
    async fn hand_over(&self, processed: Processed) -> HandedOver {
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
        let settler = &*self.settler;
        // One span per message, from the hand-over to the sinks until it is
        // settled with the source; `id` is its position in the broker.
        let span = tracing::debug_span!("message", pipeline = %settler.pipeline, id = %coordinates);
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
                    .map(|(name, msg)| (self.sink(&name), msg))
                    .collect();
                (targets, Counter::Delivered)
            }
            ChainOutcome::Dropped => (Vec::new(), Counter::Dropped),
            ChainOutcome::DeadLetter(failure) => {
                settler
                    .events
                    .failed(&coordinates, &failure, Next::DeadLetter);
                settler
                    .stats
                    .recent_dead_letters
                    .push(&failure, &coordinates);
                let mut envelope =
                    dlq::envelope(&settler.pipeline, &message, &coordinates, &failure);
                if let Some(trace) = &trace {
                    trace.inject(&mut envelope.headers);
                }
                (vec![(settler.dlq.clone(), envelope)], Counter::DeadLettered)
            }
            ChainOutcome::RetryLater(failure) => {
                let delay = failure.retry_after.unwrap_or_default();
                // The broker brings the message back later.
                settler
                    .events
                    .failed(&coordinates, &failure, Next::Republish(delay));
                retry_later = Some((message, failure.attempts, delay));
                (Vec::new(), Counter::RetriedLater)
            }
        };
        let outputs = targets.len() as u64;
        let mut waiting: Vec<BoxFuture<'static, Option<Rejected>>> = Vec::new();
        let mut rejected = Vec::new();
        let (retry, stats) = (settler.retry, &settler.stats);
        for (sink, msg) in targets {
            let publish = publish_until_taken(&settler.pipeline, &sink, &msg, retry, stats);
            let mut confirm = tracing::Instrument::instrument(publish, span.clone()).await;
            // Most confirms of an in-process or buffered sink are in at
            // once: take those without a future of their own.
            match (&mut confirm).now_or_never() {
                Some(Ok(())) => stats.publish_seconds.observe(std::time::Duration::ZERO),
                Some(Err(SinkError::Rejected { reason, .. })) => rejected.push(Rejected {
                    by: sink,
                    message: msg,
                    reason,
                }),
                Some(Err(e)) => {
                    let failed: Confirm = Box::pin(async move { Err(e) });
                    let again = confirmed(sink, msg, failed, retry, stats.clone());
                    waiting.push(Box::pin(again));
                }
                None => waiting.push(Box::pin(confirmed(
                    sink,
                    msg,
                    confirm,
                    retry,
                    stats.clone(),
                ))),
            }
        }
        HandedOver {
            settlement: Settlement {
                ack,
                coordinates,
                claims,
                counter,
                delivered: outputs,
                retry_later,
                trace,
            },
            waiting,
            rejected,
            span,
        }
    }
}

/// One delivery handed over to its sinks.
struct HandedOver {
    settlement: Settlement,
    /// Confirms not in yet (each retries its publish until confirmed).
    waiting: Vec<BoxFuture<'static, Option<Rejected>>>,
    /// What the sinks already rejected for good.
    rejected: Vec<Rejected>,
    span: tracing::Span,
}

impl HandedOver {
    /// Every output confirmed already, with no claim to record: it can be
    /// settled without waiting for anything.
    fn is_settled(&self) -> bool {
        self.waiting.is_empty() && self.rejected.is_empty() && self.settlement.claims.is_empty()
    }

    /// The future that awaits the rest of its confirms, dead-letters what
    /// the sinks rejected, and then settles it with the source.
    fn settle(self, settler: Arc<Settler>) -> BoxFuture<'static, ()> {
        let HandedOver {
            mut settlement,
            waiting,
            mut rejected,
            span,
        } = self;
        Box::pin(tracing::Instrument::instrument(
            async move {
                rejected.extend(all_confirmed(waiting).await);
                let mut kept = true;
                for rejected in rejected {
                    settlement.delivered -= 1;
                    kept &= settler.dead_letter(rejected, &settlement.coordinates).await;
                }
                if !kept {
                    // Neither the sink nor the DLQ takes it: give it back to the
                    // source, which keeps it (and redelivers it; a broker's own
                    // delivery limit or redrive policy ends the loop). Its
                    // claims are released as they drop.
                    settlement.give_back();
                    return;
                }
                // Delivered and confirmed: record its ids before the source
                // forgets it, so a crash after this drops the redelivery.
                let claims = std::mem::take(&mut settlement.claims);
                complete_claims(&settler.pipeline, claims).await;
                settlement.finish(&settler);
            },
            span,
        ))
    }
}

/// How a delivery is settled once its outputs are confirmed.
struct Settlement {
    ack: AckHandle,
    coordinates: Coordinates,
    /// Claims to complete before the source is told.
    claims: Vec<crate::claim::Claim>,
    counter: Counter,
    /// Outputs confirmed by their sinks (for [`Counter::Delivered`]).
    delivered: u64,
    /// Set when the broker is to bring the message back later.
    retry_later: Option<(Message, u32, std::time::Duration)>,
    trace: Option<MessageTrace>,
}

impl Settlement {
    /// Count it and settle it with the source.
    fn finish(self, settler: &Settler) {
        let Settlement {
            ack,
            coordinates,
            counter,
            delivered,
            retry_later,
            trace,
            ..
        } = self;
        let stats = &settler.stats;
        match counter {
            Counter::Delivered => bump(&stats.delivered, delivered),
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
            event = events::COMPLETED, pipeline = %settler.pipeline, at = %coordinates,
            outcome = counter.as_str(), outputs = delivered, "message settled with the source"
        );
        if let Some(trace) = trace {
            trace.end(counter.as_str());
        }
    }

    /// Give it back to the source unsettled.
    fn give_back(self) {
        self.ack.nack();
        if let Some(trace) = self.trace {
            trace.end("nacked");
        }
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

impl Settler {
    /// Dead-letter what a sink rejected, with the sink's reason (class
    /// `sink-rejected`). False when the DLQ rejects it too (or it was the
    /// DLQ that rejected it): then the source must keep the message.
    async fn dead_letter(&self, rejected: Rejected, at: &crate::message::Coordinates) -> bool {
        let Settler {
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
