//! The Redis connectors (the `redis` crate, tokio).
//!
//! - `redis-stream`: a stream read by a consumer group (at-least-once:
//!   `XACK` only after the sinks confirm; entries a crashed consumer left
//!   pending are taken over with `XAUTOCLAIM`), and a stream sink (`XADD`).
//! - `redis-pubsub`: channels and patterns, source and sink. Pub/Sub has no
//!   acknowledgements and no storage: a message published while sluice is
//!   not subscribed, or lost with a connection, is gone. At-most-once.
//!
//! Stream entries map onto messages field by field: the `payload` field is
//! the payload, the `key` field the key, every other field a header (in
//! entry order). Both names are configurable.

mod pubsub;
mod streams;
pub(crate) use streams::open_dlq as open_stream_dlq;
mod writer;

use crate::tls::{self, TlsFiles};
use crate::{redacted, ConnectError, Invalid};
use serde::Deserialize;
use sluice_core::{HumanDuration, Sink, Source};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `source = { type = "redis-stream", stream = "orders", group = "sluice" }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSourceConfig {
    /// Server address, `redis://[user:password@]host:port[/db]`.
    #[serde(default = "default_url")]
    pub url: String,
    /// The stream to read.
    pub stream: String,
    /// The consumer group; created (with MKSTREAM) if missing.
    pub group: String,
    /// This consumer's name in the group. Default: `HOST-PID`. Give each
    /// daemon a stable name to have it re-read its own pending entries at
    /// once after a restart (otherwise they are claimed after `claim_idle`).
    pub consumer: Option<String>,
    /// Where a newly created group starts: `earliest` (default, the whole
    /// stream) or `latest` (new entries only).
    #[serde(default)]
    pub start: Start,
    /// Entries per XREADGROUP (COUNT). Default 100.
    #[serde(default = "default_count")]
    pub count: usize,
    /// How long one XREADGROUP waits for new entries (BLOCK). Default 1s;
    /// also bounds how fast the source notices a shutdown.
    #[serde(default = "default_block")]
    pub block: HumanDuration,
    /// Entries pending (read, not acked) longer than this in any consumer of
    /// the group are claimed by this one (XAUTOCLAIM). Must exceed the time a
    /// message takes through the pipeline. Default 60s.
    #[serde(default = "default_claim_idle")]
    pub claim_idle: HumanDuration,
    /// The entry field holding the payload. Default `payload`.
    #[serde(default = "default_payload_field")]
    pub payload_field: String,
    /// The entry field holding the key. Default `key`.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// The environment variable holding the password (the user, if any, is
    /// the URL's: `rediss://sluice@host:6380`). Keeps the password out of
    /// the TOML; a password inline in `url` works too.
    pub password_env: Option<String>,
    /// TLS files for a `rediss://` URL; without them the system's roots are
    /// trusted.
    pub tls: Option<TlsFiles>,
    /// How long start-up waits for the server before giving up (exit 2).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// The stream retries go through when the pipeline retries through its
    /// broker (`retry.republish`); read by this source with the same group.
    /// Default then: `STREAM.retry`.
    pub retry_stream: Option<String>,
}

/// `sinks.NAME = { type = "redis-stream", stream = "out" }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSinkConfig {
    #[serde(default = "default_url")]
    pub url: String,
    /// The stream to append to. Default: the sink's name (`PIPELINE.dlq`
    /// for a DLQ).
    pub stream: Option<String>,
    /// Trim the stream to about this many entries (`XADD MAXLEN ~ n`).
    pub maxlen: Option<u64>,
    #[serde(default = "default_payload_field")]
    pub payload_field: String,
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// The environment variable holding the password (the user, if any, is
    /// the URL's: `rediss://sluice@host:6380`). Keeps the password out of
    /// the TOML; a password inline in `url` works too.
    pub password_env: Option<String>,
    /// TLS files for a `rediss://` URL; without them the system's roots are
    /// trusted.
    pub tls: Option<TlsFiles>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

/// `source = { type = "redis-pubsub", channels = ["events"] }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubsubSourceConfig {
    #[serde(default = "default_url")]
    pub url: String,
    /// Channels to SUBSCRIBE to.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Glob patterns to PSUBSCRIBE to (`events.*`).
    #[serde(default)]
    pub patterns: Vec<String>,
    /// The environment variable holding the password (the user, if any, is
    /// the URL's: `rediss://sluice@host:6380`). Keeps the password out of
    /// the TOML; a password inline in `url` works too.
    pub password_env: Option<String>,
    /// TLS files for a `rediss://` URL; without them the system's roots are
    /// trusted.
    pub tls: Option<TlsFiles>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

/// `sinks.NAME = { type = "redis-pubsub", channel = "events" }`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubsubSinkConfig {
    #[serde(default = "default_url")]
    pub url: String,
    /// The channel to PUBLISH to. Default: the sink's name.
    pub channel: Option<String>,
    /// The environment variable holding the password (the user, if any, is
    /// the URL's: `rediss://sluice@host:6380`). Keeps the password out of
    /// the TOML; a password inline in `url` works too.
    pub password_env: Option<String>,
    /// TLS files for a `rediss://` URL; without them the system's roots are
    /// trusted.
    pub tls: Option<TlsFiles>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

/// The TLS files of a Redis table as the redis crate takes them.
fn certificates(files: &TlsFiles) -> Result<redis::TlsCertificates, String> {
    let client_tls = match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: tls::read(cert)?,
            client_key: tls::read(key)?,
        }),
        _ => None,
    };
    let root_cert = files.ca_file.as_deref().map(tls::read).transpose()?;
    Ok(redis::TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// Where a Redis table connects and how it logs in.
pub(crate) struct Endpoint<'a> {
    pub url: &'a str,
    pub password_env: Option<&'a str>,
    pub tls: Option<&'a TlsFiles>,
}

/// The connection keys every Redis table has.
macro_rules! endpoint {
    ($($config:ty),*) => {$(
        impl $config {
            pub(crate) fn endpoint(&self) -> Endpoint<'_> {
                Endpoint {
                    url: &self.url,
                    password_env: self.password_env.as_deref(),
                    tls: self.tls.as_ref(),
                }
            }

            /// Check what serde cannot: the TLS files (paths made absolute
            /// against `base`, the config file's directory).
            pub(crate) fn resolve_files(&mut self, base: &Path) -> Result<(), Invalid> {
                match &mut self.tls {
                    Some(tls) => tls.resolve(base),
                    None => Ok(()),
                }
            }
        }
    )*};
}
endpoint!(
    StreamSourceConfig,
    StreamSinkConfig,
    PubsubSourceConfig,
    PubsubSinkConfig
);

/// `start` of a stream source's group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    #[default]
    Earliest,
    Latest,
}

fn default_url() -> String {
    "redis://127.0.0.1:6379".into()
}
fn default_count() -> usize {
    100
}
fn default_block() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_claim_idle() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_payload_field() -> String {
    "payload".into()
}
fn default_key_field() -> String {
    "key".into()
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

impl StreamSourceConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.count == 0 {
            return Err(Invalid::new(
                "`count` must be at least 1",
                "set `count` to the entries per read (default 100)",
            ));
        }
        Ok(())
    }

    pub(crate) async fn open(&self) -> Result<Box<dyn Source>, ConnectError> {
        Ok(Box::new(streams::StreamSource::connect(self).await?))
    }
}

impl StreamSinkConfig {
    pub(crate) async fn open(&self, name: &str) -> Result<Arc<dyn Sink>, ConnectError> {
        Ok(Arc::new(streams::StreamSink::connect(self, name).await?))
    }
}

impl PubsubSourceConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.channels.is_empty() && self.patterns.is_empty() {
            return Err(Invalid::new(
                "a redis-pubsub source needs something to subscribe to",
                "set `channels = [\"name\"]` or `patterns = [\"glob*\"]`",
            ));
        }
        Ok(())
    }

    pub(crate) async fn open(&self) -> Result<Box<dyn Source>, ConnectError> {
        Ok(Box::new(pubsub::PubsubSource::connect(self).await?))
    }
}

impl PubsubSinkConfig {
    pub(crate) async fn open(&self, name: &str) -> Result<Arc<dyn Sink>, ConnectError> {
        Ok(Arc::new(pubsub::PubsubSink::connect(self, name).await?))
    }
}

/// A client for `at`: its URL, the password from `password_env`, its TLS
/// files; or a config error naming what is wrong (never the password).
fn client(what: &str, at: &Endpoint<'_>) -> Result<redis::Client, ConnectError> {
    use redis::IntoConnectionInfo;
    let invalid = |e: String| ConnectError::Invalid(format!("{what}: {e}"));
    let mut info = at
        .url
        .into_connection_info()
        .map_err(|e| invalid(format!("bad url `{}`: {e}", redacted(at.url))))?;
    if let Some(var) = at.password_env {
        let password = tls::password(var).map_err(invalid)?;
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    if tls {
        tls::provider();
    }
    match at.tls {
        Some(files) if tls => {
            let certificates = certificates(files).map_err(invalid)?;
            redis::Client::build_with_tls(info, certificates)
        }
        Some(_) => {
            return Err(invalid(format!(
                "`tls` is set but `{}` is not a rediss:// URL",
                redacted(at.url)
            )))
        }
        None => redis::Client::open(info),
    }
    .map_err(|e| invalid(format!("cannot use `{}`: {e}", redacted(at.url))))
}

/// One multiplexed connection, answered within `response` (or never time
/// out with `None`: blocking reads wait on purpose).
async fn connect(
    client: &redis::Client,
    timeout: Duration,
    response: Option<Duration>,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(response);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("PING").query_async::<()>(&mut conn).await?;
    Ok(conn)
}

/// [`connect`] at start-up: an unreachable server is exit 2, naming it.
async fn connect_at_start(
    what: &str,
    client: &redis::Client,
    url: &str,
    timeout: Duration,
    response: Option<Duration>,
) -> Result<redis::aio::MultiplexedConnection, ConnectError> {
    connect(client, timeout, response).await.map_err(|e| {
        let hint = if e.kind() == redis::ErrorKind::AuthenticationFailed {
            " (check the user in `url` and the password, `password_env`)"
        } else {
            ""
        };
        ConnectError::Unreachable(format!(
            "{what}: cannot reach Redis at {}: {e}{hint}",
            redacted(url)
        ))
    })
}
