//! The in-flight byte budget of a pipeline, and the [`Outbox`] its source
//! sends deliveries into.
//!
//! The count bounds (`buffer`, `max_in_flight`, a broker's prefetch) say
//! nothing about bytes: two hundred 8 MB messages are 1.6 GB. So every
//! delivery takes its [size](crate::Message::size) out of the pipeline's
//! budget (`max_in_flight_bytes`) before it enters the pipeline, and gives
//! it back when it is settled with its source (acked, given back, handed
//! over for a retry through the broker) or dropped. A source whose
//! delivery waits for room stops reading from its broker; a source that
//! reads ahead in batches sizes its reads by [`Outbox::room`].
//!
//! A message larger than `max_message_bytes` never enters the chain: the
//! outbox refuses it with class `too-large`, so it is dead-lettered with
//! its coordinates and its payload cut to `too_large_keep` bytes.

use crate::dlq::FailureClass;
use crate::message::{Delivery, Refusal};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// The budget counts in KiB, so that `acquire_many`'s `u32` reaches 4 TiB.
const UNIT: u64 = 1024;

/// How many bytes a pipeline may hold, and the largest message it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteLimits {
    /// Bytes of messages received and not yet settled with the source.
    pub max_in_flight_bytes: u64,
    /// A larger message is dead-lettered as `too-large`.
    pub max_message_bytes: u64,
    /// Bytes of a too-large message's payload its dead letter keeps.
    pub too_large_keep: u64,
}

impl Default for ByteLimits {
    fn default() -> Self {
        ByteLimits {
            max_in_flight_bytes: 64 << 20,
            max_message_bytes: 16 << 20,
            too_large_keep: 0,
        }
    }
}

/// One pipeline's budget, shared by its source's outboxes.
#[derive(Debug)]
pub struct Budget {
    limits: ByteLimits,
    permits: Arc<Semaphore>,
    units: u32,
    /// Bytes held now, for `sluice_in_flight_bytes`.
    held: Arc<AtomicU64>,
}

impl Budget {
    /// A budget of `limits`, reporting what it holds into `held`.
    pub fn new(limits: ByteLimits, held: Arc<AtomicU64>) -> Self {
        let units = limits
            .max_in_flight_bytes
            .div_ceil(UNIT)
            .clamp(1, (Semaphore::MAX_PERMITS as u64).min(u32::MAX as u64))
            as u32;
        Budget {
            limits,
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
            held,
        }
    }

    /// Units a message of `bytes` takes: at least one (every delivery has
    /// some overhead), at most the whole budget (a message that is allowed
    /// must fit alone).
    fn units_for(&self, bytes: u64) -> u32 {
        bytes.div_ceil(UNIT).clamp(1, self.units as u64) as u32
    }

    /// Bytes free now.
    pub fn room(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }

    async fn reserve(&self, bytes: u64) -> Reserved {
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(self.units_for(bytes))
            .await
            .expect("the budget's semaphore is never closed");
        self.held.fetch_add(bytes, Relaxed);
        Reserved {
            _permit: permit,
            bytes,
            held: self.held.clone(),
        }
    }

    /// Mark `delivery` refused as too large and cut it down to what its
    /// dead letter keeps.
    fn refuse(&self, delivery: &mut Delivery, bytes: u64) {
        let ByteLimits {
            max_message_bytes: max,
            too_large_keep: keep,
            ..
        } = self.limits;
        let message = &mut delivery.message;
        let payload = message.payload.len();
        message.payload.truncate(keep.min(max) as usize);
        message.payload.shrink_to_fit();
        let mut text = format!(
            "message of {bytes} bytes is larger than max_message_bytes ({max} bytes); the dead letter keeps {} of its {payload} payload bytes",
            message.payload.len()
        );
        if message.size() as u64 > max {
            // Its key and headers alone are too large: keep none of them.
            message.key = None;
            message.headers = Vec::new();
            message.header_types = Vec::new();
            text.push_str(", and no key or headers (they alone are over the limit)");
        }
        delivery.refused = Some(Refusal {
            class: FailureClass::TooLarge,
            text,
        });
    }
}

/// Bytes of the budget held by one delivery; given back when dropped.
#[derive(Debug)]
pub struct Reserved {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    held: Arc<AtomicU64>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Relaxed);
    }
}

/// The pipeline is gone; the delivery was dropped (so its broker
/// redelivers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline is no longer taking deliveries")]
pub struct Closed;

/// Where a source sends its deliveries: a bounded channel into the
/// pipeline, behind the pipeline's byte budget. Clone it for a second
/// reader of the same source (a retry stream).
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Delivery>,
    budget: Arc<Budget>,
}

impl Outbox {
    pub fn new(tx: mpsc::Sender<Delivery>, budget: Arc<Budget>) -> Self {
        Outbox { tx, budget }
    }

    /// An outbox into a new channel of `capacity` with its own budget of
    /// `limits`: for tests and for driving a source without a pipeline.
    pub fn channel(capacity: usize, limits: ByteLimits) -> (Self, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(capacity);
        let budget = Arc::new(Budget::new(limits, Arc::default()));
        (Outbox::new(tx, budget), rx)
    }

    /// Hand `delivery` to the pipeline, waiting for room in the byte budget
    /// and then in the channel. A message over `max_message_bytes` goes in
    /// at once, refused (see the module docs).
    ///
    /// # Errors
    /// [`Closed`] when the pipeline stopped taking deliveries.
    pub async fn send(&self, mut delivery: Delivery) -> Result<(), Closed> {
        let bytes = delivery.message.size() as u64;
        if bytes > self.budget.limits.max_message_bytes {
            self.budget.refuse(&mut delivery, bytes);
        }
        let bytes = delivery.message.size() as u64;
        let reserved = tokio::select! {
            reserved = self.budget.reserve(bytes) => reserved,
            _ = self.tx.closed() => return Err(Closed),
        };
        delivery.ack.hold(reserved);
        self.tx.send(delivery).await.map_err(|_| Closed)
    }

    /// Bytes of budget free now: what a source that reads in batches may
    /// ask its broker for.
    pub fn room(&self) -> u64 {
        self.budget.room()
    }

    /// The limits this outbox applies.
    pub fn limits(&self) -> ByteLimits {
        self.budget.limits
    }
}

/// How many messages a source that reads in batches (Redis `COUNT`, SQS
/// `MaxNumberOfMessages`) asks for: as many as the budget has room for at
/// the average size seen so far, between 1 and the configured batch. One
/// at a time until a message has been seen, so the first read of large
/// messages cannot overshoot.
#[derive(Debug, Clone)]
pub struct ReadAhead {
    most: usize,
    /// Mean message size in bytes, weighted to the recent ones.
    mean: Option<f64>,
}

impl ReadAhead {
    /// Reads of at most `most` messages.
    pub fn new(most: usize) -> Self {
        ReadAhead {
            most: most.max(1),
            mean: None,
        }
    }

    /// A message of `bytes` was read.
    pub fn seen(&mut self, bytes: usize) {
        let bytes = bytes.max(1) as f64;
        self.mean = Some(match self.mean {
            None => bytes,
            Some(mean) => mean + (bytes - mean) / 8.0,
        });
    }

    /// Messages to ask for with `room` bytes free.
    pub fn count(&self, room: u64) -> usize {
        match self.mean {
            None => 1,
            Some(mean) => ((room as f64 / mean) as usize).clamp(1, self.most),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::AckHandle;
    use crate::message::{Coordinates, Message};
    use std::time::Duration;

    fn delivery(bytes: usize) -> Delivery {
        Delivery::new(
            Message::new(vec![7u8; bytes]).with_key("k"),
            Coordinates::default(),
            AckHandle::none(),
        )
    }

    fn outbox(
        limits: ByteLimits,
        channel: usize,
    ) -> (Outbox, mpsc::Receiver<Delivery>, Arc<AtomicU64>) {
        let held = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(channel);
        let budget = Arc::new(Budget::new(limits, held.clone()));
        (Outbox::new(tx, budget), rx, held)
    }

    #[tokio::test]
    async fn a_full_budget_holds_the_source_until_a_delivery_is_settled() {
        let limits = ByteLimits {
            max_in_flight_bytes: 10 * 1024,
            max_message_bytes: 8 * 1024,
            too_large_keep: 0,
        };
        let (out, mut rx, held) = outbox(limits, 100);
        out.send(delivery(4 * 1024 - 1)).await.unwrap();
        out.send(delivery(4 * 1024 - 1)).await.unwrap();
        assert_eq!(held.load(Relaxed), 2 * 4 * 1024);
        assert_eq!(out.room(), 2 * 1024);
        // A third 4 KiB message does not fit until one is settled.
        let third =
            tokio::time::timeout(Duration::from_millis(50), out.send(delivery(4 * 1024 - 1)));
        assert!(third.await.is_err(), "the budget let a third message in");
        let first = rx.recv().await.unwrap();
        first.ack.ack();
        assert_eq!(held.load(Relaxed), 4 * 1024);
        tokio::time::timeout(Duration::from_secs(5), out.send(delivery(4 * 1024 - 1)))
            .await
            .expect("room after the ack")
            .unwrap();
        // Dropping an unsettled delivery gives its bytes back too.
        drop(rx);
        assert_eq!(held.load(Relaxed), 0);
        assert_eq!(out.send(delivery(10)).await, Err(Closed));
    }

    #[tokio::test]
    async fn a_message_over_the_maximum_is_refused_and_cut() {
        let limits = ByteLimits {
            max_in_flight_bytes: 4096,
            max_message_bytes: 1000,
            too_large_keep: 10,
        };
        let (out, mut rx, _) = outbox(limits, 4);
        out.send(delivery(1000 - 1)).await.unwrap();
        out.send(delivery(5000)).await.unwrap();
        let fits = rx.recv().await.unwrap();
        assert!(fits.refused.is_none());
        assert_eq!(fits.message.payload.len(), 999);
        let big = rx.recv().await.unwrap();
        let refusal = big.refused.expect("refused");
        assert_eq!(refusal.class, FailureClass::TooLarge);
        assert!(
            refusal.text.contains("message of 5001 bytes"),
            "{}",
            refusal.text
        );
        assert_eq!(big.message.payload, vec![7u8; 10]);
        assert_eq!(big.message.key.as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn reads_ahead_what_the_room_holds_at_the_mean_size() {
        let mut ahead = ReadAhead::new(100);
        assert_eq!(ahead.count(1 << 30), 1, "one until a size is known");
        ahead.seen(4 << 20);
        assert_eq!(ahead.count(64 << 20), 16);
        assert_eq!(ahead.count(1 << 20), 1, "never less than one");
        for _ in 0..100 {
            ahead.seen(100);
        }
        assert_eq!(ahead.count(64 << 20), 100, "never more than the batch");
    }

    #[tokio::test]
    async fn headers_over_the_maximum_are_dropped_from_the_dead_letter() {
        let limits = ByteLimits {
            max_in_flight_bytes: 4096,
            max_message_bytes: 100,
            too_large_keep: 0,
        };
        let (out, mut rx, _) = outbox(limits, 4);
        let mut d = delivery(1);
        d.message.headers.push(("h".into(), vec![0; 200]));
        out.send(d).await.unwrap();
        let got = rx.recv().await.unwrap();
        assert!(got.message.headers.is_empty() && got.message.key.is_none());
        assert!(got.refused.unwrap().text.contains("no key or headers"));
    }
}
