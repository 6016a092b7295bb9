//! The RabbitMQ sink: persistent publishes with publisher confirms.
//!
//! `publish` sends the message on a confirm-mode channel (in call order)
//! and returns the broker's confirm as the [`Confirm`]: an ack is success; a
//! nack, or a return of a `mandatory` message no queue took, is a failure
//! the engine publishes again. A broken channel or connection is replaced
//! on the next publish.

use super::{connect, connect_at_start, properties, AmqpSinkConfig};
use crate::ConnectError;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::Channel;
use lapin::Confirmation;
use sluice_core::{Confirm, Health, Message, Sink, SinkError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Mutex;

/// How long a publish may wait for its publisher confirm.
const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// How long setting up a channel, or handing one publish to lapin, may take.
/// Both are normally instant; an await that never ends would hold the link
/// mutex and stop every publish of this sink, so past this the link is
/// dropped and the next publish reconnects.
const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) struct AmqpSink {
    config: AmqpSinkConfig,
    routing_key: String,
    name: String,
    /// The connection and its confirm-mode channel; `None` after a failure.
    link: Mutex<Option<Link>>,
    /// Numbers the links, from 1.
    links: AtomicU64,
    /// The number of a link that left a confirm unanswered past
    /// [`CONFIRM_TIMEOUT`] (0: none). lapin can keep reporting such a
    /// channel as connected, so every later publish on it would wait out the
    /// timeout too; the next publish replaces it instead.
    stale: Arc<AtomicU64>,
    /// Down from a publish that found the link broken until one reconnects:
    /// a sink with nothing to publish does not notice an outage.
    health: Health,
}

struct Link {
    id: u64,
    conn: lapin::Connection,
    channel: Channel,
}

/// Drop the link, closing its connection in the background (bounded: a
/// dead connection may never answer) so the broker does not keep it open.
fn retire(link: &mut Option<Link>) {
    if let Some(old) = link.take() {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                STEP_TIMEOUT,
                old.conn.close(200, "sluice: replacing the link".into()),
            )
            .await;
        });
    }
}

impl Link {
    fn usable(&self, stale: u64) -> bool {
        self.id != stale && self.conn.status().connected() && self.channel.status().connected()
    }
}

impl AmqpSink {
    pub(super) async fn connect(c: &AmqpSinkConfig, sink_name: &str) -> Result<Self, ConnectError> {
        let routing_key = c
            .routing_key
            .clone()
            .unwrap_or_else(|| sink_name.to_string());
        let name = format!("rabbitmq:{}/{routing_key}", c.exchange);
        let conn = connect_at_start(
            &format!("rabbitmq sink `{sink_name}`"),
            &c.endpoint(),
            c.connect_timeout.0,
        )
        .await?;
        let channel = confirm_channel(&conn, c, &routing_key).await.map_err(|e| {
            ConnectError::Unreachable(format!(
                "rabbitmq sink `{sink_name}`: cannot open a confirm channel: {e}"
            ))
        })?;
        let link = Link {
            id: 1,
            conn,
            channel,
        };
        Ok(AmqpSink {
            config: c.clone(),
            routing_key,
            link: Mutex::new(Some(link)),
            links: AtomicU64::new(1),
            stale: Arc::default(),
            health: Health::new(name.clone()),
            name,
        })
    }

    /// A lost or refused connection: marks the sink down too.
    fn failed(&self, reason: impl ToString) -> SinkError {
        let reason = reason.to_string();
        self.health.down(&reason);
        SinkError::Connection {
            sink: self.name.clone(),
            reason,
        }
    }
}

/// A confirm-mode channel; with `declare_queue`, the destination queue
/// declared (and bound) first.
async fn confirm_channel(
    conn: &lapin::Connection,
    c: &AmqpSinkConfig,
    routing_key: &str,
) -> lapin::Result<Channel> {
    let channel = conn.create_channel().await?;
    if c.declare_queue {
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(routing_key.into(), options, FieldTable::default())
            .await?;
        if !c.exchange.is_empty() {
            channel
                .queue_bind(
                    routing_key.into(),
                    c.exchange.as_str().into(),
                    routing_key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

#[async_trait::async_trait]
impl Sink for AmqpSink {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn health(&self) -> Option<Health> {
        Some(self.health.clone())
    }

    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError> {
        if let Some(name) = super::unfit_header(msg) {
            return Err(SinkError::Rejected {
                sink: self.name.clone(),
                reason: format!(
                    "header name of {} bytes (`{}…`): AMQP field names are at most {} bytes",
                    name.len(),
                    name.chars().take(40).collect::<String>(),
                    super::MAX_NAME
                ),
            });
        }
        let mut link = self.link.lock().await;
        if link
            .as_ref()
            .is_none_or(|l| !l.usable(self.stale.load(Ordering::SeqCst)))
        {
            retire(&mut link);
            let conn = connect(&self.config.endpoint(), self.config.connect_timeout.0)
                .await
                .map_err(|e| self.failed(e))?;
            let channel = tokio::time::timeout(
                STEP_TIMEOUT,
                confirm_channel(&conn, &self.config, &self.routing_key),
            )
            .await
            .map_err(|_| self.failed(format!("channel setup unanswered within {STEP_TIMEOUT:?}")))?
            .map_err(|e| self.failed(e))?;
            tracing::info!(sink = %self.name, "reconnected to RabbitMQ");
            self.health.up();
            *link = Some(Link {
                id: self.links.fetch_add(1, Ordering::SeqCst) + 1,
                conn,
                channel,
            });
        }
        let Link { id, channel, .. } = link.as_ref().expect("connected above");
        let id = *id;
        let options = BasicPublishOptions {
            mandatory: self.config.mandatory,
            ..Default::default()
        };
        let published = channel.basic_publish(
            self.config.exchange.as_str().into(),
            self.routing_key.as_str().into(),
            options,
            &msg.payload,
            properties(msg, self.config.persistent),
        );
        let confirm = match tokio::time::timeout(STEP_TIMEOUT, published).await {
            Ok(Ok(confirm)) => confirm,
            Ok(Err(e)) => {
                retire(&mut link);
                return Err(self.failed(e));
            }
            Err(_) => {
                retire(&mut link);
                return Err(self.failed(format!(
                    "publish not handed to the connection within {STEP_TIMEOUT:?}; reconnecting"
                )));
            }
        };
        let name = self.name.clone();
        let stale = self.stale.clone();
        Ok(Box::pin(async move {
            let fail = |reason: String| SinkError::Publish {
                sink: name.clone(),
                reason,
            };
            // lapin does not always fail the pending confirms of a
            // connection that died (seen in a broker-restart test: one came
            // 24 s late, others never), which would hold the source's acks
            // forever. Past CONFIRM_TIMEOUT the publish counts as failed and
            // the engine publishes again (at-least-once: maybe a duplicate).
            // The link is replaced too: its channel may be a zombie.
            let Ok(confirm) = tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await else {
                stale.store(id, Ordering::SeqCst);
                return Err(fail(format!(
                    "no publisher confirm within {CONFIRM_TIMEOUT:?}; replacing the channel"
                )));
            };
            match confirm {
                Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
                Ok(Confirmation::Ack(Some(returned))) => Err(fail(format!(
                    "returned unroutable: {} (no queue is bound for this routing key)",
                    returned.reply_text.as_str()
                ))),
                Ok(Confirmation::Nack(_)) => Err(fail("the broker nacked the message".into())),
                Err(e) => Err(fail(e.to_string())),
            }
        }))
    }
}
