//! Time as the engine sees it, injectable so retry/backoff tests can run on
//! virtual time.

use std::time::{Duration, SystemTime};

/// Wall-clock time and blocking sleep for the synchronous stage chain.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
    /// Block the calling (worker) thread.
    fn sleep(&self, duration: Duration);
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration)
    }
}
