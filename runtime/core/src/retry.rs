//! Retry policy: exponential backoff with jitter.

use std::time::Duration;

/// How often and how patiently a retryable failure is retried.
/// Defaults follow the spec: 3 attempts, 1 s initial delay, factor 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first call (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial: Duration,
    /// Each further delay is the previous one times this.
    pub factor: f64,
    /// Upper bound for one delay.
    pub max_delay: Duration,
    /// Relative jitter: each delay is scaled by a random factor in
    /// `[1 - jitter, 1 + jitter]` (then capped at `max_delay`). 0 disables it.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The un-jittered delay after failed attempt `attempt` (1-based).
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exp = self.factor.powi(attempt.saturating_sub(1).min(64) as i32);
        let secs = (self.initial.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// The delay to wait after failed attempt `attempt`, with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let scale = if self.jitter > 0.0 {
            1.0 + self.jitter * (rand::random::<f64>() * 2.0 - 1.0)
        } else {
            1.0
        };
        Duration::from_secs_f64((base * scale).min(self.max_delay.as_secs_f64()).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_caps() {
        let p = RetryPolicy {
            jitter: 0.0,
            max_delay: Duration::from_secs(5),
            ..Default::default()
        };
        let delays: Vec<_> = (1..=5).map(|a| p.delay(a).as_secs_f64()).collect();
        assert_eq!(delays, vec![1.0, 2.0, 4.0, 5.0, 5.0]);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = RetryPolicy::default();
        for _ in 0..1000 {
            let d = p.delay(2).as_secs_f64();
            assert!((1.6..=2.4).contains(&d), "{d}");
        }
    }
}
