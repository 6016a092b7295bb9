//! Line-oriented encoding shared by the file and stdio connectors: a source
//! that turns lines into deliveries, and a sink writer that turns messages
//! into lines with group commit (confirm after the batch is flushed).

use serde::{Deserialize, Serialize};
use sluice_core::Shutdown;
use sluice_core::{AckHandle, Confirm, Coordinates, Delivery, Message, SinkError, SourceError};
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
    out: mpsc::Sender<Delivery>,
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
                    delivery.decode_error = Some(format!("line {number} is not valid JSON: {e}"))
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

/// The JSON envelope a sink writes per message in `json` format.
#[derive(Serialize)]
struct Envelope<'a> {
    key: Option<std::borrow::Cow<'a, str>>,
    headers: serde_json::Map<String, serde_json::Value>,
    source: &'a str,
    timestamp_ms: Option<u64>,
    payload: &'a serde_json::value::RawValue,
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
            let as_string;
            let payload: &serde_json::value::RawValue = match serde_json::from_slice(&msg.payload) {
                Ok(raw) => raw,
                Err(_) => {
                    as_string =
                        serde_json::value::to_raw_value(&String::from_utf8_lossy(&msg.payload))
                            .expect("a string always serializes");
                    &as_string
                }
            };
            let headers = msg
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
                    )
                })
                .collect();
            let envelope = Envelope {
                key: msg.key.as_deref().map(String::from_utf8_lossy),
                headers,
                source: &msg.source,
                timestamp_ms: msg.timestamp_ms,
                payload,
            };
            let mut line = serde_json::to_vec(&envelope).expect("an envelope always serializes");
            line.push(b'\n');
            line
        }
    }
}

/// One message as the JSON object a `json` line holds (the envelope of
/// [`encode`]), for documents that embed messages (a DLQ envelope).
pub fn message_json(msg: &Message) -> serde_json::Value {
    let mut line = encode(msg, LineFormat::Json);
    line.pop();
    serde_json::from_slice(&line).expect("an envelope is JSON")
}

/// Read back a line a sink wrote in `json` format (the inverse of
/// [`encode`]), or the object [`message_json`] made; `None` if it is
/// neither. A JSON payload comes back as its text, a string payload as the
/// string; header values and the key as their text.
pub fn decode(json: &[u8]) -> Option<Message> {
    #[derive(Deserialize)]
    struct Written {
        key: Option<String>,
        #[serde(default)]
        headers: serde_json::Map<String, serde_json::Value>,
        #[serde(default)]
        source: String,
        timestamp_ms: Option<u64>,
        payload: Box<serde_json::value::RawValue>,
    }
    let written: Written = serde_json::from_slice(json).ok()?;
    let raw = written.payload.get();
    let payload = match serde_json::from_str::<String>(raw) {
        Ok(text) => text.into_bytes(),
        Err(_) => raw.as_bytes().to_vec(),
    };
    let headers = written
        .headers
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (name, value.into_bytes())
        })
        .collect();
    Some(Message {
        key: written.key.map(String::into_bytes),
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
        let back = decode(&message_json(&text).to_string().into_bytes()).unwrap();
        assert_eq!(back.payload, b"not json");
        assert!(
            decode(b"{\"id\":1}").is_none(),
            "a plain document is not an envelope"
        );
    }

    #[tokio::test]
    async fn json_lines_become_deliveries_and_bad_lines_carry_a_decode_error() {
        let input: &[u8] = b"{\"id\":\"a\"}\n\nnot json\r\n{\"id\":7}";
        let (tx, mut rx) = mpsc::channel(10);
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
            .decode_error
            .unwrap()
            .starts_with("line 3 is not valid JSON"));
        let seven = rx.recv().await.unwrap();
        assert_eq!(seven.message.key.as_deref(), Some(&b"7"[..]));
        assert!(rx.recv().await.is_none());
    }
}
