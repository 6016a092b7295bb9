//! Acknowledgement handles. Every [`Delivery`](crate::Delivery) carries one;
//! the engine settles it exactly once, after every sink the message went to
//! (or the DLQ) confirmed. Each connector implements [`Acker`] with its own
//! semantics: a Kafka offset tracker, an AMQP `basic_ack`, an SQS delete batch.
//!
//! How each broker connector maps onto this (and onto
//! [`Sink::publish`](crate::Sink::publish) → [`Confirm`](crate::Confirm)):
//!
//! | broker | `Acker::ack` | `Acker::nack` / drop | sink `Confirm` resolves on |
//! |---|---|---|---|
//! | Kafka | mark the offset done in a per-partition tracker; a task commits the highest offset below which all are done | nothing: uncommitted offsets are re-read after a restart or rebalance | the producer's delivery report (`acks=all`) |
//! | RabbitMQ | `basic_ack(delivery_tag)` on the channel it came from | `basic_nack(requeue)` | the publisher confirm (ack; a return/nack is an error) |
//! | Redis streams | `XACK group id` | nothing: the entry stays pending and `XAUTOCLAIM` takes it over | the `XADD` reply |
//! | SQS | queue the receipt handle for `DeleteMessageBatch` | visibility 0: the message is visible again at once | `SendMessageBatch` success for that entry |
//!
//! Ack calls are synchronous and must not block: connectors send to their
//! own task (a channel) and do the broker I/O there.
//!
//! A third way to settle, [`Acker::retry_later`], is for pipelines that
//! retry through the broker (`retry.republish`): the connector makes the
//! message come back after a delay as the next attempt (RabbitMQ: republish
//! to a delay queue with the attempt count in `x-retry-count`, then ack the
//! original; SQS: set the message's visibility timeout to the delay), so no
//! worker sits waiting out a backoff.

use crate::budget::Reserved;
use crate::message::Message;
use std::time::Duration;

/// How a connector settles one delivery with its broker.
pub trait Acker: Send + 'static {
    /// The message is done: delivered or dead-lettered, and confirmed.
    fn ack(self: Box<Self>);
    /// The engine gives the message back without finishing it (shutdown
    /// before it was delivered). The broker should redeliver it. The default
    /// does nothing, which for most brokers means "redeliver after timeout".
    fn nack(self: Box<Self>) {}
    /// A stage failed with a retryable error on attempt `attempt`: have the
    /// broker deliver `message` again after `delay`, marked as attempt
    /// `attempt + 1`, and settle this delivery. Only called for sources that
    /// can ([`Source::republishes_retries`](crate::Source::republishes_retries)).
    /// The default gives the message back at once ([`nack`](Acker::nack)).
    fn retry_later(self: Box<Self>, message: &Message, attempt: u32, delay: Duration) {
        let _ = (message, attempt, delay);
        self.nack()
    }
}

/// An owned, settle-once handle. Dropping it without settling does nothing,
/// so an unfinished message stays unacknowledged and the broker redelivers.
/// It also holds the delivery's share of the pipeline's byte budget, given
/// back when the handle is settled or dropped.
pub struct AckHandle {
    acker: Option<Box<dyn Acker>>,
    reserved: Option<Reserved>,
}

impl AckHandle {
    pub fn new(acker: impl Acker) -> Self {
        AckHandle {
            acker: Some(Box::new(acker)),
            reserved: None,
        }
    }

    /// For sources with nothing to acknowledge (stdin, a file read once).
    pub fn none() -> Self {
        AckHandle {
            acker: None,
            reserved: None,
        }
    }

    /// Hold `reserved` until this handle is settled or dropped (replacing
    /// what it held before).
    pub(crate) fn hold(&mut self, reserved: Reserved) {
        self.reserved = Some(reserved);
    }

    pub fn ack(mut self) {
        if let Some(acker) = self.acker.take() {
            acker.ack();
        }
    }

    pub fn nack(mut self) {
        if let Some(acker) = self.acker.take() {
            acker.nack();
        }
    }

    /// See [`Acker::retry_later`].
    pub fn retry_later(mut self, message: &Message, attempt: u32, delay: Duration) {
        if let Some(acker) = self.acker.take() {
            acker.retry_later(message, attempt, delay);
        }
    }
}

impl std::fmt::Debug for AckHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.acker.is_some() {
            "AckHandle(pending)"
        } else {
            "AckHandle(none)"
        })
    }
}

/// An acker that runs a closure; handy for connectors and tests.
pub struct FnAcker<F: FnOnce(bool) + Send + 'static>(pub F);

impl<F: FnOnce(bool) + Send + 'static> Acker for FnAcker<F> {
    fn ack(self: Box<Self>) {
        (self.0)(true)
    }
    fn nack(self: Box<Self>) {
        (self.0)(false)
    }
}
