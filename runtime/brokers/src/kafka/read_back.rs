//! A topic's records read without consuming them, for `sluice dlq` on a
//! `kafka` DLQ: a consumer outside any group's offsets (it assigns every
//! partition from its low watermark and commits nothing), stopping at the
//! high watermarks it saw at the start.

use super::source::message_of;
use super::KafkaSinkConfig;
use crate::ConnectError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message as _};
use sluice_core::Message;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Up to `limit` records of the topic a sink `name` with config `c` writes
/// to, partition by partition in offset order, each with where it is
/// (`topic=T partition=P offset=O`). A topic that does not exist holds
/// nothing.
///
/// # Errors
/// The brokers cannot be reached, or a fetch fails.
pub(crate) async fn read_back(
    c: &KafkaSinkConfig,
    name: &str,
    limit: usize,
) -> Result<Vec<(String, Message)>, ConnectError> {
    let topic = c.topic.clone().unwrap_or_else(|| name.to_string());
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &c.brokers)
        .set(
            "group.id",
            format!("sluice-dlq-read-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    // Security settings apply to reading as well; producer-only ones are
    // ignored (librdkafka says so at debug level).
    for (key, value) in &c.properties {
        if !PRODUCER_ONLY.contains(&key.as_str()) {
            config.set(key, value.to_string());
        }
    }
    let what = format!("kafka DLQ `{topic}` at {}", c.brokers);
    let timeout = c.connect_timeout.0;
    let read = tokio::task::spawn_blocking(move || read(config, &topic, limit, timeout)).await;
    let fail = |e: String| ConnectError::Unreachable(format!("{what}: {e}"));
    read.map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))
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

fn read(
    config: ClientConfig,
    topic: &str,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<(String, Message)>, KafkaError> {
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(Vec::new());
    };
    if found.error().is_some() {
        return Ok(Vec::new()); // no such topic (yet): nothing dead-lettered
    }
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for partition in found.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
        if high > low {
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(low))?;
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
                if ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    ends.remove(&m.partition());
                }
                read.push((m.partition(), m.offset(), message_of(&m)));
            }
        }
    }
    read.sort_by_key(|(partition, offset, _)| (*partition, *offset));
    Ok(read
        .into_iter()
        .map(|(partition, offset, m)| {
            (
                format!("topic={topic} partition={partition} offset={offset}"),
                m,
            )
        })
        .collect())
}
