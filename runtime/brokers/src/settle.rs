//! Acks that cross to a connector's own task. [`Acker`] calls must not
//! block, but broker acks are network calls: a [`ChannelAcker`] sends the
//! connector's token for the delivery (an entry id, a receipt handle, a
//! lapin acker) to the connector's settle task. Dropped unsettled (the
//! engine gave the delivery back), it reports the token as released.

use sluice_core::{Acker, Message};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
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

/// When a retry republished to a retry topic or stream is due, in Unix
/// milliseconds (Kafka and Redis streams; RabbitMQ and SQS delay by
/// themselves).
pub const RETRY_DUE_HEADER: &str = "sluice-retry-due";

/// What [`Acker::retry_later`] was asked.
pub(crate) struct Later {
    pub message: Message,
    /// The attempt that failed; the message comes back as `attempt + 1`.
    pub attempt: u32,
    pub delay: Duration,
}

impl Later {
    /// The message as it is republished to a retry topic or stream: its
    /// headers without an earlier retry count or due time, then
    /// `x-retry-count` (the failed attempts) and `sluice-retry-due`.
    pub fn republished(&self) -> Message {
        let due = (SystemTime::now() + self.delay)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut message = self.message.clone();
        let ours = |name: &str| name == RETRY_COUNT_HEADER || name == RETRY_DUE_HEADER;
        message.headers.retain(|(name, _)| !ours(name));
        message.header_types.retain(|(name, _)| !ours(name));
        message.headers.push((
            RETRY_COUNT_HEADER.into(),
            self.attempt.to_string().into_bytes(),
        ));
        message
            .headers
            .push((RETRY_DUE_HEADER.into(), due.to_string().into_bytes()));
        message
    }
}

/// The time a `sluice-retry-due` value names.
pub(crate) fn due_at(value: Option<&[u8]>) -> Option<SystemTime> {
    let ms = std::str::from_utf8(value?)
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms))
}

/// A message read back from a retry topic or stream: set its attempt from
/// `x-retry-count` and take its due time off; returns when it is due.
pub(crate) fn returned_retry(message: &mut Message) -> Option<SystemTime> {
    let due = due_at(message.header(RETRY_DUE_HEADER));
    message.headers.retain(|(name, _)| name != RETRY_DUE_HEADER);
    message.attempt = attempt_from(message.header(RETRY_COUNT_HEADER));
    due
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
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_republished_retry_carries_its_count_and_due_time_once_and_comes_back_as_the_next_attempt()
    {
        let mut message = Message::new(b"{}".to_vec());
        message.headers = vec![
            ("trace".into(), b"t1".to_vec()),
            (RETRY_COUNT_HEADER.into(), b"1".to_vec()),
            (RETRY_DUE_HEADER.into(), b"0".to_vec()),
        ];
        let later = Later {
            message,
            attempt: 2,
            delay: Duration::from_secs(60),
        };
        let mut back = later.republished();
        let names: Vec<&str> = back.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["trace", RETRY_COUNT_HEADER, RETRY_DUE_HEADER]);
        let due = returned_retry(&mut back).expect("a due time");
        let wait = due
            .duration_since(SystemTime::now())
            .expect("in the future");
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert_eq!(back.attempt, 3);
        assert_eq!(back.header_str(RETRY_COUNT_HEADER).as_deref(), Some("2"));
        assert!(back.header(RETRY_DUE_HEADER).is_none());
    }

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
