//! The RabbitMQ connector against a real RabbitMQ server, driven through the
//! `sluice` binary: the conformance suite (every message comes out or lands
//! in the DLQ queue with its key, headers, queue and delivery tag, SIGKILL
//! mid-stream loses nothing, two daemons share a queue, an unreachable
//! server is exit 2, a broker restart on a private node is ridden out, the
//! examples run), and what is RabbitMQ's own: an unroutable publish is
//! retried, a lost connection is reconnected, retries through the broker
//! carry `x-retry-count`, the drain timeout bounds a stop.

use sluice_tests::amqp_client::{self, amqp_url, declare, delete, depth, drain, exists, publish};
use sluice_tests::conformance::{
    self as suite, config, keys, Broker, Coordinates, Example, Input, Output, Restart, Role, Scale,
    Stream, LONG,
};
use sluice_tests::daemon::{eventually, Daemon, Names};
use sluice_tests::rabbitmq_node::RabbitNode;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Queues through the default exchange (routing key = queue name), on the
/// shared server or a private node.
struct Rabbit {
    url: String,
    node: Option<RabbitNode>,
    /// Unreachable: give up connecting after 2 s.
    connect_timeout: &'static str,
    /// Queues made on the shared server, deleted when the test passed.
    made: Mutex<Vec<String>>,
}

impl Rabbit {
    /// Delete `queues` from the shared server at the end of the test.
    fn clean_up(&self, queues: impl IntoIterator<Item = String>) {
        self.made.lock().unwrap().extend(queues);
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        // A failed test leaves its queues for a look; a private node goes anyway.
        let made = self.made.lock().unwrap();
        if self.node.is_none() && !made.is_empty() && !std::thread::panicking() {
            delete(
                &self.url,
                &made.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        }
    }
}

impl Broker for Rabbit {
    const NAME: &'static str = "amqp";
    const SCALE: Scale = Scale {
        round_trip: 1000,
        crash: Stream {
            total: 6000,
            batch: 100,
            pause: Duration::from_millis(50),
        },
        kills: [800, 2500, 4200],
        shared: Stream {
            total: 3000,
            batch: 3000,
            pause: Duration::ZERO,
        },
    };

    /// Headers are a table: in name order, a repeated name keeps its last.
    fn odd(case: &str) -> suite::Odd {
        match case {
            "binary-header-value" | "100-headers" => suite::Odd::Reordered,
            "repeated-header" => {
                let mut m = suite::odd_case(case);
                m.headers = vec![
                    ("dup".into(), b"2".to_vec()),
                    (suite::ODD_CASE.into(), case.as_bytes().to_vec()),
                ];
                suite::Odd::Changed(m)
            }
            _ => suite::Odd::Same,
        }
    }

    fn new(_dir: &Path) -> Self {
        Rabbit {
            url: amqp_url(),
            node: None,
            connect_timeout: "",
            made: Mutex::default(),
        }
    }

    fn unreachable(_dir: &Path) -> (Self, String) {
        let rabbit = Rabbit {
            url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
            node: None,
            connect_timeout: r#", connect_timeout = "2s""#,
            made: Mutex::default(),
        };
        // The server, without its password.
        (rabbit, "amqp://***@127.0.0.1:1".into())
    }

    fn create(&self, names: &[&str]) {
        declare(&self.url, names);
        self.clean_up(names.iter().map(|n| n.to_string()));
    }

    fn source(&self, t: &Names, _role: Role) -> String {
        format!(
            r#"{{ type = "rabbitmq", url = "{}", queue = "{}", prefetch = 50{} }}"#,
            self.url, t.input, self.connect_timeout
        )
    }

    fn sink(&self, name: &str) -> String {
        format!(
            r#"{{ type = "rabbitmq", url = "{}", routing_key = "{name}" }}"#,
            self.url
        )
    }

    /// The key travels as the header `sluice-key`.
    fn produce(&self, to: &str, messages: &[Input]) {
        let messages: Vec<_> = messages
            .iter()
            .map(|m| {
                let mut headers = vec![("sluice-key".to_string(), m.key.clone())];
                headers.extend(m.headers.iter().cloned());
                (m.payload.clone(), headers)
            })
            .collect();
        publish(&self.url, to, &messages);
    }

    fn count(&self, name: &str) -> usize {
        depth(&self.url, name) as usize
    }

    fn read(&self, name: &str) -> Vec<Output> {
        drain(&self.url, name)
            .into_iter()
            .map(|g| Output {
                key: g.header("sluice-key"),
                payload: g.payload,
                headers: g.headers,
            })
            .collect()
    }

    /// Ready messages: deliveries the daemon holds unacked are not counted.
    fn unacked(&self, input: &str, _group: &str) -> usize {
        self.count(input)
    }

    fn coordinates(&self, t: &Names) -> Coordinates {
        let queue = t.input.clone();
        Box::new(move |_| {
            vec![
                ("sluice-error-source-queue", Some(queue.clone())),
                ("sluice-error-source-delivery-tag", None),
            ]
        })
    }

    fn sharing(&self, t: &Names, daemons: &[&Daemon]) -> bool {
        amqp_client::consumers(&self.url, &t.input) as usize == daemons.len()
    }

    fn example(&self, unique: &str) -> Example {
        let q = |name: &str| format!("{unique}.{name}");
        let quoted = |name: &str| (format!("\"{name}\""), format!("\"{}\"", q(name)));
        let names = [
            "orders",
            "orders-europe",
            "orders-americas",
            "orders.dlq",
            "orders-in",
        ];
        self.clean_up(names.map(q));
        let url = (
            "\"amqp://127.0.0.1:5672/%2f\"".to_string(),
            format!("\"{}\"", self.url),
        );
        let mut orders_replacements = vec![url.clone()];
        orders_replacements.extend(names.map(quoted));
        Example {
            load: "rabbitmq-load.toml",
            load_replacements: vec![url, quoted("orders")],
            orders: "rabbitmq-orders.toml",
            orders_replacements,
            input: q("orders"),
            group: String::new(),
            europe: q("orders-europe"),
            americas: q("orders-americas"),
            dlq: q("orders.dlq"),
        }
    }
}

/// A private node: the shared server must not be restarted.
impl Restart for Rabbit {
    const RESTART: (usize, usize, usize) = (10_000, 1000, 500);

    fn private(_dir: &Path) -> Self {
        let node = RabbitNode::start();
        Rabbit {
            url: node.url(),
            node: Some(node),
            connect_timeout: "",
            made: Mutex::default(),
        }
    }

    fn stop(&mut self) {
        self.node.as_mut().expect("a private node").stop();
    }

    fn boot(&mut self) {
        self.node.as_mut().expect("a private node").boot();
    }

    fn assert_reconnected(&self, daemon: &Daemon) {
        let marker = format!("sluice-{}", daemon.pid());
        let node = self.node.as_ref().expect("a private node");
        assert!(
            node.connections_named(&marker) >= 3,
            "source, sink and DLQ connected again"
        );
        assert!(
            daemon.log_text().contains("reconnected to RabbitMQ"),
            "{}",
            daemon.log_text()
        );
    }
}

sluice_tests::conformance!(Rabbit, restart);

#[test]
fn an_unroutable_publish_is_retried_not_lost() {
    // The output queue does not exist at first: the mandatory publish comes
    // back, the engine retries, and once the queue is declared the message
    // arrives and only then is the input acked.
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::new(dir.path());
    let n = suite::plain_names::<Rabbit>("unroutable");
    rabbit.create(&[&n.input, &n.dlq]);
    rabbit.produce(&n.input, &suite::messages(0..5));
    let daemon = Daemon::start(
        &config(&rabbit, dir.path(), &n, &n.output, Role::Alone),
        &dir.path().join("sluice.log"),
    );
    assert!(
        eventually(LONG, || daemon.log_text().contains("returned unroutable")),
        "{}",
        daemon.log_text()
    );
    rabbit.create(&[&n.output]);
    assert!(
        eventually(LONG, || rabbit.count(&n.output) >= 4),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(LONG).success());
    assert_eq!(rabbit.count(&n.input), 0);
}

#[test]
fn typed_headers_keep_their_amqp_type_through_a_relay() {
    // A plain AMQP producer sets integer, boolean and float headers; through
    // a RabbitMQ → RabbitMQ pipeline that does not change them they arrive
    // with their types (a consumer comparing `retry_count < 3` works).
    use lapin::types::{AMQPValue, FieldTable, LongString};
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::new(dir.path());
    let n = suite::plain_names::<Rabbit>("typed");
    rabbit.create(&[&n.input, &n.output, &n.dlq]);
    let inputs: Vec<(Vec<u8>, FieldTable)> = (0..5)
        .map(|i| {
            let mut t = FieldTable::default();
            t.insert("count".into(), AMQPValue::LongLongInt(i));
            t.insert("small".into(), AMQPValue::LongInt(7));
            t.insert("flag".into(), AMQPValue::Boolean(i % 2 == 0));
            t.insert("ratio".into(), AMQPValue::Double(0.5));
            t.insert("name".into(), AMQPValue::LongString(LongString::from("n")));
            (format!(r#"{{"amount":{i}}}"#).into_bytes(), t)
        })
        .collect();
    amqp_client::publish_tables(&rabbit.url, &n.input, &inputs);
    let daemon = Daemon::start(
        &config(&rabbit, dir.path(), &n, &n.output, Role::Alone),
        &dir.path().join("sluice.log"),
    );
    assert!(
        eventually(LONG, || rabbit.count(&n.output) >= 5),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(LONG).success());
    let mut out = drain(&rabbit.url, &n.output);
    out.sort_by_key(|g| g.header("count"));
    assert_eq!(out.len(), 5);
    for (i, got) in out.iter().enumerate() {
        assert_eq!(
            got.header("count"),
            Some(format!("LongLongInt({i})")),
            "{got:?}"
        );
        assert_eq!(
            got.header("small").as_deref(),
            Some("LongInt(7)"),
            "{got:?}"
        );
        assert_eq!(
            got.header("flag"),
            Some(format!("Boolean({})", i % 2 == 0)),
            "{got:?}"
        );
        assert_eq!(
            got.header("ratio").as_deref(),
            Some("Double(0.5)"),
            "{got:?}"
        );
        assert_eq!(got.header("name").as_deref(), Some("n"), "{got:?}");
    }
    rabbit.clean_up([n.input, n.output, n.dlq]);
}

/// Close every connection a daemon process has to RabbitMQ, from the
/// server side (as a broker restart or a network cut would). Returns how
/// many were closed.
fn cut_connections(daemon_pid: u32) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_connections",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let marker = format!("sluice-{daemon_pid}");
    let mut closed = 0;
    for line in text.lines().filter(|l| l.contains(&marker)) {
        let pid = line.split_whitespace().next().unwrap();
        let status = std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "test: connection cut"])
            .status()
            .unwrap();
        assert!(status.success());
        closed += 1;
    }
    closed
}

#[test]
fn a_lost_connection_is_reconnected_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::new(dir.path());
    let n = suite::names(&rabbit, "cut");
    let mut daemon = Daemon::start(
        &config(&rabbit, dir.path(), &n, &n.output, Role::Alone),
        &dir.path().join("sluice.log"),
    );
    let delivered = || rabbit.count(&n.output) + rabbit.count(&n.dlq);
    rabbit.produce(&n.input, &suite::messages(0..300));
    assert!(
        eventually(LONG, || delivered() >= 300),
        "{}",
        daemon.log_text()
    );

    // Cut while messages flow: publish in the background, cut midway.
    let cut = std::thread::scope(|s| {
        let producer = s.spawn(|| {
            for start in (300..900).step_by(50) {
                rabbit.produce(&n.input, &suite::messages(start..start + 50));
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        let cut = cut_connections(daemon.pid());
        producer.join().unwrap();
        cut
    });
    assert!(
        cut >= 3,
        "source, sink and DLQ connections were cut (found {cut})"
    );
    assert!(
        eventually(LONG, || rabbit.count(&n.input) == 0 && delivered() >= 900),
        "{}",
        daemon.log_text()
    );
    assert!(
        daemon.running(),
        "the daemon rode out the cut; log:\n{}",
        daemon.log_text()
    );
    assert!(
        daemon.log_text().contains("reconnected to RabbitMQ"),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(LONG).success());
    let mut all = keys(&rabbit.read(&n.output));
    all.extend(keys(&rabbit.read(&n.dlq)));
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), 900, "nothing lost across the cut");
    eprintln!(
        "rabbitmq connection cut: {cut} connections closed, 900 messages, 0 lost, {} duplicates",
        all.len() - 900
    );
}

#[test]
fn retries_through_the_broker_carry_x_retry_count_and_end_in_the_dlq_when_exhausted() {
    // Two pipelines, both retrying through RabbitMQ (`retry.republish`):
    // `heal` fails every message twice and keeps it on the third attempt;
    // `exhaust` always fails, so the third attempt dead-letters.
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::new(dir.path());
    let (heal, exhaust) = (
        suite::names(&rabbit, "retry-heal"),
        suite::names(&rabbit, "retry-exhaust"),
    );
    let delays = |n: &Names| {
        [
            format!("{}.retry.300ms", n.input),
            format!("{}.retry.600ms", n.input),
        ]
    };
    rabbit.clean_up(delays(&heal).into_iter().chain(delays(&exhaust)));
    let pipeline = |name: &str, n: &Names, fail_attempts: u32| {
        let source = format!(
            r#"{{ type = "rabbitmq", url = "{}", queue = "{}", prefetch = 20 }}"#,
            rabbit.url, n.input
        );
        sluice_tests::daemon::republish_pipeline(
            name,
            &source,
            &rabbit.sink(&n.output),
            &rabbit.sink(&n.dlq),
            "300ms",
            fail_attempts,
        )
    };
    let config = dir.path().join("retry.toml");
    std::fs::write(
        &config,
        pipeline("heal", &heal, 2) + &pipeline("exhaust", &exhaust, 99),
    )
    .unwrap();
    let total = 200;
    rabbit.produce(&heal.input, &suite::json_messages(0..total));
    rabbit.produce(&exhaust.input, &suite::json_messages(0..total));
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    let done = || rabbit.count(&heal.output) >= total && rabbit.count(&exhaust.dlq) >= total;
    assert!(eventually(LONG, done), "{}", daemon.log_text());
    assert!(
        delays(&heal).iter().all(|q| exists(&rabbit.url, q)),
        "one delay queue per backoff step"
    );
    assert!(daemon.terminate(LONG).success());
    let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap();

    let healed = rabbit.read(&heal.output);
    assert_eq!(
        keys(&healed).into_iter().collect::<BTreeSet<_>>().len(),
        total,
        "every message got through on its third attempt"
    );
    assert_eq!(healed.len(), total, "and only once");
    for g in &healed {
        assert_eq!(
            g.header("x-retry-count"),
            Some("LongLongInt(2)"),
            "two failed attempts before, still an integer on the way out: {g:?}"
        );
        assert!(
            g.header("trace").is_some(),
            "headers survive the round trips"
        );
    }
    assert_eq!(rabbit.count(&heal.dlq), 0);
    let [received, delivered, _, dead, acked] =
        sluice_tests::daemon::summary(&log, "heal").expect("summary line");
    assert_eq!(
        (received, delivered, dead, acked),
        (3 * total as u64, total as u64, 0, 3 * total as u64),
        "{log}"
    );
    assert!(
        log.contains(&format!("retried through the broker {}", 2 * total)),
        "{log}"
    );

    let dead = rabbit.read(&exhaust.dlq);
    assert_eq!(dead.len(), total);
    for g in &dead {
        assert_eq!(
            g.header("sluice-error-class"),
            Some("retries-exhausted"),
            "{g:?}"
        );
        assert_eq!(g.header("sluice-error-attempts"), Some("3"), "{g:?}");
        assert_eq!(g.header("x-retry-count"), Some("LongLongInt(2)"), "{g:?}");
        assert_eq!(
            g.header("sluice-error-source-queue"),
            Some(exhaust.input.as_str())
        );
    }
    assert_eq!(rabbit.count(&exhaust.output), 0);
    for n in [&heal, &exhaust] {
        let [a, b] = delays(n);
        assert_eq!(
            rabbit.count(&n.input) + rabbit.count(&a) + rabbit.count(&b),
            0,
            "nothing left behind"
        );
    }
}

#[test]
fn the_drain_timeout_bounds_a_graceful_stop_and_loses_nothing() {
    // The sink's queue does not exist, so no publish is ever confirmed and
    // nothing can be acked. SIGTERM then waits only `--drain-timeout`, exits
    // 0, and RabbitMQ hands every message back to the queue.
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::new(dir.path());
    let n = suite::plain_names::<Rabbit>("drain");
    rabbit.create(&[&n.input, &n.dlq]);
    rabbit.produce(&n.input, &suite::json_messages(0..80));
    let config = config(&rabbit, dir.path(), &n, &n.output, Role::Alone);
    let http = sluice_tests::daemon::free_addr();
    let daemon = Daemon::start_with(
        &config,
        &dir.path().join("sluice.log"),
        &["--drain-timeout", "2s", "--http", &http],
    );
    assert!(
        eventually(LONG, || daemon.log_text().contains("returned unroutable")),
        "{}",
        daemon.log_text()
    );
    // prefetch 50: 50 held by the daemon, 30 still ready in the queue.
    let lag = || {
        sluice_tests::daemon::http_get(&http, "/metrics").and_then(|(_, m)| {
            sluice_tests::daemon::metric(&m, "sluice_source_lag{pipeline=\"relay\"}")
        })
    };
    assert!(
        eventually(LONG, || lag() == Some(30.0)),
        "source lag: {:?}",
        lag()
    );
    let asked = std::time::Instant::now();
    let status = daemon.terminate(Duration::from_secs(60));
    let took = asked.elapsed();
    assert!(
        status.success(),
        "exit 0 after the drain timeout, got {status:?}"
    );
    // Without the flag the source alone would wait 30 s for its deliveries.
    assert!(
        took < Duration::from_secs(25),
        "the stop took {took:?}: the 2 s drain timeout did not apply"
    );
    assert!(
        eventually(LONG, || rabbit.count(&n.input) == 80),
        "every unconfirmed message is back in the queue"
    );
    eprintln!("drain timeout: stop took {took:?} with --drain-timeout 2s; 80 of 80 messages back in the queue");
}

#[test]
fn a_header_name_too_long_for_amqp_is_dead_lettered_not_sent() {
    // A Redis stream entry may have a field (a header) of any length; an
    // AMQP field name is at most 255 bytes. Relayed to RabbitMQ, such a
    // message is refused by the sink before anything is sent and
    // dead-lettered (`sink-rejected`, with the length); the others go on.
    use sluice_tests::redis_client::{add, connection, redis_url};
    let dir = tempfile::tempdir().unwrap();
    let rabbit = Rabbit::new(dir.path());
    let n = suite::plain_names::<Rabbit>("longname");
    rabbit.create(&[&n.output]);
    let redis = redis_url();
    let stream = format!("{}.in", n.input);
    let long = "h".repeat(300);
    let entries: Vec<Vec<(String, Vec<u8>)>> = (0..3)
        .map(|i| {
            let name = if i == 1 { long.clone() } else { "short".into() };
            vec![
                (
                    "payload".into(),
                    format!(r#"{{"amount":{i}}}"#).into_bytes(),
                ),
                (name, b"v".to_vec()),
            ]
        })
        .collect();
    add(&mut connection(&redis), &stream, &entries);
    let config = sluice_tests::daemon::relay_config(
        dir.path(),
        &format!(
            r#"{{ type = "redis-stream", url = "{redis}", stream = "{stream}", group = "{}" }}"#,
            n.group
        ),
        &rabbit.sink(&n.output),
        r#"{ type = "file", path = "dlq.jsonl" }"#,
    );
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    let dlq = dir.path().join("dlq.jsonl");
    assert!(
        eventually(LONG, || rabbit.count(&n.output) >= 2
            && std::fs::read_to_string(&dlq)
                .is_ok_and(|t| t.lines().count() >= 1)),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(LONG).success());
    let out = drain(&rabbit.url, &n.output);
    assert_eq!(out.len(), 2, "the two others were sent");
    let text = std::fs::read_to_string(&dlq).unwrap();
    let dead: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let headers = &dead["headers"];
    assert_eq!(headers["sluice-error-class"], "sink-rejected", "{dead}");
    let reason = headers["sluice-error-text"].as_str().unwrap();
    assert!(reason.contains("header name of 300 bytes"), "{reason}");
    assert_eq!(dead["payload"]["amount"], 1, "{dead}");
    rabbit.clean_up([n.output]);
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query(&mut connection(&redis))
        .unwrap();
}
