//! Acks that cross to a connector's own task. [`Acker`] calls must not
//! block, but broker acks are network calls: a [`ChannelAcker`] sends the
//! connector's token for the delivery (an entry id, a receipt handle, a
//! lapin acker) to the connector's settle task. Dropped unsettled (the
//! engine gave the delivery back), it reports the token as released.

use sluice_core::{Acker, Message};
use std::time::Duration;
use tokio::sync::mpsc;

/// How a delivery ended, with the connector's token for it.
pub(crate) enum Settled<T> {
    /// Finished and confirmed: acknowledge it to the broker.
    Done(T),
    /// Given back unfinished: let the broker redeliver it.
    Released(T),
    /// A retryable failure in a pipeline that retries through the broker:
    /// bring it back later ([`Acker::retry_later`]). Connectors that cannot
    /// treat it as [`Settled::Released`] (the config refuses them anyway).
    Later(T, Later),
}

/// What [`Acker::retry_later`] was asked.
pub(crate) struct Later {
    pub message: Message,
    /// The attempt that failed; the message comes back as `attempt + 1`.
    pub attempt: u32,
    pub delay: Duration,
}

pub(crate) struct ChannelAcker<T: Send + 'static> {
    token: Option<T>,
    tx: mpsc::UnboundedSender<Settled<T>>,
}

impl<T: Send + 'static> ChannelAcker<T> {
    pub fn new(token: T, tx: &mpsc::UnboundedSender<Settled<T>>) -> Self {
        ChannelAcker {
            token: Some(token),
            tx: tx.clone(),
        }
    }
}

impl<T: Send + 'static> Acker for ChannelAcker<T> {
    fn ack(mut self: Box<Self>) {
        if let Some(t) = self.token.take() {
            let _ = self.tx.send(Settled::Done(t));
        }
    }

    fn retry_later(mut self: Box<Self>, message: &Message, attempt: u32, delay: Duration) {
        if let Some(t) = self.token.take() {
            let _ = self.tx.send(Settled::Later(
                t,
                Later {
                    message: message.clone(),
                    attempt,
                    delay,
                },
            ));
        }
    }
}

impl<T: Send + 'static> Drop for ChannelAcker<T> {
    fn drop(&mut self) {
        if let Some(t) = self.token.take() {
            let _ = self.tx.send(Settled::Released(t));
        }
    }
}

/// How long a stopping source waits for the pipeline to finish the
/// deliveries it holds, so they can be acknowledged. What is not finished by
/// then is redelivered by the broker after the restart.
pub(crate) const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Wait until `busy` turns false, at most [`DRAIN`].
pub(crate) async fn drained(mut busy: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + DRAIN;
    while busy() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
