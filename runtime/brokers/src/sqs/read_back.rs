//! A queue's messages read back for `sluice dlq` on an `sqs` DLQ. SQS has
//! no way to look without receiving: each message is received with a
//! visibility timeout long enough to see every other one, and then made
//! visible again at once. Nothing is deleted, but each read counts as a
//! receive (`ApproximateReceiveCount`), which matters if the DLQ itself has
//! a redrive policy.

use super::source::message_of;
use super::{connect, SqsSinkConfig};
use crate::ConnectError;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName};
use sluice_core::Message;

/// How long each read message stays hidden while the rest are read.
const HIDE_SECONDS: i32 = 60;

/// Up to `limit` messages of the queue a sink `name` with config `c` sends
/// to, each with its message id (`queue=Q message-id=M`).
///
/// # Errors
/// The queue cannot be reached, or a receive fails.
pub(crate) async fn read_back(
    c: &SqsSinkConfig,
    name: &str,
    limit: usize,
) -> Result<Vec<(String, Message)>, ConnectError> {
    let endpoint = super::SqsSinkConfig {
        create_queue: false,
        ..c.clone()
    }
    .endpoint(name);
    let queue = endpoint.queue.clone();
    let (client, url) = connect("sqs DLQ", &endpoint, c.connect_timeout.0).await?;
    let failed = |e: String| ConnectError::Unreachable(format!("sqs DLQ `{queue}`: {e}"));
    let mut read = Vec::new();
    let mut receipts = Vec::new();
    let result = async {
        while read.len() < limit {
            let received = client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages((limit - read.len()).min(10) as i32)
                .wait_time_seconds(1)
                .visibility_timeout(HIDE_SECONDS)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .map_err(|e| failed(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in &messages {
                receipts.extend(m.receipt_handle().map(str::to_owned));
                let (message, _, _) = message_of(m, &queue);
                let at = format!(
                    "queue={queue} message-id={}",
                    m.message_id().unwrap_or_default()
                );
                read.push((at, message));
            }
        }
        Ok::<(), ConnectError>(())
    }
    .await;
    // Visible again, whatever happened above.
    for chunk in receipts.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(e) = client
            .change_message_visibility_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            tracing::warn!(%queue, error = %aws_sdk_sqs::error::DisplayErrorContext(e), "could not make read messages visible again; they come back after their visibility timeout");
        }
    }
    result.map(|()| read)
}
