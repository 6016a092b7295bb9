//! The daemon's own faults, against private Redis servers the tests start
//! and kill (never the shared one on 6379): `/readyz` follows the broker
//! down and back, and `--drain-timeout` bounds a broker source's drain.

use sluice_tests::daemon::*;
use sluice_tests::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of this test on its own port, no persistence.
struct PrivateRedis {
    port: u16,
    process: Owned,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            port: free_port(),
            process: Owned::default(),
        };
        redis.boot();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn boot(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        self.process = Owned::new(child);
        let url = self.url();
        assert!(
            eventually(Duration::from_secs(10), || redis::Client::open(
                url.as_str()
            )
            .and_then(|c| c.get_connection())
            .is_ok()),
            "private redis-server on {} did not start",
            self.port
        );
    }

    /// SIGKILL, by this server's own PID.
    fn stop(&mut self) {
        self.process.stop();
    }
}

/// One pipeline `relay`, no stages: a Redis stream to a Redis stream.
fn config(dir: &Path, source_url: &str, sink_url: &str, stream: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[pipelines.relay]
source = {{ type = "redis-stream", url = "{source_url}", stream = "{stream}.in", group = "g", block = "200ms" }}
dlq = {{ type = "file", path = "{dlq}" }}
sinks.out = {{ type = "redis-stream", url = "{sink_url}", stream = "{stream}.out" }}
"#,
        dlq = dir.join("dlq.jsonl").display(),
    );
    let path = dir.join("relay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn readyz(addr: &str) -> Option<(u16, String)> {
    http_get(addr, "/readyz")
}

/// A daemon with five messages it can neither deliver nor ack: its source
/// is one private Redis, its sink another that was stopped after the daemon
/// became ready.
struct Stuck {
    dir: tempfile::TempDir,
    source: PrivateRedis,
    sink: PrivateRedis,
    stream: String,
    daemon: Daemon,
}

impl Stuck {
    fn start(name: &str, drain_timeout: &str) -> Stuck {
        let dir = tempfile::tempdir().unwrap();
        let source = PrivateRedis::start();
        let mut sink = PrivateRedis::start();
        let stream = unique(name);
        let path = config(dir.path(), &source.url(), &sink.url(), &stream);
        let addr = free_addr();
        let daemon = Daemon::start_with(
            &path,
            &dir.path().join("log"),
            &["--http", &addr, "--drain-timeout", drain_timeout],
        );
        assert!(
            eventually(Duration::from_secs(60), || readyz(&addr)
                .is_some_and(|(s, _)| s == 200)),
            "never ready; log:\n{}",
            daemon.log_text()
        );
        sink.stop();
        let entries: Vec<Vec<(String, Vec<u8>)>> = (0..5)
            .map(|i| vec![("payload".to_string(), format!("{{\"n\":{i}}}").into_bytes())])
            .collect();
        let mut conn = redis_client::connection(&source.url());
        redis_client::add(&mut conn, &format!("{stream}.in"), &entries);
        let received = "sluice_pipeline_messages_total{pipeline=\"relay\",outcome=\"received\"}";
        assert!(
            eventually(Duration::from_secs(30), || http_get(&addr, "/metrics")
                .and_then(|(_, m)| metric(&m, received))
                .is_some_and(|n| n >= 5.0)),
            "the messages never reached the pipeline; log:\n{}",
            daemon.log_text()
        );
        Stuck {
            dir,
            source,
            sink,
            stream,
            daemon,
        }
    }
}

/// How many entries of `stream.in` group `g` are read and not acked.
fn pending(source: &PrivateRedis, stream: &str) -> redis::Value {
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(format!("{stream}.in"))
        .arg("g")
        .query(&mut redis_client::connection(&source.url()))
        .unwrap();
    let redis::Value::Array(summary) = pending else {
        panic!("XPENDING: {pending:?}")
    };
    summary.into_iter().next().expect("XPENDING's count")
}

#[test]
fn readyz_is_503_with_the_reason_while_redis_is_down_and_200_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = PrivateRedis::start();
    let stream = unique("ready");
    let path = config(dir.path(), &redis.url(), &redis.url(), &stream);
    let addr = free_addr();
    let daemon = Daemon::start_with(&path, &dir.path().join("log"), &["--http", &addr]);

    assert!(
        eventually(Duration::from_secs(60), || readyz(&addr)
            .is_some_and(|(s, _)| s == 200)),
        "never ready; log:\n{}",
        daemon.log_text()
    );

    redis.stop();
    let mut last = None;
    let down = eventually(Duration::from_secs(30), || {
        last = readyz(&addr);
        last.as_ref().is_some_and(|(s, _)| *s == 503)
    });
    assert!(
        down,
        "still {last:?} with Redis stopped; log:\n{}",
        daemon.log_text()
    );
    let (_, body) = last.unwrap();
    assert!(
        body.contains("pipeline `relay`: source redis-stream:") && body.contains("down: "),
        "{body}"
    );
    let metrics = http_get(&addr, "/metrics").unwrap().1;
    assert_eq!(metric(&metrics, "sluice_ready"), Some(0.0), "{metrics}");

    redis.boot();
    assert!(
        eventually(Duration::from_secs(60), || readyz(&addr)
            .is_some_and(|(s, _)| s == 200)),
        "not ready again after Redis came back: {:?}; log:\n{}",
        readyz(&addr),
        daemon.log_text()
    );
    let status = daemon.terminate(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_short_drain_timeout_ends_a_broker_sources_drain_at_that_deadline() {
    // The sink's Redis goes away with messages in the pipeline: they can be
    // neither confirmed nor acked, so the Redis source holds them and
    // drains until the deadline of --drain-timeout (2 s, not 30 s).
    let Stuck {
        dir: _dir,
        source,
        stream,
        daemon,
        ..
    } = Stuck::start("drain", "2s");
    let asked = Instant::now();
    let status = daemon.terminate(Duration::from_secs(25));
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "the drain took {took:?} with --drain-timeout 2s"
    );
    // Not confirmed, so not acked: they stay pending for the next run.
    assert_eq!(pending(&source, &stream), redis::Value::Int(5));
}

#[test]
fn sigterm_during_a_reload_whose_drain_is_stuck_exits_within_the_drain_timeout() {
    // As above, the source holds messages its sink cannot take. A reload
    // that restarts the pipeline (another sink) must drain it;
    // before, that wait had no bound and kept SIGTERM from being handled.
    let dir = tempfile::tempdir().unwrap();
    let source = PrivateRedis::start();
    let mut sink = PrivateRedis::start();
    let stream = unique("reload");
    let path = config(dir.path(), &source.url(), &sink.url(), &stream);
    let addr = free_addr();
    let daemon = Daemon::start_with(
        &path,
        &dir.path().join("log"),
        &["--http", &addr, "--drain-timeout", "4s", "--no-watch"],
    );
    assert!(
        eventually(Duration::from_secs(60), || readyz(&addr)
            .is_some_and(|(s, _)| s == 200)),
        "never ready; log:\n{}",
        daemon.log_text()
    );
    sink.stop();
    let mut conn = redis_client::connection(&source.url());
    redis_client::add(
        &mut conn,
        &format!("{stream}.in"),
        &[vec![("payload".to_string(), b"{}".to_vec())]],
    );
    let received = "sluice_pipeline_messages_total{pipeline=\"relay\",outcome=\"received\"}";
    assert!(
        eventually(Duration::from_secs(30), || http_get(&addr, "/metrics")
            .and_then(|(_, m)| metric(&m, received))
            .is_some_and(|n| n >= 1.0)),
        "the message never reached the pipeline; log:\n{}",
        daemon.log_text()
    );
    // The new config sends to a Redis that is up (a reload connects what
    // it starts before it stops anything), so the reload gets as far as
    // draining the old pipeline, which cannot finish.
    assert_eq!(
        config(dir.path(), &source.url(), &source.url(), &stream),
        path
    );
    let hup = Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status();
    assert!(hup.is_ok_and(|s| s.success()));
    assert!(
        eventually(Duration::from_secs(10), || daemon
            .log_text()
            .contains("draining for a restart")),
        "no reload; log:\n{}",
        daemon.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    let status = daemon.terminate(Duration::from_secs(20));
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took < Duration::from_secs(6),
        "exit took {took:?} with --drain-timeout 4s"
    );
}

#[test]
fn a_long_drain_timeout_keeps_a_broker_source_draining_past_30_seconds() {
    // Before the drain deadline came from `--drain-timeout`, broker sources
    // stopped draining after a fixed 30 s. Here the sink's Redis is down at
    // SIGTERM and comes back after 35 s: with `--drain-timeout 120s` the
    // daemon is still draining then, delivers every message and acks it.
    let mut stuck = Stuck::start("long-drain", "120s");
    let asked = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &stuck.daemon.pid().to_string()])
        .status();
    assert!(term.is_ok_and(|s| s.success()));
    std::thread::sleep(Duration::from_secs(35));
    assert!(
        stuck.daemon.running(),
        "the daemon stopped draining before 35 s with --drain-timeout 120s; log:\n{}",
        stuck.daemon.log_text()
    );
    stuck.sink.boot();
    let Stuck {
        dir: _dir,
        source,
        sink,
        stream,
        daemon,
    } = stuck;
    let status = daemon.wait(Duration::from_secs(150));
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0));
    let delivered = redis_client::read_stream(
        &mut redis_client::connection(&sink.url()),
        &format!("{stream}.out"),
    );
    assert_eq!(
        delivered.len(),
        5,
        "every message delivered after the sink came back"
    );
    assert_eq!(pending(&source, &stream), redis::Value::Int(0));
    eprintln!("long drain: SIGTERM to exit {took:?}, 5 of 5 delivered and acked");
}

#[test]
fn readyz_follows_a_kafka_broker_down_and_back_for_its_source_and_sink() {
    // librdkafka reconnects by itself; the Kafka source and sink judge
    // their connection from its statistics (every 2 s) and its
    // all-brokers-down error.
    use sluice_tests::kafka_client::{create_topic, Tansu};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = Tansu::start(dir.path(), port);
    let brokers = broker.brokers();
    let stream = unique("kafka-ready");
    let (input, output) = (format!("{stream}.in"), format!("{stream}.out"));
    create_topic(&brokers, &input, 1);
    create_topic(&brokers, &output, 1);
    let config = dir.path().join("kafka.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[pipelines.relay]
source = {{ type = "kafka", brokers = "{brokers}", group = "{stream}", topics = ["{input}"] }}
dlq = {{ type = "file", path = "{dlq}" }}
sinks.out = {{ type = "kafka", brokers = "{brokers}", topic = "{output}" }}
"#,
            dlq = dir.path().join("dlq.jsonl").display()
        ),
    )
    .unwrap();
    let addr = free_addr();
    let daemon = Daemon::start_with(&config, &dir.path().join("log"), &["--http", &addr]);
    assert!(
        eventually(Duration::from_secs(60), || readyz(&addr)
            .is_some_and(|(s, _)| s == 200)),
        "never ready; log:\n{}",
        daemon.log_text()
    );

    drop(broker);
    let mut last = None;
    let both_down = eventually(Duration::from_secs(60), || {
        last = readyz(&addr);
        last.as_ref().is_some_and(|(s, body)| {
            *s == 503
                && body.contains(&format!("source kafka:{input}: down"))
                && body.contains(&format!("sink out kafka:{output}: down"))
        })
    });
    assert!(
        both_down,
        "source and sink not both down with the broker gone: {last:?}; log:\n{}",
        daemon.log_text()
    );

    // Down for a few statistics reports, so that coming back is seen by
    // the statistics (a broker UP again), not just by the error callback.
    std::thread::sleep(Duration::from_secs(6));
    let _broker = Tansu::start(dir.path(), port);
    assert!(
        eventually(Duration::from_secs(90), || readyz(&addr)
            .is_some_and(|(s, _)| s == 200)),
        "not ready again after the broker came back: {:?}; log:\n{}",
        readyz(&addr),
        daemon.log_text()
    );
    let status = daemon.terminate(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0));
}

/// A moto SQS emulator of this test on its own port (in memory: its queues
/// are gone when it stops).
struct PrivateMoto {
    port: u16,
    process: Owned,
}

impl PrivateMoto {
    fn start(port: u16) -> PrivateMoto {
        let cache = std::env::var("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| {
                std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache")
            });
        let bin = cache.join("sluice/tools/moto/bin/moto_server");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} runs (tests/brokers.sh sqs installs it): {e}",
                    bin.display()
                )
            });
        assert!(
            eventually(Duration::from_secs(60), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "private moto on {port} did not start"
        );
        PrivateMoto {
            port,
            process: Owned::new(child),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create `queue`, returning its URL.
    fn create(&self, queue: &str) -> String {
        sluice_tests::sqs_client::emulator_credentials();
        let endpoint = self.endpoint();
        sluice_tests::sqs_client::runtime().block_on(async {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .load()
                .await;
            let client = aws_sdk_sqs::Client::new(&config);
            sluice_tests::sqs_client::create(&client, queue).await
        })
    }

    fn stop(&mut self) {
        self.process.stop();
    }
}

#[test]
fn readyz_follows_an_sqs_sink_down_and_back() {
    // A sink learns of an outage when it publishes: the source is the
    // shared Redis, the sink a private moto that stops while messages flow.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut moto = PrivateMoto::start(port);
    let stream = unique("sqs-ready");
    let queue = format!("{stream}-out");
    moto.create(&queue);
    let redis = redis_client::redis_url();
    let config = dir.path().join("sqs.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[pipelines.relay]
source = {{ type = "redis-stream", url = "{redis}", stream = "{stream}", group = "g", block = "200ms" }}
dlq = {{ type = "file", path = "{dlq}" }}
sinks.out = {{ type = "sqs", queue = "{queue}", region = "us-east-1", endpoint_url = "{endpoint}" }}
"#,
            dlq = dir.path().join("dlq.jsonl").display(),
            endpoint = moto.endpoint(),
        ),
    )
    .unwrap();
    let addr = free_addr();
    let daemon = Daemon::start_with(&config, &dir.path().join("log"), &["--http", &addr]);
    assert!(
        eventually(Duration::from_secs(60), || readyz(&addr)
            .is_some_and(|(s, _)| s == 200)),
        "never ready; log:\n{}",
        daemon.log_text()
    );

    moto.stop();
    let mut conn = redis_client::connection(&redis);
    let entries: Vec<Vec<(String, Vec<u8>)>> = (0..3)
        .map(|i| vec![("payload".to_string(), format!("{{\"n\":{i}}}").into_bytes())])
        .collect();
    redis_client::add(&mut conn, &stream, &entries);
    let mut last = None;
    let down = eventually(Duration::from_secs(60), || {
        last = readyz(&addr);
        last.as_ref().is_some_and(|(s, body)| {
            *s == 503 && body.contains(&format!("sink out sqs:{queue}: down"))
        })
    });
    assert!(
        down,
        "the sink is not down with moto gone: {last:?}; log:\n{}",
        daemon.log_text()
    );

    let moto = PrivateMoto::start(port);
    moto.create(&queue);
    assert!(
        eventually(Duration::from_secs(90), || readyz(&addr)
            .is_some_and(|(s, _)| s == 200)),
        "not ready again after moto came back: {:?}; log:\n{}",
        readyz(&addr),
        daemon.log_text()
    );
    let delivered = "sluice_pipeline_messages_total{pipeline=\"relay\",outcome=\"delivered\"}";
    assert!(
        eventually(Duration::from_secs(60), || http_get(&addr, "/metrics")
            .and_then(|(_, m)| metric(&m, delivered))
            .is_some_and(|n| n >= 3.0)),
        "the three messages were not delivered after the outage; log:\n{}",
        daemon.log_text()
    );
    let status = daemon.terminate(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0));
}
