//! A queue's messages read back for `sluice dlq` on a `rabbitmq` DLQ:
//! `basic.get` without acking, then the channel is closed, which puts every
//! message back in its queue (marked redelivered; RabbitMQ keeps their
//! place). A consumer on the DLQ meanwhile would get them later. The queue
//! read is the one the DLQ's routing key names (what `declare_queue`
//! declares); behind another exchange, bind it so.

use super::source::message_of;
use super::{connect_at_start, AmqpSinkConfig};
use crate::ConnectError;
use lapin::options::BasicGetOptions;
use sluice_core::Message;

/// Up to `limit` messages of the queue the DLQ sink `name` with config `c`
/// routes to, each with its position (`queue=Q n=N`).
///
/// # Errors
/// RabbitMQ cannot be reached, or the queue does not exist.
pub(crate) async fn read_back(
    c: &AmqpSinkConfig,
    name: &str,
    limit: usize,
) -> Result<Vec<(String, Message)>, ConnectError> {
    let queue = c.routing_key.clone().unwrap_or_else(|| name.to_string());
    let what = format!("rabbitmq DLQ `{queue}`");
    let conn = connect_at_start(&what, &c.url, c.connect_timeout.0).await?;
    let failed = |e: lapin::Error| ConnectError::Unreachable(format!("{what}: {e}"));
    let channel = conn.create_channel().await.map_err(failed)?;
    let mut read = Vec::new();
    while read.len() < limit {
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(failed)?;
        let Some(got) = got else { break };
        let delivery = got.delivery;
        let at = format!("queue={queue} n={}", read.len() + 1);
        read.push((at, message_of(&delivery.properties, delivery.data, &queue)));
    }
    // Unacked, they go back to the queue with the channel.
    let _ = channel.close(200, "read back".into()).await;
    let _ = conn.close(200, "read back".into()).await;
    Ok(read)
}
