//! Claims: how a stage lets only one copy of a message through at a time.
//!
//! The built-in `dedupe` stage (sluice-state) claims a message's id when
//! the message enters it. The claim travels with the message's outcome: the
//! engine *completes* it once every sink confirmed the message (the id is
//! then recorded as delivered, before the source is acknowledged), and
//! *releases* it in every other case (dropped further down, dead-lettered,
//! retried, handed back to the source), so a later copy may go. A claim
//! dropped without either is released; one left behind by a crash ends at
//! its store's time-to-live.
//!
//! ```text
//! dedupe stage: claim(id) ─▶ … ─▶ sinks confirm ─▶ complete(id) ─▶ ack
//!                    └─ not delivered ─▶ release(id)
//! ```

use futures::future::BoxFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Where claims are kept: implemented by the stores of sluice-state.
pub trait ClaimStore: Send + Sync + 'static {
    /// Record `id` as delivered, ending the claim `token` holds on it.
    fn complete(&self, id: &[u8], token: u64) -> BoxFuture<'static, Result<(), String>>;
    /// Give the claim up without recording anything. Must not block.
    fn release(&self, id: &[u8], token: u64);
}

/// One held claim. Clones share it; it is settled once, by
/// [`Claim::complete`] or by dropping the last clone (a release).
#[derive(Clone)]
pub struct Claim(Arc<Held>);

struct Held {
    store: Arc<dyn ClaimStore>,
    id: Vec<u8>,
    token: u64,
    settled: AtomicBool,
}

impl Claim {
    pub fn new(store: Arc<dyn ClaimStore>, id: Vec<u8>, token: u64) -> Self {
        Claim(Arc::new(Held {
            store,
            id,
            token,
            settled: AtomicBool::new(false),
        }))
    }

    /// The claimed id.
    pub fn id(&self) -> &[u8] {
        &self.0.id
    }

    /// Record the id as delivered.
    ///
    /// # Errors
    /// The store's reason when it could not record it: a later copy of the
    /// message may then pass.
    pub async fn complete(self) -> Result<(), String> {
        if self.0.settled.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.0.store.complete(&self.0.id, self.0.token).await
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !*self.settled.get_mut() {
            self.store.release(&self.id, self.token);
        }
    }
}

impl PartialEq for Claim {
    fn eq(&self, other: &Claim) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Claim {}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Claim({})", String::from_utf8_lossy(&self.0.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl ClaimStore for Log {
        fn complete(&self, id: &[u8], token: u64) -> BoxFuture<'static, Result<(), String>> {
            self.0
                .lock()
                .unwrap()
                .push(format!("complete {} {token}", String::from_utf8_lossy(id)));
            Box::pin(async { Ok(()) })
        }
        fn release(&self, id: &[u8], token: u64) {
            self.0
                .lock()
                .unwrap()
                .push(format!("release {} {token}", String::from_utf8_lossy(id)));
        }
    }

    #[test]
    fn a_claim_is_settled_once_completed_or_released_by_its_last_clone() {
        let log = Arc::new(Log::default());
        let a = Claim::new(log.clone(), b"a".to_vec(), 1);
        let copy = a.clone();
        futures::executor::block_on(a.complete()).unwrap();
        drop(copy);
        let b = Claim::new(log.clone(), b"b".to_vec(), 2);
        let b2 = b.clone();
        drop(b);
        assert_eq!(log.0.lock().unwrap().len(), 1, "a clone still holds b");
        drop(b2);
        assert_eq!(*log.0.lock().unwrap(), ["complete a 1", "release b 2"]);
    }
}
