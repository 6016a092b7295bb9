//! Time as the engine sees it, injectable so retry/backoff tests can run on
//! virtual time.

use std::time::{Duration, SystemTime};

/// Wall-clock time, and the waits of a worker thread with parked retries.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
    /// Wait until `duration` has passed or something arrived, whichever is
    /// first; true if something arrived. `arrive(limit)` blocks the calling
    /// (worker) thread for at most `limit` of real time and says whether
    /// something came. The system clock hands it the whole `duration`; a
    /// virtual clock looks briefly, then moves its own time on.
    fn wait(&self, duration: Duration, arrive: &mut dyn FnMut(Duration) -> bool) -> bool;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn wait(&self, duration: Duration, arrive: &mut dyn FnMut(Duration) -> bool) -> bool {
        arrive(duration)
    }
}
