//! The log events of the spec, one place: every event line carries an
//! `event` field an operator can filter on (`--log-format json`):
//!
//! | event | level | when | fields |
//! |---|---|---|---|
//! | `invoked` | debug | a stage call begins (a batch call is one call) | pipeline, stage, messages, attempt |
//! | `completed` | debug | a stage call returned | pipeline, stage, messages, failures, duration_us |
//! | `completed` | debug | a message is settled with its source | pipeline, at, outcome, outputs |
//! | `failed` | warn | a message failed at a stage or sink | pipeline, stage, at, attempt, class, reason, next |
//!
//! `at` is the message's position in its broker (topic/partition/offset,
//! queue and delivery tag, stream id…); `next` says what happens to it:
//! `retry` (in this process, after `delay`), `republish` (handed back to the
//! broker with a delay), `dlq`. `failed` lines are rate-limited per pipeline
//! ([`FAILED_PER_SECOND`]); a summary line counts those not written.

use crate::dlq::Failure;
use crate::log_limit::{Lines, LogLimiter};
use crate::message::Coordinates;
use std::time::Duration;

pub const INVOKED: &str = "invoked";
pub const COMPLETED: &str = "completed";
pub const FAILED: &str = "failed";

/// `failed` lines written per second per pipeline; the rest are counted.
pub const FAILED_PER_SECOND: u32 = 20;
/// The longest `reason` written in a `failed` line.
pub const REASON_BYTES: usize = 1024;

/// What happens to a message that failed.
#[derive(Debug, Clone, Copy)]
pub enum Next {
    /// Tried again in this process after the delay.
    Retry(Duration),
    /// Handed back to the broker, to come back after the delay.
    Republish(Duration),
    /// Dead-lettered.
    DeadLetter,
}

impl Next {
    fn as_str(self) -> &'static str {
        match self {
            Next::Retry(_) => "retry",
            Next::Republish(_) => "republish",
            Next::DeadLetter => "dlq",
        }
    }

    fn delay(self) -> Duration {
        match self {
            Next::Retry(d) | Next::Republish(d) => d,
            Next::DeadLetter => Duration::ZERO,
        }
    }
}

/// The `failed` events of one pipeline, rate-limited.
pub struct FailedEvents(LogLimiter);

impl FailedEvents {
    pub fn new(pipeline: &str) -> Self {
        FailedEvents(LogLimiter::of(
            Lines::FailedEvents,
            pipeline.into(),
            FAILED_PER_SECOND,
            REASON_BYTES,
        ))
    }

    /// Log that the message at `at` failed with `failure`, unless this
    /// pipeline's `failed` lines are over their rate.
    pub fn failed(&self, at: &Coordinates, failure: &Failure, next: Next) {
        if !self.0.admit() {
            return;
        }
        tracing::warn!(
            event = FAILED,
            pipeline = self.0.stage(),
            stage = %failure.stage,
            at = %at,
            attempt = failure.attempts,
            class = %failure.class,
            reason = %self.0.cut(&failure.text),
            next = next.as_str(),
            delay_ms = u64::try_from(next.delay().as_millis()).unwrap_or(u64::MAX),
            "message failed at `{}`: {}",
            failure.stage,
            next.as_str(),
        );
    }

    /// Write the summary of suppressed lines once their second is over.
    /// Cheap when none were.
    pub fn settle(&self) {
        self.0.settle();
    }
}
