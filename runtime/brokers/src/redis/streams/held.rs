//! The entries a stream source has handed to the engine and not yet acked
//! or released, so that no entry is in the pipeline twice.
//!
//! Reading an entry again is normal: the source re-reads its own pending
//! list after a lost connection, and `XAUTOCLAIM` returns its own entries
//! once they have been held longer than `claim_idle` (a parked or slow
//! message). Those copies are skipped while the first is held. The race is
//! an ack that completes while a read is on the wire: Redis answered with
//! the entry still pending, the ack task then acked it and let it go, and
//! the reply would hand it out a second time. So acks that complete during
//! a read are remembered until its reply has been taken
//! ([`Held::begin_read`] … [`Held::take`]), and such entries are skipped
//! too. An ack that completed before the read was sent cannot be in its
//! reply: Redis runs commands one at a time, and `XACK` removes the entry
//! from the pending list the reads look at.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Shared by a source's reader and its ack task.
#[derive(Clone, Default)]
pub(super) struct Held(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// Taken and not yet acked or released.
    in_flight: HashSet<String>,
    /// Acked since the read on the wire was sent; `None` between reads.
    acked_during_read: Option<HashSet<String>>,
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read is about to be sent.
    pub(super) fn begin_read(&self) {
        self.lock().acked_during_read = Some(HashSet::new());
    }

    /// The read's reply is here: keep the entries (by id) that are neither
    /// held nor acked meanwhile, and hold them. Ends the read.
    pub(super) fn take<T>(&self, entries: Vec<T>, id: impl Fn(&T) -> &str) -> Vec<T> {
        let mut state = self.lock();
        let acked = state.acked_during_read.take().unwrap_or_default();
        entries
            .into_iter()
            .filter(|e| !acked.contains(id(e)) && state.in_flight.insert(id(e).to_string()))
            .collect()
    }

    /// The read failed: nothing of it is taken.
    pub(super) fn end_read(&self) {
        self.lock().acked_during_read = None;
    }

    /// These ids were acked (or are gone from the stream): done.
    pub(super) fn acked<'a>(&self, ids: impl IntoIterator<Item = &'a String>) {
        let mut state = self.lock();
        for id in ids {
            state.in_flight.remove(id);
            if let Some(acked) = &mut state.acked_during_read {
                acked.insert(id.clone());
            }
        }
    }

    /// This id was let go unacked: it stays pending, to be read again.
    pub(super) fn release(&self, id: &str) {
        self.lock().in_flight.remove(id);
    }

    /// How many are held.
    pub(super) fn len(&self) -> usize {
        self.lock().in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn take(held: &Held, v: &[&str]) -> Vec<String> {
        held.take(ids(v), |s| s.as_str())
    }

    #[test]
    fn an_entry_is_taken_once_while_held_and_again_once_released() {
        let held = Held::default();
        held.begin_read();
        assert_eq!(take(&held, &["1-0", "2-0"]), ids(&["1-0", "2-0"]));
        held.begin_read();
        assert_eq!(take(&held, &["1-0", "3-0"]), ids(&["3-0"]));
        held.release("1-0");
        held.begin_read();
        assert_eq!(take(&held, &["1-0"]), ids(&["1-0"]));
        assert_eq!(held.len(), 3);
    }

    #[test]
    fn an_entry_acked_while_a_read_was_on_the_wire_is_not_taken_from_its_reply() {
        let held = Held::default();
        held.begin_read();
        take(&held, &["1-0"]);
        held.begin_read(); // the claim is sent, 1-0 still pending …
        held.acked(&ids(&["1-0"])); // … the ack completes …
        assert_eq!(take(&held, &["1-0", "2-0"]), ids(&["2-0"])); // … the stale copy is skipped
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn acks_before_a_read_do_not_hide_entries_from_it() {
        let held = Held::default();
        held.begin_read();
        take(&held, &["1-0"]);
        held.acked(&ids(&["1-0"]));
        held.begin_read();
        // Redis cannot return an acked entry from a later read, but a
        // re-added id (a new stream after a restart) must get through.
        assert_eq!(take(&held, &["1-0"]), ids(&["1-0"]));
    }
}
