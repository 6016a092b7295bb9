//! The `kafka` connector (librdkafka through `rdkafka`).
//!
//! - Source: a consumer group member. Auto-commit is off; offsets are
//!   committed per partition only up to the first message not yet finished
//!   ([`offsets`]), on a timer, on revoke and at shutdown.
//! - Sink: an idempotent producer with `acks=all`; a message is confirmed by
//!   its delivery report.
//! - Retries through a retry topic with `retry.republish` ([`retry`]).
//!
//! TLS and SASL: the `tls` and `sasl` keys ([`security`]).
//!
//! Tombstones (a record with a null value, a delete in a compacted topic)
//! cross the pipeline as an empty payload with the header
//! [`TOMBSTONE_HEADER`]; the sink produces a null value for an empty
//! payload with that header, and never writes the header itself.
//!
//! Any librdkafka property can be passed through `properties`; the keys
//! sluice sets itself can be overridden there, except `enable.auto.commit`
//! and `enable.auto.offset.store`, which the at-least-once guarantee needs off.

mod offsets;
mod read_back;
mod retry;
mod security;
mod sink;
mod source;

pub(crate) use security::resolve_files;
pub use security::{Mechanism, Sasl};

pub(crate) use read_back::open_dlq;

/// Marks a message that came from, or must go out as, a tombstone (a null
/// value). The source sets it to `true`; the sink honours it with an empty
/// payload, whatever its value.
pub const TOMBSTONE_HEADER: &str = "kafka-tombstone";

use crate::tls::TlsFiles;
use crate::{ConnectError, Invalid};
use rdkafka::ClientConfig;
use security::Security;
use serde::Deserialize;
use sluice_core::{Health, HumanDuration, Sink, Source};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// `source = { type = "kafka", brokers = "127.0.0.1:9092", group = "g", topics = ["orders"] }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`: `host:port[,host:port…]`.
    pub brokers: String,
    /// The consumer group (`group.id`).
    pub group: String,
    /// Topics to subscribe to.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regular expression; every matching topic is subscribed (librdkafka
    /// syntax, e.g. `"^orders\\..*"`). Used instead of, or besides, `topics`.
    pub topic_pattern: Option<String>,
    /// Where a group with no committed offset starts: `earliest` (default)
    /// or `latest`.
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// How often finished offsets are committed (also on revoke and at
    /// shutdown). Default 1s.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: HumanDuration,
    /// How long start-up waits for the brokers before giving up (exit 2).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Extra librdkafka consumer properties, passed through as they are
    /// (to the retry topic's producer too, for TLS and SASL).
    #[serde(default)]
    pub properties: BTreeMap<String, Property>,
    /// The retry topic, when the pipeline retries through the broker
    /// (`retry.republish`): default `TOPIC.retry` for one topic, else
    /// `GROUP.retry`. Created if missing (as many partitions as the first
    /// topic, the broker's default replication). Read by this consumer too.
    pub retry_topic: Option<String>,
    /// TLS to the brokers: `tls = { ca_file = "certs/ca.pem" }`.
    pub tls: Option<TlsFiles>,
    /// A SASL login: `sasl = { mechanism = "SCRAM-SHA-512", username = "u", password_env = "VAR" }`.
    pub sasl: Option<Sasl>,
}

/// `sinks.NAME = { type = "kafka", brokers = "127.0.0.1:9092", topic = "out" }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic to write to. Default: the sink's name (so a route's
    /// destination names the topic); for the DLQ, `PIPELINE.dlq`.
    pub topic: Option<String>,
    /// How long start-up waits for the brokers before giving up (exit 2).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Extra librdkafka producer properties (e.g. `"compression.type" =
    /// "zstd"`, `"linger.ms" = 20`), passed through as they are.
    #[serde(default)]
    pub properties: BTreeMap<String, Property>,
    /// As for the source.
    pub tls: Option<TlsFiles>,
    /// As for the source.
    pub sasl: Option<Sasl>,
}

/// `auto_offset_reset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    #[default]
    Earliest,
    Latest,
}

/// A librdkafka property value: written as a string, number or boolean.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Property {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Property::Text(s) => f.write_str(s),
            Property::Int(n) => write!(f, "{n}"),
            Property::Float(x) => write!(f, "{x}"),
            Property::Bool(b) => write!(f, "{b}"),
        }
    }
}

fn default_commit_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// Properties sluice owns: changing them would break at-least-once.
const RESERVED: &[&str] = &["enable.auto.commit", "enable.auto.offset.store"];

impl KafkaSourceConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.topics.is_empty() && self.topic_pattern.is_none() {
            return Err(Invalid::new(
                "a kafka source needs topics",
                "set `topics = [\"name\"]` or `topic_pattern = \"^regex\"`",
            ));
        }
        if let Some(key) = self
            .properties
            .keys()
            .find(|k| RESERVED.contains(&k.as_str()))
        {
            return Err(Invalid::new(
                format!("property `{key}` is managed by sluice: offsets are committed only after the sinks confirm"),
                "remove it from `properties`",
            ));
        }
        Ok(())
    }

    pub(crate) async fn open(&self) -> Result<Box<dyn Source>, ConnectError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // Statistics feed the consumer-lag gauge and the connection
            // health; `properties` may change it.
            .set("statistics.interval.ms", "2000")
            .set(
                "auto.offset.reset",
                match self.auto_offset_reset {
                    OffsetReset::Earliest => "earliest",
                    OffsetReset::Latest => "latest",
                },
            );
        Security::of(&self.tls, &self.sasl).apply("kafka source", &mut config)?;
        for (key, value) in &self.properties {
            config.set(key, value.to_string());
        }
        let mut topics = self.topics.clone();
        if let Some(pattern) = &self.topic_pattern {
            // librdkafka treats a subscription starting with `^` as a regex.
            topics.push(if pattern.starts_with('^') {
                pattern.clone()
            } else {
                format!("^{pattern}")
            });
        }
        let retry = match &self.retry_topic {
            Some(retry_topic) => {
                if !topics.contains(retry_topic) {
                    topics.push(retry_topic.clone());
                }
                let producer = producer_config(
                    &self.brokers,
                    Security::of(&self.tls, &self.sasl),
                    &self.properties,
                )?;
                let like = self.topics.first().map(String::as_str);
                Some(
                    retry::RetryTopic::open(producer, retry_topic, like, self.connect_timeout.0)
                        .await?,
                )
            }
            None => None,
        };
        let source = source::KafkaSource::connect(config, self, topics, retry).await?;
        Ok(Box::new(source))
    }

    /// Retry through the broker: the retry topic, named by default.
    /// librdkafka's pre-fetch queue holds at most `bytes` (unless
    /// `properties` set `queued.max.messages.kbytes`): what it reads ahead
    /// stays within the pipeline's byte budget.
    pub(crate) fn bound_read_ahead(&mut self, bytes: u64) {
        let kib = (bytes / 1024).clamp(1, 2_097_151) as i64;
        self.properties
            .entry("queued.max.messages.kbytes".into())
            .or_insert(Property::Int(kib));
    }

    pub(crate) fn retry_through_broker(&mut self) {
        if self.retry_topic.is_none() {
            self.retry_topic = Some(match self.topics.as_slice() {
                [topic] => format!("{topic}.retry"),
                _ => format!("{}.retry", self.group),
            });
        }
    }
}

/// A producer's configuration: idempotent, `acks=all`, `security`, then
/// `properties`.
///
/// # Errors
/// A `password_env` variable that is not set.
fn producer_config(
    brokers: &str,
    security: Security<'_>,
    properties: &BTreeMap<String, Property>,
) -> Result<ClientConfig, ConnectError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // Statistics feed the producer's connection health.
        .set("statistics.interval.ms", "2000");
    security.apply("kafka sink", &mut config)?;
    for (key, value) in properties {
        config.set(key, value.to_string());
    }
    Ok(config)
}

impl KafkaSinkConfig {
    pub(crate) async fn open(&self, name: &str) -> Result<Arc<dyn Sink>, ConnectError> {
        let config = producer_config(
            &self.brokers,
            Security::of(&self.tls, &self.sasl),
            &self.properties,
        )?;
        let topic = self.topic.clone().unwrap_or_else(|| name.to_string());
        let sink =
            sink::KafkaSink::connect(config, &self.brokers, topic, self.connect_timeout.0).await?;
        Ok(Arc::new(sink))
    }
}

/// A client's connection health from librdkafka: up while it is connected
/// to at least one broker of the cluster (a bootstrap address alone does not
/// count), judged on every statistics report; down at once when librdkafka
/// says all brokers are down. It also keeps the client's last error with
/// its cause (a SASL or TLS failure), which librdkafka reports only to its
/// error callback: start-up names it when the cluster cannot be reached.
pub(super) struct Connection {
    health: Health,
    last_error: std::sync::Mutex<Option<String>>,
}

impl Connection {
    pub(super) fn new(name: &str) -> Connection {
        Connection {
            health: Health::new(name),
            last_error: std::sync::Mutex::default(),
        }
    }

    pub(super) fn health(&self) -> Health {
        self.health.clone()
    }

    pub(super) fn judge(&self, statistics: &rdkafka::Statistics) {
        let brokers: Vec<&rdkafka::statistics::Broker> = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0)
            .collect();
        if brokers.iter().any(|b| b.state == "UP") {
            self.health.up();
            return;
        }
        let states: Vec<String> = brokers
            .iter()
            .map(|b| format!("{} {}", b.nodename, b.state))
            .collect();
        self.health.down(format_args!(
            "no Kafka broker connected ({})",
            if states.is_empty() {
                "none known yet".to_string()
            } else {
                states.join(", ")
            }
        ));
    }

    /// The client's error callback: `reason` is librdkafka's own text.
    pub(super) fn error(&self, error: &rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::error::RDKafkaErrorCode::AllBrokersDown) {
            self.health.down(format_args!("{error}"));
            // Says that, not why: keep the cause seen before.
            return;
        }
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.to_string());
    }

    /// The last error the client reported, other than "all brokers down".
    pub(super) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The start-up reachability check: `probe` asks the cluster for its
/// metadata on a blocking thread; on failure, `cause` is the client's own
/// reason, if it gave one.
async fn reach(
    what: &str,
    brokers: &str,
    timeout: Duration,
    probe: impl FnOnce() -> rdkafka::error::KafkaResult<()> + Send + 'static,
    cause: impl FnOnce() -> Option<String>,
) -> Result<(), ConnectError> {
    let result = match tokio::task::spawn_blocking(probe).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    let cause = cause().map(|c| format!(" ({c})")).unwrap_or_default();
    Err(ConnectError::Unreachable(format!(
        "{what}: cannot reach Kafka brokers at {brokers} within {}: {result}{cause}",
        humantime::format_duration(timeout)
    )))
}

/// librdkafka's own log lines go to tracing.
fn log_rdkafka(level: rdkafka::config::RDKafkaLogLevel, fac: &str, text: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", facility = fac, "{text}")
        }
        L::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{text}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", facility = fac, "{text}"),
        L::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{text}"),
    }
}
