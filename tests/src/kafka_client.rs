//! Test-side Kafka access: the broker address, topics, producing inputs and
//! reading outputs back, with plain rdkafka (no sluice code).

use crate::daemon::free_port;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The shared broker `tests/brokers.sh kafka` starts, for benchmarks:
/// `SLUICE_TEST_KAFKA` or 127.0.0.1:19092.
pub fn kafka_addr() -> String {
    std::env::var("SLUICE_TEST_KAFKA")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "127.0.0.1:19092".into())
}

/// The Kafka a test talks to: `SLUICE_TEST_KAFKA` (`host:port`) when set,
/// otherwise a private tansu broker for this test alone (SQLite storage in
/// `dir`), so tests are isolated from each other and from whatever else
/// uses the shared broker.
pub struct TestKafka {
    pub brokers: String,
    _private: Option<Tansu>,
}

impl TestKafka {
    pub fn start(dir: &Path) -> TestKafka {
        match std::env::var("SLUICE_TEST_KAFKA") {
            Ok(brokers) if !brokers.is_empty() => TestKafka {
                brokers,
                _private: None,
            },
            _ => {
                let tansu = Tansu::start(dir, free_port());
                TestKafka {
                    brokers: tansu.brokers(),
                    _private: Some(tansu),
                }
            }
        }
    }
}

/// A tansu broker process (a Kafka-compatible broker from crates.io) on
/// 127.0.0.1:`port`, storing in `dir/tansu.db`. Stopped on drop.
pub struct Tansu {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// Every client must log in (SASL): see [`Tansu::require_login`].
    authentication: bool,
}

impl Tansu {
    /// The binary: `SLUICE_TANSU`, else where `tests/brokers.sh` installs it.
    pub fn bin() -> PathBuf {
        crate::tool("SLUICE_TANSU", "bin/tansu")
    }

    pub fn start(dir: &Path, port: u16) -> Tansu {
        let mut tansu = Tansu {
            child: None,
            port,
            dir: dir.to_owned(),
            authentication: false,
        };
        tansu.boot();
        tansu
    }

    /// Start the process (again, on the same port and storage) and wait
    /// until it listens.
    pub fn boot(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .unwrap();
        let child = Command::new(Self::bin())
            .arg("broker")
            .args(["--storage-engine", "sqlite://tansu.db"]) // relative to the working directory
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(self.authentication.then_some("--authentication"))
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {} within 30 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Make SCRAM-SHA-512 user `name` with `password` (tansu takes this
    /// only while it asks no one to log in), then boot it again requiring
    /// every client to log in (SASL).
    pub fn require_login(&mut self, name: &str, password: &str) {
        let made = Command::new(Self::bin())
            .args(["user", "create", "--mechanism", "scram512", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args([name, password])
            .output()
            .expect("tansu user create runs");
        assert!(
            made.status.success(),
            "tansu user create: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        self.stop();
        self.authentication = true;
        self.boot();
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM, and wait until the process is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One record as a test sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: Option<String>,
    /// Empty for a tombstone (see `tombstone`).
    pub payload: Vec<u8>,
    /// The value is null.
    pub tombstone: bool,
    pub headers: Vec<(String, Vec<u8>)>,
    pub partition: i32,
    pub offset: i64,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Create `topic` with `partitions` partitions (an existing one is fine).
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let results = runtime()
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap_or_else(|e| {
            panic!("cannot reach Kafka at {brokers} (run tests/run.sh, which starts it): {e}")
        });
    for r in results {
        if let Err((name, code)) = r {
            assert_eq!(
                code,
                rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "creating topic {name}"
            );
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
                hs = hs.insert(Header {
                    key: n,
                    value: Some(v.as_bytes()),
                });
            }
            let record = FutureRecord::to(topic)
                .key(key.as_bytes())
                .payload(payload.as_slice())
                .headers(hs);
            reports.push(producer.send(record, Duration::from_secs(30)));
        }
        for r in futures::future::join_all(reports).await {
            r.map_err(|(e, _)| e).expect("test producer delivered");
        }
    });
}

/// Produce one record with `key`, `headers` and no value at all (a
/// tombstone) to partition 0 of `topic`.
pub fn produce_tombstone(brokers: &str, topic: &str, key: &str, headers: &[(&str, &str)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let mut hs = OwnedHeaders::new();
    for (n, v) in headers {
        hs = hs.insert(Header {
            key: n,
            value: Some(v.as_bytes()),
        });
    }
    let record = FutureRecord::<[u8], [u8]>::to(topic)
        .key(key.as_bytes())
        .partition(0)
        .headers(hs);
    runtime()
        .block_on(producer.send(record, Duration::from_secs(30)))
        .map_err(|(e, _)| e)
        .expect("the tombstone is delivered");
}

fn reader(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// Per partition of `topic`: (low, high) watermarks.
fn watermarks(consumer: &BaseConsumer, topic: &str) -> Vec<(i32, i64, i64)> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0) as i32;
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, low, high)
        })
        .collect()
}

/// Per partition of `topic`: (partition, low, high) watermarks.
pub fn partitions(brokers: &str, topic: &str) -> Vec<(i32, i64, i64)> {
    watermarks(&reader(brokers), topic)
}

/// How many records `topic` holds now.
pub fn count(brokers: &str, topic: &str) -> usize {
    watermarks(&reader(brokers), topic)
        .iter()
        .map(|(_, low, high)| (high - low).max(0) as usize)
        .sum()
}

/// Every record `topic` holds now (up to each partition's high watermark),
/// read by assignment without a consumer group.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<Record> {
    let consumer = reader(brokers);
    let marks = watermarks(&consumer, topic);
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    for (p, low, high) in &marks {
        if high > low {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*low))
                .unwrap();
            remaining += (high - low) as usize;
        }
    }
    let mut records = Vec::with_capacity(remaining);
    if remaining == 0 {
        return records;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    while records.len() < remaining && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => records.push(Record {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: m.payload().unwrap_or_default().to_vec(),
                tombstone: m.payload().is_none(),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
                partition: m.partition(),
                offset: m.offset(),
            }),
            Some(Err(e)) => eprintln!("test reader: {e}"),
            None => {}
        }
    }
    assert_eq!(records.len(), remaining, "read all of {topic} within 60 s");
    records
}

/// Count of distinct keys in `records`.
pub fn distinct_keys(records: &[Record]) -> usize {
    records
        .iter()
        .filter_map(|r| r.key.as_deref())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// The committed offset per partition of `group` on `topic` (partitions
/// without a commit are left out).
pub fn committed(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> std::collections::BTreeMap<i32, i64> {
    try_committed(brokers, group, topic, partitions).expect("committed offsets")
}

/// [`committed`], or the error (the broker is restarting, say).
pub fn try_committed(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> rdkafka::error::KafkaResult<std::collections::BTreeMap<i32, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    let map = got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect();
    // Drop the list before the consumer: the other order hangs librdkafka.
    drop(got);
    drop(consumer);
    Ok(map)
}
