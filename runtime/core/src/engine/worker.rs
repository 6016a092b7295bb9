//! The synchronous half of a worker: a thread that runs the chain on
//! batches of deliveries and takes up swapped-in stage versions.

use super::Processed;
use crate::chain::{Chain, ChainOutcome};
use crate::clock::Clock;
use crate::dlq;
use crate::live::LiveStages;
use crate::message::{Delivery, Message};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// A swapped-in version whose chain failed to build here, and when it
    /// was last tried: it is tried again, at most every `swap_retry`.
    pub(super) failed_swap: Option<(u64, Instant)>,
    pub(super) swap_retry: Duration,
}

/// How often a worker tries again to build a new chain that failed (an
/// instance that could not start may start later: memory, a flaky start
/// function). Not per message: building a chain costs milliseconds.
pub(super) const SWAP_RETRY: Duration = Duration::from_secs(1);

impl Worker {
    pub(super) fn work(
        mut self,
        mut input: mpsc::Receiver<Delivery>,
        done: &mpsc::Sender<Vec<Processed>>,
    ) {
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
                            dlq::FailureClass::Decode,
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
