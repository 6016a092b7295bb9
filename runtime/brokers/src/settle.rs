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

/// The spec's retry-count header: failed attempts so far, on a message
/// that comes back through its broker for a retry.
pub const RETRY_COUNT_HEADER: &str = "x-retry-count";

/// The attempt a delivery is on, from its `x-retry-count` header text.
pub(crate) fn attempt_from(retry_count: Option<&[u8]>) -> u32 {
    retry_count
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map_or(1, |failed| failed.saturating_add(1))
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

/// Wait until `busy` turns false, at most until `deadline`: a stopping
/// source lets the pipeline finish the deliveries it holds, so they can be
/// acknowledged, until the drain deadline of the shutdown
/// ([`sluice_core::Shutdown::drain_deadline`], from `--drain-timeout`).
/// What is not finished by then is redelivered by the broker.
pub(crate) async fn drained(deadline: std::time::Instant, mut busy: impl FnMut() -> bool) {
    while busy() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::drained;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_drain_ends_at_the_deadline_it_is_given_not_before() {
        let start = Instant::now();
        drained(start + Duration::from_millis(300), || true).await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn a_drain_ends_as_soon_as_nothing_is_held() {
        let start = Instant::now();
        let mut polls = 0;
        drained(start + Duration::from_secs(120), || {
            polls += 1;
            polls < 3
        })
        .await;
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
