//! Which Kafka offsets may be committed.
//!
//! Messages of one partition finish out of order (several workers, sinks of
//! different speed), but Kafka only stores one committed offset per
//! partition: "everything below this is done". [`Offsets`] remembers every
//! offset handed to the engine and, per partition, the highest offset below
//! which all of them are done. That, plus one, is what gets committed.
//!
//! A partition of the retry topic may also be waiting for its next record
//! to be due ([`super::retry`]); that wait goes with the partition on a
//! revoke.
//!
//! Each assignment of a partition gets a fresh epoch. After a revoke, acks
//! of the old epoch still arrive (messages already in the pipeline finish);
//! they are ignored, so this consumer never commits for a partition it no
//! longer owns.

use super::retry::Waiting;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// A partition: topic and partition number.
pub(crate) type Tp = (String, i32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the pipeline.
    Working,
    /// Delivered or dead-lettered, and confirmed.
    Done,
    /// Given back unfinished (shutdown): blocks the commit, not the drain.
    Released,
}

#[derive(Debug)]
struct Partition {
    epoch: u64,
    /// Offsets taken and not yet below the commit point.
    taken: BTreeMap<i64, State>,
    /// The next offset to commit: everything below it is done.
    done_below: Option<i64>,
    /// What was last committed successfully.
    committed: Option<i64>,
    /// Paused until then, to be sought back to this offset (a retry
    /// record not yet due).
    waiting: Option<(i64, Instant)>,
}

/// Per-partition offset bookkeeping for one consumer.
#[derive(Debug, Default)]
pub(crate) struct Offsets {
    partitions: HashMap<Tp, Partition>,
    next_epoch: u64,
    working: usize,
}

impl Offsets {
    /// The partition was assigned to this consumer.
    pub fn assign(&mut self, tp: Tp) {
        self.next_epoch += 1;
        let fresh = Partition {
            epoch: self.next_epoch,
            taken: BTreeMap::new(),
            done_below: None,
            committed: None,
            waiting: None,
        };
        if let Some(old) = self.partitions.insert(tp, fresh) {
            self.working -= old.taken.values().filter(|s| **s == State::Working).count();
        }
    }

    /// The partition was taken away. Returns the offset to commit for it
    /// before it goes, if any work finished since the last commit.
    pub fn revoke(&mut self, tp: &Tp) -> Option<i64> {
        let old = self.partitions.remove(tp)?;
        self.working -= old.taken.values().filter(|s| **s == State::Working).count();
        old.done_below.filter(|d| Some(*d) != old.committed)
    }

    /// A message at `offset` is handed to the engine. Returns the epoch its
    /// ack must carry, or `None` if the partition is not assigned (a message
    /// that was fetched before a revoke): such a message is not delivered.
    pub fn take(&mut self, tp: &Tp, offset: i64) -> Option<u64> {
        let p = self.partitions.get_mut(tp)?;
        p.taken.insert(offset, State::Working);
        self.working += 1;
        Some(p.epoch)
    }

    /// The message is done (`finished`) or given back unfinished.
    pub fn settle(&mut self, tp: &Tp, offset: i64, epoch: u64, finished: bool) {
        let Some(p) = self.partitions.get_mut(tp).filter(|p| p.epoch == epoch) else {
            return; // revoked meanwhile: the new owner re-reads it
        };
        let Some(state) = p.taken.get_mut(&offset).filter(|s| **s == State::Working) else {
            return;
        };
        *state = if finished {
            State::Done
        } else {
            State::Released
        };
        self.working -= 1;
        while let Some(entry) = p.taken.first_entry() {
            if *entry.get() != State::Done {
                break;
            }
            p.done_below = Some(entry.key() + 1);
            entry.remove();
        }
    }

    /// The partition waits (paused) until `until`, then reads again from
    /// `offset`. Ignored if it is not assigned.
    pub fn wait(&mut self, tp: &Tp, offset: i64, until: Instant) {
        if let Some(p) = self.partitions.get_mut(tp) {
            p.waiting = Some((offset, until));
        }
    }

    /// Is the partition waiting? Records fetched from it meanwhile are
    /// not handed out (they are read again after the wait).
    pub fn is_waiting(&self, tp: &Tp) -> bool {
        self.partitions.get(tp).is_some_and(|p| p.waiting.is_some())
    }

    /// When the first wait ends.
    pub fn next_due(&self) -> Option<Instant> {
        self.partitions
            .values()
            .filter_map(|p| p.waiting.map(|(_, until)| until))
            .min()
    }

    /// The waits that are over at `now`, ended.
    pub fn end_waits(&mut self, now: Instant) -> Vec<Waiting> {
        let mut over = Vec::new();
        for (tp, p) in &mut self.partitions {
            if let Some((offset, until)) = p.waiting.filter(|(_, until)| *until <= now) {
                p.waiting = None;
                over.push(Waiting {
                    tp: tp.clone(),
                    offset,
                    until,
                });
            }
        }
        over
    }

    /// Messages handed out and neither done nor released.
    pub fn working(&self) -> usize {
        self.working
    }

    /// Partitions whose commit point moved since the last commit.
    pub fn to_commit(&self) -> Vec<(Tp, i64)> {
        let mut out: Vec<(Tp, i64)> = self
            .partitions
            .iter()
            .filter_map(|(tp, p)| {
                p.done_below
                    .filter(|d| Some(*d) != p.committed)
                    .map(|d| (tp.clone(), d))
            })
            .collect();
        out.sort();
        out
    }

    /// These offsets were committed (only if the partition is still ours
    /// in the same epoch).
    pub fn committed(&mut self, done: &[(Tp, i64)]) {
        for (tp, offset) in done {
            if let Some(p) = self.partitions.get_mut(tp) {
                if p.done_below.is_some_and(|d| d >= *offset) {
                    p.committed = Some(*offset);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("orders".to_string(), p)
    }

    #[test]
    fn commits_only_below_the_first_unfinished_offset() {
        let mut o = Offsets::default();
        o.assign(tp(0));
        let e = (10..15)
            .map(|off| o.take(&tp(0), off).unwrap())
            .collect::<Vec<_>>();
        o.settle(&tp(0), 12, e[2], true);
        o.settle(&tp(0), 11, e[1], true);
        assert!(o.to_commit().is_empty(), "10 is still working");
        o.settle(&tp(0), 10, e[0], true);
        assert_eq!(o.to_commit(), vec![(tp(0), 13)]);
        o.committed(&[(tp(0), 13)]);
        assert!(o.to_commit().is_empty());
        assert_eq!(o.working(), 2);
        o.settle(&tp(0), 14, e[4], true);
        o.settle(&tp(0), 13, e[3], true);
        assert_eq!(o.to_commit(), vec![(tp(0), 15)]);
        assert_eq!(o.working(), 0);
    }

    #[test]
    fn a_released_message_blocks_the_commit_but_not_the_drain() {
        let mut o = Offsets::default();
        o.assign(tp(1));
        let a = o.take(&tp(1), 0).unwrap();
        let b = o.take(&tp(1), 1).unwrap();
        o.settle(&tp(1), 0, a, false);
        o.settle(&tp(1), 1, b, true);
        assert_eq!(o.working(), 0);
        assert!(o.to_commit().is_empty(), "offset 0 was never finished");
    }

    #[test]
    fn acks_from_before_a_revoke_are_ignored() {
        let mut o = Offsets::default();
        o.assign(tp(2));
        let old = o.take(&tp(2), 5).unwrap();
        let finished = o.take(&tp(2), 4).unwrap();
        o.settle(&tp(2), 4, finished, true);
        assert_eq!(
            o.revoke(&tp(2)),
            Some(5),
            "commit what finished before letting go"
        );
        assert_eq!(o.working(), 0);
        assert_eq!(o.take(&tp(2), 6), None, "not ours any more");
        o.assign(tp(2));
        let new = o.take(&tp(2), 5).unwrap();
        o.settle(&tp(2), 5, old, true);
        assert!(o.to_commit().is_empty(), "a stale ack must not commit");
        o.settle(&tp(2), 5, new, true);
        assert_eq!(o.to_commit(), vec![(tp(2), 6)]);
    }

    #[test]
    fn a_waiting_partition_ends_its_wait_when_due_and_a_revoke_ends_it_too() {
        let mut o = Offsets::default();
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(5);
        o.wait(&tp(4), 7, later);
        assert!(!o.is_waiting(&tp(4)), "not assigned: no wait");
        o.assign(tp(4));
        o.assign(tp(5));
        o.wait(&tp(4), 7, later);
        o.wait(&tp(5), 3, now);
        assert_eq!(o.next_due(), Some(now));
        let over = o.end_waits(now);
        assert_eq!(over.len(), 1);
        assert_eq!((over[0].tp.clone(), over[0].offset), (tp(5), 3));
        assert!(o.is_waiting(&tp(4)) && !o.is_waiting(&tp(5)));
        assert_eq!(o.next_due(), Some(later));
        o.revoke(&tp(4));
        assert_eq!(o.next_due(), None, "the wait went with the partition");
    }

    #[test]
    fn a_settle_counts_once() {
        let mut o = Offsets::default();
        o.assign(tp(3));
        let e = o.take(&tp(3), 0).unwrap();
        o.settle(&tp(3), 0, e, true);
        o.settle(&tp(3), 0, e, true);
        assert_eq!(o.working(), 0);
    }
}
