//! Line-oriented encoding shared by the file and stdio connectors: a source
//! that turns lines into deliveries, and a sink writer that turns messages
//! into lines with group commit (confirm after the batch is flushed).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sluice_core::Outbox;
use sluice_core::Shutdown;
use sluice_core::{
    AckHandle, Confirm, Coordinates, Delivery, Message, Refusal, SinkError, SourceError,
};
use std::io::Write;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::{mpsc, oneshot};

/// How a line maps to a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineFormat {
    /// Sources: each line is a JSON document and becomes the payload; a line
    /// that is not JSON is dead-lettered (class `decode`).
    /// Sinks: each message is written as a JSON envelope
    /// `{"key","headers","source","timestamp_ms","payload"}`.
    #[default]
    Json,
    /// Each line is the payload, bytes as they are; sinks write the payload only.
    Lines,
}

/// Read `reader` to the end (or until shutdown), one delivery per non-empty
/// line. `key_field` (JSON only) names a top-level field whose value becomes
/// the message key.
pub async fn read_lines(
    name: &str,
    mut reader: impl AsyncBufRead + Unpin,
    format: LineFormat,
    key_field: Option<&str>,
    out: Outbox,
    shutdown: Shutdown,
) -> Result<(), SourceError> {
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            read = reader.read_until(b'\n', &mut line) => read,
        };
        let read = read.map_err(|source| SourceError::Io {
            source_name: name.to_owned(),
            source,
        })?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut message = Message::new(line.clone());
        message.source = name.to_owned();
        let mut delivery = Delivery::new(
            message,
            Coordinates::default().with("line", number),
            AckHandle::none(),
        );
        if format == LineFormat::Json {
            // Build a document only when a key must be taken from it;
            // otherwise just check the line is JSON.
            let checked = match key_field {
                Some(field) => serde_json::from_slice::<serde_json::Value>(&line)
                    .map(|doc| key_of(&doc, field)),
                None => serde_json::from_slice::<serde::de::IgnoredAny>(&line).map(|_| None),
            };
            match checked {
                Ok(key) => delivery.message.key = key,
                Err(e) => {
                    delivery.refused = Some(Refusal::decode(format!(
                        "line {number} is not valid JSON: {e}"
                    )))
                }
            }
        }
        if out.send(delivery).await.is_err() {
            return Ok(());
        }
    }
}

fn key_of(doc: &serde_json::Value, field: &str) -> Option<Vec<u8>> {
    match doc.get(field)? {
        serde_json::Value::String(s) => Some(s.clone().into_bytes()),
        serde_json::Value::Null => None,
        other => Some(other.to_string().into_bytes()),
    }
}

/// The JSON envelope a sink writes per message in `json` format. Lossless:
/// what is not text goes as base64 (`key_base64`, `payload_base64`, a
/// header value `{"base64": ...}`), and headers whose names repeat or whose
/// values are not text go as a list of `[name, value]` pairs.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    key: Option<&'a str>,
    headers: HeadersOut<'a>,
    source: &'a str,
    timestamp_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Box<serde_json::value::RawValue>>,
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The payload as it goes into a `json` line: embedded when it is exactly
/// one JSON document other than a string (byte for byte, so it reads back
/// the same), else a JSON string of its text; `None` when it is not text.
fn embedded(payload: &[u8]) -> Option<Box<serde_json::value::RawValue>> {
    if let Ok(raw) = serde_json::from_slice::<&serde_json::value::RawValue>(payload) {
        if raw.get().len() == payload.len() && !raw.get().starts_with('"') {
            return Some(raw.to_owned());
        }
    }
    let text = std::str::from_utf8(payload).ok()?;
    Some(serde_json::value::to_raw_value(text).expect("a string always serializes"))
}

/// Headers as they go into a `json` line: an object of name to text, in
/// their order, when the names are each there once and every value is
/// text; otherwise a list of `[name, value]` pairs (a value that is not
/// text as `{"base64": ...}`), which loses nothing either.
struct HeadersOut<'a>(&'a [(String, Vec<u8>)]);

impl Serialize for HeadersOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let headers = self.0;
        // Header lists are short: a quadratic check allocates nothing.
        let unique = headers
            .iter()
            .enumerate()
            .all(|(i, (name, _))| headers[..i].iter().all(|(other, _)| other != name));
        let all_text = headers.iter().all(|(_, v)| std::str::from_utf8(v).is_ok());
        if unique && all_text {
            let mut map = s.serialize_map(Some(headers.len()))?;
            for (name, value) in headers {
                map.serialize_entry(name, &*String::from_utf8_lossy(value))?;
            }
            return map.end();
        }
        let mut seq = s.serialize_seq(Some(headers.len()))?;
        for (name, value) in headers {
            let value = match std::str::from_utf8(value) {
                Ok(text) => serde_json::Value::String(text.to_owned()),
                Err(_) => serde_json::json!({ "base64": base64(value) }),
            };
            seq.serialize_element(&(name, value))?;
        }
        seq.end()
    }
}

/// Headers as read from a `json` line, in the order written: an object or
/// a list of `[name, value]` pairs (see [`HeadersOut`]); null for none.
#[derive(Default)]
struct HeadersIn(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for HeadersIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = HeadersIn;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of headers or a list of [name, value] pairs")
            }
            fn visit_unit<E>(self) -> Result<HeadersIn, E> {
                Ok(HeadersIn::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<HeadersIn, A::Error> {
                let mut headers = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    headers.push(pair);
                }
                Ok(HeadersIn(headers))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<HeadersIn, A::Error> {
                let mut headers = Vec::new();
                while let Some(pair) = seq.next_element()? {
                    headers.push(pair);
                }
                Ok(HeadersIn(headers))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Render one message as one line (with the trailing newline).
pub fn encode(msg: &Message, format: LineFormat) -> Vec<u8> {
    match format {
        LineFormat::Lines => {
            let mut line = msg.payload.clone();
            line.push(b'\n');
            line
        }
        LineFormat::Json => {
            let mut line = message_raw(msg).get().as_bytes().to_vec();
            line.push(b'\n');
            line
        }
    }
}

/// One message as the JSON object a `json` line holds (the envelope of
/// [`encode`]), for documents that embed messages (a DLQ envelope) as it
/// is, byte for byte.
pub fn message_raw(msg: &Message) -> Box<serde_json::value::RawValue> {
    let key_text = msg.key.as_deref().map(std::str::from_utf8);
    let payload = embedded(&msg.payload);
    let envelope = Envelope {
        key_base64: match (&msg.key, key_text) {
            (Some(key), Some(Err(_))) => Some(base64(key)),
            _ => None,
        },
        key: key_text.and_then(Result::ok),
        headers: HeadersOut(&msg.headers),
        source: &msg.source,
        timestamp_ms: msg.timestamp_ms,
        payload_base64: payload.is_none().then(|| base64(&msg.payload)),
        payload,
    };
    serde_json::value::to_raw_value(&envelope).expect("an envelope always serializes")
}

/// Read back a line a sink wrote in `json` format (the inverse of
/// [`encode`]), or the object [`message_raw`] made; `None` if it is
/// neither. A JSON payload comes back as its text, a string payload as the
/// string, base64 as its bytes; header values and the key likewise. Lines
/// written by hand may give header values of any JSON type (as their text).
pub fn decode(json: &[u8]) -> Option<Message> {
    use serde_json::Value;
    #[derive(Deserialize)]
    struct Written {
        key: Option<String>,
        key_base64: Option<String>,
        #[serde(default)]
        headers: HeadersIn,
        #[serde(default)]
        source: String,
        timestamp_ms: Option<u64>,
        payload: Option<Box<serde_json::value::RawValue>>,
        payload_base64: Option<String>,
    }
    let unbase64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).ok();
    let value_bytes = |value: Value| -> Option<Vec<u8>> {
        Some(match value {
            Value::String(s) => s.into_bytes(),
            Value::Object(o) if o.len() == 1 && o.get("base64").is_some_and(Value::is_string) => {
                unbase64(o["base64"].as_str()?)?
            }
            other => other.to_string().into_bytes(),
        })
    };
    let written: Written = serde_json::from_slice(json).ok()?;
    let payload = match (written.payload, written.payload_base64) {
        (_, Some(b64)) => unbase64(&b64)?,
        (Some(raw), None) => match serde_json::from_str::<String>(raw.get()) {
            Ok(text) => text.into_bytes(),
            Err(_) => raw.get().as_bytes().to_vec(),
        },
        (None, None) => return None,
    };
    let headers = written
        .headers
        .0
        .into_iter()
        .map(|(name, value)| Some((name, value_bytes(value)?)))
        .collect::<Option<_>>()?;
    let key = match written.key_base64 {
        Some(b64) => Some(unbase64(&b64)?),
        None => written.key.map(String::into_bytes),
    };
    Some(Message {
        key,
        payload,
        headers,
        source: written.source,
        timestamp_ms: written.timestamp_ms,
        attempt: 1,
        header_types: Vec::new(),
    })
}

type Job = (Vec<u8>, oneshot::Sender<Result<(), String>>);

/// Lines queued for the writer thread at most (and written per flush).
const QUEUE: usize = 1024;

/// A line writer on its own thread. Lines are written in the order they are
/// handed over; each confirm resolves after the batch it was in is flushed
/// (group commit: one flush for everything that queued up meanwhile).
pub struct LineWriter {
    name: String,
    jobs: mpsc::Sender<Job>,
}

impl LineWriter {
    /// Start the writer thread.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn spawn(name: String, mut out: Box<dyn Write + Send>) -> std::io::Result<Self> {
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name(format!("sluice-write-{name}"))
            .spawn(move || {
                // Everything queued is taken at once: its slots free together,
                // so a sender that filled the queue (one message split into
                // thousands) wakes once per group, not once per line, and the
                // groups stay large.
                let mut group = Vec::with_capacity(QUEUE);
                let mut waiting = Vec::with_capacity(QUEUE);
                while rx.blocking_recv_many(&mut group, QUEUE) > 0 {
                    let mut result = Ok(());
                    for (line, confirm) in group.drain(..) {
                        if result.is_ok() {
                            result = out.write_all(&line);
                        }
                        waiting.push(confirm);
                    }
                    let result = result.and_then(|()| out.flush()).map_err(|e| e.to_string());
                    for confirm in waiting.drain(..) {
                        let _ = confirm.send(result.clone());
                    }
                }
            })?;
        Ok(LineWriter { name, jobs })
    }

    /// Queue one line; the confirm resolves once it is flushed.
    ///
    /// # Errors
    /// When the writer thread is gone.
    pub async fn write(&self, line: Vec<u8>) -> Result<Confirm, SinkError> {
        let (tx, rx) = oneshot::channel();
        let gone = || SinkError::Publish {
            sink: self.name.clone(),
            reason: "writer thread stopped".into(),
        };
        self.jobs.send((line, tx)).await.map_err(|_| gone())?;
        let name = self.name.clone();
        Ok(Box::pin(async move {
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(SinkError::Publish { sink: name, reason }),
                Err(_) => Err(SinkError::Publish {
                    sink: name,
                    reason: "writer thread stopped".into(),
                }),
            }
        }))
    }

    /// Resolves once everything queued before it is flushed.
    ///
    /// # Errors
    /// When the writer thread is gone or the flush failed.
    pub async fn flush(&self) -> Result<(), SinkError> {
        self.write(Vec::new()).await?.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_envelope_embeds_json_payloads_and_quotes_others() {
        let msg = Message::new(br#"{"a":1}"#.to_vec())
            .with_key("k")
            .with_header("h", "v");
        let line = String::from_utf8(encode(&msg, LineFormat::Json)).unwrap();
        assert_eq!(line, "{\"key\":\"k\",\"headers\":{\"h\":\"v\"},\"source\":\"\",\"timestamp_ms\":null,\"payload\":{\"a\":1}}\n");
        let raw = Message::new(b"not json".to_vec());
        let line = String::from_utf8(encode(&raw, LineFormat::Json)).unwrap();
        assert!(line.contains("\"payload\":\"not json\""), "{line}");
    }

    #[test]
    fn a_json_line_reads_back_as_the_message_it_was() {
        let msg = Message::new(r#"{"id":1}"#)
            .with_key("k")
            .with_header("h", "v");
        let mut line = encode(&msg, LineFormat::Json);
        line.pop();
        let back = decode(&line).expect("a json line");
        assert_eq!(
            (back.key, back.payload, back.headers),
            (msg.key.clone(), msg.payload.clone(), msg.headers.clone())
        );
        let text = Message::new("not json");
        let back = decode(message_raw(&text).get().as_bytes()).unwrap();
        assert_eq!(back.payload, b"not json");
        assert!(
            decode(b"{\"id\":1}").is_none(),
            "a plain document is not an envelope"
        );
    }

    #[tokio::test]
    async fn json_lines_become_deliveries_and_bad_lines_carry_a_decode_error() {
        let input: &[u8] = b"{\"id\":\"a\"}\n\nnot json\r\n{\"id\":7}";
        let (tx, mut rx) = Outbox::channel(10, Default::default());
        read_lines(
            "t",
            input,
            LineFormat::Json,
            Some("id"),
            tx,
            Shutdown::default(),
        )
        .await
        .unwrap();
        let a = rx.recv().await.unwrap();
        assert_eq!(a.message.key.as_deref(), Some(&b"a"[..]));
        assert_eq!(a.coordinates.to_string(), "line=1");
        let bad = rx.recv().await.unwrap();
        assert!(bad
            .refused
            .unwrap()
            .text
            .starts_with("line 3 is not valid JSON"));
        let seven = rx.recv().await.unwrap();
        assert_eq!(seven.message.key.as_deref(), Some(&b"7"[..]));
        assert!(rx.recv().await.is_none());
    }
}
