//! Counters the engine keeps per pipeline and per stage; shared between
//! worker threads, read for the run summary and for `/metrics`.

use crate::dlq::{Failure, FailureClass};
use crate::message::Coordinates;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

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
    /// Fuel the stage's calls burnt.
    pub fuel: AtomicU64,
    /// Plugin log lines dropped by the stage's log rate limit.
    pub log_suppressed: AtomicU64,
    /// Messages a `dedupe` stage dropped as already delivered (also counted
    /// in `dropped`).
    pub deduplicated: AtomicU64,
    /// How long each call took (a batch call is one call).
    pub call_seconds: Histogram,
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
    pub fuel: u64,
    pub log_suppressed: u64,
    pub deduplicated: u64,
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
            fuel: self.fuel.load(Relaxed),
            log_suppressed: self.log_suppressed.load(Relaxed),
            deduplicated: self.deduplicated.load(Relaxed),
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
    /// From handing a message to a sink to its confirm.
    pub publish_seconds: Histogram,
    /// What the broker says waits for this pipeline's source, as the source
    /// reports it ([`Source::report_lag`](crate::Source::report_lag)).
    pub source_lag: Arc<SourceLag>,
    /// Bytes of messages received and not yet settled with the source
    /// (what the byte budget holds).
    pub in_flight_bytes: Arc<AtomicU64>,
    /// The latest dead letters, for the status page.
    pub recent_dead_letters: RecentDeadLetters,
}

/// One dead letter as the status page shows it: why, where, when; never
/// the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterNote {
    pub time: SystemTime,
    /// The stage (or sink, for `sink-rejected`) that failed.
    pub stage: String,
    pub class: FailureClass,
    /// The error text, cut at [`RecentDeadLetters::REASON_MAX`] bytes.
    pub reason: String,
    /// The message's position in its broker.
    pub at: String,
}

/// The last [`RecentDeadLetters::KEEP`] dead letters of a pipeline, oldest
/// first. A mutex on the dead-letter path only, never on the happy path.
#[derive(Debug, Default)]
pub struct RecentDeadLetters(Mutex<VecDeque<DeadLetterNote>>);

impl RecentDeadLetters {
    pub const KEEP: usize = 20;
    pub const REASON_MAX: usize = 512;

    pub fn push(&self, failure: &Failure, at: &Coordinates) {
        let mut reason = failure.text.clone();
        if reason.len() > Self::REASON_MAX {
            let mut cut = Self::REASON_MAX;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            reason.push('…');
        }
        let note = DeadLetterNote {
            time: failure.last_failure,
            stage: failure.stage.clone(),
            class: failure.class,
            reason,
            at: at.to_string(),
        };
        let mut notes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if notes.len() == Self::KEEP {
            notes.pop_front();
        }
        notes.push_back(note);
    }

    /// Oldest first.
    pub fn list(&self) -> Vec<DeadLetterNote> {
        let notes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        notes.iter().cloned().collect()
    }
}

/// Messages waiting in the broker for a source: a queue's ready messages,
/// a stream group's entries not yet read. Unknown until the source reports.
#[derive(Debug)]
pub struct SourceLag(AtomicU64);

impl Default for SourceLag {
    fn default() -> Self {
        SourceLag(AtomicU64::new(u64::MAX))
    }
}

impl SourceLag {
    pub fn set(&self, waiting: u64) {
        self.0.store(waiting.min(u64::MAX - 1), Relaxed);
    }

    pub fn get(&self) -> Option<u64> {
        let v = self.0.load(Relaxed);
        (v != u64::MAX).then_some(v)
    }
}

/// How far a finite source (a file) has read: the progress line of
/// `sluice run`.
#[derive(Debug, Default)]
pub struct ReadProgress {
    /// Bytes read so far.
    pub read: AtomicU64,
    /// The size when the source opened it.
    pub total: u64,
}

impl ReadProgress {
    pub fn new(total: u64) -> Self {
        ReadProgress {
            read: AtomicU64::new(0),
            total,
        }
    }

    /// Read so far, in percent of the total (100 for an empty file).
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            return 100.0;
        }
        (self.read.load(Relaxed) as f64 * 100.0 / self.total as f64).min(100.0)
    }
}

/// How often sources ask their broker for [`SourceLag`].
pub const LAG_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

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

/// A Prometheus-style histogram with fixed buckets, in seconds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or below each of [`Histogram::BOUNDS`]; the last
    /// slot counts those above every bound.
    buckets: [AtomicU64; Histogram::BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Bucket upper bounds in seconds: 10 µs to 10 s.
    pub const BOUNDS: [f64; 13] = [
        0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
    ];

    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = Self::BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(Self::BOUNDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Counts per bucket (not cumulative; the last one is above every
    /// bound) and the sum in seconds.
    pub fn buckets(&self) -> ([u64; Histogram::BOUNDS.len() + 1], f64) {
        let counts = std::array::from_fn(|i| self.buckets[i].load(Relaxed));
        (counts, self.sum_nanos.load(Relaxed) as f64 / 1e9)
    }
}

pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(5));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let (counts, sum) = h.buckets();
        assert_eq!(counts.iter().sum::<u64>(), 3);
        assert_eq!(counts[0], 1, "5 µs ≤ 10 µs");
        assert_eq!(counts[5], 1, "3 ms ≤ 5 ms");
        assert_eq!(counts[Histogram::BOUNDS.len()], 1, "60 s is above 10 s");
        assert!((sum - 60.003005).abs() < 1e-6);
    }
}
