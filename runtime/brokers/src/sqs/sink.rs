//! The SQS sink: `SendMessageBatch` of up to 10.
//!
//! `publish` queues the message (in call order) for a batcher task that
//! sends whatever is queued, 10 at a time; each message's confirm is its own
//! entry's result, so only failed entries are published again.

use super::{connect, is_fifo, Endpoint, SqsSinkConfig, DEDUP_HEADER, ENCODING_ATTRIBUTE, GROUP_HEADER, KEY_ATTRIBUTE};
use crate::ConnectError;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use base64::Engine as _;
use sluice_core::{Confirm, Message, Sink, SinkError};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use crate::batch::{BatchQueue, Reply};
use tokio::sync::mpsc;

pub(super) struct SqsSink {
    queue: BatchQueue<SendMessageBatchRequestEntry>,
    name: String,
    fifo: bool,
    group: Option<String>,
}

impl SqsSink {
    pub(super) async fn connect(c: &SqsSinkConfig, endpoint: Endpoint) -> Result<Self, ConnectError> {
        let name = format!("sqs:{}", endpoint.queue);
        let (client, url) = connect(&format!("sqs sink `{}`", endpoint.queue), &endpoint, c.connect_timeout.0).await?;
        let (queue, rx) = BatchQueue::new(name.clone(), 100);
        tokio::spawn(batcher(name.clone(), client, url.clone(), rx));
        Ok(SqsSink { queue, name, fifo: is_fifo(&url), group: c.message_group_id.clone() })
    }

    fn entry(&self, msg: &Message) -> Result<SendMessageBatchRequestEntry, String> {
        let mut attributes: HashMap<String, MessageAttributeValue> = HashMap::new();
        let text = |s: &str| MessageAttributeValue::builder().data_type("String").string_value(s).build();
        let bytes = |b: &[u8]| MessageAttributeValue::builder().data_type("Binary").binary_value(aws_sdk_sqs::primitives::Blob::new(b)).build();
        let mut group = None;
        let mut dedup = None;
        for (name, value) in &msg.headers {
            match name.as_str() {
                GROUP_HEADER => group = Some(String::from_utf8_lossy(value).into_owned()),
                DEDUP_HEADER => dedup = Some(String::from_utf8_lossy(value).into_owned()),
                _ => {
                    let v = match std::str::from_utf8(value) {
                        Ok(s) if !s.is_empty() => text(s),
                        _ => bytes(value),
                    };
                    attributes.insert(name.clone(), v.map_err(|e| e.to_string())?);
                }
            }
        }
        if let Some(key) = &msg.key {
            let v = match std::str::from_utf8(key) {
                Ok(s) if !s.is_empty() => text(s),
                _ => bytes(key),
            };
            attributes.insert(KEY_ATTRIBUTE.into(), v.map_err(|e| e.to_string())?);
        }
        let body = match std::str::from_utf8(&msg.payload) {
            Ok(s) => s.to_string(),
            Err(_) => {
                attributes.insert(ENCODING_ATTRIBUTE.into(), text("base64").map_err(|e| e.to_string())?);
                base64::engine::general_purpose::STANDARD.encode(&msg.payload)
            }
        };
        let mut entry = SendMessageBatchRequestEntry::builder().id("0").message_body(body).set_message_attributes(Some(attributes));
        if self.fifo {
            let group = group
                .or_else(|| self.group.clone())
                .or_else(|| msg.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()))
                .unwrap_or_else(|| "sluice".into());
            let dedup = dedup.unwrap_or_else(|| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (&msg.key, &msg.payload).hash(&mut h);
                format!("{:016x}", h.finish())
            });
            entry = entry.message_group_id(group).message_deduplication_id(dedup);
        }
        entry.build().map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl Sink for SqsSink {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError> {
        let entry = self.entry(msg).map_err(|reason| SinkError::Publish { sink: self.name.clone(), reason })?;
        self.queue.send(entry).await
    }
}

async fn batcher(name: String, client: aws_sdk_sqs::Client, url: String, mut rx: mpsc::Receiver<(SendMessageBatchRequestEntry, Reply)>) {
    let mut batch = Vec::with_capacity(10);
    while rx.recv_many(&mut batch, 10).await > 0 {
        let mut replies: Vec<Option<Reply>> = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for (i, (mut entry, reply)) in batch.drain(..).enumerate() {
            entry.id = i.to_string();
            entries.push(entry);
            replies.push(Some(reply));
        }
        match client.send_message_batch().queue_url(&url).set_entries(Some(entries)).send().await {
            Ok(out) => {
                for f in out.failed() {
                    if let Some(reply) = f.id().parse::<usize>().ok().and_then(|i| replies.get_mut(i)).and_then(Option::take) {
                        let _ = reply.send(Err(format!("{}: {}", f.code(), f.message().unwrap_or_default())));
                    }
                }
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                let reason = aws_sdk_sqs::error::DisplayErrorContext(e).to_string();
                tracing::warn!(sink = %name, error = %reason, "SendMessageBatch failed");
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(reason.clone()));
                }
            }
        }
    }
}
