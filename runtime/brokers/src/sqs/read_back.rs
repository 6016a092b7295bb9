//! A queue's messages taken back for `sluice dlq` on an `sqs` DLQ. SQS has
//! no way to look without receiving: each message is received with a
//! visibility timeout long enough to see every other one (and to replay
//! it); the ones to remove are deleted and the rest made visible again at
//! once. Each read counts as a receive (`ApproximateReceiveCount`), which
//! matters if the DLQ itself has a redrive policy.

use super::source::message_of;
use super::{connect, SqsSinkConfig};
use crate::dlq::DeadLetterQueue;
use crate::ConnectError;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use sluice_core::Message;

/// How long each taken message stays hidden: while the rest are read, and
/// while a replay runs (a longer one may see it come back and replay it
/// again).
const HIDE_SECONDS: i32 = 900;

/// The queue a sink `name` with config `c` sends to, opened.
///
/// # Errors
/// The queue cannot be reached.
pub(crate) async fn open_dlq(
    c: &SqsSinkConfig,
    name: &str,
) -> Result<Box<dyn DeadLetterQueue>, ConnectError> {
    let endpoint = super::SqsSinkConfig {
        create_queue: false,
        ..c.clone()
    }
    .endpoint(name);
    let queue = endpoint.queue.clone();
    let (client, url) = connect("sqs DLQ", &endpoint, c.connect_timeout.0).await?;
    Ok(Box::new(QueueDlq {
        queue,
        client,
        url,
        receipts: Vec::new(),
    }))
}

struct QueueDlq {
    queue: String,
    client: aws_sdk_sqs::Client,
    url: String,
    /// The receipt handle of each message taken.
    receipts: Vec<String>,
}

impl QueueDlq {
    fn failed(&self, e: impl std::fmt::Display) -> ConnectError {
        ConnectError::Unreachable(format!("sqs DLQ `{}`: {e}", self.queue))
    }
}

#[async_trait::async_trait]
impl DeadLetterQueue for QueueDlq {
    async fn take(&mut self, limit: usize) -> Result<Vec<(String, Message)>, ConnectError> {
        let mut read = Vec::new();
        while read.len() < limit {
            let received = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages((limit - read.len()).min(10) as i32)
                .wait_time_seconds(1)
                .visibility_timeout(HIDE_SECONDS)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .map_err(|e| self.failed(super::sdk_error(e)))?;
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in &messages {
                self.receipts
                    .push(m.receipt_handle().unwrap_or_default().to_owned());
                let (message, _, _) = message_of(m, &self.queue);
                let at = format!(
                    "queue={} message-id={}",
                    self.queue,
                    m.message_id().unwrap_or_default()
                );
                read.push((at, message));
            }
        }
        Ok(read)
    }

    async fn finish(self: Box<Self>, remove: &[usize]) -> Result<(), ConnectError> {
        let removed: std::collections::HashSet<usize> = remove.iter().copied().collect();
        let (gone, back): (Vec<_>, Vec<_>) = self
            .receipts
            .iter()
            .enumerate()
            .partition(|(i, _)| removed.contains(i));
        let mut result = Ok(());
        for chunk in gone.chunks(10) {
            let entries = chunk
                .iter()
                .filter_map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*r)
                        .build()
                        .ok()
                })
                .collect();
            let deleted = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            match deleted {
                Ok(out) if out.failed.is_empty() => {}
                Ok(out) => {
                    result = Err(self.failed(format!(
                        "{} replayed message(s) could not be deleted: {}",
                        out.failed.len(),
                        out.failed[0].message().unwrap_or_default()
                    )))
                }
                Err(e) => result = Err(self.failed(super::sdk_error(e))),
            }
        }
        // Visible again, whatever happened above.
        let back: Vec<&str> = back.iter().map(|(_, r)| r.as_str()).collect();
        if let Err(e) = super::set_visibility(&self.client, &self.url, &back, 0).await {
            tracing::warn!(queue = %self.queue, error = %e, "could not make taken messages visible again; they come back after their visibility timeout");
        }
        result
    }
}
