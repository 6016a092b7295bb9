//! Dead letters on the wire and back. The engine makes one envelope for
//! every broker ([`sluice_core::dlq::envelope`]: the original message plus
//! `sluice-error-*` headers); this module writes it in the form the DLQ's
//! sink can carry and reads every form back for `sluice dlq`
//! ([`DeadLetterQueue`] takes them out of each broker).
//!
//! | form | where | what the DLQ holds |
//! |---|---|---|
//! | `headers` | Kafka, RabbitMQ, Redis streams, `json` files | the original message, the fields as `sluice-error-*` headers |
//! | `headers`, packed | SQS | the fields as one JSON attribute `sluice-error` ([`crate::sqs`]) |
//! | `envelope` | Redis Pub/Sub, `lines` files, or asked for | one JSON document `{"error": {...}, "message": {...}}` as the payload |

mod queue;

pub use queue::DeadLetterQueue;

use crate::lines::{decode, message_raw};
use serde::Deserialize;
use serde::Serialize;
use serde_json::value::RawValue;
use sluice_core::dlq::HEADER_PREFIX;
use sluice_core::{Confirm, Health, Message, Sink, SinkError};
use std::sync::Arc;

/// How a pipeline writes its dead letters (`dlq_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DlqFormat {
    /// The original message with the reason in `sluice-error-*` headers.
    Headers,
    /// A JSON document `{"error": {...}, "message": {...}}` as the payload,
    /// for sinks that carry no headers.
    Envelope,
}

/// A DLQ sink that writes the envelope form: each dead letter's
/// `sluice-error-*` headers and the original message go into one JSON
/// payload.
pub struct EnvelopeSink(pub Arc<dyn Sink>);

#[async_trait::async_trait]
impl Sink for EnvelopeSink {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn health(&self) -> Option<Health> {
        self.0.health()
    }

    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError> {
        self.0.publish(&to_envelope(msg)).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.0.flush().await
    }
}

/// `dead` (an envelope in the headers form) as one JSON payload.
pub fn to_envelope(dead: &Message) -> Message {
    #[derive(Serialize)]
    struct Document {
        error: serde_json::Value,
        message: Box<RawValue>,
    }
    let (error, original) = split(dead);
    let document = Document {
        error: error_json(&error),
        message: message_raw(&original),
    };
    Message {
        key: dead.key.clone(),
        payload: serde_json::to_vec(&document).expect("an envelope is JSON"),
        headers: Vec::new(),
        source: dead.source.clone(),
        timestamp_ms: dead.timestamp_ms,
        attempt: dead.attempt,
        header_types: Vec::new(),
    }
}

/// The `sluice-error-*` fields (names without the prefix) and the original.
fn split(dead: &Message) -> (Vec<(String, String)>, Message) {
    let mut original = dead.clone();
    let mut error = Vec::new();
    original
        .headers
        .retain(|(name, value)| match name.strip_prefix(HEADER_PREFIX) {
            Some(field) => {
                error.push((
                    field.to_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                ));
                false
            }
            None => true,
        });
    (error, original)
}

/// The fields as a JSON object (a repeated name keeps its first value).
pub fn error_json(error: &[(String, String)]) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (name, value) in error {
        object
            .entry(name.clone())
            .or_insert_with(|| serde_json::Value::String(value.clone()));
    }
    serde_json::Value::Object(object)
}

/// One dead letter read back from a DLQ, whatever its form.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Where it sits in the DLQ (`line=3`, `partition=0 offset=12`, ...).
    pub at: String,
    /// The `sluice-error-*` fields, names without the prefix, in order.
    pub error: Vec<(String, String)>,
    /// The message as it was when it failed.
    pub message: Message,
}

impl DeadLetter {
    /// Read a message taken from a DLQ: the headers form, or the envelope
    /// form in the payload (itself maybe inside a `json` line). `None` for
    /// a message that is neither (not a dead letter of sluice's).
    pub fn read(at: impl Into<String>, msg: &Message) -> Option<DeadLetter> {
        let at = at.into();
        if msg
            .headers
            .iter()
            .any(|(n, _)| n.starts_with(HEADER_PREFIX))
        {
            let (error, message) = split(msg);
            return Some(DeadLetter { at, error, message });
        }
        #[derive(Deserialize)]
        struct Envelope {
            error: serde_json::Map<String, serde_json::Value>,
            message: Box<serde_json::value::RawValue>,
        }
        let envelope: Envelope = serde_json::from_slice(&msg.payload).ok()?;
        let mut message = decode(envelope.message.get().as_bytes())?;
        message.key = message.key.or_else(|| msg.key.clone());
        let error = envelope
            .error
            .into_iter()
            .map(|(name, value)| match value {
                serde_json::Value::String(s) => (name, s),
                other => (name, other.to_string()),
            })
            .collect();
        Some(DeadLetter { at, error, message })
    }

    /// Read one line of a file DLQ (either line format).
    pub fn read_line(at: impl Into<String>, line: &[u8]) -> Option<DeadLetter> {
        let msg = decode(line).unwrap_or_else(|| Message::new(line.to_vec()));
        DeadLetter::read(at, &msg)
    }

    /// The value of one field (`class`, `stage`, `text`, ...).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.error
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// As one JSON document of `pipeline`'s DLQ: where, why, and the
    /// message (as a `json` line holds it, byte for byte).
    pub fn to_json(&self, pipeline: &str) -> String {
        #[derive(Serialize)]
        struct Shown<'a> {
            at: &'a str,
            error: serde_json::Value,
            message: Box<RawValue>,
            pipeline: &'a str,
        }
        let shown = Shown {
            at: &self.at,
            error: error_json(&self.error),
            message: message_raw(&self.message),
            pipeline,
        };
        serde_json::to_string(&shown).expect("a dead letter is JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::dlq::{envelope, Failure, FailureClass};
    use sluice_core::Coordinates;
    use std::time::SystemTime;

    fn dead() -> Message {
        let original = Message::new(r#"{"id":7}"#)
            .with_key("k")
            .with_header("trace", "t1");
        let failure = Failure::once("check", FailureClass::Fatal, "no id", SystemTime::now());
        envelope(
            "orders",
            &original,
            &Coordinates::default().with("line", 3),
            &failure,
        )
    }

    #[test]
    fn both_forms_read_back_to_the_same_fields_and_message() {
        let mut headers = DeadLetter::read("a", &dead()).expect("headers form");
        let wrapped = to_envelope(&dead());
        assert!(wrapped.headers.is_empty());
        let mut enveloped = DeadLetter::read("a", &wrapped).expect("envelope form");
        // A JSON object keeps its fields in name order.
        headers.error.sort();
        enveloped.error.sort();
        assert_eq!(headers, enveloped);
        assert_eq!(headers.field("class"), Some("fatal"));
        assert_eq!(headers.field("source-line"), Some("3"));
        assert_eq!(
            headers.message.headers,
            [("trace".to_string(), b"t1".to_vec())]
        );
        assert_eq!(headers.message.payload, br#"{"id":7}"#);
    }

    #[test]
    fn file_lines_of_either_format_read_back() {
        use crate::lines::{encode, LineFormat};
        let json_line = encode(&dead(), LineFormat::Json);
        let lines_line = encode(&to_envelope(&dead()), LineFormat::Lines);
        for line in [json_line, lines_line] {
            let read =
                DeadLetter::read_line("line=1", line.trim_ascii_end()).expect("a dead letter");
            assert_eq!(read.field("stage"), Some("check"));
            assert_eq!(read.message.key.as_deref(), Some(&b"k"[..]));
        }
        assert!(DeadLetter::read_line("line=2", br#"{"id":1}"#).is_none());
    }

    use proptest::strategy::Strategy;

    /// What a dead letter must keep of the message that failed.
    fn kept(
        m: &Message,
    ) -> (
        Option<&[u8]>,
        &[u8],
        &[(String, Vec<u8>)],
        &str,
        Option<u64>,
    ) {
        (
            m.key.as_deref(),
            &m.payload,
            &m.headers,
            &m.source,
            m.timestamp_ms,
        )
    }

    fn failure() -> impl proptest::strategy::Strategy<Value = Failure> {
        use proptest::prelude::*;
        (
            "\\PC{0,30}",
            proptest::sample::select(FailureClass::ALL.to_vec()),
            proptest::prop_oneof!["\\PC{0,200}", "\\PC{5000,6000}"],
            1u32..100,
        )
            .prop_map(|(stage, class, text, attempts)| Failure {
                attempts,
                ..Failure::once(stage, class, text, SystemTime::UNIX_EPOCH)
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1000, ..Default::default() })]

        /// Every message and failure round-trips through both forms and
        /// through `sluice dlq show`'s JSON (its `message` read back).
        #[test]
        fn every_dead_letter_reads_back_whole_in_either_form(
            original in sluice_core::arbitrary::message()
                .prop_filter("no sluice-error- headers of its own", |m| {
                    m.headers.iter().all(|(n, _)| !n.starts_with(HEADER_PREFIX))
                }),
            failure in failure(),
        ) {
            let coordinates = Coordinates::default().with("line", 3);
            let dead = envelope("p", &original, &coordinates, &failure);
            for (form, written) in [("headers", dead.clone()), ("envelope", to_envelope(&dead))] {
                let read = DeadLetter::read("at", &written);
                proptest::prop_assert!(read.is_some(), "{form}: not read back");
                let read = read.unwrap();
                proptest::prop_assert_eq!(kept(&read.message), kept(&original), "{} form", form);
                proptest::prop_assert_eq!(read.field("class"), Some(failure.class.as_str()));
                proptest::prop_assert_eq!(read.field("stage"), Some(failure.stage.as_str()));
                let text = read.field("text").unwrap_or_default();
                proptest::prop_assert!(
                    text == failure.text || (failure.text.len() > sluice_core::dlq::MAX_TEXT && text.ends_with("bytes cut)")),
                    "{form}: text {text:?}"
                );
                #[derive(Deserialize)]
                struct Shown {
                    message: Box<RawValue>,
                }
                let shown: Shown = serde_json::from_str(&read.to_json("p")).unwrap();
                let again = crate::lines::decode(shown.message.get().as_bytes());
                proptest::prop_assert!(again.is_some(), "{form}: dlq show's message does not read back");
                let again = again.unwrap();
                proptest::prop_assert_eq!(kept(&again), kept(&original), "{} form, through dlq show", form);
            }
        }
    }
}
