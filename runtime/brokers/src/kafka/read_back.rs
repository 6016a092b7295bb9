//! A topic's records taken back for `sluice dlq` on a `kafka` DLQ. Kafka
//! cannot delete one record, so what a replay removes is kept track of by a
//! consumer group, `sluice-dlq.TOPIC`: the DLQ is what lies past that
//! group's committed offsets (from each partition's start if it has none).
//! Taking reads from there to the high watermarks seen at the start, and
//! commits nothing. Removing moves the group's offset of each partition
//! past the last record removed; the records before it that were not
//! removed are produced to the topic again first (same key, headers,
//! timestamp and payload, now at the end), so they stay in the DLQ.

use super::security::Security;
use super::source::message_of;
use super::{producer_config, KafkaSinkConfig};
use crate::dlq::DeadLetterQueue;
use crate::ConnectError;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message as _};
use sluice_core::{Message, Sink};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The topic a sink `name` with config `c` writes to, opened.
///
/// # Errors
/// The consumer cannot be configured (bad `properties`).
pub(crate) async fn open_dlq(
    c: &KafkaSinkConfig,
    name: &str,
) -> Result<Box<dyn DeadLetterQueue>, ConnectError> {
    let topic = c.topic.clone().unwrap_or_else(|| name.to_string());
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &c.brokers)
        .set("group.id", format!("sluice-dlq.{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    Security::of(&c.tls, &c.sasl).apply("kafka DLQ", &mut config)?;
    // Security settings apply to reading as well; producer-only ones are
    // ignored (librdkafka says so at debug level).
    for (key, value) in &c.properties {
        if !PRODUCER_ONLY.contains(&key.as_str()) {
            config.set(key, value.to_string());
        }
    }
    let what = format!("kafka DLQ `{topic}` at {}", c.brokers);
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| ConnectError::Invalid(format!("{what}: {e}")))?;
    Ok(Box::new(TopicDlq {
        what,
        topic,
        config: c.clone(),
        consumer: Arc::new(consumer),
        taken: Vec::new(),
    }))
}

/// Properties of a sink's table that a consumer does not take.
const PRODUCER_ONLY: [&str; 6] = [
    "acks",
    "enable.idempotence",
    "linger.ms",
    "compression.type",
    "batch.size",
    "queue.buffering.max.ms",
];

struct TopicDlq {
    what: String,
    topic: String,
    config: KafkaSinkConfig,
    consumer: Arc<BaseConsumer>,
    /// Partition, offset and message of each record taken.
    taken: Vec<(i32, i64, Message)>,
}

impl TopicDlq {
    fn failed(&self, e: impl std::fmt::Display) -> ConnectError {
        ConnectError::Unreachable(format!("{}: {e}", self.what))
    }
}

#[async_trait::async_trait]
impl DeadLetterQueue for TopicDlq {
    async fn take(&mut self, limit: usize) -> Result<Vec<(String, Message)>, ConnectError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let timeout = self.config.connect_timeout.0;
        let read = tokio::task::spawn_blocking(move || read(&consumer, &topic, limit, timeout))
            .await
            .map_err(|e| self.failed(e))?
            .map_err(|e| self.failed(e))?;
        self.taken = read;
        Ok(self
            .taken
            .iter()
            .map(|(partition, offset, m)| {
                (
                    format!("topic={} partition={partition} offset={offset}", self.topic),
                    m.clone(),
                )
            })
            .collect())
    }

    async fn finish(self: Box<Self>, remove: &[usize]) -> Result<(), ConnectError> {
        let removed: HashSet<usize> = remove.iter().copied().collect();
        // Per partition: the offset to commit (past its last removed record).
        let mut past: BTreeMap<i32, i64> = BTreeMap::new();
        for (i, (partition, offset, _)) in self.taken.iter().enumerate() {
            if removed.contains(&i) {
                let at = past.entry(*partition).or_default();
                *at = (*at).max(offset + 1);
            }
        }
        if past.is_empty() {
            return Ok(());
        }
        let keep: Vec<&Message> = self
            .taken
            .iter()
            .enumerate()
            .filter(|(i, (partition, offset, _))| {
                !removed.contains(i) && past.get(partition).is_some_and(|end| offset < end)
            })
            .map(|(_, (_, _, m))| m)
            .collect();
        if !keep.is_empty() {
            let producer = super::sink::KafkaSink::connect(
                producer_config(
                    &self.config.brokers,
                    Security::of(&self.config.tls, &self.config.sasl),
                    &self.config.properties,
                )?,
                &self.config.brokers,
                self.topic.clone(),
                self.config.connect_timeout.0,
            )
            .await?;
            for message in keep {
                let confirm = producer
                    .publish(message)
                    .await
                    .map_err(|e| self.failed(e))?;
                confirm.await.map_err(|e| self.failed(e))?;
            }
        }
        let mut commit = TopicPartitionList::new();
        for (partition, offset) in &past {
            commit
                .add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))
                .map_err(|e| self.failed(e))?;
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&commit, CommitMode::Sync))
            .await
            .map_err(|e| self.failed(e))?
            .map_err(|e| self.failed(format!("cannot record the replayed records: {e}")))
    }
}

/// Up to `limit` records past the group's offsets, partition by partition
/// in offset order, up to the high watermarks seen at the start. A topic
/// that does not exist holds nothing.
fn read(
    consumer: &BaseConsumer,
    topic: &str,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<(i32, i64, Message)>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(Vec::new());
    };
    if found.error().is_some() {
        return Ok(Vec::new()); // no such topic (yet): nothing dead-lettered
    }
    let mut wanted = TopicPartitionList::new();
    for partition in found.partitions() {
        wanted.add_partition(topic, partition.id());
    }
    let committed = consumer.committed_offsets(wanted, timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for partition in found.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
        let from = committed
            .find_partition(topic, partition.id())
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .map_or(low, |o| o.max(low));
        if high > from {
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(from))?;
            ends.insert(partition.id(), high);
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment)?;
    let mut read = Vec::new();
    // Bounded: a broker that stops answering mid-read ends it with an error.
    let deadline = Instant::now() + timeout.max(Duration::from_secs(5)) * 6;
    while !ends.is_empty() && read.len() < limit {
        if Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ends.remove(&partition);
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(m)) => {
                let Some(end) = ends.get(&m.partition()).copied() else {
                    continue; // read to its end already
                };
                if m.offset() >= end {
                    ends.remove(&m.partition());
                    continue;
                }
                if m.offset() + 1 >= end {
                    ends.remove(&m.partition());
                }
                read.push((m.partition(), m.offset(), message_of(&m)));
            }
        }
    }
    read.sort_by_key(|(partition, offset, _)| (*partition, *offset));
    Ok(read)
}
