//! The SQS source: long polling, visibility renewed while in the pipeline,
//! delete after confirm.
//!
//! Three tasks share the set of receipt handles in the pipeline: the
//! receiver adds to it, the settler deletes (batches of 10, failed entries
//! retried alone) or releases (visibility 0) and removes, and the renewer
//! extends the visibility of everything still held every half timeout.

use super::{
    attributes, connect, SqsSourceConfig, DEDUP_HEADER, ENCODING_ATTRIBUTE, GROUP_HEADER,
    KEY_ATTRIBUTE,
};
use crate::settle::{drained, ChannelAcker, Settled};
use crate::{ConnectError, RECONNECT};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use base64::Engine as _;
use sluice_core::stats::{SourceLag, LAG_EVERY};
use sluice_core::Outbox;
use sluice_core::{AckHandle, Coordinates, Delivery, Message, Refusal, Source, SourceError};
use sluice_core::{Health, Shutdown};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

type Held = Arc<Mutex<HashSet<String>>>;

fn lock(held: &Held) -> MutexGuard<'_, HashSet<String>> {
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) struct SqsSource {
    client: aws_sdk_sqs::Client,
    url: String,
    config: SqsSourceConfig,
    lag: Option<Arc<SourceLag>>,
    /// Down from a failed receive until one succeeds (a long poll answers
    /// at least every `wait`, so an outage shows within one).
    health: Health,
}

impl SqsSource {
    pub(super) async fn connect(c: &SqsSourceConfig) -> Result<Self, ConnectError> {
        let (client, url) = connect("sqs source", &c.endpoint, c.connect_timeout.0).await?;
        Ok(SqsSource {
            client,
            url,
            config: c.clone(),
            lag: None,
            health: Health::new(format!("sqs:{}", c.endpoint.queue)),
        })
    }

    fn name(&self) -> String {
        format!("sqs:{}", self.config.endpoint.queue)
    }

    fn delivery(
        &self,
        m: &aws_sdk_sqs::types::Message,
        settle: &mpsc::UnboundedSender<Settled<String>>,
    ) -> Option<Delivery> {
        let receipt = m.receipt_handle()?.to_string();
        let (message, decode_error, group) = message_of(m, &self.config.endpoint.queue);
        let system = m.attributes();
        let system_attr =
            |name: MessageSystemAttributeName| system.and_then(|s| s.get(&name)).cloned();
        let mut coordinates = Coordinates::default()
            .with("queue", &self.config.endpoint.queue)
            .with("message-id", m.message_id().unwrap_or_default());
        if let Some(n) = system_attr(MessageSystemAttributeName::ApproximateReceiveCount) {
            coordinates = coordinates.with("receive-count", n);
        }
        let acker = ChannelAcker::new(receipt, settle);
        let mut delivery = Delivery::new(message, coordinates, AckHandle::new(acker));
        delivery.refused = decode_error.map(Refusal::decode);
        // FIFO: one lane per message group keeps the group's order, also
        // while one of its messages is parked for a retry.
        if let Some(g) = group {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            g.hash(&mut h);
            delivery.lane = Some(h.finish());
            delivery.order_key = delivery.lane;
        }
        Some(delivery)
    }
}

#[async_trait::async_trait]
impl Source for SqsSource {
    fn describe(&self) -> String {
        self.name()
    }

    fn report_lag(&mut self, lag: Arc<SourceLag>) {
        self.lag = Some(lag);
    }

    fn health(&self) -> Option<Health> {
        Some(self.health.clone())
    }

    fn republishes_retries(&self) -> bool {
        true
    }

    async fn run(self: Box<Self>, out: Outbox, shutdown: Shutdown) -> Result<(), SourceError> {
        let held = Held::default();
        let (settle, settled) = mpsc::unbounded_channel();
        let settler = tokio::spawn(settle_task(
            self.name(),
            self.client.clone(),
            self.url.clone(),
            held.clone(),
            settled,
        ));
        let renewer = tokio::spawn(renew_task(
            self.name(),
            self.client.clone(),
            self.url.clone(),
            held.clone(),
            self.config.visibility_timeout.0,
        ));
        let lagger = self
            .lag
            .clone()
            .map(|lag| tokio::spawn(lag_task(self.client.clone(), self.url.clone(), lag)));
        let visibility = self.config.visibility_timeout.0.as_secs() as i32;
        let mut attempt = 0;
        'receiving: while !shutdown.is_cancelled() {
            let receive = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(self.config.batch)
                .wait_time_seconds(self.config.wait.0.as_secs() as i32)
                .visibility_timeout(visibility)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send();
            // A receive cut short by shutdown hides its messages for one
            // visibility timeout; they come back, nothing is lost.
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = receive => r,
            };
            let messages = match received {
                Ok(out) => {
                    attempt = 0;
                    self.health.up();
                    out.messages.unwrap_or_default()
                }
                Err(e) => {
                    attempt += 1;
                    let delay = RECONNECT.delay(attempt);
                    let error = super::sdk_error(e);
                    tracing::warn!(source = %self.name(), %error, ?delay, "receive failed; retrying");
                    self.health.down(format_args!("receive failed: {error}"));
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            for m in &messages {
                let Some(delivery) = self.delivery(m, &settle) else {
                    continue;
                };
                if let Some(r) = m.receipt_handle() {
                    lock(&held).insert(r.to_string());
                }
                tokio::select! {
                    sent = out.send(delivery) => if sent.is_err() { break 'receiving },
                    _ = shutdown.cancelled() => break 'receiving,
                }
            }
        }
        drained(shutdown.drain_deadline(), || !lock(&held).is_empty()).await;
        drop(settle);
        let _ = tokio::time::timeout(Duration::from_secs(10), settler).await;
        renewer.abort();
        if let Some(l) = lagger {
            l.abort();
        }
        Ok(())
    }
}

/// Delete finished messages in batches of 10 (retrying failed entries);
/// make released ones visible again at once, and ones to retry later
/// visible after their delay (SQS's own way to retry: the message stays in
/// the queue and its receive count goes up).
async fn settle_task(
    name: String,
    client: aws_sdk_sqs::Client,
    url: String,
    held: Held,
    mut settled: mpsc::UnboundedReceiver<Settled<String>>,
) {
    let mut batch = Vec::new();
    let mut to_delete: Vec<String> = Vec::new();
    while settled.recv_many(&mut batch, 100).await > 0 {
        for s in batch.drain(..) {
            match s {
                Settled::Done(r) => to_delete.push(r),
                Settled::Released(r) => {
                    let _ = client
                        .change_message_visibility()
                        .queue_url(&url)
                        .receipt_handle(&r)
                        .visibility_timeout(0)
                        .send()
                        .await;
                    lock(&held).remove(&r);
                }
                Settled::Later(r, later) => {
                    // Whole seconds, rounded up; SQS allows up to 12 hours.
                    let secs = later.delay.as_secs_f64().ceil().min(43_200.0) as i32;
                    let changed = client
                        .change_message_visibility()
                        .queue_url(&url)
                        .receipt_handle(&r)
                        .visibility_timeout(secs)
                        .send()
                        .await;
                    if let Err(e) = changed {
                        tracing::warn!(source = %name, error = %super::sdk_error(e), "cannot delay the retry; the message comes back when its visibility timeout runs out");
                    }
                    lock(&held).remove(&r);
                }
            }
        }
        let mut attempt = 0;
        while !to_delete.is_empty() {
            let mut failed = Vec::new();
            for chunk in to_delete.chunks(10) {
                let entries: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(r)
                            .build()
                            .ok()
                    })
                    .collect();
                match client
                    .delete_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => {
                        // A sender fault (an invalid or expired receipt
                        // handle) fails again on every retry: give it up.
                        // The message comes back after its visibility
                        // timeout and is delivered again, a duplicate.
                        let mut transient = HashSet::new();
                        for f in out.failed() {
                            let Ok(i) = f.id().parse::<usize>() else {
                                continue;
                            };
                            if f.sender_fault() {
                                tracing::warn!(source = %name, code = f.code(), reason = f.message().unwrap_or_default(), "SQS refused to delete a finished message; it will be delivered again");
                            } else {
                                transient.insert(i);
                            }
                        }
                        for (i, r) in chunk.iter().enumerate() {
                            if transient.contains(&i) {
                                failed.push(r.clone());
                            } else {
                                lock(&held).remove(r);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(source = %name, error = %super::sdk_error(e), "DeleteMessageBatch failed; retrying");
                        failed.extend(chunk.iter().cloned());
                    }
                }
            }
            to_delete = failed;
            if !to_delete.is_empty() {
                attempt += 1;
                tokio::time::sleep(RECONNECT.delay(attempt)).await;
            }
        }
    }
}

/// Every half visibility timeout, extend the visibility of every message
/// still in the pipeline.
/// `ApproximateNumberOfMessages` (visible, waiting) into the lag gauge,
/// every 10 s: a request per probe costs money on AWS and time on emulators.
async fn lag_task(client: aws_sdk_sqs::Client, url: String, lag: Arc<SourceLag>) {
    let mut tick = tokio::time::interval(LAG_EVERY.max(Duration::from_secs(10)));
    loop {
        tick.tick().await;
        let attrs = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await;
        let waiting = attrs.ok().and_then(|a| {
            a.attributes()?
                .get(&QueueAttributeName::ApproximateNumberOfMessages)?
                .parse()
                .ok()
        });
        if let Some(n) = waiting {
            lag.set(n);
        }
    }
}

async fn renew_task(
    name: String,
    client: aws_sdk_sqs::Client,
    url: String,
    held: Held,
    visibility: Duration,
) {
    let mut tick = tokio::time::interval(visibility / 2);
    tick.tick().await;
    loop {
        tick.tick().await;
        let receipts: Vec<String> = lock(&held).iter().cloned().collect();
        let receipts: Vec<&str> = receipts.iter().map(String::as_str).collect();
        let seconds = visibility.as_secs() as i32;
        if let Err(e) = super::set_visibility(&client, &url, &receipts, seconds).await {
            tracing::warn!(source = %name, error = %e, "visibility renewal failed");
        }
    }
}

/// A received message as a message: the body (base64-decoded when
/// `sluice-encoding` says so; the error when it does not decode), the key,
/// the headers with packed attributes unpacked, the FIFO ids as headers,
/// and the receive count as the attempt. Also the FIFO group, if any.
pub(super) fn message_of(
    m: &aws_sdk_sqs::types::Message,
    queue: &str,
) -> (Message, Option<String>, Option<String>) {
    let body = m.body().unwrap_or_default();
    let mut key = None;
    let mut headers = Vec::new();
    let mut base64 = false;
    let mut attributes: Vec<_> = m
        .message_attributes()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    attributes.sort_by(|a, b| a.0.cmp(b.0));
    for (name, value) in attributes {
        let bytes = match (value.string_value(), value.binary_value()) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(b)) => b.as_ref().to_vec(),
            _ => Vec::new(),
        };
        match name.as_str() {
            KEY_ATTRIBUTE => key = Some(bytes),
            ENCODING_ATTRIBUTE => base64 = bytes == b"base64",
            _ => headers.extend(attributes::unpack(name, bytes)),
        }
    }
    let system = m.attributes();
    let system_attr = |name: MessageSystemAttributeName| system.and_then(|s| s.get(&name)).cloned();
    let group = system_attr(MessageSystemAttributeName::MessageGroupId);
    if let Some(g) = &group {
        headers.push((GROUP_HEADER.into(), g.clone().into_bytes()));
    }
    if let Some(d) = system_attr(MessageSystemAttributeName::MessageDeduplicationId) {
        headers.push((DEDUP_HEADER.into(), d.into_bytes()));
    }
    let (payload, decode_error) = if base64 {
        match base64::engine::general_purpose::STANDARD.decode(body) {
            Ok(p) => (p, None),
            Err(e) => (
                body.as_bytes().to_vec(),
                Some(format!(
                    "`{ENCODING_ATTRIBUTE}=base64` but the body is not base64: {e}"
                )),
            ),
        }
    } else {
        (body.as_bytes().to_vec(), None)
    };
    let message = Message {
        key,
        payload,
        headers,
        source: queue.to_owned(),
        timestamp_ms: system_attr(MessageSystemAttributeName::SentTimestamp)
            .and_then(|t| t.parse().ok()),
        // SQS counts receives: the first is attempt 1, a retry through
        // the broker (or a redelivery after a crash) counts on.
        attempt: system_attr(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|n| n.parse().ok())
            .filter(|n| *n >= 1)
            .unwrap_or(1),
        header_types: Vec::new(),
    };
    (message, decode_error, group)
}
