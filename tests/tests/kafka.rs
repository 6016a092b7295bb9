//! The Kafka connector against a real Kafka-protocol broker process (a
//! private tansu per test, installed by the test command; or the Kafka named
//! by `SLUICE_TEST_KAFKA`), driven through the `sluice` binary: every record
//! comes out or lands in the DLQ, keys and headers survive, offsets are
//! committed, SIGKILL mid-stream loses nothing, two daemons share a group,
//! a broker restart is ridden out, an unreachable broker is exit 2.

use sluice_tests::daemon::{eventually, example_in, relay_config, summary, unique, Daemon, Names};
use sluice_tests::kafka_client::{
    self, committed, create_topic, free_port, produce, read_topic, Record, Tansu, TestKafka,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Fresh names, with their topics created (outputs with `partitions`).
fn names(test: &str, partitions: i32, brokers: &str) -> Names {
    let n = Names::new(test);
    create_topic(brokers, &n.input, partitions);
    create_topic(brokers, &n.output, partitions);
    create_topic(brokers, &n.dlq, 1);
    n
}

/// topic → json-filter → topic, DLQ a topic too.
fn write_config(dir: &Path, brokers: &str, n: &Names, output: &str, extra_source: &str) -> PathBuf {
    let source = format!(
        r#"{{ type = "kafka", brokers = "{brokers}", group = "{}", topics = ["{}"], commit_interval = "200ms", properties = {{ "session.timeout.ms" = 6000, "heartbeat.interval.ms" = 1000 }}{extra_source} }}"#,
        n.group, n.input
    );
    let out = format!(r#"{{ type = "kafka", brokers = "{brokers}", topic = "{output}" }}"#);
    let dlq = format!(
        r#"{{ type = "kafka", brokers = "{brokers}", topic = "{}" }}"#,
        n.dlq
    );
    relay_config(dir, &source, &out, &dlq)
}

/// Record `i`: key `k{i}`, header `trace = t{i}`; every tenth is not JSON.
fn record(i: usize) -> (String, Vec<u8>, Vec<(String, String)>) {
    let payload = if i % 10 == 7 {
        b"not json".to_vec()
    } else {
        format!(r#"{{"amount":{i}}}"#).into_bytes()
    };
    (
        format!("k{i}"),
        payload,
        vec![("trace".into(), format!("t{i}"))],
    )
}

fn records(range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>, Vec<(String, String)>)> {
    range.map(record).collect()
}

/// Everything in `topics` once they hold `want` distinct keys (or 90 s
/// passed), read a second later to catch late duplicates too.
fn collect(brokers: &str, topics: &[&str], want: usize) -> Vec<Record> {
    let read = || {
        topics
            .iter()
            .flat_map(|t| read_topic(brokers, t))
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < deadline {
        if count(brokers, topics) >= want && distinct(&read()).len() >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(1));
    read()
}

fn distinct(records: &[Record]) -> BTreeSet<String> {
    records.iter().filter_map(|r| r.key.clone()).collect()
}

/// How many records `topics` hold now.
fn count(brokers: &str, topics: &[&str]) -> usize {
    topics.iter().map(|t| kafka_client::count(brokers, t)).sum()
}

#[test]
fn every_record_is_delivered_or_dead_lettered_with_keys_headers_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = TestKafka::start(dir.path());
    let brokers = kafka.brokers.clone();
    let n = names("kafka-roundtrip", 3, &brokers);
    let total = 1000;
    produce(&brokers, &n.input, &records(0..total));
    let daemon = Daemon::start(
        &write_config(dir.path(), &brokers, &n, &n.output, ""),
        &dir.path().join("sluice.log"),
    );

    let all = collect(&brokers, &[&n.output, &n.dlq], total);
    assert_eq!(
        distinct(&all).len(),
        total,
        "everything arrived; log:\n{}",
        daemon.log_text()
    );
    let status = daemon.terminate(Duration::from_secs(60));
    assert!(status.success(), "SIGTERM ends with exit 0, got {status:?}");

    let inputs: BTreeMap<String, Record> = read_topic(&brokers, &n.input)
        .into_iter()
        .map(|r| (r.key.clone().unwrap(), r))
        .collect();
    let out = read_topic(&brokers, &n.output);
    let dlq = read_topic(&brokers, &n.dlq);
    let want_out: BTreeSet<String> = (0..total)
        .filter(|i| i % 10 != 7)
        .map(|i| format!("k{i}"))
        .collect();
    let want_dlq: BTreeSet<String> = (0..total)
        .filter(|i| i % 10 == 7)
        .map(|i| format!("k{i}"))
        .collect();
    assert_eq!(distinct(&out), want_out);
    assert_eq!(out.len(), want_out.len(), "no duplicates without failures");
    assert_eq!(distinct(&dlq), want_dlq);
    for r in &out {
        let key = r.key.clone().unwrap();
        let i: usize = key[1..].parse().unwrap();
        assert_eq!(
            r.header("trace"),
            Some(format!("t{i}")),
            "header kept on {key}"
        );
        assert_eq!(r.payload, format!(r#"{{"amount":{i}}}"#).into_bytes());
    }
    for r in &dlq {
        let key = r.key.clone().unwrap();
        let source = &inputs[&key];
        assert_eq!(
            r.header("sluice-error-source-topic").as_deref(),
            Some(n.input.as_str()),
            "{r:?}"
        );
        assert_eq!(
            r.header("sluice-error-source-partition"),
            Some(source.partition.to_string()),
            "{r:?}"
        );
        assert_eq!(
            r.header("sluice-error-source-offset"),
            Some(source.offset.to_string()),
            "{r:?}"
        );
        assert_eq!(r.header("sluice-error-class").as_deref(), Some("fatal"));
        assert_eq!(r.payload, b"not json", "the original payload is kept");
        assert_eq!(
            r.header("trace"),
            Some(format!("t{}", &key[1..])),
            "original headers are kept"
        );
    }

    // The group committed everything: per partition, the last offset + 1.
    let mut end: BTreeMap<i32, i64> = BTreeMap::new();
    for r in inputs.values() {
        let e = end.entry(r.partition).or_default();
        *e = (*e).max(r.offset + 1);
    }
    assert_eq!(
        committed(&brokers, &n.group, &n.input, 3),
        end,
        "offsets committed up to the end of each partition"
    );
}

#[test]
fn sigkill_mid_stream_loses_nothing_and_duplicates_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = TestKafka::start(dir.path());
    let brokers = kafka.brokers.clone();
    let n = names("kafka-crash", 3, &brokers);
    let config = write_config(dir.path(), &brokers, &n, &n.output, "");
    let log = dir.path().join("sluice.log");
    let total = 6000;
    let producer = {
        let (brokers, input) = (brokers.clone(), n.input.clone());
        std::thread::spawn(move || {
            // Slow enough that every kill (and the group's wait for the
            // killed member's session to expire) falls mid-stream.
            for start in (0..total).step_by(25) {
                produce(&brokers, &input, &records(start..start + 25));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut kills = Vec::new();
    for threshold in [800, 2500, 4200] {
        let daemon = Daemon::start(&config, &log);
        let reached = eventually(Duration::from_secs(90), || {
            count(&brokers, &[&n.output, &n.dlq]) >= threshold
        });
        assert!(
            reached,
            "never reached {threshold}; log:\n{}",
            daemon.log_text()
        );
        let seen = count(&brokers, &[&n.output, &n.dlq]);
        daemon.kill9();
        kills.push(seen);
    }
    assert!(
        kills.iter().all(|k| *k < total),
        "each kill happened mid-stream: {kills:?}"
    );
    producer.join().unwrap();

    let daemon = Daemon::start(&config, &log);
    let all = collect(&brokers, &[&n.output, &n.dlq], total);
    let got = distinct(&all);
    assert_eq!(got.len(), total, "zero lost; log:\n{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(60)).success());
    eprintln!("kafka crash test: {total} records, SIGKILL after {kills:?} delivered, 0 lost, {} duplicates", all.len() - got.len());
}

#[test]
fn two_daemons_in_one_group_share_the_partitions_and_a_rebalance_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = TestKafka::start(dir.path());
    let brokers = kafka.brokers.clone();
    let n = names("kafka-scale", 4, &brokers);
    let (out_a, out_b) = (format!("{}.a", n.output), format!("{}.b", n.output));
    create_topic(&brokers, &out_a, 1);
    create_topic(&brokers, &out_b, 1);
    let a = Daemon::start(
        &write_config(dir.path(), &brokers, &n, &out_a, ""),
        &dir.path().join("a.log"),
    );
    assert!(
        eventually(Duration::from_secs(60), || a
            .log_text()
            .contains("partitions assigned")),
        "{}",
        a.log_text()
    );
    // Records flow while the second daemon joins: the group rebalances
    // with work in flight on the first.
    let total = 4000;
    let producer = {
        let (brokers, input) = (brokers.clone(), n.input.clone());
        std::thread::spawn(move || {
            for start in (0..total).step_by(200) {
                produce(&brokers, &input, &records(start..start + 200));
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let b = Daemon::start(
        &write_config(dir.path(), &brokers, &n, &out_b, ""),
        &dir.path().join("b.log"),
    );
    assert!(
        eventually(Duration::from_secs(60), || b
            .log_text()
            .contains("partitions assigned")),
        "the second daemon got partitions; logs:\n{}\n{}",
        a.log_text(),
        b.log_text()
    );
    producer.join().unwrap();
    let all = collect(&brokers, &[&out_a, &out_b, &n.dlq], total);
    assert_eq!(
        distinct(&all).len(),
        total,
        "logs:\n{}\n{}",
        a.log_text(),
        b.log_text()
    );
    assert!(
        a.log_text().contains("partitions revoked"),
        "the first daemon gave partitions up: {}",
        a.log_text()
    );
    assert!(a.terminate(Duration::from_secs(60)).success());
    assert!(b.terminate(Duration::from_secs(60)).success());
    let (from_a, from_b) = (count(&brokers, &[&out_a]), count(&brokers, &[&out_b]));
    assert!(
        from_a > 0 && from_b > 0,
        "both daemons did work: a={from_a} b={from_b}"
    );
    eprintln!(
        "kafka scale-out: a delivered {from_a}, b delivered {from_b}, {} duplicates",
        all.len() - total
    );
}

#[test]
fn an_unreachable_broker_at_start_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("kafka-down");
    let config = write_config(
        dir.path(),
        "127.0.0.1:1",
        &n,
        &n.output,
        r#", connect_timeout = "2s""#,
    );
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    let status = daemon.wait(Duration::from_secs(60));
    let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("127.0.0.1:1"),
        "the message names the broker: {log}"
    );
}

#[test]
fn a_broker_restart_while_running_is_ridden_out_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(dir.path(), free_port());
    let brokers = broker.brokers();
    let n = names("kafka-restart", 2, &brokers);
    let mut daemon = Daemon::start(
        &write_config(dir.path(), &brokers, &n, &n.output, ""),
        &dir.path().join("sluice.log"),
    );
    let half = 300;
    produce(&brokers, &n.input, &records(0..half));
    assert_eq!(
        distinct(&collect(&brokers, &[&n.output, &n.dlq], half)).len(),
        half,
        "{}",
        daemon.log_text()
    );

    let _broker = broker.restart();
    produce(&brokers, &n.input, &records(half..2 * half));
    let all = collect(&brokers, &[&n.output, &n.dlq], 2 * half);
    assert!(
        daemon.running(),
        "the daemon rode out the restart; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(
        distinct(&all).len(),
        2 * half,
        "nothing lost across the restart; log:\n{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(60)).success());
}

#[test]
fn the_kafka_examples_load_and_process_the_orders() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = TestKafka::start(dir.path());
    let brokers = kafka.brokers.clone();
    let u = unique("example");
    let topic = |t: &str| format!("{u}.{t}");
    for t in ["orders", "orders-europe", "orders-americas", "orders.dlq"] {
        create_topic(&brokers, &topic(t), 2);
    }
    let address = ("\"127.0.0.1:19092\"".to_string(), format!("\"{brokers}\""));
    let quoted = |t: &str| (format!("\"{t}\""), format!("\"{}\"", topic(t)));
    let load = example_in(
        dir.path(),
        "kafka-load.toml",
        &[
            address.clone(),
            (
                "sinks.orders = { type = \"kafka\",".into(),
                format!(
                    "sinks.orders = {{ type = \"kafka\", topic = \"{}\",",
                    topic("orders")
                ),
            ),
        ],
    );
    let orders = example_in(
        dir.path(),
        "kafka-orders.toml",
        &[
            address,
            quoted("orders"),
            quoted("orders-europe"),
            quoted("orders-americas"),
            quoted("orders.dlq"),
            quoted("sluice-orders"),
        ],
    );
    assert!(Daemon::start(&load, &dir.path().join("load.log"))
        .wait(Duration::from_secs(120))
        .success());
    assert_eq!(
        count(&brokers, &[&topic("orders")]),
        9900,
        "the 9,900 well-formed orders are in the topic"
    );

    let daemon = Daemon::start(&orders, &dir.path().join("orders.log"));
    // Done when the group has committed to the end of both partitions.
    let ends: BTreeMap<i32, i64> = {
        let mut ends = BTreeMap::new();
        for r in read_topic(&brokers, &topic("orders")) {
            let e = ends.entry(r.partition).or_insert(0);
            *e = (*e).max(r.offset + 1);
        }
        ends
    };
    assert!(
        eventually(Duration::from_secs(120), || committed(
            &brokers,
            &topic("sluice-orders"),
            &topic("orders"),
            2
        ) == ends),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(60)).success());
    let log = std::fs::read_to_string(dir.path().join("orders.log")).unwrap();
    let [received, delivered, _dropped, dead, acked] =
        summary(&log, "orders").expect("summary line");
    assert_eq!((received, acked), (9900, 9900));
    let (europe, americas) = (
        count(&brokers, &[&topic("orders-europe")]),
        count(&brokers, &[&topic("orders-americas")]),
    );
    assert!(europe > 0 && americas > 0);
    assert_eq!((europe + americas) as u64, delivered);
    assert_eq!(count(&brokers, &[&topic("orders.dlq")]) as u64, dead);
}
