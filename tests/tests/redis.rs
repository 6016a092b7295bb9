//! The Redis connectors against a real Redis server, driven through the
//! `sluice` binary: the conformance suite over streams (every entry comes
//! out or lands in the DLQ with its key, fields and entry id, an entry with
//! no payload is a decode error, SIGKILL mid-stream loses nothing, two
//! daemons share a group, a restart of a private server is ridden out, an
//! unreachable server is exit 2, the examples run), and Pub/Sub relaying.

use redis::Value;
use sluice_tests::conformance::{
    Broker, Coordinates, Example, Input, Output, Restart, Role, Scale, Stream,
};
use sluice_tests::daemon::{eventually, free_port, plugin_literal, unique, Daemon, Names};
use sluice_tests::redis_client::{self, add, connection, read_stream, redis_url};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Streams: the payload in field `payload`, the key in `key`, headers in
/// the other fields.
struct Redis {
    url: String,
    server: Option<Server>,
    /// Unreachable: give up connecting after 2 s.
    connect_timeout: &'static str,
}

/// A value of an XINFO reply as text.
fn text(v: Option<&Value>) -> Option<String> {
    redis::from_redis_value(v?.clone()).ok()
}

impl Broker for Redis {
    const NAME: &'static str = "redis";
    const SCALE: Scale = Scale {
        round_trip: 1000,
        crash: Stream {
            total: 6000,
            batch: 500,
            pause: Duration::from_millis(200),
        },
        kills: [800, 2500, 4200],
        shared: Stream {
            total: 3000,
            batch: 100,
            pause: Duration::from_millis(20),
        },
    };

    fn new(_dir: &Path) -> Self {
        Redis {
            url: redis_url(),
            server: None,
            connect_timeout: "",
        }
    }

    fn unreachable(_dir: &Path) -> (Self, String) {
        let redis = Redis {
            url: "redis://127.0.0.1:1".into(),
            server: None,
            connect_timeout: r#", connect_timeout = "2s""#,
        };
        (redis, "redis://127.0.0.1:1".into())
    }

    /// The first XADD makes a stream.
    fn create(&self, _names: &[&str]) {}

    fn source(&self, t: &Names, role: Role) -> String {
        let consumer = match role {
            Role::Sharing(name) => format!(r#", consumer = "{name}""#),
            Role::Alone | Role::Killed => String::new(),
        };
        format!(
            r#"{{ type = "redis-stream", url = "{}", stream = "{}", group = "{}", block = "200ms", claim_idle = "1s"{consumer}{} }}"#,
            self.url, t.input, t.group, self.connect_timeout
        )
    }

    fn sink(&self, name: &str) -> String {
        format!(
            r#"{{ type = "redis-stream", url = "{}", stream = "{name}" }}"#,
            self.url
        )
    }

    fn produce(&self, to: &str, messages: &[Input]) {
        let entries: Vec<Vec<(String, Vec<u8>)>> = messages
            .iter()
            .map(|m| {
                let mut fields = vec![
                    ("payload".to_string(), m.payload.clone()),
                    ("key".to_string(), m.key.clone().into_bytes()),
                ];
                fields.extend(
                    m.headers
                        .iter()
                        .map(|(n, v)| (n.clone(), v.clone().into_bytes())),
                );
                fields
            })
            .collect();
        add(&mut connection(&self.url), to, &entries);
    }

    /// An entry with no `payload` field.
    fn produce_undecodable(&self, to: &str, key: &str) -> Option<&'static str> {
        add(
            &mut connection(&self.url),
            to,
            &[vec![("key".into(), key.as_bytes().to_vec())]],
        );
        Some("no `payload` field")
    }

    fn count(&self, name: &str) -> usize {
        redis_client::len(&mut connection(&self.url), name)
    }

    fn read(&self, name: &str) -> Vec<Output> {
        read_stream(&mut connection(&self.url), name)
            .into_iter()
            .map(|e| Output {
                key: e.field("key"),
                payload: e
                    .fields
                    .iter()
                    .find(|(n, _)| n == "payload")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
                headers: e
                    .fields
                    .iter()
                    .filter(|(n, _)| n != "payload" && n != "key")
                    .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
                    .collect(),
            })
            .collect()
    }

    /// The group's lag (entries not read yet) plus its pending entries
    /// (read, not acknowledged); all of the stream while no group exists.
    fn unacked(&self, input: &str, group: &str) -> usize {
        let mut conn = connection(&self.url);
        let groups: redis::RedisResult<Vec<HashMap<String, Value>>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(input)
            .query(&mut conn);
        let groups = groups.unwrap_or_default();
        let Some(g) = groups
            .iter()
            .find(|g| text(g.get("name")).as_deref() == Some(group))
        else {
            return redis_client::len(&mut conn, input).max(1);
        };
        let int = |name: &str| match g.get(name) {
            Some(Value::Int(n)) => Some(*n as usize),
            _ => None,
        };
        // Redis cannot always count the lag (after deletions): then compare
        // the last entry the group read with the stream's last one.
        let lag = int("lag").unwrap_or_else(|| {
            let stream: HashMap<String, Value> = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(input)
                .query(&mut conn)
                .unwrap_or_default();
            let behind = text(stream.get("last-generated-id")) != text(g.get("last-delivered-id"));
            usize::from(behind)
        });
        lag + int("pending").unwrap_or(1)
    }

    fn coordinates(&self, t: &Names) -> Coordinates {
        let ids: BTreeMap<String, String> = read_stream(&mut connection(&self.url), &t.input)
            .into_iter()
            .map(|e| (e.field("key").unwrap(), e.id))
            .collect();
        let stream = t.input.clone();
        Box::new(move |key| {
            vec![
                ("sluice-error-source-stream", Some(stream.clone())),
                ("sluice-error-source-id", Some(ids[key].clone())),
            ]
        })
    }

    /// Every daemon is a consumer of the group.
    fn sharing(&self, t: &Names, daemons: &[&Daemon]) -> bool {
        let consumers: redis::RedisResult<Value> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&t.input)
            .arg(&t.group)
            .query(&mut connection(&self.url));
        matches!(consumers, Ok(Value::Array(c)) if c.len() == daemons.len())
    }

    fn example(&self, unique: &str) -> Example {
        let name = |s: &str| format!("{unique}.{s}");
        let stream = |s: &str| (format!("\"{s}\""), format!("\"{}\"", name(s)));
        Example {
            load: "redis-load.toml",
            load_replacements: vec![(
                "sinks.orders = { type = \"redis-stream\", url = \"redis://127.0.0.1:6379\" }"
                    .into(),
                format!(
                    "sinks.orders = {{ type = \"redis-stream\", url = \"{}\", stream = \"{}\" }}",
                    self.url,
                    name("orders")
                ),
            )],
            orders: "redis-orders.toml",
            orders_replacements: vec![
                ("redis://127.0.0.1:6379".into(), self.url.clone()),
                stream("orders"),
                stream("orders-europe"),
                stream("orders-americas"),
                stream("orders.dlq"),
                stream("sluice-orders"),
            ],
            input: name("orders"),
            group: name("sluice-orders"),
            europe: name("orders-europe"),
            americas: name("orders-americas"),
            dlq: name("orders.dlq"),
        }
    }
}

/// A private redis-server with an append-only file (fsync on every
/// write), on a free port: the shared one must not be restarted.
struct Server {
    child: Option<std::process::Child>,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut server = Server {
            child: None,
            port: free_port(),
            dir: dir.to_owned(),
        };
        server.boot();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn boot(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; tests/brokers.sh installs it)");
        self.child = Some(child);
        let url = self.url();
        // Up once it answers PING: while it loads its AOF it accepts
        // connections but answers LOADING (seen in CI: the test's XADDs
        // right after a restart failed with BusyLoading).
        let answers = || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        };
        assert!(
            eventually(Duration::from_secs(60), answers),
            "private redis-server on {} did not start",
            self.port
        );
    }

    /// SIGTERM (Redis writes its AOF and exits), and wait until it is gone.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Restart for Redis {
    const RESTART: (usize, usize, usize) = (5000, 500, 500);

    fn private(dir: &Path) -> Self {
        let data = dir.join("data");
        std::fs::create_dir(&data).unwrap();
        let server = Server::start(&data);
        Redis {
            url: server.url(),
            server: Some(server),
            connect_timeout: "",
        }
    }

    fn stop(&mut self) {
        self.server.as_mut().expect("a private server").stop();
    }

    fn boot(&mut self) {
        self.server.as_mut().expect("a private server").boot();
    }

    fn assert_reconnected(&self, daemon: &Daemon) {
        assert!(
            daemon.log_text().contains("reconnected to Redis"),
            "{}",
            daemon.log_text()
        );
    }
}

sluice_tests::conformance!(Redis, restart);

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
fn pubsub_odd_messages_keep_their_payload_only() {
    // Pub/Sub carries a payload and nothing else: every odd case comes back
    // with its payload (empty, binary, 16 MiB) and without key or headers,
    // matched by the order sent (one publisher, one subscriber).
    let url = redis_url();
    let dir = tempfile::tempdir().unwrap();
    let channel = unique("ps-odd");
    let route = sluice_tests::conformance::OddRoute {
        name: "redis-pubsub",
        sink: format!(r#"{{ type = "redis-pubsub", url = "{url}", channel = "{channel}" }}"#),
        source: format!(r#"{{ type = "redis-pubsub", url = "{url}", channels = ["{channel}"] }}"#),
        odd: |_| sluice_tests::conformance::Odd::PayloadOnly,
        live: true,
    };
    sluice_tests::conformance::odd_through(dir.path(), &route, Vec::new());
}

#[test]
fn retries_through_a_retry_stream_count_up_and_end_in_the_dlq_while_other_keys_flow() {
    // The spec's pattern on Redis streams (`retry.republish`): 1,000 entries
    // of 50 keys; every entry of key k7 fails (retryable) on every call. Each
    // is appended to STREAM.retry with x-retry-count 1, 2, 3 and a due time,
    // the original acked; at the fourth attempt it is dead-lettered with the
    // error text. The other keys' 980 entries do not wait: they are all out
    // before k7's first retry is due (4 s of backoff each time).
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::new(dir.path());
    let t = Names::new("redis-republish");
    let inputs = sluice_tests::conformance::keyed_inputs(1000, 50);
    redis.produce(&t.input, &inputs);
    let config = sluice_tests::conformance::flaky_pipeline(
        &dir.path().join("republish.toml"),
        &redis,
        &t,
        r#"{ attempts = 4, initial = "4s", factor = 1, jitter = 0, republish = true }"#,
        r#"{ fail_attempts = 10, fail_matching = '"key":"k7"' }"#,
    );
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    assert!(
        eventually(Duration::from_secs(120), || redis.count(&t.output) >= 980),
        "{}",
        daemon.log_text()
    );
    let counts: std::collections::BTreeSet<String> =
        read_stream(&mut connection(&redis.url), &format!("{}.retry", t.input))
            .iter()
            .filter_map(|e| e.field("x-retry-count"))
            .collect();
    assert!(
        counts.iter().all(|c| c == "1"),
        "the other keys were out before k7's first retry was due (4 s): {counts:?}"
    );
    assert!(
        eventually(Duration::from_secs(120), || redis.count(&t.dlq) >= 20
            && redis_client::len(
                &mut connection(&redis.url),
                &format!("{}.retry", t.input)
            ) >= 60),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(60)).success());
    let retry_stream = format!("{}.retry", t.input);
    let retries = read_stream(&mut connection(&redis.url), &retry_stream);
    // With no crash, no retry runs twice (an entry held past claim_idle is
    // returned by XAUTOCLAIM again; it must not be handed out again).
    let k7: std::collections::BTreeSet<String> = (0..1000)
        .filter(|i| i % 50 == 7)
        .map(|i| format!(r#"{{"amount":{i},"key":"k7"}}"#))
        .collect();
    let mut by_count: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for e in &retries {
        assert_eq!(e.field("key").as_deref(), Some("k7"), "{e:?}");
        assert!(e.field("sluice-retry-due").is_some(), "{e:?}");
        by_count
            .entry(e.field("x-retry-count").unwrap())
            .or_default()
            .insert(e.field("payload").unwrap());
    }
    assert_eq!(by_count.keys().collect::<Vec<_>>(), ["1", "2", "3"]);
    for (count, payloads) in &by_count {
        assert_eq!(payloads, &k7, "x-retry-count {count} for each of k7's 20");
    }
    assert_eq!(retries.len(), 60, "one retry entry per retry");
    let dead = redis.read(&t.dlq);
    let dead_payloads: std::collections::BTreeSet<String> = dead
        .iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect();
    assert_eq!(dead_payloads, k7, "each k7 message dead-lettered");
    assert_eq!(dead.len(), 20, "one dead letter each");
    for d in &dead {
        assert_eq!(
            d.header("sluice-error-class"),
            Some("retries-exhausted"),
            "{d:?}"
        );
        assert_eq!(d.header("sluice-error-attempts"), Some("4"), "{d:?}");
        assert_eq!(
            d.header("sluice-error-text"),
            Some("flaky: attempt 4 of 10 fails"),
            "{d:?}"
        );
        assert_eq!(d.header("x-retry-count"), Some("3"), "{d:?}");
    }
    assert_eq!(redis.read(&t.output).len(), 980);
    for stream in [&t.input, &retry_stream] {
        let pending: Value = redis::cmd("XPENDING")
            .arg(stream)
            .arg(&t.group)
            .query(&mut connection(&redis.url))
            .unwrap();
        let Value::Array(summary) = pending else {
            panic!("{pending:?}")
        };
        assert_eq!(
            text(summary.first()).as_deref(),
            Some("0"),
            "{stream}: all acked"
        );
    }
}
