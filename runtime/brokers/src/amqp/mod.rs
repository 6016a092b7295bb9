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
//! bytes, other types as their text, their type kept in
//! [`Message::header_types`](sluice_core::Message::header_types) so that
//! a header no stage changed is written back with its type: an integer
//! stays an integer through a RabbitMQ → RabbitMQ pipeline); the message key travels in the header
//! `sluice-key`; the AMQP timestamp (seconds) ↔ `timestamp_ms`.

mod read_back;
mod retry;
mod sink;
mod source;

pub use crate::settle::RETRY_COUNT_HEADER;
pub(crate) use read_back::open_dlq;

use crate::kafka::Property;
use crate::tls::TlsFiles;
use crate::{ConnectError, Invalid};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use serde::Deserialize;
use sluice_core::{HeaderType, HumanDuration, Message, Sink, Source};
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
    /// The environment variable holding the password (the user is the
    /// URL's: `amqps://sluice@host:5671/vhost`), so the TOML holds no
    /// secret; a password inline in `url` works too.
    pub password_env: Option<String>,
    /// TLS for an `amqps://` URL: `ca_file`, the CA to trust instead of the
    /// system's roots (client certificates are not supported yet).
    pub tls: Option<TlsFiles>,
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
    /// The environment variable holding the password (the user is the
    /// URL's: `amqps://sluice@host:5671/vhost`), so the TOML holds no
    /// secret; a password inline in `url` works too.
    pub password_env: Option<String>,
    /// TLS for an `amqps://` URL: `ca_file`, the CA to trust instead of the
    /// system's roots (client certificates are not supported yet).
    pub tls: Option<TlsFiles>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

fn default_url() -> String {
    // No user: lapin logs in as guest/guest, RabbitMQ's local default.
    "amqp://127.0.0.1:5672/%2f".into()
}

/// Where a RabbitMQ table connects and how it logs in (owned: reconnects
/// and the retry republisher keep it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Endpoint {
    pub url: String,
    pub password_env: Option<String>,
    pub tls: Option<TlsFiles>,
}

macro_rules! endpoint {
    ($($config:ty),*) => {$(
        impl $config {
            pub(crate) fn endpoint(&self) -> Endpoint {
                Endpoint {
                    url: self.url.clone(),
                    password_env: self.password_env.clone(),
                    tls: self.tls.clone(),
                }
            }

            /// Check the TLS files (paths made absolute against `base`).
            pub(crate) fn resolve_files(&mut self, base: &std::path::Path) -> Result<(), Invalid> {
                match &mut self.tls {
                    Some(tls) => tls.resolve(base),
                    None => Ok(()),
                }
            }
        }
    )*};
}
endpoint!(AmqpSourceConfig, AmqpSinkConfig);
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
async fn connect(at: &Endpoint, timeout: Duration) -> Result<lapin::Connection, String> {
    let mut uri: lapin::uri::AMQPUri = at
        .url
        .parse()
        .map_err(|e| format!("bad url `{}`: {e}", crate::redacted(&at.url)))?;
    if let Some(var) = &at.password_env {
        uri.authority.userinfo.password = crate::tls::password(var)?;
    }
    let mut tls = lapin::tcp::OwnedTLSConfig::default();
    if let Some(files) = &at.tls {
        if let Some(ca) = &files.ca_file {
            let pem = crate::tls::read(ca)?;
            tls.cert_chain = Some(String::from_utf8_lossy(&pem).into_owned());
        }
        // Mutual TLS: the client certificate (its chain) and key, as PEM.
        if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
            tls.identity = Some(lapin::tcp::OwnedIdentity::PKCS8 {
                pem: crate::tls::read(cert)?,
                key: crate::tls::read(key)?,
            });
        }
    }
    let properties = lapin::ConnectionProperties::default()
        .with_connection_name(format!("sluice-{}", std::process::id()).into());
    let connecting = lapin::ConnectionBuilder::new()
        .map_err(|e| e.to_string())?
        .with_uri(uri)
        .with_properties(properties)
        .with_tls_config(tls);
    match tokio::time::timeout(timeout, connecting.connect()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("{e}{}", handshake_hint(at, &e.to_string()))),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// Why an `amqps://` server may close the connection without a word: with
/// TLS 1.3 the server checks the client's certificate after the client
/// thinks the handshake is done, so a missing or untrusted one often shows
/// up as a reset connection instead of the server's alert.
fn handshake_hint(at: &Endpoint, error: &str) -> &'static str {
    let closed = [
        "reset by peer",
        "connection closed",
        "broken pipe",
        "unexpected eof",
    ]
    .iter()
    .any(|c| error.to_lowercase().contains(c));
    if !at.url.starts_with("amqps://") || !closed || error.contains("ertificate") {
        return "";
    }
    match at.tls.as_ref().and_then(|t| t.cert_file.as_ref()) {
        None => " (the server closed the connection right after the TLS handshake: if it requires a client certificate, set `tls.cert_file` and `tls.key_file`)",
        Some(_) => " (the server closed the connection right after the TLS handshake: it may not trust the client certificate of `tls.cert_file`)",
    }
}

/// [`connect`] at start-up: failure is exit 2, naming the server.
async fn connect_at_start(
    what: &str,
    at: &Endpoint,
    timeout: Duration,
) -> Result<lapin::Connection, ConnectError> {
    connect(at, timeout).await.map_err(|e| {
        ConnectError::Unreachable(format!(
            "{what}: cannot reach RabbitMQ at {}: {e}",
            crate::redacted(&at.url)
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

/// The longest AMQP field name (a short string), in bytes.
pub(super) const MAX_NAME: usize = 255;

/// A header of `msg` whose name AMQP cannot carry (the sink refuses such a
/// message, so it is dead-lettered with the reason).
pub(super) fn unfit_header(msg: &Message) -> Option<&str> {
    msg.headers
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| name.len() > MAX_NAME)
}

/// The AMQP properties of `msg`: its headers as byte strings, except those
/// that came typed and still read as their type (see [`typed`]); its key in
/// [`KEY_HEADER`], its timestamp in seconds; `delivery_mode` 2 when
/// `persistent`.
fn properties(msg: &Message, persistent: bool) -> BasicProperties {
    let mut headers = FieldTable::default();
    // A name too long for AMQP is never sent ([`unfit_header`]).
    for (name, value) in msg.headers.iter().filter(|(n, _)| n.len() <= MAX_NAME) {
        let value = msg
            .header_type(name)
            .and_then(|t| typed(t, value))
            .unwrap_or_else(|| AMQPValue::LongString(LongString::from(value.as_slice())));
        headers.insert(ShortString::from(name.as_str()), value);
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

/// The type of an AMQP header value that is not a string or bytes, for
/// [`Message::header_types`].
fn header_type(value: &AMQPValue) -> Option<HeaderType> {
    Some(match value {
        AMQPValue::Boolean(_) => HeaderType::Bool,
        AMQPValue::ShortShortInt(_) => HeaderType::I8,
        AMQPValue::ShortShortUInt(_) => HeaderType::U8,
        AMQPValue::ShortInt(_) => HeaderType::I16,
        AMQPValue::ShortUInt(_) => HeaderType::U16,
        AMQPValue::LongInt(_) => HeaderType::I32,
        AMQPValue::LongUInt(_) => HeaderType::U32,
        AMQPValue::LongLongInt(_) => HeaderType::I64,
        AMQPValue::Float(_) => HeaderType::F32,
        AMQPValue::Double(_) => HeaderType::F64,
        AMQPValue::Timestamp(_) => HeaderType::Timestamp,
        _ => return None,
    })
}

/// `text` (a header's bytes) as an AMQP value of type `t`, if it reads as
/// one: the inverse of [`header_bytes`] for typed values. A stage that set
/// the header to something else gets a string.
fn typed(t: HeaderType, text: &[u8]) -> Option<AMQPValue> {
    let text = std::str::from_utf8(text).ok()?;
    Some(match t {
        HeaderType::Bool => AMQPValue::Boolean(text.parse().ok()?),
        HeaderType::I8 => AMQPValue::ShortShortInt(text.parse().ok()?),
        HeaderType::U8 => AMQPValue::ShortShortUInt(text.parse().ok()?),
        HeaderType::I16 => AMQPValue::ShortInt(text.parse().ok()?),
        HeaderType::U16 => AMQPValue::ShortUInt(text.parse().ok()?),
        HeaderType::I32 => AMQPValue::LongInt(text.parse().ok()?),
        HeaderType::U32 => AMQPValue::LongUInt(text.parse().ok()?),
        HeaderType::I64 => AMQPValue::LongLongInt(text.parse().ok()?),
        HeaderType::F32 => AMQPValue::Float(text.parse().ok()?),
        HeaderType::F64 => AMQPValue::Double(text.parse().ok()?),
        HeaderType::Timestamp => AMQPValue::Timestamp(text.parse().ok()?),
    })
}

/// An AMQP header value as bytes: strings as they are, numbers as their
/// text, tables and arrays (`x-death`) as JSON, void as nothing.
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
        AMQPValue::Void => Vec::new(),
        other => json_of(other).to_string().into_bytes(),
    }
}

/// A nested AMQP value as JSON: tables as objects, arrays as arrays,
/// strings and bytes as (lossy) text, decimals as their decimal text,
/// floats that JSON cannot hold (NaN, infinities) as null.
fn json_of(value: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    let text = |bytes: &[u8]| Value::String(String::from_utf8_lossy(bytes).into_owned());
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Timestamp(n) => (*n).into(),
        AMQPValue::Float(x) => {
            serde_json::Number::from_f64(f64::from(*x)).map_or(Value::Null, Value::Number)
        }
        AMQPValue::Double(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let digits = format!("{:0>width$}", d.value, width = usize::from(d.scale) + 1);
            let (int, frac) = digits.split_at(digits.len() - usize::from(d.scale));
            Value::String(if frac.is_empty() {
                int.to_owned()
            } else {
                format!("{int}.{frac}")
            })
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => text(s.as_bytes()),
        AMQPValue::ByteArray(b) => text(b.as_slice()),
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(json_of).collect())
        }
        AMQPValue::FieldTable(table) => Value::Object(
            table
                .inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), json_of(v)))
                .collect(),
        ),
        AMQPValue::Void => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any AMQP value, nested up to three deep.
    fn amqp_value() -> impl Strategy<Value = AMQPValue> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(AMQPValue::Boolean),
            any::<i8>().prop_map(AMQPValue::ShortShortInt),
            any::<u8>().prop_map(AMQPValue::ShortShortUInt),
            any::<i16>().prop_map(AMQPValue::ShortInt),
            any::<u16>().prop_map(AMQPValue::ShortUInt),
            any::<i32>().prop_map(AMQPValue::LongInt),
            any::<u32>().prop_map(AMQPValue::LongUInt),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            any::<f32>().prop_map(AMQPValue::Float),
            any::<f64>().prop_map(AMQPValue::Double),
            (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| AMQPValue::DecimalValue(
                lapin::types::DecimalValue { scale, value }
            )),
            "\\PC{0,20}".prop_map(|s| AMQPValue::ShortString(s.as_str().into())),
            prop::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| AMQPValue::LongString(b.as_slice().into())),
            any::<u64>().prop_map(AMQPValue::Timestamp),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| AMQPValue::ByteArray(b.into())),
            Just(AMQPValue::Void),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6)
                    .prop_map(|items| AMQPValue::FieldArray(items.into())),
                prop::collection::vec(("[a-z-]{1,12}", inner), 0..6).prop_map(|entries| {
                    let mut table = FieldTable::default();
                    for (k, v) in entries {
                        table.insert(k.as_str().into(), v);
                    }
                    AMQPValue::FieldTable(table)
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// Whatever headers a delivery carries (typed values, tables,
        /// arrays, bytes that are not UTF-8), it becomes a message; a table
        /// or an array reads as JSON; a typed value goes out as it came.
        #[test]
        fn any_amqp_headers_become_a_message(
            entries in prop::collection::vec(("\\PC{0,30}", amqp_value()), 0..8),
        ) {
            let mut table = FieldTable::default();
            for (name, value) in &entries {
                table.insert(name.as_str().into(), value.clone());
            }
            let props = BasicProperties::default().with_headers(table.clone());
            let msg = source::message_of(&props, b"p".to_vec(), "q");
            for (name, value) in table.inner() {
                let name = name.as_str();
                let Some(bytes) = msg.header(name).or_else(|| msg.key.as_deref().filter(|_| name == KEY_HEADER)) else {
                    return Err(TestCaseError::fail(format!("header {name:?} is missing")));
                };
                if matches!(value, AMQPValue::FieldTable(_) | AMQPValue::FieldArray(_)) {
                    prop_assert!(serde_json::from_slice::<serde_json::Value>(bytes).is_ok(), "{name}: {bytes:?}");
                }
                if let Some(t) = msg.header_type(name) {
                    let back = typed(t, bytes);
                    // NaN is the one value not equal to itself.
                    let nan = matches!(value, AMQPValue::Float(x) if x.is_nan()) || matches!(value, AMQPValue::Double(x) if x.is_nan());
                    prop_assert!(nan || back.as_ref() == Some(value), "{name}: {value:?} came back as {back:?}");
                }
            }
        }

        /// What the sink writes, the source reads back: the key, the
        /// payload and every header (AMQP keeps the last of a repeated
        /// name, in name order).
        #[test]
        fn a_message_round_trips_through_the_amqp_properties(
            msg in sluice_core::arbitrary::message()
                .prop_filter("names AMQP can carry", |m| m.headers.iter().all(|(n, _)| n.len() <= MAX_NAME && n != KEY_HEADER)),
        ) {
            let props = properties(&msg, true);
            let back = source::message_of(&props, msg.payload.clone(), "q");
            let mut expected: std::collections::BTreeMap<&str, &[u8]> = Default::default();
            for (name, value) in &msg.headers {
                expected.insert(name, value);
            }
            let got: std::collections::BTreeMap<&str, &[u8]> =
                back.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(back.key, msg.key);
            prop_assert_eq!(back.payload, msg.payload);
        }
    }

    #[test]
    fn a_header_name_longer_than_an_amqp_short_string_is_found_and_never_encoded() {
        let long = "h".repeat(MAX_NAME + 1);
        let msg = Message::new("p")
            .with_header("ok", "1")
            .with_header(long.as_str(), "2");
        assert_eq!(unfit_header(&msg), Some(long.as_str()));
        let props = properties(&msg, true);
        let headers = props.headers().as_ref().unwrap().inner();
        assert!(headers.get("ok").is_some());
        assert_eq!(headers.len(), 1);
        let fits = Message::new("p").with_header("h".repeat(MAX_NAME), "3");
        assert_eq!(unfit_header(&fits), None);
    }

    #[test]
    fn a_typed_header_goes_out_with_its_type_while_its_text_reads_as_one() {
        let values = [
            AMQPValue::LongLongInt(-3),
            AMQPValue::ShortShortUInt(7),
            AMQPValue::LongInt(1 << 20),
            AMQPValue::Boolean(true),
            AMQPValue::Double(0.25),
            AMQPValue::Timestamp(1_700_000_000),
        ];
        for value in values {
            let t = header_type(&value).expect("typed");
            assert_eq!(
                typed(t, &header_bytes(&value)),
                Some(value.clone()),
                "{value:?}"
            );
        }
        assert_eq!(header_type(&AMQPValue::LongString("x".into())), None);
        let mut msg = Message::new("p")
            .with_header("n", "5")
            .with_header("changed", "not a number");
        msg.header_types = vec![
            ("n".into(), HeaderType::I64),
            ("changed".into(), HeaderType::I32),
        ];
        let props = properties(&msg, true);
        let headers = props.headers().as_ref().unwrap().inner();
        assert_eq!(headers.get("n"), Some(&AMQPValue::LongLongInt(5)));
        assert_eq!(
            headers.get("changed"),
            Some(&AMQPValue::LongString("not a number".into())),
            "a value that no longer reads as its type goes out as a string"
        );
    }
}
