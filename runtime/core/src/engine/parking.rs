//! Per-key parking: in-worker retries that hold up only their own key.
//!
//! A retryable error with attempts left does not make the worker sleep. The
//! message is *parked* until its backoff is over, and every later delivery
//! with the same order key ([`Delivery::order_key`], else the message key)
//! waits behind it, unprocessed, so the key's order holds. Deliveries of
//! every other key go on through the chain meanwhile. When the parked
//! message's time comes it runs through the whole chain again as the next
//! attempt; once it settles (delivered, dropped or dead-lettered), the
//! messages that waited behind it run one at a time, in arrival order, each
//! free to park in turn.
//!
//! Everything in the lot is unacknowledged, so a crash loses nothing (the
//! broker redelivers it), and the lot is bounded: when it holds `capacity`
//! deliveries the worker takes no new input until one of them is settled.

use crate::message::Delivery;
use std::cmp::Reverse;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::SystemTime;

/// What orders a delivery against the others in the lot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Key {
    /// Deliveries with the same order key or message key.
    Ordered(u64),
    /// A keyless delivery: ordered against nothing, it parks alone.
    Alone(u64),
}

/// A delivery taken out of the lot (or let through it) to run the chain.
pub(super) struct Taken {
    pub(super) delivery: Delivery,
    /// Set when it came out of the lot: its key's place is held until it
    /// is settled ([`ParkingLot::settled`]).
    pub(super) key: Option<Key>,
}

/// One key's place in the lot: the delivery parked for its retry (`None`
/// while it, or the next one, is running the chain) and those behind it.
struct Place {
    parked: Option<Delivery>,
    behind: VecDeque<Delivery>,
    /// When the running or parked delivery first failed.
    first_failure: Option<SystemTime>,
}

pub(super) struct ParkingLot {
    places: HashMap<Key, Place>,
    /// When each parked delivery is due, earliest first.
    due: BinaryHeap<Reverse<(SystemTime, u64, Key)>>,
    /// Deliveries whose turn has come (they waited behind a settled one).
    ready: VecDeque<(Key, Delivery)>,
    held: usize,
    capacity: usize,
    /// For keyless keys and the heap's tie-break.
    seq: u64,
}

impl ParkingLot {
    pub(super) fn new(capacity: usize) -> Self {
        ParkingLot {
            places: HashMap::new(),
            due: BinaryHeap::new(),
            ready: VecDeque::new(),
            held: 0,
            capacity: capacity.max(1),
            seq: 0,
        }
    }

    /// Nothing parked, waiting or running out of the lot.
    pub(super) fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Room for more: below capacity, the worker may take new input.
    pub(super) fn has_room(&self) -> bool {
        self.held < self.capacity
    }

    pub(super) fn key_of(&mut self, delivery: &Delivery) -> Key {
        if let Some(key) = delivery.order_key {
            return Key::Ordered(key);
        }
        match &delivery.message.key {
            Some(key) => {
                let mut hasher = DefaultHasher::new();
                key.hash(&mut hasher);
                Key::Ordered(hasher.finish())
            }
            None => {
                self.seq += 1;
                Key::Alone(self.seq)
            }
        }
    }

    /// A new delivery: back it is, to run now, unless its key has a place
    /// in the lot; then it waits behind.
    pub(super) fn admit(&mut self, delivery: Delivery) -> Option<Delivery> {
        if self.places.is_empty() {
            return Some(delivery);
        }
        let key = self.key_of(&delivery);
        self.wait_behind(key, delivery)
    }

    /// Queue `delivery` behind `key`'s place, if it has one; if not, back it is.
    pub(super) fn wait_behind(&mut self, key: Key, delivery: Delivery) -> Option<Delivery> {
        match self.places.get_mut(&key) {
            Some(place) => {
                place.behind.push_back(delivery);
                self.held += 1;
                None
            }
            None => Some(delivery),
        }
    }

    /// Whether `key` has a place in the lot.
    pub(super) fn holds(&self, key: Key) -> bool {
        self.places.contains_key(&key)
    }

    /// Park `delivery` (already set to its next attempt) until `due`. Its
    /// key's place is made if it has none; `first_failure` is kept from an
    /// earlier park of the same delivery.
    pub(super) fn park(
        &mut self,
        key: Key,
        delivery: Delivery,
        due: SystemTime,
        failed_at: SystemTime,
    ) {
        let place = self.places.entry(key).or_insert_with(|| Place {
            parked: None,
            behind: VecDeque::new(),
            first_failure: None,
        });
        place.first_failure.get_or_insert(failed_at);
        debug_assert!(place.parked.is_none(), "one parked delivery per key");
        place.parked = Some(delivery);
        self.held += 1;
        self.seq += 1;
        self.due.push(Reverse((due, self.seq, key)));
    }

    /// When the next parked delivery is due (now, if one is ready).
    pub(super) fn next_due(&self) -> Option<SystemTime> {
        if !self.ready.is_empty() {
            return Some(SystemTime::UNIX_EPOCH);
        }
        self.due.peek().map(|Reverse((due, ..))| *due)
    }

    /// Up to `max` deliveries whose turn has come by `now`: those that
    /// waited behind a settled one first, then the parked ones now due.
    pub(super) fn take_due(&mut self, now: SystemTime, max: usize) -> Vec<Taken> {
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some((key, delivery)) = self.ready.pop_front() else {
                break;
            };
            self.held -= 1;
            taken.push(Taken {
                delivery,
                key: Some(key),
            });
        }
        while taken.len() < max {
            match self.due.peek() {
                Some(Reverse((due, _, _))) if *due <= now => {}
                _ => break,
            }
            let Some(Reverse((_, _, key))) = self.due.pop() else {
                break;
            };
            if let Some(delivery) = self.places.get_mut(&key).and_then(|p| p.parked.take()) {
                self.held -= 1;
                taken.push(Taken {
                    delivery,
                    key: Some(key),
                });
            }
        }
        taken
    }

    /// When the running delivery of `key` first failed, if it did before.
    pub(super) fn first_failure(&self, key: Key) -> Option<SystemTime> {
        self.places.get(&key).and_then(|p| p.first_failure)
    }

    /// The delivery of `key` that came out of the lot is settled: the next
    /// one behind it gets its turn, or the key leaves the lot.
    pub(super) fn settled(&mut self, key: Key) {
        let Entry::Occupied(mut place) = self.places.entry(key) else {
            return;
        };
        match place.get_mut().behind.pop_front() {
            Some(next) => {
                place.get_mut().first_failure = None;
                self.ready.push_back((key, next));
            }
            None => {
                place.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::AckHandle;
    use crate::message::{Coordinates, Message};
    use std::time::Duration;

    fn delivery(key: &str, n: u32) -> Delivery {
        let mut message = Message::new(n.to_string()).with_key(key);
        message.attempt = 1;
        Delivery::new(message, Coordinates::default(), AckHandle::none())
    }

    fn payloads(taken: &[Taken]) -> Vec<String> {
        taken
            .iter()
            .map(|t| String::from_utf8_lossy(&t.delivery.message.payload).into_owned())
            .collect()
    }

    #[test]
    fn a_parked_key_holds_only_its_own_later_messages_in_order() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut lot = ParkingLot::new(100);
        assert!(
            lot.admit(delivery("a", 1)).is_some(),
            "an empty lot lets all through"
        );
        let a1 = delivery("a", 1);
        let key = lot.key_of(&a1);
        lot.park(key, a1, t0 + Duration::from_secs(1), t0);
        assert!(lot.admit(delivery("a", 2)).is_none(), "a2 waits behind a1");
        assert!(lot.admit(delivery("b", 1)).is_some(), "b goes on");
        assert!(lot.admit(delivery("a", 3)).is_none());
        assert!(lot.take_due(t0, 10).is_empty(), "a1 is not due yet");
        assert_eq!(lot.next_due(), Some(t0 + Duration::from_secs(1)));

        let due = lot.take_due(t0 + Duration::from_secs(1), 10);
        assert_eq!(payloads(&due), ["1"]);
        assert!(
            lot.admit(delivery("a", 4)).is_none(),
            "running a1 still holds a"
        );
        assert_eq!(lot.first_failure(key), Some(t0));
        lot.settled(key);
        // One at a time: a2 might park again, and a3 must stay behind it.
        let next = lot.take_due(t0, 10);
        assert_eq!(payloads(&next), ["2"]);
        assert_eq!(lot.first_failure(key), None, "a2 never failed");
        lot.settled(key);
        assert_eq!(payloads(&lot.take_due(t0, 10)), ["3"]);
        lot.settled(key);
        assert_eq!(payloads(&lot.take_due(t0, 10)), ["4"]);
        lot.settled(key);
        assert!(lot.is_empty());
        assert!(lot.has_room());
    }

    #[test]
    fn keyless_messages_park_alone_and_the_lot_is_bounded() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut lot = ParkingLot::new(2);
        let plain = |n: u32| {
            Delivery::new(
                Message::new(n.to_string()),
                Coordinates::default(),
                AckHandle::none(),
            )
        };
        let first = plain(1);
        let key = lot.key_of(&first);
        lot.park(key, first, t0 + Duration::from_secs(2), t0);
        assert!(lot.admit(plain(2)).is_some(), "keyless: waits for no one");
        let second = plain(3);
        let key2 = lot.key_of(&second);
        assert_ne!(key, key2);
        lot.park(key2, second, t0 + Duration::from_secs(1), t0);
        assert!(!lot.has_room());
        assert_eq!(
            payloads(&lot.take_due(t0 + Duration::from_secs(5), 10)),
            ["3", "1"],
            "earliest due first"
        );
    }
}
