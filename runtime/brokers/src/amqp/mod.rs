//! The `rabbitmq` connector (AMQP 0.9.1 through `lapin`).
//!
//! - Source: declares its queue (durable by default, with any `x-`
//!   arguments, or checks an existing one passively), binds it to
//!   exchanges, consumes with manual acks and `basic_qos(prefetch)`. A
//!   delivery is acked only after the sinks confirmed it; a delivery given
//!   back unfinished is nacked (requeued by default).
//! - Sink: publishes persistent messages (`delivery_mode = 2`) with
//!   publisher confirms on a channel of its own; the broker's confirm is the
//!   [`Confirm`](sluice_core::Confirm). With `mandatory` (default), a message
//!   no queue takes is returned and counts as a failure.
//!
//! Both reconnect with backoff after a lost connection and declare their
//! topology again; what was unacked is redelivered by the broker.
//!
//! Message mapping: AMQP headers ↔ message headers (text and byte values as
//! bytes, other types as their text); the message key travels in the header
//! `sluice-key`; the AMQP timestamp (seconds) ↔ `timestamp_ms`.

mod retry;
mod sink;
mod source;

pub use retry::RETRY_COUNT_HEADER;

use crate::kafka::Property;
use crate::{ConnectError, Invalid};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use serde::Deserialize;
use sluice_core::{HumanDuration, Message, Sink, Source};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The header that carries the message key (AMQP messages have none).
pub const KEY_HEADER: &str = "sluice-key";

/// `source = { type = "rabbitmq", queue = "orders" }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSourceConfig {
    /// `amqp://user:password@host:port/vhost` (`%2f` is the default vhost);
    /// `amqps://` for TLS.
    #[serde(default = "default_url")]
    pub url: String,
    /// The queue to consume.
    pub queue: String,
    /// Declare the queue (default). `false` only checks that it exists
    /// (a passive declare) and leaves its settings to whoever made it.
    #[serde(default = "yes")]
    pub declare: bool,
    #[serde(default = "yes")]
    pub durable: bool,
    #[serde(default)]
    pub exclusive: bool,
    #[serde(default)]
    pub auto_delete: bool,
    /// Queue arguments, e.g. `{ "x-queue-type" = "quorum",
    /// "x-dead-letter-exchange" = "dlx", "x-delivery-limit" = 5 }`.
    #[serde(default)]
    pub arguments: BTreeMap<String, Property>,
    /// Bind the queue to these exchanges.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Unacknowledged deliveries the broker may send ahead (`basic_qos`).
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// What giving a delivery back (shutdown before it was finished) does:
    /// requeue it (default) or let the broker dead-letter or drop it.
    #[serde(default = "yes")]
    pub requeue: bool,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

/// One `bindings` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub exchange: String,
    #[serde(default)]
    pub routing_key: String,
    /// Declare the exchange too, durable, of this type (`direct`, `fanout`,
    /// `topic`, `headers`). Without it the exchange must exist.
    pub exchange_type: Option<String>,
}

/// `sinks.NAME = { type = "rabbitmq", exchange = "orders", routing_key = "eu" }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSinkConfig {
    #[serde(default = "default_url")]
    pub url: String,
    /// The exchange to publish to; `""` (default) is the default exchange,
    /// which routes by queue name.
    #[serde(default)]
    pub exchange: String,
    /// The routing key. Default: the sink's name (so a route's destination
    /// names the queue when publishing to the default exchange); for the
    /// DLQ, `PIPELINE.dlq`.
    pub routing_key: Option<String>,
    /// `delivery_mode = 2` (default) or transient.
    #[serde(default = "yes")]
    pub persistent: bool,
    /// A message no queue takes is returned and fails the publish (default).
    #[serde(default = "yes")]
    pub mandatory: bool,
    /// Declare a durable queue named like the routing key (and bind it to
    /// `exchange` when that is not the default exchange), so the publishes
    /// always have somewhere to go. Default off: the topology is the
    /// operator's.
    #[serde(default)]
    pub declare_queue: bool,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

fn default_url() -> String {
    "amqp://guest:guest@127.0.0.1:5672/%2f".into()
}
fn yes() -> bool {
    true
}
fn default_prefetch() -> u16 {
    100
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

impl AmqpSourceConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.prefetch == 0 {
            return Err(Invalid::new(
                "`prefetch` must be at least 1",
                "set how many unacked deliveries the broker may send ahead (default 100)",
            ));
        }
        for b in &self.bindings {
            if let Some(kind) = &b.exchange_type {
                if !["direct", "fanout", "topic", "headers"].contains(&kind.as_str()) {
                    return Err(Invalid::new(
                        format!(
                            "unknown exchange_type `{kind}` for exchange `{}`",
                            b.exchange
                        ),
                        "use direct, fanout, topic or headers",
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn open(&self) -> Result<Box<dyn Source>, ConnectError> {
        Ok(Box::new(source::AmqpSource::connect(self).await?))
    }
}

impl AmqpSinkConfig {
    pub(crate) async fn open(&self, name: &str) -> Result<Arc<dyn Sink>, ConnectError> {
        Ok(Arc::new(sink::AmqpSink::connect(self, name).await?))
    }
}

/// Connect within `timeout`. The connection is named `sluice-PID` so an
/// operator (or a test) can find this daemon's connections in RabbitMQ.
async fn connect(url: &str, timeout: Duration) -> Result<lapin::Connection, String> {
    let properties = lapin::ConnectionProperties::default()
        .with_connection_name(format!("sluice-{}", std::process::id()).into());
    match tokio::time::timeout(timeout, lapin::Connection::connect(url, properties)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// [`connect`] at start-up: failure is exit 2, naming the server.
async fn connect_at_start(
    what: &str,
    url: &str,
    timeout: Duration,
) -> Result<lapin::Connection, ConnectError> {
    connect(url, timeout).await.map_err(|e| {
        ConnectError::Unreachable(format!(
            "{what}: cannot reach RabbitMQ at {}: {e}",
            crate::redacted(url)
        ))
    })
}

/// Queue arguments as an AMQP table (integers stay integers).
fn arguments(args: &BTreeMap<String, Property>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in args {
        let v = match value {
            Property::Text(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
            Property::Int(n) => AMQPValue::LongLongInt(*n),
            Property::Float(x) => AMQPValue::Double(*x),
            Property::Bool(b) => AMQPValue::Boolean(*b),
        };
        table.insert(ShortString::from(key.as_str()), v);
    }
    table
}

/// The AMQP properties of `msg`: its headers as byte strings, its key in
/// [`KEY_HEADER`], its timestamp in seconds; `delivery_mode` 2 when
/// `persistent`.
fn properties(msg: &Message, persistent: bool) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in &msg.headers {
        headers.insert(
            ShortString::from(name.as_str()),
            AMQPValue::LongString(LongString::from(value.as_slice())),
        );
    }
    if let Some(key) = &msg.key {
        headers.insert(
            ShortString::from(KEY_HEADER),
            AMQPValue::LongString(LongString::from(key.as_slice())),
        );
    }
    let mut props = BasicProperties::default()
        .with_headers(headers)
        .with_delivery_mode(if persistent { 2 } else { 1 });
    if let Some(ms) = msg.timestamp_ms {
        props = props.with_timestamp(ms / 1000);
    }
    props
}

/// An AMQP header value as bytes: strings as they are, numbers and the
/// rest as their text.
fn header_bytes(value: &AMQPValue) -> Vec<u8> {
    match value {
        AMQPValue::LongString(s) => s.as_bytes().to_vec(),
        AMQPValue::ShortString(s) => s.as_str().as_bytes().to_vec(),
        AMQPValue::ByteArray(b) => b.as_slice().to_vec(),
        AMQPValue::Boolean(b) => b.to_string().into_bytes(),
        AMQPValue::ShortShortInt(n) => n.to_string().into_bytes(),
        AMQPValue::ShortShortUInt(n) => n.to_string().into_bytes(),
        AMQPValue::ShortInt(n) => n.to_string().into_bytes(),
        AMQPValue::ShortUInt(n) => n.to_string().into_bytes(),
        AMQPValue::LongInt(n) => n.to_string().into_bytes(),
        AMQPValue::LongUInt(n) => n.to_string().into_bytes(),
        AMQPValue::LongLongInt(n) => n.to_string().into_bytes(),
        AMQPValue::Float(x) => x.to_string().into_bytes(),
        AMQPValue::Double(x) => x.to_string().into_bytes(),
        AMQPValue::Timestamp(t) => t.to_string().into_bytes(),
        other => format!("{other:?}").into_bytes(),
    }
}
