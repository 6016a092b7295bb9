//! A queue's messages taken back for `sluice dlq` on a `rabbitmq` DLQ:
//! `basic.get` without acking on a channel kept open; the ones to remove
//! are acked, and closing the channel puts every other one back in its
//! queue (marked redelivered; RabbitMQ keeps their place). A consumer on
//! the DLQ meanwhile gets them later. The queue read is the one the DLQ's
//! routing key names (what `declare_queue` declares); behind another
//! exchange, bind it so.

use super::source::message_of;
use super::{connect_at_start, AmqpSinkConfig};
use crate::dlq::DeadLetterQueue;
use crate::ConnectError;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use sluice_core::Message;

/// The queue the DLQ sink `name` with config `c` routes to, opened.
///
/// # Errors
/// RabbitMQ cannot be reached.
pub(crate) async fn open_dlq(
    c: &AmqpSinkConfig,
    name: &str,
) -> Result<Box<dyn DeadLetterQueue>, ConnectError> {
    let queue = c.routing_key.clone().unwrap_or_else(|| name.to_string());
    let what = format!("rabbitmq DLQ `{queue}`");
    let connection = connect_at_start(&what, &c.endpoint(), c.connect_timeout.0).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| ConnectError::Unreachable(format!("{what}: {e}")))?;
    Ok(Box::new(QueueDlq {
        what,
        queue,
        connection,
        channel,
        tags: Vec::new(),
    }))
}

struct QueueDlq {
    what: String,
    queue: String,
    connection: lapin::Connection,
    channel: lapin::Channel,
    /// The delivery tag of each message taken.
    tags: Vec<u64>,
}

#[async_trait::async_trait]
impl DeadLetterQueue for QueueDlq {
    async fn take(&mut self, limit: usize) -> Result<Vec<(String, Message)>, ConnectError> {
        let mut read = Vec::new();
        while read.len() < limit {
            let got = self
                .channel
                .basic_get(
                    self.queue.as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .map_err(|e| ConnectError::Unreachable(format!("{}: {e}", self.what)))?;
            let Some(got) = got else { break };
            let delivery = got.delivery;
            self.tags.push(delivery.delivery_tag);
            let at = format!("queue={} n={}", self.queue, self.tags.len());
            read.push((
                at,
                message_of(&delivery.properties, delivery.data, &self.queue),
            ));
        }
        Ok(read)
    }

    async fn finish(self: Box<Self>, remove: &[usize]) -> Result<(), ConnectError> {
        let mut result = Ok(());
        for tag in remove.iter().filter_map(|i| self.tags.get(*i)) {
            if let Err(e) = self
                .channel
                .basic_ack(*tag, BasicAckOptions { multiple: false })
                .await
            {
                result = Err(ConnectError::Unreachable(format!(
                    "{}: cannot remove a replayed message: {e}",
                    self.what
                )));
                break;
            }
        }
        // Unacked, the rest go back to the queue with the channel.
        let _ = self.channel.close(200, "taken back".into()).await;
        let _ = self.connection.close(200, "taken back".into()).await;
        result
    }
}
