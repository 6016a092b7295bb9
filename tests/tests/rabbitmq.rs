//! The RabbitMQ connector against a real RabbitMQ server, driven through the
//! `sluice` binary: every message comes out or lands in the DLQ queue with
//! its headers and key, SIGKILL mid-stream loses nothing, two daemons share
//! a queue, an unreachable server is exit 2, a lost connection and a broker
//! restart (a private node) are ridden out.

use sluice_tests::amqp_client::{amqp_url, declare, delete, depth, drain, exists, publish, Got};
use sluice_tests::daemon::{eventually, example_in, relay_config, summary, unique, Daemon, Names};
use sluice_tests::rabbitmq_node::RabbitNode;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// queue → json-filter → queue, DLQ a queue too (all through the default
/// exchange, routing key = queue name).
fn write_config(dir: &Path, url: &str, n: &Names, output: &str, extra_source: &str) -> PathBuf {
    let source = format!(
        r#"{{ type = "rabbitmq", url = "{url}", queue = "{}", prefetch = 50{extra_source} }}"#,
        n.input
    );
    let out = format!(r#"{{ type = "rabbitmq", url = "{url}", routing_key = "{output}" }}"#);
    let dlq = format!(
        r#"{{ type = "rabbitmq", url = "{url}", routing_key = "{}" }}"#,
        n.dlq
    );
    relay_config(dir, &source, &out, &dlq)
}

/// Message `i`: header `sluice-key = k{i}` (the key), `trace = t{i}`;
/// every tenth is not JSON.
fn message(i: usize) -> (Vec<u8>, Vec<(String, String)>) {
    let payload = if i % 10 == 7 {
        b"not json".to_vec()
    } else {
        format!(r#"{{"amount":{i}}}"#).into_bytes()
    };
    (
        payload,
        vec![
            ("sluice-key".into(), format!("k{i}")),
            ("trace".into(), format!("t{i}")),
        ],
    )
}

fn messages(range: std::ops::Range<usize>) -> Vec<(Vec<u8>, Vec<(String, String)>)> {
    range.map(message).collect()
}

fn keys(got: &[Got]) -> Vec<String> {
    got.iter().filter_map(|g| g.header("sluice-key")).collect()
}

fn queues(n: &Names, outputs: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = outputs.iter().map(|s| s.to_string()).collect();
    all.extend([n.input.clone(), n.dlq.clone()]);
    all
}

#[test]
fn every_message_is_delivered_or_dead_lettered_with_key_and_headers() {
    let url = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("amqp-roundtrip");
    declare(&url, &[&n.input, &n.output, &n.dlq]);
    let total = 1000;
    publish(&url, &n.input, &messages(0..total));
    let daemon = Daemon::start(
        &write_config(dir.path(), &url, &n, &n.output, ""),
        &dir.path().join("sluice.log"),
    );
    let done = eventually(Duration::from_secs(60), || {
        depth(&url, &n.output) + depth(&url, &n.dlq) >= total as u32
    });
    assert!(done, "not everything arrived; log:\n{}", daemon.log_text());
    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM ends with exit 0, got {status:?}");
    assert_eq!(depth(&url, &n.input), 0, "every input message was acked");

    let out = drain(&url, &n.output);
    let dlq = drain(&url, &n.dlq);
    let want_out: BTreeSet<String> = (0..total)
        .filter(|i| i % 10 != 7)
        .map(|i| format!("k{i}"))
        .collect();
    let want_dlq: BTreeSet<String> = (0..total)
        .filter(|i| i % 10 == 7)
        .map(|i| format!("k{i}"))
        .collect();
    assert_eq!(keys(&out).into_iter().collect::<BTreeSet<_>>(), want_out);
    assert_eq!(out.len(), want_out.len(), "no duplicates without failures");
    assert_eq!(keys(&dlq).into_iter().collect::<BTreeSet<_>>(), want_dlq);
    for g in &out {
        let i: usize = g.header("sluice-key").unwrap()[1..].parse().unwrap();
        assert_eq!(g.header("trace"), Some(format!("t{i}")));
        assert_eq!(g.payload, format!(r#"{{"amount":{i}}}"#).into_bytes());
    }
    for g in &dlq {
        assert_eq!(
            g.header("sluice-error-source-queue").as_deref(),
            Some(n.input.as_str()),
            "{g:?}"
        );
        assert!(
            g.header("sluice-error-source-delivery-tag").is_some(),
            "{g:?}"
        );
        assert_eq!(g.header("sluice-error-class").as_deref(), Some("fatal"));
        assert_eq!(g.payload, b"not json");
        assert!(g.header("trace").is_some(), "original headers kept");
    }
    delete(&url, &[&n.input, &n.output, &n.dlq]);
}

#[test]
fn sigkill_mid_stream_loses_nothing_and_duplicates_are_counted() {
    let url = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("amqp-crash");
    declare(&url, &[&n.input, &n.output, &n.dlq]);
    let config = write_config(dir.path(), &url, &n, &n.output, "");
    let log = dir.path().join("sluice.log");
    let total = 6000;
    let producer = {
        let (url, input) = (url.clone(), n.input.clone());
        std::thread::spawn(move || {
            for start in (0..total).step_by(100) {
                publish(&url, &input, &messages(start..start + 100));
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let delivered = || depth(&url, &n.output) + depth(&url, &n.dlq);
    let mut kills = Vec::new();
    for threshold in [800, 2500, 4200] {
        let daemon = Daemon::start(&config, &log);
        assert!(
            eventually(Duration::from_secs(60), || delivered() >= threshold),
            "never reached {threshold}; log:\n{}",
            daemon.log_text()
        );
        let seen = delivered();
        daemon.kill9();
        kills.push(seen);
    }
    assert!(
        kills.iter().all(|k| *k < total as u32),
        "each kill happened mid-stream: {kills:?}"
    );
    producer.join().unwrap();

    let daemon = Daemon::start(&config, &log);
    assert!(
        eventually(Duration::from_secs(60), || depth(&url, &n.input) == 0
            && delivered() >= total as u32),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let mut all = keys(&drain(&url, &n.output));
    all.extend(keys(&drain(&url, &n.dlq)));
    let distinct: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), total, "zero lost");
    eprintln!("rabbitmq crash test: {total} messages, SIGKILL after {kills:?} delivered, 0 lost, {} duplicates", all.len() - total);
    delete(
        &url,
        &queues(&n, &[&n.output])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
}

#[test]
fn two_daemons_on_one_queue_share_the_work() {
    let url = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("amqp-scale");
    let (out_a, out_b) = (format!("{}.a", n.output), format!("{}.b", n.output));
    declare(&url, &[&n.input, &out_a, &out_b, &n.dlq]);
    let a = Daemon::start(
        &write_config(dir.path(), &url, &n, &out_a, ""),
        &dir.path().join("a.log"),
    );
    let b = Daemon::start(
        &write_config(dir.path(), &url, &n, &out_b, ""),
        &dir.path().join("b.log"),
    );
    std::thread::sleep(Duration::from_secs(1));
    let total = 3000;
    publish(&url, &n.input, &messages(0..total));
    let delivered = || depth(&url, &out_a) + depth(&url, &out_b) + depth(&url, &n.dlq);
    assert!(
        eventually(Duration::from_secs(60), || delivered() >= total as u32),
        "logs:\n{}\n{}",
        a.log_text(),
        b.log_text()
    );
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(b.terminate(Duration::from_secs(30)).success());
    let (got_a, got_b, dlq) = (
        drain(&url, &out_a),
        drain(&url, &out_b),
        drain(&url, &n.dlq),
    );
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "both daemons did work: a={} b={}",
        got_a.len(),
        got_b.len()
    );
    let mut all = keys(&got_a);
    all.extend(keys(&got_b));
    all.extend(keys(&dlq));
    let distinct: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(
        (distinct.len(), all.len()),
        (total, total),
        "together every message exactly once"
    );
    delete(
        &url,
        &queues(&n, &[&out_a, &out_b])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
}

#[test]
fn an_unreachable_server_at_start_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("amqp-down");
    let config = write_config(
        dir.path(),
        "amqp://guest:guest@127.0.0.1:1/%2f",
        &n,
        &n.output,
        r#", connect_timeout = "2s""#,
    );
    let status =
        Daemon::start(&config, &dir.path().join("sluice.log")).wait(Duration::from_secs(30));
    let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("amqp://***@127.0.0.1:1"),
        "the message names the server, without its password: {log}"
    );
}

#[test]
fn an_unroutable_publish_is_retried_not_lost() {
    // The output queue does not exist at first: the mandatory publish comes
    // back, the engine retries, and once the queue is declared the message
    // arrives and only then is the input acked.
    let url = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("amqp-unroutable");
    declare(&url, &[&n.input, &n.dlq]);
    publish(&url, &n.input, &messages(0..5));
    let daemon = Daemon::start(
        &write_config(dir.path(), &url, &n, &n.output, ""),
        &dir.path().join("sluice.log"),
    );
    assert!(
        eventually(Duration::from_secs(30), || daemon
            .log_text()
            .contains("returned unroutable")),
        "{}",
        daemon.log_text()
    );
    declare(&url, &[&n.output]);
    assert!(
        eventually(Duration::from_secs(60), || depth(&url, &n.output) >= 4),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    assert_eq!(depth(&url, &n.input), 0);
    delete(&url, &[&n.input, &n.output, &n.dlq]);
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
    let url = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("amqp-cut");
    declare(&url, &[&n.input, &n.output, &n.dlq]);
    let mut daemon = Daemon::start(
        &write_config(dir.path(), &url, &n, &n.output, ""),
        &dir.path().join("sluice.log"),
    );
    let delivered = || depth(&url, &n.output) + depth(&url, &n.dlq);
    publish(&url, &n.input, &messages(0..300));
    assert!(
        eventually(Duration::from_secs(30), || delivered() >= 300),
        "{}",
        daemon.log_text()
    );

    // Cut while messages flow: publish in the background, cut midway.
    let producer = {
        let (url, input) = (url.clone(), n.input.clone());
        std::thread::spawn(move || {
            for start in (300..900).step_by(50) {
                publish(&url, &input, &messages(start..start + 50));
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let cut = cut_connections(daemon.pid());
    assert!(
        cut >= 3,
        "source, sink and DLQ connections were cut (found {cut})"
    );
    producer.join().unwrap();
    assert!(
        eventually(Duration::from_secs(60), || depth(&url, &n.input) == 0
            && delivered() >= 900),
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
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let mut all = keys(&drain(&url, &n.output));
    all.extend(keys(&drain(&url, &n.dlq)));
    let distinct: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), 900, "nothing lost across the cut");
    eprintln!(
        "rabbitmq connection cut: {cut} connections closed, 900 messages, 0 lost, {} duplicates",
        all.len() - 900
    );
    delete(&url, &[&n.input, &n.output, &n.dlq]);
}

#[test]
fn the_rabbitmq_examples_load_and_process_the_orders() {
    let url = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let u = unique("example");
    let q = |name: &str| format!("{u}.{name}");
    let quoted = |name: &str| (format!("\"{name}\""), format!("\"{}\"", q(name)));
    let names = [
        "orders",
        "orders-europe",
        "orders-americas",
        "orders.dlq",
        "orders-in",
    ];
    let orders = example_in(dir.path(), "rabbitmq-orders.toml", &names.map(quoted));
    let load = example_in(dir.path(), "rabbitmq-load.toml", &[quoted("orders")]);

    let daemon = Daemon::start(&orders, &dir.path().join("orders.log"));
    assert!(
        eventually(Duration::from_secs(30), || exists(&url, &q("orders"))),
        "the source declared its queue; {}",
        daemon.log_text()
    );
    assert!(Daemon::start(&load, &dir.path().join("load.log"))
        .wait(Duration::from_secs(60))
        .success());
    let outputs = || {
        depth(&url, &q("orders-europe"))
            + depth(&url, &q("orders-americas"))
            + depth(&url, &q("orders.dlq"))
    };
    // Done when the input queue is empty and stays so while outputs settle.
    assert!(
        eventually(Duration::from_secs(60), || outputs() >= 8900
            && depth(&url, &q("orders")) == 0),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(dir.path().join("orders.log")).unwrap();
    let [received, delivered, _dropped, dead, acked] =
        summary(&log, "orders").expect("summary line");
    assert_eq!((received, acked), (9900, 9900), "{log}");
    let (europe, americas) = (
        depth(&url, &q("orders-europe")),
        depth(&url, &q("orders-americas")),
    );
    assert!(europe > 0 && americas > 0);
    assert_eq!(u64::from(europe + americas), delivered);
    assert_eq!(u64::from(depth(&url, &q("orders.dlq"))), dead);
    delete(
        &url,
        &names.map(q).iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

#[test]
fn a_broker_restart_while_running_is_ridden_out_and_nothing_is_lost() {
    // A private node (the shared server must not be restarted): stopped
    // while the daemon holds unacked deliveries and unconfirmed publishes,
    // started again on the same data a few seconds later.
    let mut node = RabbitNode::start();
    let url = node.url();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("amqp-restart");
    declare(&url, &[&n.input, &n.output, &n.dlq]);
    let mut daemon = Daemon::start(
        &write_config(dir.path(), &url, &n, &n.output, ""),
        &dir.path().join("sluice.log"),
    );
    let delivered = || depth(&url, &n.output) + depth(&url, &n.dlq);
    let (first, total) = (10_000, 10_500);
    publish(&url, &n.input, &messages(0..first));
    assert!(
        eventually(Duration::from_secs(30), || delivered() >= 1000),
        "{}",
        daemon.log_text()
    );
    let before = delivered();
    node.stop();
    assert!(
        before < first as u32,
        "the stop came mid-stream ({before} of {first} delivered)"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        daemon.running(),
        "the daemon does not exit when its broker goes away; log:\n{}",
        daemon.log_text()
    );
    node.boot();
    publish(&url, &n.input, &messages(first..total));
    assert!(
        eventually(Duration::from_secs(90), || depth(&url, &n.input) == 0
            && delivered() >= total as u32),
        "after the restart everything arrives; log:\n{}",
        daemon.log_text()
    );
    let marker = format!("sluice-{}", daemon.pid());
    assert!(
        node.connections_named(&marker) >= 3,
        "source, sink and DLQ connected again"
    );
    assert!(
        daemon.log_text().contains("reconnected to RabbitMQ"),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let mut all = keys(&drain(&url, &n.output));
    all.extend(keys(&drain(&url, &n.dlq)));
    let distinct: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), total, "nothing lost across the restart");
    eprintln!("rabbitmq restart: broker stopped after {before} of {first} delivered; {total} messages, 0 lost, {} duplicates", all.len() - total);
}

#[test]
fn retries_through_the_broker_carry_x_retry_count_and_end_in_the_dlq_when_exhausted() {
    // Two pipelines, both retrying through RabbitMQ (`retry.republish`):
    // `heal` fails every message twice and keeps it on the third attempt;
    // `exhaust` always fails, so the third attempt dead-letters.
    let url = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let (heal, exhaust) = (
        Names::new("amqp-retry-heal"),
        Names::new("amqp-retry-exhaust"),
    );
    let mut all_queues = Vec::new();
    for n in [&heal, &exhaust] {
        all_queues.extend([
            n.input.clone(),
            n.output.clone(),
            n.dlq.clone(),
            format!("{}.retry.300ms", n.input),
            format!("{}.retry.600ms", n.input),
        ]);
    }
    declare(
        &url,
        &[
            &heal.input,
            &heal.output,
            &heal.dlq,
            &exhaust.input,
            &exhaust.output,
            &exhaust.dlq,
        ],
    );
    let pipeline = |name: &str, n: &Names, fail_attempts: u32| {
        let source = format!(
            r#"{{ type = "rabbitmq", url = "{url}", queue = "{}", prefetch = 20 }}"#,
            n.input
        );
        let out = format!(
            r#"{{ type = "rabbitmq", url = "{url}", routing_key = "{}" }}"#,
            n.output
        );
        let dlq = format!(
            r#"{{ type = "rabbitmq", url = "{url}", routing_key = "{}" }}"#,
            n.dlq
        );
        sluice_tests::daemon::republish_pipeline(name, &source, &out, &dlq, "300ms", fail_attempts)
    };
    let config = dir.path().join("retry.toml");
    std::fs::write(
        &config,
        pipeline("heal", &heal, 2) + &pipeline("exhaust", &exhaust, 99),
    )
    .unwrap();
    let total = 200;
    publish(&url, &heal.input, &messages_json(0..total));
    publish(&url, &exhaust.input, &messages_json(0..total));
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    let done =
        || depth(&url, &heal.output) >= total as u32 && depth(&url, &exhaust.dlq) >= total as u32;
    assert!(
        eventually(Duration::from_secs(60), done),
        "{}",
        daemon.log_text()
    );
    assert!(
        exists(&url, &format!("{}.retry.300ms", heal.input))
            && exists(&url, &format!("{}.retry.600ms", heal.input)),
        "one delay queue per backoff step"
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap();

    let healed = drain(&url, &heal.output);
    assert_eq!(
        keys(&healed).into_iter().collect::<BTreeSet<_>>().len(),
        total,
        "every message got through on its third attempt"
    );
    assert_eq!(healed.len(), total, "and only once");
    for g in &healed {
        assert_eq!(
            g.header("x-retry-count").as_deref(),
            Some("2"),
            "two failed attempts before: {g:?}"
        );
        assert!(
            g.header("trace").is_some(),
            "headers survive the round trips"
        );
    }
    assert_eq!(depth(&url, &heal.dlq), 0);
    let [received, delivered, _, dead, acked] = summary(&log, "heal").expect("summary line");
    assert_eq!(
        (received, delivered, dead, acked),
        (3 * total as u64, total as u64, 0, 3 * total as u64),
        "{log}"
    );
    assert!(
        log.contains(&format!("retried through the broker {}", 2 * total)),
        "{log}"
    );

    let dead = drain(&url, &exhaust.dlq);
    assert_eq!(dead.len(), total);
    for g in &dead {
        assert_eq!(
            g.header("sluice-error-class").as_deref(),
            Some("retries-exhausted"),
            "{g:?}"
        );
        assert_eq!(
            g.header("sluice-error-attempts").as_deref(),
            Some("3"),
            "{g:?}"
        );
        assert_eq!(g.header("x-retry-count").as_deref(), Some("2"), "{g:?}");
        assert_eq!(
            g.header("sluice-error-source-queue").as_deref(),
            Some(exhaust.input.as_str())
        );
    }
    assert_eq!(depth(&url, &exhaust.output), 0);
    for n in [&heal, &exhaust] {
        assert_eq!(
            depth(&url, &n.input)
                + depth(&url, &format!("{}.retry.300ms", n.input))
                + depth(&url, &format!("{}.retry.600ms", n.input)),
            0,
            "nothing left behind"
        );
    }
    delete(
        &url,
        &all_queues.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

/// [`messages`] without the malformed ones: every payload is JSON.
fn messages_json(range: std::ops::Range<usize>) -> Vec<(Vec<u8>, Vec<(String, String)>)> {
    range
        .map(|i| {
            (
                format!(r#"{{"amount":{i}}}"#).into_bytes(),
                vec![
                    ("sluice-key".into(), format!("k{i}")),
                    ("trace".into(), format!("t{i}")),
                ],
            )
        })
        .collect()
}

#[test]
fn the_drain_timeout_bounds_a_graceful_stop_and_loses_nothing() {
    // The sink's queue does not exist, so no publish is ever confirmed and
    // nothing can be acked. SIGTERM then waits only `--drain-timeout`, exits
    // 0, and RabbitMQ hands every message back to the queue.
    let url = amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("amqp-drain");
    declare(&url, &[&n.input, &n.dlq]);
    publish(&url, &n.input, &messages_json(0..80));
    let config = write_config(dir.path(), &url, &n, &n.output, "");
    let http = sluice_tests::daemon::free_addr();
    let daemon = Daemon::start_with(
        &config,
        &dir.path().join("sluice.log"),
        &["--drain-timeout", "2s", "--http", &http],
    );
    assert!(
        eventually(Duration::from_secs(30), || daemon
            .log_text()
            .contains("returned unroutable")),
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
        eventually(Duration::from_secs(10), || lag() == Some(30.0)),
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
        eventually(Duration::from_secs(10), || depth(&url, &n.input) == 80),
        "every unconfirmed message is back in the queue"
    );
    delete(&url, &[&n.input, &n.dlq]);
    eprintln!("drain timeout: stop took {took:?} with --drain-timeout 2s; 80 of 80 messages back in the queue");
}
