//! The Kafka source's commit discipline, in process, against librdkafka's
//! mock cluster (a real Kafka-protocol broker over TCP): offsets are
//! committed per partition only below the first unfinished message, and a
//! message given back unfinished is never committed.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use sluice_brokers::kafka::{KafkaSourceConfig, OffsetReset};
use sluice_brokers::SourceConfig;
use sluice_core::{Delivery, HumanDuration};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "orders";

async fn committed(brokers: &str, group: &str) -> BTreeMap<i32, i64> {
    let (brokers, group) = (brokers.to_string(), group.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &brokers).set("group.id", &group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(TOPIC, 0);
        tpl.add_partition(TOPIC, 1);
        let got = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
        let map = got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect();
        drop(got); // before the consumer: the other order hangs librdkafka
        map
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

    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    for i in 0..40 {
        let record = FutureRecord::to(TOPIC).key("k").payload("{}").partition(i % 2);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
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
    });
    let source = config.open(std::path::Path::new(".")).await.expect("source connects");
    let (tx, mut rx) = mpsc::channel::<Delivery>(100);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(source.run(tx, shutdown.clone()));

    let mut held: BTreeMap<(i32, i64), Delivery> = BTreeMap::new();
    while held.len() < 40 {
        let d = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("40 deliveries").unwrap();
        let c: BTreeMap<&str, &str> = d.coordinates.0.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(c["topic"], TOPIC);
        held.insert((c["partition"].parse().unwrap(), c["offset"].parse().unwrap()), d);
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
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
    let mut late = Vec::new();
    for _ in 0..3 {
        late.push(tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("3 more").unwrap());
    }
    let given_back = late.remove(0); // offset 20
    for d in late {
        d.ack.ack();
    }
    shutdown.cancel();
    drop(given_back);
    tokio::time::timeout(Duration::from_secs(30), task).await.expect("source stops").unwrap().unwrap();
    assert_eq!(
        committed(&brokers, "g").await,
        BTreeMap::from([(0, 20), (1, 20)]),
        "offset 20 was never finished, so 21 and 22 are not committed either"
    );
}
