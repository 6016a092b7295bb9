//! The SQS sink: `SendMessageBatch` of up to 10.
//!
//! `publish` queues the message (in call order) for a batcher task that
//! sends whatever is queued, 10 at a time and at most [`MAX_BATCH_BYTES`]
//! per request; each message's confirm is its own entry's result, so only
//! failed entries are published again.
//!
//! What SQS refuses for the message itself (a sender fault: too large,
//! content it does not allow) is [`SinkError::Rejected`], which the engine
//! dead-letters. When SQS refuses a whole batch that way, each entry is sent
//! alone to find the ones at fault.
//!
//! Its [`Health`] is down while `SendMessageBatch` fails for anything but
//! the content (no connection, credentials, a missing queue), and up again
//! with the next request SQS answers.

use super::{
    attributes, connect, is_fifo, Endpoint, SqsSinkConfig, DEDUP_HEADER, ENCODING_ATTRIBUTE,
    GROUP_HEADER, KEY_ATTRIBUTE,
};
use crate::batch::{BatchQueue, Failed, Reply};
use crate::ConnectError;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use base64::Engine as _;
use sluice_core::{Confirm, Health, Message, Sink, SinkError};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use tokio::sync::mpsc;

pub(super) struct SqsSink {
    queue: BatchQueue<SendMessageBatchRequestEntry>,
    name: String,
    fifo: bool,
    group: Option<String>,
    health: Health,
}

/// Where the batcher sends, and the health it reports.
struct Target {
    name: String,
    client: aws_sdk_sqs::Client,
    url: String,
    health: Health,
}

impl SqsSink {
    pub(super) async fn connect(
        c: &SqsSinkConfig,
        endpoint: Endpoint,
    ) -> Result<Self, ConnectError> {
        let name = format!("sqs:{}", endpoint.queue);
        let (client, url) = connect(
            &format!("sqs sink `{}`", endpoint.queue),
            &endpoint,
            c.connect_timeout.0,
        )
        .await?;
        let (queue, rx) = BatchQueue::new(name.clone(), 100);
        let health = Health::new(name.clone());
        let fifo = is_fifo(&url);
        let target = Target {
            name: name.clone(),
            client,
            url,
            health: health.clone(),
        };
        tokio::spawn(batcher(target, rx));
        Ok(SqsSink {
            queue,
            name,
            fifo,
            group: c.message_group_id.clone(),
            health,
        })
    }

    fn entry(&self, msg: &Message) -> Result<SendMessageBatchRequestEntry, String> {
        let mut attributes: HashMap<String, MessageAttributeValue> = HashMap::new();
        let text = |s: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(s)
                .build()
        };
        let bytes = |b: &[u8]| {
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(aws_sdk_sqs::primitives::Blob::new(b))
                .build()
        };
        let mut group = None;
        let mut dedup = None;
        let mut headers = Vec::with_capacity(msg.headers.len());
        for (name, value) in &msg.headers {
            match name.as_str() {
                GROUP_HEADER => group = Some(String::from_utf8_lossy(value).into_owned()),
                DEDUP_HEADER => dedup = Some(String::from_utf8_lossy(value).into_owned()),
                _ => headers.push((name.clone(), value.clone())),
            }
        }
        let value = |b: &[u8]| match sendable(b) {
            Some(s) => text(s),
            None => bytes(b),
        };
        if let Some(key) = &msg.key {
            attributes.insert(KEY_ATTRIBUTE.into(), value(key).map_err(|e| e.to_string())?);
        }
        let body = match std::str::from_utf8(&msg.payload) {
            Ok(s) if sqs_text(s) => s.to_string(),
            _ => {
                attributes.insert(
                    ENCODING_ATTRIBUTE.into(),
                    text("base64").map_err(|e| e.to_string())?,
                );
                base64::engine::general_purpose::STANDARD.encode(&msg.payload)
            }
        };
        for (name, v) in attributes::pack(&headers, attributes.len()) {
            attributes.insert(name, value(&v).map_err(|e| e.to_string())?);
        }
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id("0")
            .message_body(body)
            .set_message_attributes(Some(attributes));
        if self.fifo {
            let group = group
                .or_else(|| self.group.clone())
                .or_else(|| {
                    msg.key
                        .as_ref()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                })
                .unwrap_or_else(|| "sluice".into());
            let dedup = dedup.unwrap_or_else(|| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (&msg.key, &msg.payload).hash(&mut h);
                format!("{:016x}", h.finish())
            });
            entry = entry
                .message_group_id(group)
                .message_deduplication_id(dedup);
        }
        entry.build().map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl Sink for SqsSink {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn health(&self) -> Option<Health> {
        Some(self.health.clone())
    }

    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError> {
        let entry = self.entry(msg).map_err(|reason| SinkError::Publish {
            sink: self.name.clone(),
            reason,
        })?;
        self.queue.send(entry).await
    }
}

/// The most SQS takes in one message, and in one `SendMessageBatch` (the
/// sum of its messages): 1 MiB since August 2025. A queue can set a lower
/// `MaximumMessageSize`; SQS rejects a message over that, and it is
/// dead-lettered.
const MAX_BATCH_BYTES: usize = 1_048_576;

/// Whether SQS takes `s` as text: XML 1.0 characters only (`#x9 | #xA |
/// #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`). Other payloads
/// travel base64-encoded, other header values as Binary attributes.
fn sqs_text(s: &str) -> bool {
    s.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
    })
}

/// `b` as a String attribute value, when SQS takes it as one.
fn sendable(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b)
        .ok()
        .filter(|s| !s.is_empty() && sqs_text(s))
}

/// An entry's size as SQS counts it: body plus every attribute's name,
/// type and value.
fn size(e: &SendMessageBatchRequestEntry) -> usize {
    let attributes = e.message_attributes().map_or(0, |a| {
        a.iter()
            .map(|(name, v)| {
                name.len()
                    + v.data_type().len()
                    + v.string_value().map_or(0, str::len)
                    + v.binary_value().map_or(0, |b| b.as_ref().len())
            })
            .sum()
    });
    e.message_body().len() + attributes
}

async fn batcher(target: Target, mut rx: mpsc::Receiver<(SendMessageBatchRequestEntry, Reply)>) {
    let mut queued = Vec::with_capacity(10);
    while rx.recv_many(&mut queued, 10).await > 0 {
        let mut batch = Vec::with_capacity(queued.len());
        let mut bytes = 0;
        for (entry, reply) in queued.drain(..) {
            let n = size(&entry);
            if n > MAX_BATCH_BYTES {
                let _ = reply.send(Err(Failed::Rejected(format!(
                    "the message is {n} bytes, over SQS's limit of {MAX_BATCH_BYTES}"
                ))));
                continue;
            }
            if bytes + n > MAX_BATCH_BYTES {
                send(&target, std::mem::take(&mut batch)).await;
                bytes = 0;
            }
            bytes += n;
            batch.push((entry, reply));
        }
        if !batch.is_empty() {
            send(&target, batch).await;
        }
    }
}

/// Send one batch and answer each entry; a batch SQS refuses as a whole for
/// its content is sent again one entry at a time.
async fn send(target: &Target, batch: Vec<(SendMessageBatchRequestEntry, Reply)>) {
    let Target {
        name,
        client,
        url,
        health,
    } = target;
    let mut replies: Vec<Option<Reply>> = Vec::with_capacity(batch.len());
    let mut entries = Vec::with_capacity(batch.len());
    for (i, (mut entry, reply)) in batch.into_iter().enumerate() {
        entry.id = i.to_string();
        entries.push(entry);
        replies.push(Some(reply));
    }
    match client
        .send_message_batch()
        .queue_url(url)
        .set_entries(Some(entries.clone()))
        .send()
        .await
    {
        Ok(out) => {
            health.up();
            for f in out.failed() {
                let Some(reply) = f
                    .id()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| replies.get_mut(i))
                    .and_then(Option::take)
                else {
                    continue;
                };
                let reason = format!("{}: {}", f.code(), f.message().unwrap_or_default());
                let _ = reply.send(Err(if f.sender_fault() {
                    Failed::Rejected(reason)
                } else {
                    Failed::Retry(reason)
                }));
            }
            for reply in replies.into_iter().flatten() {
                let _ = reply.send(Ok(()));
            }
        }
        Err(e) => {
            let refused = refused_content(&e);
            let reason = super::sdk_error(e);
            if refused && entries.len() > 1 {
                tracing::debug!(sink = %name, error = %reason, "SQS refused the batch for its content; sending each message alone");
                for (entry, reply) in entries.into_iter().zip(replies.into_iter().flatten()) {
                    Box::pin(send(target, vec![(entry, reply)])).await;
                }
                return;
            }
            if refused {
                health.up();
            } else {
                tracing::warn!(sink = %name, error = %reason, "SendMessageBatch failed");
                health.down(format_args!("SendMessageBatch failed: {reason}"));
            }
            for reply in replies.into_iter().flatten() {
                let _ = reply.send(Err(if refused {
                    Failed::Rejected(reason.clone())
                } else {
                    Failed::Retry(reason.clone())
                }));
            }
        }
    }
}

/// Whether SQS refused a request for what the messages hold (so that
/// sending it again cannot help), by the error's code. Everything else (no
/// connection, throttling, credentials, a missing queue) is worth a retry.
fn refused_content<R>(
    e: &aws_sdk_sqs::error::SdkError<
        aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError,
        R,
    >,
) -> bool {
    use aws_sdk_sqs::error::ProvideErrorMetadata as _;
    const CONTENT: [&str; 5] = [
        "InvalidParameterValue",
        "InvalidMessageContents",
        "InvalidAttributeName",
        "InvalidAttributeValue",
        "BatchRequestTooLong",
    ];
    let code = e
        .as_service_error()
        .and_then(|s| s.code())
        .unwrap_or_default();
    let last = code.rsplit(['.', '#']).next().unwrap_or_default();
    CONTENT.contains(&last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sqs_refuses_is_found() {
        assert!(sqs_text("plain, tabbed\t and\r\nlined; ünïcødé 🚀"));
        assert!(!sqs_text("nul \u{0} inside"));
        assert!(!sqs_text("bell \u{7}"));
        assert!(!sqs_text("non-character \u{FFFF}"));
    }

    #[test]
    fn size_counts_body_and_attributes() {
        let attr = MessageAttributeValue::builder()
            .data_type("String")
            .string_value("v1")
            .build()
            .unwrap();
        let e = SendMessageBatchRequestEntry::builder()
            .id("0")
            .message_body("12345")
            .message_attributes("k", attr)
            .build()
            .unwrap();
        assert_eq!(size(&e), 5 + 1 + "String".len() + 2);
    }
}
