//! Retries through Kafka (a pipeline's `retry.republish`): the spec's
//! dead-letter pattern on a retry topic.
//!
//! A record whose stage failed with a retryable error is produced to the
//! retry topic (`retry_topic`, default `TOPIC.retry`) with its failed
//! attempts in the header `x-retry-count` and the time it is due in
//! `sluice-retry-due` (Unix milliseconds); once Kafka has confirmed that
//! record (`acks=all`), the original offset counts as done and is committed
//! like any other. The same consumer subscribes to the retry topic too. A
//! record fetched from it before it is due is not handed out: its partition
//! is paused and, when the record is due, sought back to it and resumed
//! (the consumer keeps polling meanwhile, so the group sees it alive, and
//! nothing busy-polls). It goes through the pipeline as attempt
//! `x-retry-count + 1`, so the stage's `retry.attempts` budget spans the
//! round trips and the last attempt dead-letters.
//!
//! Records of one retry partition are taken in order, each waited for in
//! turn: with a backoff that grows, a record may wait behind one produced
//! earlier that is due later, by at most the difference of their delays.
//! A kill at any point leaves the original uncommitted or the retry record
//! in the topic (or both: the retry then runs twice), so nothing is lost.

use super::offsets::Tp;
use crate::settle::Later;
use crate::{ConnectError, RECONNECT};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use sluice_core::{Sink, SinkError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The retry topic of one source and the producer that writes to it.
pub(super) struct RetryTopic {
    pub(super) topic: String,
    producer: Arc<dyn Sink>,
    runtime: tokio::runtime::Handle,
}

impl RetryTopic {
    /// Make sure `topic` exists (created with as many partitions as `like`
    /// if not) and open a producer to it.
    pub(super) async fn open(
        config: ClientConfig,
        topic: &str,
        like: Option<&str>,
        timeout: Duration,
    ) -> Result<Arc<Self>, ConnectError> {
        ensure_topic(&config, topic, like, timeout).await?;
        let producer = super::sink::KafkaSink::connect(
            config.clone(),
            config.get("bootstrap.servers").unwrap_or_default(),
            topic.to_string(),
            timeout,
        )
        .await?;
        Ok(Arc::new(RetryTopic {
            topic: topic.to_string(),
            producer: Arc::new(producer),
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    /// Produce the retry of `later`; `settle(true)` once Kafka confirmed
    /// it. A record Kafka refuses outright is `settle(false)`: its offset
    /// stays uncommitted and is read again after a restart or rebalance.
    /// Other failures are tried again with backoff until they succeed.
    pub(super) fn republish(&self, later: Later, settle: impl FnOnce(bool) + Send + 'static) {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        self.runtime.spawn(async move {
            let record = later.republished();
            let mut attempt = 0;
            loop {
                let confirmed = match producer.publish(&record).await {
                    Ok(confirm) => confirm.await,
                    Err(e) => Err(e),
                };
                match confirmed {
                    Ok(()) => return settle(true),
                    Err(e @ SinkError::Rejected { .. }) => {
                        tracing::error!(%topic, error = %e, "the retry topic refused a retry; the original stays uncommitted");
                        return settle(false);
                    }
                    Err(e) => {
                        attempt += 1;
                        let delay = RECONNECT.delay(attempt);
                        tracing::warn!(%topic, error = %e, ?delay, "could not produce a retry; trying again");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        });
    }
}

/// When a record fetched from the retry topic is due: `None` if it is due
/// now (or carries no due time).
pub(super) fn wait_for(due: Option<SystemTime>) -> Option<Instant> {
    let wait = due?.duration_since(SystemTime::now()).ok()?;
    // A few milliseconds early is on time (clocks, rounding).
    (wait > Duration::from_millis(5)).then(|| Instant::now() + wait)
}

/// A retry partition waiting until its next record is due.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Waiting {
    pub(super) tp: Tp,
    /// The record to seek back to.
    pub(super) offset: i64,
    pub(super) until: Instant,
}

/// Create `topic` unless it exists, with as many partitions as `like` (one
/// if unknown) and the broker's default replication.
async fn ensure_topic(
    config: &ClientConfig,
    topic: &str,
    like: Option<&str>,
    timeout: Duration,
) -> Result<(), ConnectError> {
    let failed = |e: String| {
        ConnectError::Unreachable(format!(
            "kafka source: cannot create the retry topic `{topic}`: {e}; create it (as many partitions as the source topic) or name an existing one with `retry_topic`"
        ))
    };
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|e| failed(e.to_string()))?;
    let admin = Arc::new(admin);
    let probe = admin.clone();
    let (wanted, like) = (topic.to_string(), like.map(str::to_string));
    let (exists, partitions) = tokio::task::spawn_blocking(move || {
        let count = |name: &str| -> usize {
            probe
                .inner()
                .fetch_metadata(Some(name), timeout)
                .ok()
                .and_then(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == name && t.error().is_none())
                        .map(|t| t.partitions().len())
                })
                .unwrap_or(0)
        };
        let exists = count(&wanted) > 0;
        let partitions = like.as_deref().map(count).unwrap_or(0).max(1);
        (exists, partitions)
    })
    .await
    .map_err(|e| failed(e.to_string()))?;
    if exists {
        return Ok(());
    }
    let partitions = i32::try_from(partitions).unwrap_or(1);
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics(&[new], &options)
        .await
        .map_err(|e| failed(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(%topic, partitions, "created the retry topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(failed(code.to_string())),
        }
    }
    Ok(())
}
