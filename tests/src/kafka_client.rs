//! Test-side Kafka access: the broker address, topics, producing inputs and
//! reading outputs back, with plain rdkafka (no sluice code).

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message as _};
use std::time::{Duration, Instant};

/// The Kafka-compatible broker the test command started (tansu).
pub fn kafka_addr() -> String {
    std::env::var("SLUICE_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// One record as a test sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub partition: i32,
    pub offset: i64,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Create `topic` with `partitions` partitions (an existing one is fine).
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let results = runtime()
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap_or_else(|e| panic!("cannot reach Kafka at {brokers} (run tests/run.sh, which starts it): {e}"));
    for r in results {
        if let Err((name, code)) = r {
            assert_eq!(code, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists, "creating topic {name}");
        }
    }
}

/// Produce `(key, payload, headers)` records and wait for every ack.
pub fn produce(brokers: &str, topic: &str, records: &[(String, Vec<u8>, Vec<(String, String)>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    runtime().block_on(async {
        let mut reports = Vec::with_capacity(records.len());
        for (key, payload, headers) in records {
            let mut hs = OwnedHeaders::new();
            for (n, v) in headers {
                hs = hs.insert(Header { key: n, value: Some(v.as_bytes()) });
            }
            let record = FutureRecord::to(topic).key(key.as_bytes()).payload(payload.as_slice()).headers(hs);
            reports.push(producer.send(record, Duration::from_secs(30)));
        }
        for r in futures::future::join_all(reports).await {
            r.map_err(|(e, _)| e).expect("test producer delivered");
        }
    });
}

/// Read `topic` from the start until `want` returns true for what was
/// read, or `within` passes; then keep reading for `linger` more (to catch
/// duplicates). Reads by assignment, without a consumer group.
pub fn read_topic(brokers: &str, topic: &str, within: Duration, linger: Duration, mut want: impl FnMut(&[Record]) -> bool) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut records = Vec::new();
    let deadline = Instant::now() + within;
    let mut satisfied_at: Option<Instant> = None;
    while Instant::now() < deadline && satisfied_at.is_none_or(|t| t.elapsed() < linger) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => records.push(Record {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|hs| hs.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                    .unwrap_or_default(),
                partition: m.partition(),
                offset: m.offset(),
            }),
            Some(Err(e)) => eprintln!("test reader: {e}"),
            None => {}
        }
        if satisfied_at.is_none() && want(&records) {
            satisfied_at = Some(Instant::now());
        }
    }
    records
}

/// Count of distinct keys in `records`.
pub fn distinct_keys(records: &[Record]) -> usize {
    records.iter().filter_map(|r| r.key.as_deref()).collect::<std::collections::HashSet<_>>().len()
}
