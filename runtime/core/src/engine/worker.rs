//! The synchronous half of a worker: a thread that runs the chain on
//! batches of deliveries, parks retries per key ([`super::parking`]) and
//! takes up swapped-in stage versions.

use super::parking::{Key, ParkingLot, Taken};
use super::Processed;
use crate::chain::{Chain, ChainOutcome};
use crate::clock::Clock;
use crate::dlq::{self, Failure};
use crate::events::{FailedEvents, Next};
use crate::live::LiveStages;
use crate::message::{Delivery, Message};
use crate::tap::Taps;
use opentelemetry::trace::SpanContext;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// A worker thread: runs its chain on what is queued (up to `batch`
/// deliveries at a time) and passes the outcomes on in arrival order.
/// Between batches it takes up a new version of the stages, if one was
/// swapped in.
pub(super) struct Worker {
    pub(super) pipeline: String,
    pub(super) chain: Chain,
    pub(super) version: u64,
    pub(super) live: LiveStages,
    pub(super) sinks: Arc<[String]>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) batch: usize,
    pub(super) republish: bool,
    /// Most deliveries parked or waiting behind a parked one.
    pub(super) park_capacity: usize,
    /// For waits on the input with a deadline (the next parked retry).
    pub(super) runtime: tokio::runtime::Handle,
    /// A swapped-in version whose chain failed to build here, and when it
    /// was last tried: it is tried again, at most every `swap_retry`.
    pub(super) failed_swap: Option<(u64, Instant)>,
    pub(super) swap_retry: Duration,
    /// The pipeline's `failed` log events.
    pub(super) events: Arc<FailedEvents>,
    pub(super) taps: Arc<Taps>,
}

/// How often a worker tries again to build a new chain that failed (an
/// instance that could not start may start later: memory, a flaky start
/// function). Not per message: building a chain costs milliseconds.
pub(super) const SWAP_RETRY: Duration = Duration::from_secs(1);

/// What a wait on the input ended with.
enum Input {
    Got(Vec<Delivery>),
    Closed,
    /// A parked delivery is due.
    Due,
}

/// A worker stops adding to a batch once it holds this many bytes: the
/// per-call cost a batch saves is nothing beside copying large messages,
/// while a batch of them in a plugin's linear memory (which never shrinks)
/// multiplies what the pipeline holds.
pub(super) const BATCH_BYTES: usize = 1 << 20;

/// A new delivery for the batch, unless it must wait behind a parked one.
fn admit(lot: &mut ParkingLot, delivery: Delivery) -> Option<Taken> {
    lot.admit(delivery).map(|delivery| Taken {
        delivery,
        key: None,
    })
}

/// How long from `now` until `due` (zero if past).
fn until(now: SystemTime, due: SystemTime) -> Duration {
    due.duration_since(now).unwrap_or(Duration::ZERO)
}

impl Worker {
    pub(super) fn work(
        mut self,
        mut input: mpsc::Receiver<Vec<Delivery>>,
        done: &mpsc::Sender<Vec<Processed>>,
    ) {
        let mut lot = ParkingLot::new(self.park_capacity);
        // Deliveries taken from the input, not yet admitted to a batch.
        let mut queued: VecDeque<Delivery> = VecDeque::new();
        let mut closed = false;
        loop {
            let now = self.clock.now();
            let mut batch = lot.take_due(now, self.batch);
            let more_input = !closed || !queued.is_empty();
            if batch.len() < self.batch && more_input && lot.has_room() {
                if batch.is_empty() && queued.is_empty() {
                    match self.wait_for_input(&mut input, &lot, now) {
                        Input::Got(deliveries) => queued.extend(deliveries),
                        Input::Closed => closed = true,
                        Input::Due => {}
                    }
                }
                let mut bytes: usize = batch.iter().map(|t| t.delivery.message.size()).sum();
                while batch.len() < self.batch && bytes < BATCH_BYTES && lot.has_room() {
                    let Some(delivery) = queued.pop_front() else {
                        match input.try_recv() {
                            Ok(more) => {
                                queued.extend(more);
                                continue;
                            }
                            Err(_) => break,
                        }
                    };
                    bytes += delivery.message.size();
                    batch.extend(admit(&mut lot, delivery));
                }
            } else if batch.is_empty() {
                if !more_input && lot.is_empty() {
                    return;
                }
                // The lot is full, or there is no more input: wait for
                // the next parked delivery.
                let wait = lot.next_due().map_or(Duration::ZERO, |due| until(now, due));
                self.clock.wait(wait, &mut |limit| {
                    std::thread::sleep(limit);
                    false
                });
            }
            if batch.is_empty() {
                continue;
            }
            self.take_up_swaps();
            let processed = self.process(batch, &mut lot);
            // One hand-over per batch: cross-thread wake-ups are a large part of
            // the per-message cost.
            if !processed.is_empty() && done.blocking_send(processed).is_err() {
                return;
            }
        }
    }

    /// Wait for the next deliveries; with deliveries parked, only until the
    /// first of them is due.
    fn wait_for_input(
        &self,
        input: &mut mpsc::Receiver<Vec<Delivery>>,
        lot: &ParkingLot,
        now: SystemTime,
    ) -> Input {
        let Some(due) = lot.next_due() else {
            return match input.blocking_recv() {
                Some(deliveries) => Input::Got(deliveries),
                None => Input::Closed,
            };
        };
        let mut got = Input::Due;
        self.clock.wait(until(now, due), &mut |limit| {
            // The timer is made inside the runtime, which drives it.
            let recv = async { tokio::time::timeout(limit, input.recv()).await };
            got = match self.runtime.block_on(recv) {
                Ok(Some(deliveries)) => Input::Got(deliveries),
                Ok(None) => Input::Closed,
                Err(_) => Input::Due,
            };
            !matches!(got, Input::Due)
        });
        got
    }

    /// Run the chain on `batch` and settle each outcome with the lot: a
    /// retry parks, a delivery behind a key parked in this same batch goes
    /// back to wait (its outcome unused), the rest go on to the sinks.
    fn process(&mut self, batch: Vec<Taken>, lot: &mut ParkingLot) -> Vec<Processed> {
        let decoded: Vec<&Message> = batch
            .iter()
            .filter(|t| t.delivery.refused.is_none())
            .map(|t| &t.delivery.message)
            .collect();
        let traces: Vec<SpanContext> = if crate::trace::enabled() {
            batch
                .iter()
                .filter(|t| t.delivery.refused.is_none())
                .map(|t| {
                    t.delivery
                        .trace
                        .as_ref()
                        .map_or(SpanContext::NONE, |trace| trace.span_context())
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut outcomes = self.chain.process_traced(&decoded, &traces).into_iter();
        let mut processed = Vec::with_capacity(batch.len());
        let mut parked_here = false;
        for Taken { delivery, key } in batch {
            let (mut outcome, claims) = match &delivery.refused {
                Some(refusal) => (
                    ChainOutcome::DeadLetter(dlq::Failure::once(
                        "<source>",
                        refusal.class,
                        refusal.text.clone(),
                        self.clock.now(),
                    )),
                    Vec::new(),
                ),
                None => outcomes.next().expect("one outcome per decoded delivery"),
            };
            let parks = matches!(outcome, ChainOutcome::RetryLater(_)) && !self.republish;
            if key.is_none() && (parks || parked_here) {
                // Fresh in this batch: behind a key that just parked here?
                let k = lot.key_of(&delivery);
                if parked_here && lot.holds(k) {
                    let _ = lot.wait_behind(k, delivery);
                    continue;
                }
                if let ChainOutcome::RetryLater(failure) = outcome {
                    self.park(lot, k, delivery, &failure);
                    parked_here = true;
                    continue;
                }
            }
            if let Some(k) = key {
                match outcome {
                    ChainOutcome::RetryLater(failure) if parks => {
                        self.park(lot, k, delivery, &failure);
                        parked_here = true;
                        continue;
                    }
                    ChainOutcome::DeadLetter(ref mut failure) => {
                        if let Some(first) = lot.first_failure(k) {
                            failure.first_failure = first;
                        }
                    }
                    _ => {}
                }
                lot.settled(k);
            }
            processed.push(Processed {
                delivery,
                outcome,
                claims,
            });
        }
        processed
    }

    /// Park `delivery` for its next attempt after the failure's backoff.
    fn park(&self, lot: &mut ParkingLot, key: Key, mut delivery: Delivery, failure: &Failure) {
        let delay = failure.retry_after.unwrap_or_default();
        // Parked: later messages of its key wait behind it.
        self.events
            .failed(&delivery.coordinates, failure, Next::Retry(delay));
        delivery.message.attempt = failure.attempts + 1;
        lot.park(
            key,
            delivery,
            failure.last_failure + delay,
            failure.first_failure,
        );
    }

    /// Rebuild the chain if a new stage version was swapped in. A version
    /// that cannot be instantiated leaves this worker on its old chain and
    /// is tried again on a later batch (at most every `swap_retry`); the
    /// first failure of a version is logged as an error, the retries only
    /// at debug level.
    pub(super) fn take_up_swaps(&mut self) {
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
                    .for_pipeline(&self.pipeline)
                    .tapped(self.taps.clone());
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
