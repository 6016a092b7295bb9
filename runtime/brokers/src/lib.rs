//! sluice's connectors: each module holds one connector's config struct, its
//! source, its sink and its tests. [`SourceConfig`] and [`SinkConfig`] are
//! the `type = "..."` tables of a pipeline TOML; `open` connects them.
//!
//! Connectors never touch wasmtime; they only speak
//! [`sluice_core::Source`] and [`sluice_core::Sink`].

pub mod amqp;
mod batch;
pub mod dlq;
pub mod file;
pub mod kafka;
pub mod lines;
pub mod redis;
mod settle;
pub mod sqs;
pub mod stdio;
pub mod tls;

pub use settle::{RETRY_COUNT_HEADER, RETRY_DUE_HEADER};
pub use sluice_core::memory;

use serde::Deserialize;
use sluice_core::{Sink, Source};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Backoff between reconnect attempts once running: 100 ms doubling to 5 s,
/// with jitter, without end (a running daemon waits for its broker).
pub(crate) const RECONNECT: sluice_core::RetryPolicy = sluice_core::RetryPolicy {
    max_attempts: u32::MAX,
    initial: Duration::from_millis(100),
    factor: 2.0,
    max_delay: Duration::from_secs(5),
    jitter: 0.2,
};

/// Why a connector could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The configuration points at something that does not exist or cannot
    /// be used (a missing input file). Exit code 1.
    #[error("{0}")]
    Invalid(String),
    /// The broker (or file system) did not answer. Exit code 2.
    #[error("{0}")]
    Unreachable(String),
}

/// A connector table that parses but cannot work, found before connecting
/// (so `sluice check` reports it with the file and line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
}

impl Invalid {
    pub(crate) fn new(message: impl Into<String>, help: impl Into<String>) -> Self {
        Invalid {
            message: message.into(),
            help: help.into(),
        }
    }
}

impl From<Invalid> for ConnectError {
    fn from(e: Invalid) -> Self {
        ConnectError::Invalid(format!("{} ({})", e.message, e.help))
    }
}

/// A pipeline's `source` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// Read a file line by line, then end.
    File(file::FileSourceConfig),
    /// Read standard input line by line until EOF.
    Stdin(stdio::StdinSourceConfig),
    /// A Kafka consumer-group member.
    Kafka(kafka::KafkaSourceConfig),
    /// A Redis stream read by a consumer group.
    #[serde(rename = "redis-stream")]
    RedisStream(redis::StreamSourceConfig),
    /// Redis Pub/Sub channels (at-most-once).
    #[serde(rename = "redis-pubsub")]
    RedisPubsub(redis::PubsubSourceConfig),
    /// A RabbitMQ queue, manual acks.
    Rabbitmq(amqp::AmqpSourceConfig),
    /// An SQS queue, long polling.
    Sqs(sqs::SqsSourceConfig),
}

/// A `sinks.NAME` or `dlq` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// Append messages to a file, one per line.
    File(file::FileSinkConfig),
    /// Write messages to standard output, one per line.
    Stdout(stdio::StdoutSinkConfig),
    /// Produce to a Kafka topic.
    Kafka(kafka::KafkaSinkConfig),
    /// Append to a Redis stream (XADD).
    #[serde(rename = "redis-stream")]
    RedisStream(redis::StreamSinkConfig),
    /// Publish to a Redis Pub/Sub channel (at-most-once).
    #[serde(rename = "redis-pubsub")]
    RedisPubsub(redis::PubsubSinkConfig),
    /// Publish to a RabbitMQ exchange with publisher confirms.
    Rabbitmq(amqp::AmqpSinkConfig),
    /// Send to an SQS queue in batches.
    Sqs(sqs::SqsSinkConfig),
}

impl SourceConfig {
    /// The connector's `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::File(_) => "file",
            SourceConfig::Stdin(_) => "stdin",
            SourceConfig::Kafka(_) => "kafka",
            SourceConfig::RedisStream(_) => "redis-stream",
            SourceConfig::RedisPubsub(_) => "redis-pubsub",
            SourceConfig::Rabbitmq(_) => "rabbitmq",
            SourceConfig::Sqs(_) => "sqs",
        }
    }

    /// Can this source retry a message through its broker (a pipeline's
    /// `retry.republish`)? RabbitMQ can (delay queues and `x-retry-count`),
    /// SQS can (a visibility timeout of the delay; the receive count is the
    /// attempt), Redis streams and Kafka can (a retry stream or topic,
    /// `x-retry-count`).
    pub fn republishes_retries(&self) -> bool {
        matches!(
            self,
            SourceConfig::Rabbitmq(_)
                | SourceConfig::Sqs(_)
                | SourceConfig::RedisStream(_)
                | SourceConfig::Kafka(_)
        )
    }

    /// Make the source retry through its broker (`retry.republish`): a
    /// Redis stream source gets its retry stream (`STREAM.retry` unless
    /// set), a Kafka source its retry topic; the others need nothing.
    pub fn retry_through_broker(&mut self) {
        match self {
            SourceConfig::RedisStream(c) => {
                c.retry_stream
                    .get_or_insert_with(|| format!("{}.retry", c.stream));
            }
            SourceConfig::Kafka(c) => c.retry_through_broker(),
            _ => {}
        }
    }

    /// Bound what the source's client reads ahead of the pipeline to `bytes`
    /// (the pipeline's `max_in_flight_bytes`), where the client has such a
    /// setting: librdkafka's pre-fetch queue. The others read what the
    /// [`Outbox`](sluice_core::Outbox) has room for (Redis streams) or a
    /// count the broker bounds (RabbitMQ's prefetch, SQS's 10).
    pub fn bound_read_ahead(&mut self, bytes: u64) {
        if let SourceConfig::Kafka(c) = self {
            c.bound_read_ahead(bytes)
        }
    }

    /// Check what serde cannot: combinations of keys.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            SourceConfig::Kafka(c) => c.validate(),
            SourceConfig::RedisStream(c) => c.validate(),
            SourceConfig::RedisPubsub(c) => c.validate(),
            SourceConfig::Rabbitmq(c) => c.validate(),
            SourceConfig::Sqs(c) => c.validate(),
            SourceConfig::File(_) | SourceConfig::Stdin(_) => Ok(()),
        }
    }

    /// Check the files this source names (TLS certificates) and make their
    /// paths absolute against `base`, the config file's directory.
    ///
    /// # Errors
    /// A file that is missing or not what it should be.
    pub fn resolve_files(&mut self, base: &Path) -> Result<(), Invalid> {
        match self {
            SourceConfig::RedisStream(c) => c.resolve_files(base),
            SourceConfig::RedisPubsub(c) => c.resolve_files(base),
            SourceConfig::Rabbitmq(c) => c.resolve_files(base),
            SourceConfig::Kafka(c) => kafka::resolve_files(&mut c.tls, base),
            SourceConfig::Sqs(c) => c.resolve_files(base),
            _ => Ok(()),
        }
    }

    /// Connect. Relative paths are resolved against `base` (the config
    /// file's directory).
    ///
    /// # Errors
    /// See [`ConnectError`].
    pub async fn open(&self, base: &Path) -> Result<Box<dyn Source>, ConnectError> {
        self.validate()?;
        match self {
            SourceConfig::File(c) => c.open(base).await,
            SourceConfig::Stdin(c) => Ok(c.open()),
            SourceConfig::Kafka(c) => c.open().await,
            SourceConfig::RedisStream(c) => c.open().await,
            SourceConfig::RedisPubsub(c) => c.open().await,
            SourceConfig::Rabbitmq(c) => c.open().await,
            SourceConfig::Sqs(c) => c.open().await,
        }
    }
}

impl SinkConfig {
    /// The connector's `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::RedisStream(_) => "redis-stream",
            SinkConfig::RedisPubsub(_) => "redis-pubsub",
            SinkConfig::Rabbitmq(_) => "rabbitmq",
            SinkConfig::Sqs(_) => "sqs",
        }
    }

    /// Whether messages keep their headers in this sink. A DLQ that does
    /// not writes the envelope form ([`dlq::DlqFormat::Envelope`]).
    pub fn carries_headers(&self) -> bool {
        match self {
            SinkConfig::File(c) => c.format == lines::LineFormat::Json,
            SinkConfig::Stdout(c) => c.format == lines::LineFormat::Json,
            SinkConfig::RedisPubsub(_) => false,
            SinkConfig::Kafka(_)
            | SinkConfig::RedisStream(_)
            | SinkConfig::Rabbitmq(_)
            | SinkConfig::Sqs(_) => true,
        }
    }

    /// Connect. Relative paths are resolved against `base`. `name` is the
    /// sink's name in the config (`PIPELINE.dlq` for a DLQ): brokers use it
    /// as the topic, stream or channel when the table names none.
    ///
    /// # Errors
    /// See [`ConnectError`].
    pub async fn open(&self, base: &Path, name: &str) -> Result<Arc<dyn Sink>, ConnectError> {
        match self {
            SinkConfig::File(c) => c.open(base).await,
            SinkConfig::Stdout(c) => Ok(c.open()),
            SinkConfig::Kafka(c) => c.open(name).await,
            SinkConfig::RedisStream(c) => c.open(name).await,
            SinkConfig::RedisPubsub(c) => c.open(name).await,
            SinkConfig::Rabbitmq(c) => c.open(name).await,
            SinkConfig::Sqs(c) => c.open(name).await,
        }
    }
}

impl SinkConfig {
    /// As [`SourceConfig::resolve_files`].
    ///
    /// # Errors
    /// A file that is missing or not what it should be.
    pub fn resolve_files(&mut self, base: &Path) -> Result<(), Invalid> {
        match self {
            SinkConfig::RedisStream(c) => c.resolve_files(base),
            SinkConfig::RedisPubsub(c) => c.resolve_files(base),
            SinkConfig::Rabbitmq(c) => c.resolve_files(base),
            SinkConfig::Kafka(c) => kafka::resolve_files(&mut c.tls, base),
            SinkConfig::Sqs(c) => c.resolve_files(base),
            _ => Ok(()),
        }
    }

    /// This sink, adding to what its destination holds: a file sink
    /// appends instead of truncating at start (the others always add).
    pub fn appending(&self) -> SinkConfig {
        let mut sink = self.clone();
        if let SinkConfig::File(f) = &mut sink {
            f.append = true;
        }
        sink
    }

    /// Open what this sink wrote to take it back out: for `sluice dlq` on a
    /// DLQ ([`dlq::DeadLetterQueue`] says how, per broker). `name` is as
    /// for [`open`](SinkConfig::open).
    ///
    /// # Errors
    /// The destination cannot be reached, or keeps nothing (`stdout`,
    /// `redis-pubsub`).
    pub async fn open_dlq(
        &self,
        base: &Path,
        name: &str,
    ) -> Result<Box<dyn dlq::DeadLetterQueue>, ConnectError> {
        match self {
            SinkConfig::File(c) => Ok(Box::new(c.dlq(base))),
            SinkConfig::Kafka(c) => kafka::open_dlq(c, name).await,
            SinkConfig::RedisStream(c) => redis::open_stream_dlq(c, name).await,
            SinkConfig::Sqs(c) => sqs::open_dlq(c, name).await,
            SinkConfig::Rabbitmq(c) => amqp::open_dlq(c, name).await,
            SinkConfig::Stdout(_) | SinkConfig::RedisPubsub(_) => {
                Err(ConnectError::Invalid(format!(
                    "a `{}` DLQ keeps nothing to read back: dead letters written there are gone",
                    self.kind()
                )))
            }
        }
    }

    /// Up to `limit` messages this sink wrote, each with where it is,
    /// read without removing any ([`open_dlq`](SinkConfig::open_dlq), then
    /// everything given back).
    ///
    /// # Errors
    /// As for [`open_dlq`](SinkConfig::open_dlq), or a failed read.
    pub async fn read_back(
        &self,
        base: &Path,
        name: &str,
        limit: usize,
    ) -> Result<Vec<(String, sluice_core::Message)>, ConnectError> {
        let mut queue = self.open_dlq(base, name).await?;
        let read = queue.take(limit).await;
        queue.finish(&[]).await?;
        read
    }
}

/// A broker URL without its password, for messages.
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// `text` (a config printed with `{:?}`, say) with every URL's userinfo
/// shown as `***`, and the value of every property whose name says
/// `password` or `secret` (`"sasl.password": Text("…")`) as `***`.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c == '"' || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(userinfo) => {
                out.push_str("***");
                rest = &tail[userinfo..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    let mut masked = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(open) = rest.find(": Text(\"") {
        let (head, tail) = rest.split_at(open + ": Text(\"".len());
        masked.push_str(head);
        let key = head[..open].rsplit('"').nth(1).unwrap_or("").to_lowercase();
        let close = tail.find("\")").unwrap_or(tail.len());
        if key.contains("password") || key.contains("secret") {
            masked.push_str("***");
        } else {
            masked.push_str(&tail[..close]);
        }
        rest = &tail[close..];
    }
    masked.push_str(rest);
    masked
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_printed_config_shows_no_password() {
        let text = r#"Kafka(KafkaSourceConfig { brokers: "h:9093", properties: {"sasl.password": Text("p4ss"), "sasl.username": Text("u")} }) url: "redis://user:hunter2@h:6379", other: "amqps://guest:topsecret@h:5671/%2f", plain: "redis://h:6379""#;
        let shown = super::redact_text(text);
        for secret in ["p4ss", "hunter2", "topsecret", "guest", "user:"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains(r#""sasl.username": Text("u")"#), "{shown}");
        assert!(shown.contains("redis://***@h:6379"), "{shown}");
        assert!(shown.contains(r#"plain: "redis://h:6379""#), "{shown}");
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            super::redacted("redis://u:secret@h:1/0"),
            "redis://***@h:1/0"
        );
        assert_eq!(
            super::redacted("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            super::redacted("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
