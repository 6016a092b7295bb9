//! Redis Pub/Sub: at-most-once by nature. The source has nothing to
//! acknowledge (a message is gone once published); while the connection is
//! down, messages published meanwhile are lost. The sink publishes the
//! payload only: Pub/Sub messages have no key and no headers.

use super::writer::Writer;
use super::{client, connect_at_start, PubsubSinkConfig, PubsubSourceConfig};
use crate::redacted;
use crate::{ConnectError, RECONNECT};
use futures::StreamExt;
use sluice_core::Outbox;
use sluice_core::{
    AckHandle, Confirm, Coordinates, Delivery, Message, Sink, SinkError, Source, SourceError,
};
use sluice_core::{Health, Shutdown};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(super) struct PubsubSource {
    client: redis::Client,
    pubsub: Option<redis::aio::PubSub>,
    config: PubsubSourceConfig,
    health: Health,
}

impl PubsubSource {
    pub(super) async fn connect(c: &PubsubSourceConfig) -> Result<Self, ConnectError> {
        let what = "redis-pubsub source";
        let client = client(what, &c.endpoint())?;
        // Check the server answers before subscribing.
        connect_at_start(
            what,
            &client,
            &c.url,
            c.connect_timeout.0,
            Some(c.connect_timeout.0),
        )
        .await?;
        let pubsub = subscribe(&client, c).await.map_err(|e| {
            ConnectError::Unreachable(format!(
                "{what}: cannot subscribe at {}: {e}",
                redacted(&c.url)
            ))
        })?;
        let mut source = PubsubSource {
            client,
            pubsub: Some(pubsub),
            config: c.clone(),
            health: Health::new(String::new()),
        };
        source.health = Health::new(source.name());
        Ok(source)
    }

    fn name(&self) -> String {
        let mut all = self.config.channels.clone();
        all.extend(self.config.patterns.iter().cloned());
        format!("redis-pubsub:{}", all.join(","))
    }
}

async fn subscribe(
    client: &redis::Client,
    c: &PubsubSourceConfig,
) -> redis::RedisResult<redis::aio::PubSub> {
    let timeout = c.connect_timeout.0;
    let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    for channel in &c.channels {
        pubsub.subscribe(channel).await?;
    }
    for pattern in &c.patterns {
        pubsub.psubscribe(pattern).await?;
    }
    Ok(pubsub)
}

#[async_trait::async_trait]
impl Source for PubsubSource {
    fn describe(&self) -> String {
        self.name()
    }

    fn health(&self) -> Option<Health> {
        Some(self.health.clone())
    }

    async fn run(mut self: Box<Self>, out: Outbox, shutdown: Shutdown) -> Result<(), SourceError> {
        let name = self.name();
        let mut attempt = 0;
        loop {
            let pubsub = match self.pubsub.take() {
                Some(p) => p,
                None => {
                    attempt += 1;
                    let delay = RECONNECT.delay(attempt);
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    match subscribe(&self.client, &self.config).await {
                        Ok(p) => {
                            tracing::info!(source = %name, "resubscribed; messages published while disconnected are lost (Pub/Sub is at-most-once)");
                            self.health.up();
                            p
                        }
                        Err(e) => {
                            tracing::warn!(source = %name, error = %e, ?delay, "Redis unreachable; retrying");
                            self.health.down(&e);
                            continue;
                        }
                    }
                }
            };
            attempt = 0;
            let mut messages = pubsub.into_on_message();
            loop {
                let msg = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    msg = messages.next() => msg,
                };
                let Some(msg) = msg else {
                    tracing::warn!(source = %name, "Pub/Sub connection lost; reconnecting");
                    self.health.down("Pub/Sub connection lost");
                    break;
                };
                let channel = msg.get_channel_name().to_string();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO);
                let message = Message {
                    payload: msg.get_payload_bytes().to_vec(),
                    source: channel.clone(),
                    timestamp_ms: Some(now.as_millis() as u64),
                    ..Message::new(Vec::new())
                };
                let delivery = Delivery::new(
                    message,
                    Coordinates::default().with("channel", channel),
                    AckHandle::none(),
                );
                tokio::select! {
                    sent = out.send(delivery) => if sent.is_err() { return Ok(()) },
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    }
}

/// `PUBLISH channel payload`; confirmed by the reply (the message reached
/// the server, not necessarily any subscriber).
pub(super) struct PubsubSink {
    writer: Writer,
    channel: String,
}

impl PubsubSink {
    pub(super) async fn connect(c: &PubsubSinkConfig, name: &str) -> Result<Self, ConnectError> {
        let channel = c.channel.clone().unwrap_or_else(|| name.to_string());
        let what = format!("redis-pubsub sink `{channel}`");
        let client = client(&what, &c.endpoint())?;
        let timeout = c.connect_timeout.0;
        let conn = connect_at_start(&what, &client, &c.url, timeout, Some(timeout)).await?;
        Ok(PubsubSink {
            writer: Writer::start(format!("redis-pubsub:{channel}"), client, conn, timeout),
            channel,
        })
    }
}

#[async_trait::async_trait]
impl Sink for PubsubSink {
    fn describe(&self) -> String {
        format!("redis-pubsub:{}", self.channel)
    }

    fn health(&self) -> Option<Health> {
        Some(self.writer.health())
    }

    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(&msg.payload);
        self.writer.send(cmd).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.writer.flush().await
    }
}
