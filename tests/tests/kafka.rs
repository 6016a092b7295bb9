//! The Kafka connector against a real Kafka-protocol broker process (a
//! private tansu per test, installed by the test command; or the Kafka named
//! by `SLUICE_TEST_KAFKA`), driven through the `sluice` binary: the
//! conformance suite (every record comes out or lands in the DLQ with its
//! topic/partition/offset, offsets are committed to the end, SIGKILL
//! mid-stream loses nothing, two daemons share a group, a broker restart is
//! ridden out, an unreachable broker is exit 2, the examples run), and a
//! rebalance while records flow.

use sluice_tests::conformance::{
    self as suite, config, keys, Broker, Coordinates, Example, Input, Output, Restart, Role, Scale,
    Stream, LONG,
};
use sluice_tests::daemon::{free_port, Daemon, Names};
use sluice_tests::kafka_client::{self, create_topic, read_topic, try_committed, Tansu, TestKafka};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// Kafka topics: every topic with three partitions.
struct Kafka {
    brokers: String,
    /// The test's Kafka: a tansu of its own unless `SLUICE_TEST_KAFKA`
    /// names one; runs until the test ends.
    _kafka: Option<TestKafka>,
    /// The restart scenario's tansu, which it stops and boots.
    private: Option<Tansu>,
    /// Unreachable: give up connecting after 2 s.
    connect_timeout: &'static str,
}

const PARTITIONS: i32 = 3;

impl Kafka {
    fn record(m: &Input) -> (String, Vec<u8>, Vec<(String, String)>) {
        (m.key.clone(), m.payload.clone(), m.headers.clone())
    }
}

impl Broker for Kafka {
    const NAME: &'static str = "kafka";
    const SCALE: Scale = Scale {
        round_trip: 1000,
        // Slow enough that every kill (and the group's wait for the killed
        // member's session to expire) falls mid-stream.
        crash: Stream {
            total: 6000,
            batch: 25,
            pause: Duration::from_millis(100),
        },
        kills: [800, 2500, 4200],
        shared: Stream {
            total: 3000,
            batch: 200,
            pause: Duration::from_millis(50),
        },
    };

    /// librdkafka and the broker refuse a record over `message.max.bytes` (1,000,000 by default).
    fn odd(case: &str) -> suite::Odd {
        match case {
            "1MiB" | "16MiB" => suite::Odd::Refused("Message size too large"),
            _ => suite::Odd::Same,
        }
    }

    fn new(dir: &Path) -> Self {
        let kafka = TestKafka::start(dir);
        Kafka {
            brokers: kafka.brokers.clone(),
            _kafka: Some(kafka),
            private: None,
            connect_timeout: "",
        }
    }

    fn unreachable(_dir: &Path) -> (Self, String) {
        let kafka = Kafka {
            brokers: "127.0.0.1:1".into(),
            _kafka: None,
            private: None,
            connect_timeout: r#", connect_timeout = "2s""#,
        };
        (kafka, "127.0.0.1:1".into())
    }

    fn create(&self, names: &[&str]) {
        for name in names {
            create_topic(&self.brokers, name, PARTITIONS);
        }
    }

    /// A tombstone comes in as a message with an empty payload and the
    /// header `kafka-tombstone: true`.
    fn produce_native_odd(&self, to: &str) -> Vec<(&'static str, sluice_core::Message)> {
        kafka_client::produce_tombstone(
            &self.brokers,
            to,
            "gone",
            &[(suite::ODD_CASE, "tombstone")],
        );
        let expect = sluice_core::Message::new(Vec::new())
            .with_key("gone")
            .with_header(suite::ODD_CASE, "tombstone")
            .with_header(sluice_brokers::kafka::TOMBSTONE_HEADER, "true");
        vec![("tombstone", expect)]
    }

    fn source(&self, t: &Names, _role: Role) -> String {
        format!(
            r#"{{ type = "kafka", brokers = "{}", group = "{}", topics = ["{}"], commit_interval = "200ms", properties = {{ "session.timeout.ms" = 6000, "heartbeat.interval.ms" = 1000 }}{} }}"#,
            self.brokers, t.group, t.input, self.connect_timeout
        )
    }

    fn sink(&self, name: &str) -> String {
        format!(
            r#"{{ type = "kafka", brokers = "{}", topic = "{name}" }}"#,
            self.brokers
        )
    }

    fn produce(&self, to: &str, messages: &[Input]) {
        let records: Vec<_> = messages.iter().map(Kafka::record).collect();
        kafka_client::produce(&self.brokers, to, &records);
    }

    fn count(&self, name: &str) -> usize {
        kafka_client::count(&self.brokers, name)
    }

    fn read(&self, name: &str) -> Vec<Output> {
        read_topic(&self.brokers, name)
            .into_iter()
            .map(|r| Output {
                key: r.key,
                payload: r.payload,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
                    .collect(),
            })
            .collect()
    }

    /// Records past the group's committed offset, per partition: zero when
    /// the group committed exactly to the end of each.
    fn unacked(&self, input: &str, group: &str) -> usize {
        let partitions = kafka_client::partitions(&self.brokers, input);
        let Ok(done) = try_committed(&self.brokers, group, input, partitions.len() as i32) else {
            return usize::MAX; // not known yet
        };
        partitions
            .iter()
            .map(|(p, low, high)| {
                let at = done.get(p).copied().unwrap_or(*low);
                (high - at).unsigned_abs() as usize
            })
            .sum()
    }

    fn coordinates(&self, t: &Names) -> Coordinates {
        let inputs: BTreeMap<String, (i32, i64)> = read_topic(&self.brokers, &t.input)
            .into_iter()
            .map(|r| (r.key.unwrap(), (r.partition, r.offset)))
            .collect();
        let topic = t.input.clone();
        Box::new(move |key| {
            let (partition, offset) = inputs[key];
            vec![
                ("sluice-error-source-topic", Some(topic.clone())),
                ("sluice-error-source-partition", Some(partition.to_string())),
                ("sluice-error-source-offset", Some(offset.to_string())),
            ]
        })
    }

    /// Every daemon got partitions (the second one's first assignment
    /// comes with the group's new generation).
    fn sharing(&self, _t: &Names, daemons: &[&Daemon]) -> bool {
        daemons
            .iter()
            .all(|d| d.log_text().contains("partitions assigned"))
    }

    /// Counted, not bounded: a rebalance (a member's session expiring on a
    /// loaded machine) replays what was not yet committed.
    fn allowed_duplicates(total: usize) -> usize {
        total
    }

    fn example(&self, unique: &str) -> Example {
        let topic = |t: &str| format!("{unique}.{t}");
        for t in ["orders", "orders-europe", "orders-americas", "orders.dlq"] {
            create_topic(&self.brokers, &topic(t), 2);
        }
        let address = (
            "\"127.0.0.1:19092\"".to_string(),
            format!("\"{}\"", self.brokers),
        );
        let quoted = |t: &str| (format!("\"{t}\""), format!("\"{}\"", topic(t)));
        Example {
            load: "kafka-load.toml",
            load_replacements: vec![
                address.clone(),
                (
                    "sinks.orders = { type = \"kafka\",".into(),
                    format!(
                        "sinks.orders = {{ type = \"kafka\", topic = \"{}\",",
                        topic("orders")
                    ),
                ),
            ],
            orders: "kafka-orders.toml",
            orders_replacements: vec![
                address,
                quoted("orders"),
                quoted("orders-europe"),
                quoted("orders-americas"),
                quoted("orders.dlq"),
                quoted("sluice-orders"),
            ],
            input: topic("orders"),
            group: topic("sluice-orders"),
            europe: topic("orders-europe"),
            americas: topic("orders-americas"),
            dlq: topic("orders.dlq"),
        }
    }
}

/// A private tansu, even when `SLUICE_TEST_KAFKA` names a shared Kafka.
impl Restart for Kafka {
    /// At a quiet point, as before the suite: the test cannot watch a stop
    /// mid-stream. With 5,000 records waiting, the output's high watermark
    /// jumped from under 300 to 5,000 between two polls; with 20,000, tansu
    /// answered no metadata request within 10 s while the daemon worked.
    const RESTART: (usize, usize, usize) = (300, 300, 300);

    fn private(dir: &Path) -> Self {
        let tansu = Tansu::start(dir, free_port());
        Kafka {
            brokers: tansu.brokers(),
            _kafka: None,
            private: Some(tansu),
            connect_timeout: "",
        }
    }

    fn stop(&mut self) {
        self.private.as_mut().expect("a private broker").stop();
    }

    fn boot(&mut self) {
        self.private.as_mut().expect("a private broker").boot();
    }
}

sluice_tests::conformance!(Kafka, restart);

/// Everything in `topics` once they hold `want` distinct keys (or [`LONG`]
/// passed), read a second later to catch late duplicates too.
fn collect(kafka: &Kafka, topics: &[&str], want: usize) -> Vec<Output> {
    let read = || {
        topics
            .iter()
            .flat_map(|t| kafka.read(t))
            .collect::<Vec<_>>()
    };
    suite::wait_for(LONG, || {
        topics.iter().map(|t| kafka.count(t)).sum::<usize>() >= want
            && keys(&read()).iter().collect::<BTreeSet<_>>().len() >= want
    });
    std::thread::sleep(Duration::from_secs(1));
    read()
}

#[test]
fn a_second_daemon_joining_mid_stream_rebalances_the_group_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = Kafka::new(dir.path());
    let n = suite::plain_names::<Kafka>("rebalance");
    create_topic(&kafka.brokers, &n.input, 4);
    create_topic(&kafka.brokers, &n.dlq, 1);
    let (out_a, out_b) = (format!("{}.a", n.output), format!("{}.b", n.output));
    create_topic(&kafka.brokers, &out_a, 1);
    create_topic(&kafka.brokers, &out_b, 1);
    let a = Daemon::start(
        &config(&kafka, dir.path(), &n, &out_a, Role::Alone),
        &dir.path().join("a.log"),
    );
    assert!(
        suite::wait_for(LONG, || kafka.sharing(&n, &[&a])),
        "{}",
        a.log_text()
    );
    // Records flow while the second daemon joins: the group rebalances
    // with work in flight on the first.
    let total = 4000;
    let stream = Stream {
        total,
        batch: 200,
        pause: Duration::from_millis(150),
    };
    let all = std::thread::scope(|s| {
        let producer = s.spawn(|| suite::produce_stream(&kafka, &n.input, stream, suite::messages));
        std::thread::sleep(Duration::from_millis(500));
        let b = Daemon::start(
            &config(&kafka, dir.path(), &n, &out_b, Role::Alone),
            &dir.path().join("b.log"),
        );
        assert!(
            suite::wait_for(LONG, || kafka.sharing(&n, &[&b])),
            "the second daemon got partitions; logs:\n{}",
            suite::logs(&[&a, &b])
        );
        producer.join().unwrap();
        let all = collect(&kafka, &[&out_a, &out_b, &n.dlq], total);
        assert_eq!(
            keys(&all).iter().collect::<BTreeSet<_>>().len(),
            total,
            "nothing lost; logs:\n{}",
            suite::logs(&[&a, &b])
        );
        assert!(
            b.terminate(LONG).success(),
            "{}",
            std::fs::read_to_string(dir.path().join("b.log")).unwrap()
        );
        all
    });
    assert!(
        a.log_text().contains("partitions revoked"),
        "the first daemon gave partitions up: {}",
        a.log_text()
    );
    assert!(a.terminate(LONG).success());
    let (from_a, from_b) = (kafka.count(&out_a), kafka.count(&out_b));
    assert!(
        from_a > 0 && from_b > 0,
        "both daemons did work: a={from_a} b={from_b}"
    );
    eprintln!(
        "kafka rebalance mid-stream: a delivered {from_a}, b delivered {from_b}, {} duplicates",
        all.len() - total
    );
}

#[test]
fn retries_through_a_retry_topic_wait_until_due_count_up_and_end_in_the_dlq_while_other_keys_flow()
{
    // The spec's pattern on Kafka (`retry.republish`): 1,000 records of 50
    // keys; every record of key k7 fails (retryable) on every call. Each is
    // produced to TOPIC.retry (created by sluice: it does not exist before)
    // with x-retry-count 1, 2, 3 and a due time, its offset committed once
    // that record is confirmed; at the fourth attempt it is dead-lettered.
    // The other keys' 980 records do not wait for k7's backoff: they are all
    // out before k7's first retry is due (4 s).
    let dir = tempfile::tempdir().unwrap();
    let kafka = Kafka::new(dir.path());
    let t = suite::plain_names::<Kafka>("republish");
    kafka.create(&[&t.input, &t.output, &t.dlq]);
    let inputs = suite::keyed_inputs(1000, 50);
    kafka.produce(&t.input, &inputs);
    let config = suite::flaky_pipeline(
        &dir.path().join("republish.toml"),
        &kafka,
        &t,
        r#"{ attempts = 4, initial = "4s", factor = 1, jitter = 0, republish = true }"#,
        r#"{ fail_attempts = 10, fail_matching = '"key":"k7"' }"#,
    );
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    assert!(
        suite::wait_for(LONG, || kafka.count(&t.output) >= 980),
        "{}",
        daemon.log_text()
    );
    let retry_topic = format!("{}.retry", t.input);
    let counts: BTreeSet<String> = read_topic(&kafka.brokers, &retry_topic)
        .iter()
        .filter_map(|r| r.header("x-retry-count"))
        .collect();
    assert!(
        counts.iter().all(|c| c == "1"),
        "the other keys were out before k7's first retry was due (4 s): {counts:?}"
    );
    assert!(
        suite::wait_for(LONG, || kafka.count(&t.dlq) >= 20),
        "{}",
        daemon.log_text()
    );
    // The group commits to the end of the input and of the retry topic.
    assert!(
        suite::wait_for(LONG, || kafka.unacked(&t.input, &t.group) == 0
            && kafka.unacked(&retry_topic, &t.group) == 0),
        "committed to the end; log:\n{}",
        daemon.log_text()
    );
    let log = daemon.log_text();
    assert!(daemon.terminate(LONG).success());
    assert!(log.contains("created the retry topic"), "{log}");
    let retries = read_topic(&kafka.brokers, &retry_topic);
    assert_eq!(retries.len(), 60, "one retry record per retry, no crash");
    let k7: BTreeSet<String> = (0..1000)
        .filter(|i| i % 50 == 7)
        .map(|i| format!(r#"{{"amount":{i},"key":"k7"}}"#))
        .collect();
    // payload → due time (ms) by x-retry-count
    let mut due: BTreeMap<String, BTreeMap<u32, u64>> = BTreeMap::new();
    for r in &retries {
        assert_eq!(r.key.as_deref(), Some("k7"), "{r:?}");
        assert_eq!(r.header("trace").map(|t| t.starts_with('t')), Some(true));
        let count: u32 = r.header("x-retry-count").unwrap().parse().unwrap();
        let at: u64 = r.header("sluice-retry-due").unwrap().parse().unwrap();
        let payload = String::from_utf8(r.payload.clone()).unwrap();
        assert!(due.entry(payload).or_default().insert(count, at).is_none());
    }
    assert_eq!(due.keys().cloned().collect::<BTreeSet<_>>(), k7);
    // Attempt n+1 ran when retry n was due, not before: it was produced
    // with its own delay (4 s) after that, so the due times are at least
    // that far apart.
    for (payload, by_count) in &due {
        assert_eq!(by_count.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        let gap = |a: u32, b: u32| by_count[&b] as i64 - by_count[&a] as i64;
        assert!(
            gap(1, 2) >= 3990,
            "{payload}: retry 2 came {} ms after retry 1 was due + its own 4 s",
            gap(1, 2)
        );
        assert!(
            gap(2, 3) >= 3990,
            "{payload}: retry 3 came {} ms after retry 2 was due + its own 4 s",
            gap(2, 3)
        );
    }
    let dead = read_topic(&kafka.brokers, &t.dlq);
    assert_eq!(dead.len(), 20, "one dead letter each");
    for d in &dead {
        let payload = String::from_utf8(d.payload.clone()).unwrap();
        assert_eq!(
            d.header("sluice-error-class").as_deref(),
            Some("retries-exhausted"),
            "{d:?}"
        );
        assert_eq!(d.header("x-retry-count").as_deref(), Some("3"), "{d:?}");
        assert!(d.header("sluice-retry-due").is_none(), "{d:?}");
        let failed = humantime::parse_rfc3339(&d.header("sluice-error-last-failure").unwrap())
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            failed + 10 >= due[&payload][&3],
            "{payload}: the last attempt ran when retry 3 was due"
        );
    }
    let out = read_topic(&kafka.brokers, &t.output);
    assert_eq!(out.len(), 980, "every other record once");
}

#[test]
fn a_tombstone_relayed_through_a_stage_stays_a_tombstone_and_an_empty_value_stays_empty() {
    // A compacted topic relayed by sluice must keep its deletes: the
    // tombstone crosses the identity stage as an empty payload with the
    // `kafka-tombstone` header and leaves as a null value, without the
    // header; an empty value without the header stays an empty value.
    let dir = tempfile::tempdir().unwrap();
    let kafka = TestKafka::start(dir.path());
    let t = Names::new("tombstone");
    for topic in [&t.input, &t.output, &t.dlq] {
        create_topic(&kafka.brokers, topic, 1);
    }
    kafka_client::produce_tombstone(&kafka.brokers, &t.input, "gone", &[("h", "1")]);
    kafka_client::produce(
        &kafka.brokers,
        &t.input,
        &[("empty".into(), Vec::new(), vec![("h".into(), "2".into())])],
    );
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[pipelines.compacted]
source = {{ type = "kafka", brokers = "{brokers}", group = "{group}", topics = ["{input}"], commit_interval = "200ms" }}
sinks.out = {{ type = "kafka", brokers = "{brokers}", topic = "{output}" }}
dlq = {{ type = "kafka", brokers = "{brokers}", topic = "{dlq}" }}

[[pipelines.compacted.stages]]
name = "same"
kind = "transform"
plugin = {plugin}
"#,
            brokers = kafka.brokers,
            group = t.group,
            input = t.input,
            output = t.output,
            dlq = t.dlq,
            plugin = sluice_tests::daemon::plugin_literal("identity"),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    assert!(
        sluice_tests::daemon::eventually(LONG, || kafka_client::count(&kafka.brokers, &t.output)
            >= 2),
        "both records relayed:\n{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let out = read_topic(&kafka.brokers, &t.output);
    let gone = out
        .iter()
        .find(|r| r.key.as_deref() == Some("gone"))
        .unwrap();
    assert!(gone.tombstone, "a null value: {gone:?}");
    assert_eq!(gone.header("h").as_deref(), Some("1"), "its headers kept");
    assert_eq!(
        gone.header(sluice_brokers::kafka::TOMBSTONE_HEADER),
        None,
        "the marker is not written"
    );
    let empty = out
        .iter()
        .find(|r| r.key.as_deref() == Some("empty"))
        .unwrap();
    assert!(!empty.tombstone, "an empty value, not null: {empty:?}");
    assert_eq!(empty.header("h").as_deref(), Some("2"));
    assert_eq!(kafka_client::count(&kafka.brokers, &t.dlq), 0);
}
