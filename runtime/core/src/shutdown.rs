//! The stop signal every source and the engine get, with the one drain
//! deadline that goes with it (Vector's `shutdown_all(deadline)`): whoever
//! asks for the stop says until when what is in flight may finish, and
//! every part stops waiting at that same instant.
//!
//! ```
//! # use sluice_core::Shutdown;
//! # use std::time::Duration;
//! let process = Shutdown::new(Duration::from_secs(120)); // --drain-timeout
//! let pipeline = process.child(); // stopped with the process, or alone
//! pipeline.cancel(); // a reload restarts this pipeline: its own deadline
//! assert!(pipeline.is_cancelled() && !process.is_cancelled());
//! assert!(pipeline.drain_deadline() > std::time::Instant::now());
//! ```

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// How long a drain may take when nobody said (the daemon always says:
/// `--drain-timeout`, whose default is the same 30 s).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// A cancellation token and the drain deadline set when it is cancelled.
/// Cheap to clone; clones share both.
#[derive(Debug, Clone)]
pub struct Shutdown {
    token: CancellationToken,
    /// Set once, when this stop (not the parent's) is asked for.
    deadline: Arc<OnceLock<Instant>>,
    parent: Option<Arc<Shutdown>>,
    drain: Duration,
}

impl Shutdown {
    /// Not cancelled yet; a stop asked for with [`Shutdown::cancel`] may
    /// drain for `drain`.
    pub fn new(drain: Duration) -> Self {
        Shutdown::from_token(CancellationToken::new(), drain)
    }

    fn from_token(token: CancellationToken, drain: Duration) -> Self {
        Shutdown {
            token,
            deadline: Arc::default(),
            parent: None,
            drain,
        }
    }

    /// A shutdown cancelled with this one (and then given its deadline), or
    /// on its own, e.g. one pipeline restarted by a reload.
    pub fn child(&self) -> Shutdown {
        Shutdown {
            token: self.token.child_token(),
            deadline: Arc::default(),
            parent: Some(Arc::new(self.clone())),
            drain: self.drain,
        }
    }

    /// Ask for the stop now: the drain may take the drain timeout from now.
    pub fn cancel(&self) {
        self.cancel_by(Instant::now() + self.drain);
    }

    /// Ask for the stop, with what is in flight to be finished by `deadline`.
    /// A second call keeps the first deadline.
    pub fn cancel_by(&self, deadline: Instant) {
        let _ = self.deadline.set(deadline);
        self.token.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the stop was asked for (here or in a parent).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// The drain timeout this shutdown was made with.
    pub fn drain_timeout(&self) -> Duration {
        self.drain
    }

    /// The deadline the stop was asked with, if it was.
    pub fn deadline(&self) -> Option<Instant> {
        if !self.is_cancelled() {
            return None;
        }
        let inherited = self.parent.as_ref().and_then(|p| p.deadline());
        // The earlier of its own and the parent's: a pipeline restarted by a
        // reload and then caught by SIGTERM stops at whichever comes first.
        let own = self.deadline.get().copied();
        match (own, inherited) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (Some(a), None) | (None, Some(a)) => Some(a),
            // Cancelled through the bare token (code that holds only the
            // CancellationToken): the drain starts when someone first asks.
            (None, None) => Some(*self.deadline.get_or_init(|| Instant::now() + self.drain)),
        }
    }

    /// Until when a drain that starts now may wait: the stop's deadline, or
    /// the drain timeout from now when no stop was asked for (a source that
    /// ends by itself and settles what it holds).
    pub fn drain_deadline(&self) -> Instant {
        self.deadline()
            .unwrap_or_else(|| Instant::now() + self.drain)
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new(DEFAULT_DRAIN)
    }
}

/// For callers that only cancel a token: drains take [`DEFAULT_DRAIN`].
impl From<CancellationToken> for Shutdown {
    fn from(token: CancellationToken) -> Self {
        Shutdown::from_token(token, DEFAULT_DRAIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_takes_the_earlier_of_its_own_and_its_parents_deadline() {
        let process = Shutdown::new(Duration::from_secs(120));
        let pipeline = process.child();
        assert_eq!(pipeline.deadline(), None);
        assert_eq!(pipeline.drain_timeout(), Duration::from_secs(120));

        let t0 = Instant::now();
        process.cancel_by(t0 + Duration::from_secs(120));
        assert!(pipeline.is_cancelled());
        assert_eq!(pipeline.deadline(), Some(t0 + Duration::from_secs(120)));

        let restarted = process.child();
        restarted.cancel_by(t0 + Duration::from_secs(5));
        assert_eq!(restarted.deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(process.deadline(), Some(t0 + Duration::from_secs(120)));
    }

    #[test]
    fn the_first_deadline_holds() {
        let s = Shutdown::new(Duration::from_secs(2));
        let t0 = Instant::now();
        s.cancel_by(t0 + Duration::from_secs(2));
        s.cancel_by(t0 + Duration::from_secs(60));
        assert_eq!(s.drain_deadline(), t0 + Duration::from_secs(2));
    }

    #[test]
    fn a_bare_token_cancel_still_gets_one_deadline() {
        let token = CancellationToken::new();
        let s = Shutdown::from(token.clone());
        token.cancel();
        let first = s.deadline().expect("cancelled");
        assert_eq!(s.deadline(), Some(first));
        assert!(first <= Instant::now() + DEFAULT_DRAIN);
    }
}
