//! The Redis connectors against a real Redis server, driven through the
//! `sluice` binary: every entry comes out or lands in the DLQ, keys and
//! headers survive, SIGKILL mid-stream loses nothing, two daemons share a
//! group, a server restart is ridden out, an unreachable server is exit 2.

use sluice_tests::daemon::{
    eventually, example_in, plugin_literal, relay_config, summary, unique, Daemon, Names,
};
use sluice_tests::redis_client::{self, add, connection, read_stream, redis_url, Entry};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// stream → json-filter → stream, DLQ a stream too.
fn write_config(dir: &Path, url: &str, n: &Names, output: &str, extra_source: &str) -> PathBuf {
    let source = format!(
        r#"{{ type = "redis-stream", url = "{url}", stream = "{}", group = "{}", block = "200ms", claim_idle = "1s"{extra_source} }}"#,
        n.input, n.group
    );
    let out = format!(r#"{{ type = "redis-stream", url = "{url}", stream = "{output}" }}"#);
    let dlq = format!(
        r#"{{ type = "redis-stream", url = "{url}", stream = "{}" }}"#,
        n.dlq
    );
    relay_config(dir, &source, &out, &dlq)
}

/// Entry `i`: key `k{i}`, header `trace = t{i}`; every tenth is not JSON
/// (the filter fails it: DLQ).
fn entry(i: usize) -> Vec<(String, Vec<u8>)> {
    let payload = if i % 10 == 7 {
        b"not json".to_vec()
    } else {
        format!(r#"{{"amount":{i}}}"#).into_bytes()
    };
    vec![
        ("payload".into(), payload),
        ("key".into(), format!("k{i}").into_bytes()),
        ("trace".into(), format!("t{i}").into_bytes()),
    ]
}

fn keys(entries: &[Entry]) -> Vec<String> {
    entries.iter().filter_map(|e| e.field("key")).collect()
}

/// Distinct keys across output and DLQ, and how many entries were extra.
fn tally(url: &str, n: &Names, outputs: &[&str]) -> (BTreeSet<String>, usize) {
    let mut conn = connection(url);
    let mut all = Vec::new();
    for o in outputs {
        all.extend(keys(&read_stream(&mut conn, o)));
    }
    all.extend(keys(&read_stream(&mut conn, &n.dlq)));
    let distinct: BTreeSet<String> = all.iter().cloned().collect();
    let dups = all.len() - distinct.len();
    (distinct, dups)
}

#[test]
fn every_entry_is_delivered_or_dead_lettered_with_keys_headers_and_stream_ids() {
    let url = redis_url();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("redis-roundtrip");
    let mut conn = connection(&url);
    let total = 1000;
    add(
        &mut conn,
        &n.input,
        &(0..total).map(entry).collect::<Vec<_>>(),
    );
    // One entry with no payload field: a decode error, dead-lettered as is.
    add(
        &mut conn,
        &n.input,
        &[vec![("key".into(), b"nopayload".to_vec())]],
    );
    let config = write_config(dir.path(), &url, &n, &n.output, "");
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));

    let done = eventually(Duration::from_secs(60), || {
        redis_client::len(&mut conn, &n.output) + redis_client::len(&mut conn, &n.dlq) > total
    });
    assert!(done, "not everything arrived; log:\n{}", daemon.log_text());
    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM ends with exit 0, got {status:?}");

    let inputs: BTreeMap<String, Entry> = read_stream(&mut conn, &n.input)
        .into_iter()
        .map(|e| (e.field("key").unwrap(), e))
        .collect();
    let out = read_stream(&mut conn, &n.output);
    let dlq = read_stream(&mut conn, &n.dlq);
    let want_out: BTreeSet<String> = (0..total)
        .filter(|i| i % 10 != 7)
        .map(|i| format!("k{i}"))
        .collect();
    let mut want_dlq: BTreeSet<String> = (0..total)
        .filter(|i| i % 10 == 7)
        .map(|i| format!("k{i}"))
        .collect();
    want_dlq.insert("nopayload".into());
    assert_eq!(keys(&out).into_iter().collect::<BTreeSet<_>>(), want_out);
    assert_eq!(out.len(), want_out.len(), "no duplicates without failures");
    assert_eq!(keys(&dlq).into_iter().collect::<BTreeSet<_>>(), want_dlq);

    for e in &out {
        let key = e.field("key").unwrap();
        let i: usize = key[1..].parse().unwrap();
        assert_eq!(
            e.field("trace"),
            Some(format!("t{i}")),
            "header kept on {key}"
        );
        assert_eq!(e.field("payload"), Some(format!(r#"{{"amount":{i}}}"#)));
    }
    for e in &dlq {
        let key = e.field("key").unwrap();
        let source = &inputs[&key];
        assert_eq!(
            e.field("sluice-error-source-stream").as_deref(),
            Some(n.input.as_str()),
            "{e:?}"
        );
        assert_eq!(
            e.field("sluice-error-source-id"),
            Some(source.id.clone()),
            "the DLQ entry names the input entry id: {e:?}"
        );
        let class = e.field("sluice-error-class").unwrap();
        if key == "nopayload" {
            assert_eq!(class, "decode");
            assert!(
                e.field("sluice-error-text")
                    .unwrap()
                    .contains("no `payload` field"),
                "{e:?}"
            );
        } else {
            assert_eq!(class, "fatal", "{e:?}");
            assert_eq!(
                e.field("payload").as_deref(),
                Some("not json"),
                "the original payload is kept"
            );
            assert!(e.field("trace").is_some(), "original headers are kept");
        }
    }
    // Every entry was acknowledged: nothing pending in the group.
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(&n.input)
        .arg(&n.group)
        .query(&mut conn)
        .unwrap();
    let redis::Value::Array(summary) = pending else {
        panic!("XPENDING reply {pending:?}")
    };
    assert_eq!(
        summary.first(),
        Some(&redis::Value::Int(0)),
        "nothing left pending: {summary:?}"
    );
}

#[test]
fn sigkill_mid_stream_loses_nothing_and_duplicates_are_counted() {
    let url = redis_url();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("redis-crash");
    let config = write_config(dir.path(), &url, &n, &n.output, "");
    let log = dir.path().join("sluice.log");
    let total = 6000;

    // Entries arrive while the daemon runs: 500 every 200 ms.
    let producer = {
        let (url, input) = (url.clone(), n.input.clone());
        std::thread::spawn(move || {
            let mut conn = connection(&url);
            for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
                add(
                    &mut conn,
                    &input,
                    &chunk.iter().map(|i| entry(*i)).collect::<Vec<_>>(),
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut conn = connection(&url);
    let mut kills = Vec::new();
    for threshold in [800, 2500, 4200] {
        let daemon = Daemon::start(&config, &log);
        let reached = eventually(Duration::from_secs(60), || {
            redis_client::len(&mut conn, &n.output) + redis_client::len(&mut conn, &n.dlq)
                >= threshold
        });
        assert!(
            reached,
            "never reached {threshold}; log:\n{}",
            daemon.log_text()
        );
        let seen = redis_client::len(&mut conn, &n.output) + redis_client::len(&mut conn, &n.dlq);
        daemon.kill9();
        kills.push(seen);
    }
    assert!(
        kills.iter().all(|k| *k < total),
        "each kill happened mid-stream: {kills:?}"
    );
    producer.join().unwrap();

    // A last daemon claims what the killed ones left pending and finishes.
    let daemon = Daemon::start(&config, &log);
    let complete = eventually(Duration::from_secs(90), || {
        tally(&url, &n, &[&n.output]).0.len() >= total
    });
    let (distinct, dups) = tally(&url, &n, &[&n.output]);
    assert!(
        complete,
        "{} of {total} delivered; log:\n{}",
        distinct.len(),
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    assert_eq!(distinct.len(), total, "zero lost");
    eprintln!("redis crash test: {total} entries, SIGKILL after {kills:?} delivered, 0 lost, {dups} duplicates");
}

#[test]
fn two_daemons_in_one_group_share_the_stream() {
    let url = redis_url();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("redis-scale");
    let (out_a, out_b) = (format!("{}.a", n.output), format!("{}.b", n.output));
    let a = Daemon::start(
        &write_config(dir.path(), &url, &n, &out_a, r#", consumer = "a""#),
        &dir.path().join("a.log"),
    );
    let b = Daemon::start(
        &write_config(dir.path(), &url, &n, &out_b, r#", consumer = "b""#),
        &dir.path().join("b.log"),
    );
    let mut conn = connection(&url);
    // Both are reading before the entries come.
    assert!(
        eventually(Duration::from_secs(30), || {
            let consumers: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&n.input)
                .arg(&n.group)
                .query(&mut conn);
            matches!(consumers, Ok(redis::Value::Array(c)) if c.len() == 2)
        }),
        "both consumers joined the group; logs:\n{}\n{}",
        a.log_text(),
        b.log_text()
    );
    let total = 3000;
    for chunk in (0..total).collect::<Vec<_>>().chunks(100) {
        add(
            &mut conn,
            &n.input,
            &chunk.iter().map(|i| entry(*i)).collect::<Vec<_>>(),
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let complete = eventually(Duration::from_secs(60), || {
        tally(&url, &n, &[&out_a, &out_b]).0.len() >= total
    });
    assert!(complete, "logs:\n{}\n{}", a.log_text(), b.log_text());
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(b.terminate(Duration::from_secs(30)).success());
    let (from_a, from_b) = (
        redis_client::len(&mut conn, &out_a),
        redis_client::len(&mut conn, &out_b),
    );
    assert!(
        from_a > 0 && from_b > 0,
        "both daemons did work: a={from_a} b={from_b}"
    );
    let (distinct, dups) = tally(&url, &n, &[&out_a, &out_b]);
    assert_eq!(
        (distinct.len(), dups),
        (total, 0),
        "together every entry exactly once"
    );
}

#[test]
fn an_unreachable_server_at_start_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("redis-down");
    let config = write_config(
        dir.path(),
        "redis://127.0.0.1:1",
        &n,
        &n.output,
        r#", connect_timeout = "2s""#,
    );
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    let status = daemon.wait(Duration::from_secs(30));
    let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("redis://127.0.0.1:1"),
        "the message names the server: {log}"
    );
}

/// A private redis-server with an append-only file, on a free port.
struct Server {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(dir: &Path, port: u16) -> Server {
        let child = std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; tests/brokers.sh installs it)");
        let url = format!("redis://127.0.0.1:{port}");
        assert!(eventually(Duration::from_secs(10), || redis::Client::open(
            url.as_str()
        )
        .and_then(|c| c.get_connection())
        .is_ok()));
        Server {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    /// SIGTERM (Redis writes its AOF and exits), then start again.
    fn restart(mut self) -> Server {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        Server::start(&self.dir.clone(), self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_server_restart_while_running_is_ridden_out_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let server = Server::start(&data, free_port());
    let url = format!("redis://127.0.0.1:{}", server.port);
    let n = Names::new("redis-restart");
    let config = write_config(dir.path(), &url, &n, &n.output, "");
    let mut daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    let half = 500;
    add(
        &mut connection(&url),
        &n.input,
        &(0..half).map(entry).collect::<Vec<_>>(),
    );
    assert!(
        eventually(Duration::from_secs(30), || tally(&url, &n, &[&n.output])
            .0
            .len()
            >= half),
        "{}",
        daemon.log_text()
    );

    let server = server.restart();
    add(
        &mut connection(&url),
        &n.input,
        &(half..2 * half).map(entry).collect::<Vec<_>>(),
    );
    let complete = eventually(Duration::from_secs(60), || {
        tally(&url, &n, &[&n.output]).0.len() >= 2 * half
    });
    assert!(
        daemon.running(),
        "the daemon rode out the restart; log:\n{}",
        daemon.log_text()
    );
    assert!(
        complete,
        "{} of {} after the restart; log:\n{}",
        tally(&url, &n, &[&n.output]).0.len(),
        2 * half,
        daemon.log_text()
    );
    assert!(
        daemon.log_text().contains("reconnected to Redis"),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    drop(server);
}

#[test]
fn pubsub_relays_between_channels() {
    let url = redis_url();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (unique("ps-in"), unique("ps-out"));
    let config = dir.path().join("pubsub.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[pipelines.fanout]
source = {{ type = "redis-pubsub", url = "{url}", channels = ["{input}"] }}
dlq = {{ type = "redis-stream", url = "{url}", stream = "{output}.dlq" }}
[[pipelines.fanout.stages]]
name = "valid"
kind = "filter"
plugin = {plugin}
[pipelines.fanout.sinks.out]
type = "redis-pubsub"
url = "{url}"
channel = "{output}"
"#,
            plugin = plugin_literal("json-filter")
        ),
    )
    .unwrap();
    // Listen on the output channel first (Pub/Sub keeps nothing).
    let listener = {
        let (url, output) = (url.clone(), output.clone());
        std::thread::spawn(move || {
            let mut conn = connection(&url);
            let mut pubsub = conn.as_pubsub();
            pubsub.subscribe(&output).unwrap();
            pubsub
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut got = Vec::new();
            while got.len() < 200 {
                match pubsub.get_message() {
                    Ok(m) => got.push(m.get_payload::<String>().unwrap()),
                    Err(_) => break,
                }
            }
            got
        })
    };
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    let mut conn = connection(&url);
    assert!(
        eventually(Duration::from_secs(30), || {
            let subs: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&input)
                .query(&mut conn)
                .unwrap();
            subs.first().is_some_and(|(_, n)| *n == 1)
        }),
        "sluice subscribed; log:\n{}",
        daemon.log_text()
    );
    for i in 0..200 {
        let _: u64 = redis::cmd("PUBLISH")
            .arg(&input)
            .arg(format!(r#"{{"amount":{i}}}"#))
            .query(&mut conn)
            .unwrap();
    }
    let got = listener.join().unwrap();
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    assert_eq!(got.len(), 200, "every message relayed while all was up");
    assert_eq!(got[0], r#"{"amount":0}"#);
    assert_eq!(got[199], r#"{"amount":199}"#, "in order");
}

#[test]
fn the_redis_examples_load_and_process_the_orders() {
    let url = redis_url();
    let dir = tempfile::tempdir().unwrap();
    let u = unique("example");
    let stream = |s: &str| (format!("\"{s}\""), format!("\"{u}.{s}\""));
    let load = example_in(dir.path(), "redis-load.toml", &[(
        "sinks.orders = { type = \"redis-stream\", url = \"redis://127.0.0.1:6379\" }".into(),
        format!("sinks.orders = {{ type = \"redis-stream\", url = \"{url}\", stream = \"{u}.orders\" }}"),
    )]);
    let orders = example_in(
        dir.path(),
        "redis-orders.toml",
        &[
            stream("orders"),
            stream("orders-europe"),
            stream("orders-americas"),
            stream("orders.dlq"),
            stream("sluice-orders"),
        ],
    );
    let loaded = Daemon::start(&load, &dir.path().join("load.log"));
    assert!(loaded.wait(Duration::from_secs(60)).success());
    let mut conn = connection(&url);
    let input = redis_client::len(&mut conn, &format!("{u}.orders"));
    assert_eq!(
        input, 9900,
        "the 9,900 well-formed orders are in the stream"
    );

    let daemon = Daemon::start(&orders, &dir.path().join("orders.log"));
    let counted = |conn: &mut redis::Connection| -> usize {
        ["orders-europe", "orders-americas", "orders.dlq"]
            .iter()
            .map(|s| redis_client::len(conn, &format!("{u}.{s}")))
            .sum()
    };
    assert!(
        eventually(Duration::from_secs(60), || counted(&mut conn) >= 8900),
        "{}",
        daemon.log_text()
    );
    // Done when the group has read everything (lag 0) and acked it (pending 0).
    assert!(
        eventually(Duration::from_secs(60), || {
            let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(format!("{u}.orders"))
                .query(&mut conn)
                .unwrap();
            groups.first().is_some_and(|g| {
                g.get("lag") == Some(&redis::Value::Int(0))
                    && g.get("pending") == Some(&redis::Value::Int(0))
            })
        }),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let [received, delivered, _dropped, dead, acked] =
        summary(&daemon_log(&dir), "orders").expect("summary line");
    assert_eq!((received, acked), (9900, 9900));
    let europe = redis_client::len(&mut conn, &format!("{u}.orders-europe")) as u64;
    let americas = redis_client::len(&mut conn, &format!("{u}.orders-americas")) as u64;
    assert!(europe > 0 && americas > 0);
    assert_eq!(europe + americas, delivered);
    assert_eq!(
        redis_client::len(&mut conn, &format!("{u}.orders.dlq")) as u64,
        dead
    );
}

fn daemon_log(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(dir.path().join("orders.log")).unwrap()
}
