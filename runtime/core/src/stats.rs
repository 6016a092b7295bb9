//! Counters the engine keeps per pipeline and per stage; shared between
//! worker threads, read for the run summary (and later for `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Per-stage counters.
#[derive(Debug, Default)]
pub struct StageStats {
    /// Messages handed to the stage (once per message, not per attempt).
    pub input: AtomicU64,
    /// Messages the stage passed on (a split counts each output).
    pub output: AtomicU64,
    /// Messages the stage dropped (filter false, empty transform or route).
    pub dropped: AtomicU64,
    /// Retries performed (attempts after the first).
    pub retried: AtomicU64,
    /// Messages this stage sent to the DLQ.
    pub dead_lettered: AtomicU64,
    /// Instances replaced after a fault.
    pub replaced: AtomicU64,
}

/// A point-in-time copy of [`StageStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageCounts {
    pub input: u64,
    pub output: u64,
    pub dropped: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub replaced: u64,
}

impl StageStats {
    pub fn snapshot(&self) -> StageCounts {
        StageCounts {
            input: self.input.load(Relaxed),
            output: self.output.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            retried: self.retried.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            replaced: self.replaced.load(Relaxed),
        }
    }
}

/// Per-pipeline counters.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Deliveries taken from the source.
    pub received: AtomicU64,
    /// Messages confirmed by a (non-DLQ) sink; a fan-out counts each copy.
    pub delivered: AtomicU64,
    /// Deliveries that ended with nothing to deliver (all dropped).
    pub dropped: AtomicU64,
    /// Deliveries confirmed by the DLQ.
    pub dead_lettered: AtomicU64,
    /// Deliveries settled with the source: acknowledged, or handed back for
    /// a retry through the broker.
    pub acked: AtomicU64,
    /// Deliveries handed back to the source for a retry through the broker
    /// (`retry.republish`); each comes back as a new delivery.
    pub retried_later: AtomicU64,
    /// Sink publish attempts that failed and were retried.
    pub sink_retries: AtomicU64,
}

/// A point-in-time copy of [`PipelineStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineCounts {
    pub received: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub dead_lettered: u64,
    pub acked: u64,
    pub retried_later: u64,
    pub sink_retries: u64,
}

impl PipelineStats {
    pub fn snapshot(&self) -> PipelineCounts {
        PipelineCounts {
            received: self.received.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            acked: self.acked.load(Relaxed),
            retried_later: self.retried_later.load(Relaxed),
            sink_retries: self.sink_retries.load(Relaxed),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}
