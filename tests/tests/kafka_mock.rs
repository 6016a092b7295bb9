//! Fast Kafka tests against librdkafka's mock cluster (a real Kafka-protocol
//! broker over TCP, inside the test process): the source's commit
//! discipline in process (offsets are committed per partition only below
//! the first unfinished message; a message given back unfinished is never
//! committed), and the `sluice` binary relaying topic to topic through it.
//! The same behaviours against a real broker process are in `kafka.rs`.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sluice_brokers::kafka::{KafkaSourceConfig, OffsetReset};
use sluice_brokers::SourceConfig;
use sluice_core::Shutdown;
use sluice_core::{Delivery, HumanDuration};
use sluice_tests::daemon::{eventually, plugin_literal, Daemon};
use sluice_tests::kafka_client::{count, read_topic};
use std::collections::BTreeMap;
use std::time::Duration;

const TOPIC: &str = "orders";

async fn committed(brokers: &str, group: &str) -> BTreeMap<i32, i64> {
    let (brokers, group) = (brokers.to_string(), group.to_string());
    tokio::task::spawn_blocking(move || {
        sluice_tests::kafka_client::committed(&brokers, &group, TOPIC, 2)
    })
    .await
    .unwrap()
}

/// Poll until the group's commits equal `want` (commits are on a timer).
async fn commits_become(brokers: &str, group: &str, want: BTreeMap<i32, i64>) {
    let mut last = BTreeMap::new();
    for _ in 0..50 {
        last = committed(brokers, group).await;
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("committed offsets {last:?}, want {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_only_below_the_first_unfinished_message() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 2, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for i in 0..40 {
        let record = FutureRecord::to(TOPIC)
            .key("k")
            .payload("{}")
            .partition(i % 2);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let config = SourceConfig::Kafka(KafkaSourceConfig {
        brokers: brokers.clone(),
        group: "g".into(),
        topics: vec![TOPIC.into()],
        topic_pattern: None,
        auto_offset_reset: OffsetReset::Earliest,
        commit_interval: HumanDuration(Duration::from_millis(100)),
        connect_timeout: HumanDuration(Duration::from_secs(10)),
        properties: BTreeMap::new(),
        retry_topic: None,
        tls: None,
        sasl: None,
    });
    let source = config
        .open(std::path::Path::new("."))
        .await
        .expect("source connects");
    let (tx, mut rx) = sluice_core::Outbox::channel(100, Default::default());
    let shutdown = Shutdown::default();
    let task = tokio::spawn(source.run(tx, shutdown.clone()));

    let mut held: BTreeMap<(i32, i64), Delivery> = BTreeMap::new();
    while held.len() < 40 {
        let d = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("40 deliveries")
            .unwrap();
        let c: BTreeMap<&str, &str> = d
            .coordinates
            .0
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        assert_eq!(c["topic"], TOPIC);
        held.insert(
            (
                c["partition"].parse().unwrap(),
                c["offset"].parse().unwrap(),
            ),
            d,
        );
    }

    // Partition 0: finish everything but offset 5. Partition 1: all of it.
    let stuck = held.remove(&(0, 5)).unwrap();
    for (_, d) in std::mem::take(&mut held) {
        d.ack.ack();
    }
    commits_become(&brokers, "g", BTreeMap::from([(0, 5), (1, 20)])).await;

    // Offset 5 done: partition 0 commits to its end.
    stuck.ack.ack();
    commits_become(&brokers, "g", BTreeMap::from([(0, 20), (1, 20)])).await;

    // More records; one is given back unfinished at shutdown (dropped).
    for _ in 0..3 {
        let record = FutureRecord::to(TOPIC).key("k").payload("{}").partition(0);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let mut late = Vec::new();
    for _ in 0..3 {
        late.push(
            tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("3 more")
                .unwrap(),
        );
    }
    let given_back = late.remove(0); // offset 20
    for d in late {
        d.ack.ack();
    }
    shutdown.cancel();
    drop(given_back);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("source stops")
        .unwrap()
        .unwrap();
    assert_eq!(
        committed(&brokers, "g").await,
        BTreeMap::from([(0, 20), (1, 20)]),
        "offset 20 was never finished, so 21 and 22 are not committed either"
    );
}

#[test]
fn the_daemon_relays_topic_to_topic_with_keys_and_headers() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (topic, partitions) in [("in", 3), ("out", 3), ("dlq", 1)] {
        cluster.create_topic(topic, partitions, 1).expect("topic");
    }
    let brokers = cluster.bootstrap_servers();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    runtime.block_on(async {
        for i in 0..300 {
            let payload = if i % 10 == 7 {
                "not json".to_string()
            } else {
                format!(r#"{{"amount":{i}}}"#)
            };
            let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "trace",
                value: Some(&format!("t{i}")),
            });
            let key = format!("k{i}");
            let record = FutureRecord::to("in")
                .key(&key)
                .payload(&payload)
                .headers(headers);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mock.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[pipelines.relay]
concurrency = 2
source = {{ type = "kafka", brokers = "{brokers}", group = "g", topics = ["in"], commit_interval = "100ms" }}
dlq = {{ type = "kafka", brokers = "{brokers}", topic = "dlq" }}
[[pipelines.relay.stages]]
name = "valid"
kind = "filter"
plugin = {plugin}
[pipelines.relay.sinks.out]
type = "kafka"
brokers = "{brokers}"
"#,
            plugin = plugin_literal("json-filter")
        ),
    )
    .unwrap();
    let http = sluice_tests::daemon::free_addr();
    let daemon = Daemon::start_with(&config, &dir.path().join("sluice.log"), &["--http", &http]);
    assert!(
        eventually(Duration::from_secs(60), || count(&brokers, "out")
            + count(&brokers, "dlq")
            >= 300),
        "{}",
        daemon.log_text()
    );
    // Consumer lag from librdkafka's statistics: nothing past the commits.
    let lag = || {
        sluice_tests::daemon::http_get(&http, "/metrics").and_then(|(_, m)| {
            sluice_tests::daemon::metric(&m, "sluice_source_lag{pipeline=\"relay\"}")
        })
    };
    assert!(
        eventually(Duration::from_secs(20), || lag() == Some(0.0)),
        "consumer lag: {:?}",
        lag()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let out = read_topic(&brokers, "out");
    let dlq = read_topic(&brokers, "dlq");
    assert_eq!((out.len(), dlq.len()), (270, 30));
    for r in &out {
        let i: usize = r.key.as_deref().unwrap()[1..].parse().unwrap();
        assert_eq!(r.header("trace"), Some(format!("t{i}")));
        assert_eq!(r.payload, format!(r#"{{"amount":{i}}}"#).into_bytes());
    }
    assert!(dlq.iter().all(
        |r| r.header("sluice-error-source-topic").as_deref() == Some("in")
            && r.header("sluice-error-source-offset").is_some()
    ));
    let committed = sluice_tests::kafka_client::committed(&brokers, "g", "in", 3);
    assert_eq!(
        committed.values().sum::<i64>(),
        300,
        "every offset committed: {committed:?}"
    );
}
