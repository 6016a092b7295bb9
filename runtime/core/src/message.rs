//! What flows through a pipeline: a [`Message`], and the [`Delivery`] a
//! source hands the engine (the message, where it came from, and how to
//! acknowledge it).

use crate::ack::AckHandle;
use crate::dlq::FailureClass;

/// One message. Mirrors the WIT `message` record field for field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Broker key, if the broker has one for this message.
    pub key: Option<Vec<u8>>,
    /// The body, untouched bytes.
    pub payload: Vec<u8>,
    /// Headers in broker order; names may repeat.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Topic, queue, stream or file the message came from.
    pub source: String,
    /// Broker timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<u64>,
    /// 1 on the first call for this message, 2 on the first retry, ...
    pub attempt: u32,
    /// The types of headers that arrived typed from a broker whose headers
    /// have types (AMQP integers, booleans, floats), by name. Headers are
    /// bytes everywhere else (their text, for such values); a sink with
    /// typed headers writes a header listed here with its type while its
    /// value still reads as one, so a header no stage changed leaves as it
    /// came. What a stage makes of a message inherits its list. Not in WIT.
    pub header_types: Vec<(String, HeaderType)>,
}

/// A typed header's type (see [`Message::header_types`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderType {
    Bool,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    F32,
    F64,
    /// Seconds since the Unix epoch (AMQP `timestamp`).
    Timestamp,
}

impl Message {
    /// A message with just a payload, attempt 1.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Message {
            payload: payload.into(),
            attempt: 1,
            ..Default::default()
        }
    }

    /// Builder: set the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Builder: append a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Bytes of key, payload, and header names and values: what output caps
    /// and byte budgets count.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.payload.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }

    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The type header `name` arrived with, if it arrived typed.
    pub fn header_type(&self, name: &str) -> Option<HeaderType> {
        self.header_types
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
    }

    /// The first header with this name as UTF-8 text (lossy).
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Where a message sits in its broker, as name/value pairs in a fixed order:
/// `topic, partition, offset` for Kafka, `stream, id` for Redis, `line` for
/// files (the file itself is the message's `source`). Shown in logs and in the `sluice-error-source-*` DLQ headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coordinates(pub Vec<(&'static str, String)>);

impl Coordinates {
    /// Builder: append one coordinate.
    pub fn with(mut self, name: &'static str, value: impl ToString) -> Self {
        self.0.push((name, value.to_string()));
        self
    }
}

impl std::fmt::Display for Coordinates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

/// Why a delivery goes to the DLQ without entering the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub class: FailureClass,
    pub text: String,
}

impl Refusal {
    /// The source could not decode what the broker delivered.
    pub fn decode(text: impl Into<String>) -> Self {
        Refusal {
            class: FailureClass::Decode,
            text: text.into(),
        }
    }
}

/// What a source hands the engine.
#[derive(Debug)]
pub struct Delivery {
    pub message: Message,
    pub coordinates: Coordinates,
    /// Settles the message with the broker once the engine is done with it.
    pub ack: AckHandle,
    /// Set when the message must not enter the chain: the source could not
    /// decode the raw record (a line that is not JSON where JSON was
    /// configured: class `decode`), or it is over `max_message_bytes`
    /// (class `too-large`, set by the [`Outbox`](crate::budget::Outbox)).
    /// The engine dead-letters such a delivery at once.
    pub refused: Option<Refusal>,
    /// Deliveries with the same lane go to the same worker, so their order
    /// is kept (Kafka: one lane per partition; SQS FIFO: one per message
    /// group). A lane takes precedence over the key; with `None`, messages
    /// go by key hash, and keyless ones spread over the workers.
    pub lane: Option<u64>,
    /// Deliveries with the same order key keep their order through
    /// in-worker retries: while one is parked for its retry, later ones
    /// with its order key wait behind it, and every other key goes on.
    /// `None` orders by the message key (a keyless message waits for no
    /// one). SQS FIFO sets the message group here.
    pub order_key: Option<u64>,
    /// Its OpenTelemetry span while tracing is on (set by the engine).
    pub trace: Option<crate::trace::MessageTrace>,
}

impl Delivery {
    /// A decoded delivery.
    pub fn new(message: Message, coordinates: Coordinates, ack: AckHandle) -> Self {
        Delivery {
            message,
            coordinates,
            ack,
            refused: None,
            lane: None,
            order_key: None,
            trace: None,
        }
    }

    /// Builder: set the ordering lane.
    pub fn with_lane(mut self, lane: u64) -> Self {
        self.lane = Some(lane);
        self
    }
}
