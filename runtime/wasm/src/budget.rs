//! What a call may spend: per message, also inside a batch.
//!
//! A single call gets the stage's whole [`Limits`] (`fuel`, `timeout`). A
//! batch call cannot be given `n` times that: one poison message would burn
//! all of it before the batch is found to fault and redone one message at a
//! time (where the poison then costs its limit a second time). So a batch
//! gets what its messages are expected to cost, with headroom: [`Costs`]
//! learns the cost of a clean message from the calls that succeed, and a
//! batch may spend [`HEADROOM`] times that for each of its messages, at least
//! [`FLOOR`] of one message's limit and at most `n` limits. A poison message
//! in a batch then costs that small budget plus its own limit, once; a clean
//! batch never comes near it. Until a clean batch was seen, a batch gets one
//! message's limit.

use sluice_core::Limits;
use std::time::Duration;

/// How many times the expected cost a batch may spend.
pub(crate) const HEADROOM: f64 = 8.0;
/// The least a batch gets, as a fraction of one message's limit.
pub(crate) const FLOOR: f64 = 1.0 / 20.0;
/// Weight of the newest observation in the running average.
const ALPHA: f64 = 0.2;

/// What one call may spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Budget {
    pub fuel: u64,
    pub time: Duration,
}

impl Budget {
    /// One message's limits.
    pub(crate) fn single(limits: &Limits) -> Budget {
        Budget {
            fuel: limits.fuel,
            time: limits.timeout,
        }
    }
}

/// The running average cost of one clean message at one stage instance.
#[derive(Debug, Default, Clone)]
pub(crate) struct Costs {
    /// Seconds and fuel per message; `None` until a clean call was seen.
    per_message: Option<(f64, f64)>,
}

impl Costs {
    /// Record a call that succeeded for `n` messages.
    pub(crate) fn observe(&mut self, n: usize, time: Duration, fuel: u64) {
        let n = n.max(1) as f64;
        let seen = (time.as_secs_f64() / n, fuel as f64 / n);
        self.per_message = Some(match self.per_message {
            None => seen,
            Some((t, f)) => (t + ALPHA * (seen.0 - t), f + ALPHA * (seen.1 - f)),
        });
    }

    /// The budget of a batch call of `n` messages.
    pub(crate) fn batch(&self, limits: &Limits, n: usize) -> Budget {
        let Some((time, fuel)) = self.per_message else {
            return Budget::single(limits);
        };
        let n = n.max(1) as f64;
        let limit_time = limits.timeout.as_secs_f64();
        let limit_fuel = limits.fuel as f64;
        let time = (HEADROOM * n * time).clamp(FLOOR * limit_time, n * limit_time);
        let fuel = (HEADROOM * n * fuel).clamp(FLOOR * limit_fuel, n * limit_fuel);
        Budget {
            fuel: (fuel as u64).max(1),
            time: Duration::from_secs_f64(time),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            fuel: 1_000_000,
            timeout: Duration::from_secs(1),
            ..Limits::default()
        }
    }

    #[test]
    fn a_batch_gets_one_limit_until_a_clean_call_was_seen() {
        assert_eq!(
            Costs::default().batch(&limits(), 32),
            Budget::single(&limits())
        );
    }

    #[test]
    fn a_batch_of_cheap_messages_gets_the_floor_not_n_limits() {
        let mut costs = Costs::default();
        costs.observe(32, Duration::from_micros(64), 3_200);
        let b = costs.batch(&limits(), 32);
        assert_eq!(b.time, Duration::from_millis(50), "1/20 of the 1 s limit");
        assert_eq!(b.fuel, 50_000);
    }

    #[test]
    fn a_batch_of_costly_messages_gets_headroom_up_to_n_limits() {
        let mut costs = Costs::default();
        costs.observe(1, Duration::from_millis(100), 200_000);
        let b = costs.batch(&limits(), 4);
        assert_eq!(b.time, Duration::from_secs_f64(3.2), "8 x 4 x 100 ms");
        assert_eq!(b.fuel, 4_000_000, "capped at 4 limits");
    }

    #[test]
    fn the_average_follows_the_costs() {
        let mut costs = Costs::default();
        costs.observe(1, Duration::from_millis(10), 10);
        for _ in 0..50 {
            costs.observe(1, Duration::from_millis(1), 1);
        }
        let (t, f) = costs.per_message.unwrap();
        assert!((t - 0.001).abs() < 1e-4 && (f - 1.0).abs() < 0.1, "{t} {f}");
    }
}
