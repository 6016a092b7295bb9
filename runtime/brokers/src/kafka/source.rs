//! The Kafka source: one consumer-group member feeding the engine.
//!
//! Offsets are never stored by librdkafka on its own (auto-commit and
//! auto-store are off). Each message's ack marks its offset done in the
//! shared [`Offsets`]; the source task commits the contiguous done prefix of
//! every partition on a timer. A revoke (in the rebalance callback) commits
//! what finished for the partitions going away and forgets them, so acks
//! that arrive later for those partitions commit nothing.
//!
//! With `retry.republish`, the consumer also reads the retry topic, and a
//! retry record waits (its partition paused) until it is due
//! ([`super::retry`]).

use super::offsets::{Offsets, Tp};
use super::retry::{wait_for, RetryTopic};
use super::{log_rdkafka, reach, Connection, KafkaSourceConfig};
use crate::settle::{drained, due_at, returned_retry, Later, RETRY_DUE_HEADER};
use crate::ConnectError;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext, Message as _};
use sluice_core::stats::SourceLag;
use sluice_core::Outbox;
use sluice_core::{AckHandle, Acker, Coordinates, Delivery, Message, Source, SourceError};
use sluice_core::{Health, Shutdown};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

type Shared = Arc<Mutex<Offsets>>;

fn lock(offsets: &Shared) -> MutexGuard<'_, Offsets> {
    offsets.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) struct KafkaSource {
    consumer: Arc<StreamConsumer<GroupContext>>,
    offsets: Shared,
    name: String,
    commit_interval: Duration,
    lag: LagSlot,
    health: Health,
    /// Where retries go, with `retry.republish`.
    retry: Option<Arc<RetryTopic>>,
}

/// Where the statistics callback reports consumer lag, once the engine
/// gave a gauge ([`Source::report_lag`]).
type LagSlot = Arc<Mutex<Option<Arc<SourceLag>>>>;

impl KafkaSource {
    pub(super) async fn connect(
        config: ClientConfig,
        c: &KafkaSourceConfig,
        topics: Vec<String>,
        retry: Option<Arc<RetryTopic>>,
    ) -> Result<Self, ConnectError> {
        let name = format!("kafka:{}", topics.join(","));
        let offsets = Shared::default();
        let lag = LagSlot::default();
        let connection = Connection::new(&name);
        let health = connection.health();
        let context = GroupContext {
            offsets: offsets.clone(),
            name: name.clone(),
            lag: lag.clone(),
            connection,
        };
        let consumer: StreamConsumer<GroupContext> = config
            .create_with_context(context)
            .map_err(|e| ConnectError::Invalid(format!("kafka source: {e}")))?;
        let consumer = Arc::new(consumer);
        let probe = consumer.clone();
        let timeout = c.connect_timeout.0;
        reach(
            "kafka source",
            &c.brokers,
            timeout,
            move || probe.fetch_metadata(None, timeout).map(|_| ()),
            || consumer.context().connection.last_error(),
        )
        .await?;
        let subscription: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&subscription).map_err(|e| {
            ConnectError::Invalid(format!("kafka source: cannot subscribe to {topics:?}: {e}"))
        })?;
        Ok(KafkaSource {
            consumer,
            offsets,
            name,
            commit_interval: c.commit_interval.0,
            lag,
            health,
            retry,
        })
    }

    /// Is `m` a retry record not yet due, or fetched from a partition that
    /// waits for one? Then it is not handed out now: the partition is paused
    /// and read again from that record when it is due.
    fn waits(&self, m: &BorrowedMessage<'_>) -> bool {
        let Some(retry) = self.retry.as_ref().filter(|r| r.topic == m.topic()) else {
            return false;
        };
        let tp: Tp = (m.topic().to_string(), m.partition());
        let mut offsets = lock(&self.offsets);
        if offsets.is_waiting(&tp) {
            return true;
        }
        let due = m.headers().and_then(|hs| {
            hs.iter()
                .find(|h| h.key == RETRY_DUE_HEADER)
                .and_then(|h| due_at(h.value))
        });
        let Some(until) = wait_for(due) else {
            return false;
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::warn!(source = %self.name, topic = %retry.topic, error = %e, "cannot pause a retry partition; the retry runs now");
            return false;
        }
        offsets.wait(&tp, m.offset(), until);
        true
    }

    /// Seek each retry partition whose wait is over back to its record, and
    /// resume it.
    fn end_waits(&self) {
        let over = lock(&self.offsets).end_waits(std::time::Instant::now());
        for w in over {
            let sought =
                self.consumer
                    .seek(&w.tp.0, w.tp.1, Offset::Offset(w.offset), Duration::ZERO);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&w.tp.0, w.tp.1);
            if let Err(e) = sought.and_then(|()| self.consumer.resume(&tpl)) {
                tracing::warn!(source = %self.name, partition = %format!("{}/{}", w.tp.0, w.tp.1), error = %e, "cannot resume a retry partition");
            }
        }
    }

    /// Turn a fetched record into a delivery, or `None` if its partition
    /// is no longer ours.
    fn delivery(&self, m: &BorrowedMessage<'_>) -> Option<Delivery> {
        let tp: Tp = (m.topic().to_string(), m.partition());
        let epoch = lock(&self.offsets).take(&tp, m.offset())?;
        let mut message = message_of(m);
        if self.retry.as_ref().is_some_and(|r| r.topic == tp.0) {
            returned_retry(&mut message);
        }
        let coordinates = Coordinates::default()
            .with("topic", &tp.0)
            .with("partition", tp.1)
            .with("offset", m.offset());
        let mut lane = std::collections::hash_map::DefaultHasher::new();
        tp.hash(&mut lane);
        let acker = OffsetAcker {
            offsets: self.offsets.clone(),
            tp,
            offset: m.offset(),
            epoch,
            settled: false,
            retry: self.retry.clone(),
        };
        Some(Delivery::new(message, coordinates, AckHandle::new(acker)).with_lane(lane.finish()))
    }

    /// Commit every partition's finished prefix that moved.
    async fn commit(&self) {
        let batch = lock(&self.offsets).to_commit();
        if batch.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &batch {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::warn!(source = %self.name, error = %e, "cannot build the offset commit");
                return;
            }
        }
        let consumer = self.consumer.clone();
        match tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await {
            Ok(Ok(())) => {
                tracing::debug!(source = %self.name, partitions = batch.len(), "offsets committed");
                lock(&self.offsets).committed(&batch);
            }
            Ok(Err(e)) => {
                tracing::warn!(source = %self.name, error = %e, "offset commit failed; will retry")
            }
            Err(e) => tracing::warn!(source = %self.name, error = %e, "offset commit task failed"),
        }
    }

    /// After the last message was taken: wait (bounded) for the pipeline to
    /// finish what it holds, commit, and leave the group.
    async fn drain(&self, deadline: std::time::Instant) {
        drained(deadline, || lock(&self.offsets).working() > 0).await;
        self.commit().await;
        let unfinished = lock(&self.offsets).working();
        if unfinished > 0 {
            tracing::warn!(source = %self.name, unfinished, "stopping with unfinished messages; Kafka redelivers them");
        }
        self.consumer.unsubscribe();
    }
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn health(&self) -> Option<Health> {
        Some(self.health.clone())
    }

    fn report_lag(&mut self, lag: Arc<SourceLag>) {
        *self.lag.lock().unwrap_or_else(PoisonError::into_inner) = Some(lag);
    }

    fn republishes_retries(&self) -> bool {
        self.retry.is_some()
    }

    async fn run(self: Box<Self>, out: Outbox, shutdown: Shutdown) -> Result<(), SourceError> {
        let mut tick = tokio::time::interval(self.commit_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'taking: loop {
            let next_due = lock(&self.offsets).next_due();
            let fetched = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => { self.commit().await; continue; }
                _ = until(next_due) => { self.end_waits(); continue; }
                fetched = self.consumer.recv() => fetched,
            };
            let delivery = match fetched {
                Ok(m) if self.waits(&m) => continue,
                Ok(m) => match self.delivery(&m) {
                    Some(d) => d,
                    None => continue,
                },
                Err(e) => {
                    // librdkafka reconnects by itself; this is a report.
                    tracing::warn!(source = %self.name, error = %e, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            // Hand over; keep committing while a full pipeline holds us up.
            let send = out.send(delivery);
            tokio::pin!(send);
            loop {
                tokio::select! {
                    sent = &mut send => {
                        if sent.is_err() {
                            break 'taking;
                        }
                        break;
                    }
                    _ = tick.tick() => self.commit().await,
                    _ = shutdown.cancelled() => break 'taking,
                }
            }
        }
        self.drain(shutdown.drain_deadline()).await;
        Ok(())
    }
}

/// Sleep until `at`; never, without one.
async fn until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Settles one offset in the tracker. Dropped unsettled (the engine gave
/// the message up) it counts as released: not done, never committed.
struct OffsetAcker {
    offsets: Shared,
    tp: Tp,
    offset: i64,
    epoch: u64,
    settled: bool,
    retry: Option<Arc<RetryTopic>>,
}

impl OffsetAcker {
    fn settle(&mut self, finished: bool) {
        if !self.settled {
            self.settled = true;
            lock(&self.offsets).settle(&self.tp, self.offset, self.epoch, finished);
        }
    }
}

impl Acker for OffsetAcker {
    fn ack(mut self: Box<Self>) {
        self.settle(true);
    }

    fn nack(mut self: Box<Self>) {
        self.settle(false);
    }

    /// Produce the retry to the retry topic; the offset is done once Kafka
    /// confirmed it.
    fn retry_later(mut self: Box<Self>, message: &Message, attempt: u32, delay: Duration) {
        let Some(retry) = self.retry.take() else {
            return self.settle(false);
        };
        self.settled = true; // by the republish, from here on
        let (offsets, tp, offset, epoch) = (
            self.offsets.clone(),
            self.tp.clone(),
            self.offset,
            self.epoch,
        );
        let later = Later {
            message: message.clone(),
            attempt,
            delay,
        };
        retry.republish(later, move |confirmed| {
            lock(&offsets).settle(&tp, offset, epoch, confirmed);
        });
    }
}

impl Drop for OffsetAcker {
    fn drop(&mut self) {
        self.settle(false);
    }
}

/// Rebalance callbacks and librdkafka logs. Runs on the thread that polls
/// the consumer, i.e. inside [`StreamConsumer::recv`].
struct GroupContext {
    offsets: Shared,
    name: String,
    lag: LagSlot,
    connection: Connection,
}

impl ClientContext for GroupContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): the sum
    /// of `consumer_lag` over the partitions this member has, i.e. records
    /// past the last commit (sluice commits only what its sinks confirmed).
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.connection.judge(&statistics);
        let Some(gauge) = self
            .lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        gauge.set(u64::try_from(lag).unwrap_or(0));
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_rdkafka(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(source = %self.name, error = %error, reason, "kafka client error");
        self.connection.error(&error, reason);
    }
}

impl ConsumerContext for GroupContext {
    /// A partition assigned again starts unpaused, whatever wait it had
    /// with this member before (the wait went with the revoke).
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if let Err(e) = consumer.resume(tpl) {
                tracing::debug!(source = %self.name, error = %e, "resume after assign");
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut offsets = lock(&self.offsets);
                for e in tpl.elements() {
                    offsets.assign((e.topic().to_string(), e.partition()));
                }
                tracing::info!(source = %self.name, partitions = %list(tpl), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                let mut commit = TopicPartitionList::new();
                {
                    let mut offsets = lock(&self.offsets);
                    for e in tpl.elements() {
                        if let Some(offset) =
                            offsets.revoke(&(e.topic().to_string(), e.partition()))
                        {
                            let _ = commit.add_partition_offset(
                                e.topic(),
                                e.partition(),
                                Offset::Offset(offset),
                            );
                        }
                    }
                }
                if commit.count() > 0 {
                    if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
                        tracing::warn!(source = %self.name, error = %e, "commit on revoke failed; the new owner re-reads from the last commit");
                    }
                }
                tracing::info!(source = %self.name, partitions = %list(tpl), "partitions revoked");
            }
            Rebalance::Error(e) => {
                tracing::warn!(source = %self.name, error = %e, "rebalance error")
            }
        }
    }
}

fn list(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A fetched record as a message: key, value, headers in order (a null
/// header value as empty), the topic and the record's timestamp.
pub(super) fn message_of(m: &BorrowedMessage<'_>) -> Message {
    let mut headers: Vec<(String, Vec<u8>)> = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if m.payload().is_none() {
        headers.push((super::TOMBSTONE_HEADER.into(), b"true".to_vec()));
    }
    Message {
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers,
        source: m.topic().to_string(),
        timestamp_ms: m
            .timestamp()
            .to_millis()
            .and_then(|t| u64::try_from(t).ok()),
        attempt: 1,
        header_types: Vec::new(),
    }
}
