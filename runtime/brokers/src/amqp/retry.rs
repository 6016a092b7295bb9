//! Retries through RabbitMQ (a pipeline's `retry.republish`): the spec's
//! dead-letter pattern, done by the host.
//!
//! A delivery whose stage failed with a retryable error is published to a
//! delay queue `QUEUE.retry.<ms>ms` with its attempt count in the header
//! `x-retry-count`; once the broker has confirmed that publish, the original
//! delivery is acked. The delay queue has no consumer: its `x-message-ttl`
//! is the delay, and on expiry RabbitMQ dead-letters the message through the
//! default exchange back to `QUEUE`. The source reads `x-retry-count` back
//! into [`Message::attempt`], so the stage's `retry.attempts` budget spans
//! the round trips and the last attempt dead-letters to the pipeline's DLQ.
//!
//! One queue per delay rather than a per-message expiration in one queue:
//! RabbitMQ expires messages only at the head of a queue, so a 4 s retry
//! would hold back a 1 s one queued behind it. The delays are the
//! un-jittered backoff, so a policy needs at most `attempts - 1` queues.
//! Each is declared again before every publish, with `x-expires` = delay +
//! 60 s, so a delay queue no longer used deletes itself once it is empty
//! for good.

use super::{connect, properties};
use crate::settle::Later;
pub(super) use crate::settle::{attempt_from, RETRY_COUNT_HEADER};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Confirmation};
use std::time::Duration;

/// How long an unused delay queue outlives its delay.
const EXPIRES_AFTER: Duration = Duration::from_secs(60);

/// Publishes retries to the delay queues of one source queue, on a
/// connection of its own (opened at the first retry, replaced after a
/// failure).
pub(super) struct Republisher {
    at: super::Endpoint,
    timeout: Duration,
    queue: String,
    link: Option<(lapin::Connection, Channel)>,
}

impl Republisher {
    pub(super) fn new(at: super::Endpoint, timeout: Duration, queue: &str) -> Self {
        Republisher {
            at,
            timeout,
            queue: queue.to_owned(),
            link: None,
        }
    }

    /// The delay queue for `delay`.
    pub(super) fn delay_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}ms", self.queue, delay.as_millis())
    }

    /// Publish `later.message` for a retry after `later.delay` and wait for
    /// the broker's confirm.
    ///
    /// # Errors
    /// The broker is unreachable, refused the declare, or did not confirm;
    /// the caller gives the delivery back instead.
    pub(super) async fn republish(&mut self, later: &Later) -> Result<String, String> {
        let result = self.try_republish(later).await;
        if result.is_err() {
            self.link = None;
        }
        result
    }

    async fn try_republish(&mut self, later: &Later) -> Result<String, String> {
        if self
            .link
            .as_ref()
            .is_none_or(|(conn, ch)| !conn.status().connected() || !ch.status().connected())
        {
            let conn = connect(&self.at, self.timeout).await?;
            let channel = conn.create_channel().await.map_err(|e| e.to_string())?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            self.link = Some((conn, channel));
        }
        let name = self.delay_queue(later.delay);
        let (_, channel) = self.link.as_ref().expect("connected above");
        let ttl = i64::try_from(later.delay.as_millis()).unwrap_or(i64::MAX);
        let mut args = FieldTable::default();
        args.insert(
            ShortString::from("x-message-ttl"),
            AMQPValue::LongLongInt(ttl),
        );
        args.insert(
            ShortString::from("x-expires"),
            AMQPValue::LongLongInt(ttl.saturating_add(EXPIRES_AFTER.as_millis() as i64)),
        );
        args.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from("")),
        );
        args.insert(
            ShortString::from("x-dead-letter-routing-key"),
            AMQPValue::LongString(LongString::from(self.queue.as_bytes())),
        );
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(name.as_str().into(), options, args)
            .await
            .map_err(|e| format!("declaring {name}: {e}"))?;

        let mut message = later.message.clone();
        // RabbitMQ's own dead-letter bookkeeping is set again on the way
        // back; our copy of it is text, not the table it was.
        message.headers.retain(|(n, _)| {
            n != RETRY_COUNT_HEADER
                && n != "x-death"
                && !n.starts_with("x-first-death-")
                && !n.starts_with("x-last-death-")
        });
        let mut props = properties(&message, true);
        let mut headers = props.headers().clone().unwrap_or_default();
        headers.insert(
            ShortString::from(RETRY_COUNT_HEADER),
            AMQPValue::LongLongInt(i64::from(later.attempt)),
        );
        props = props.with_headers(headers);
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let confirm = channel
            .basic_publish(
                "".into(),
                name.as_str().into(),
                options,
                &message.payload,
                props,
            )
            .await
            .map_err(|e| e.to_string())?;
        match confirm.await.map_err(|e| e.to_string())? {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(name),
            Confirmation::Ack(Some(returned)) => Err(format!(
                "{name} returned the message: {}",
                returned.reply_text.as_str()
            )),
            Confirmation::Nack(_) => Err(format!("the broker nacked the retry to {name}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_is_one_more_than_the_retry_count() {
        assert_eq!(attempt_from(None), 1);
        assert_eq!(attempt_from(Some(b"0")), 1);
        assert_eq!(attempt_from(Some(b"2")), 3);
        assert_eq!(attempt_from(Some(b"not a number")), 1);
    }

    #[test]
    fn each_delay_has_its_own_queue() {
        let at = super::super::Endpoint {
            url: "amqp://x".into(),
            password_env: None,
            tls: None,
        };
        let r = Republisher::new(at, Duration::from_secs(1), "orders");
        assert_eq!(
            r.delay_queue(Duration::from_millis(1500)),
            "orders.retry.1500ms"
        );
        assert_ne!(
            r.delay_queue(Duration::from_secs(1)),
            r.delay_queue(Duration::from_secs(2))
        );
    }
}
