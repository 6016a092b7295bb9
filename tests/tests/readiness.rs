//! The daemon's own faults, against private Redis servers the tests start
//! and kill (never the shared one on 6379): `/readyz` follows the broker
//! down and back, and `--drain-timeout` bounds a broker source's drain.

use sluice_tests::daemon::*;
use sluice_tests::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of this test on its own port, no persistence.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            port: free_port(),
            child: None,
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
        self.child = Some(child);
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
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
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
    let dir = tempfile::tempdir().unwrap();
    let source = PrivateRedis::start();
    let mut sink = PrivateRedis::start();
    let stream = unique("drain");
    let path = config(dir.path(), &source.url(), &sink.url(), &stream);
    let addr = free_addr();
    let daemon = Daemon::start_with(
        &path,
        &dir.path().join("log"),
        &["--http", &addr, "--drain-timeout", "2s"],
    );
    assert!(
        eventually(Duration::from_secs(60), || readyz(&addr)
            .is_some_and(|(s, _)| s == 200)),
        "never ready; log:\n{}",
        daemon.log_text()
    );
    sink.stop();
    let mut conn = redis_client::connection(&source.url());
    let entries: Vec<Vec<(String, Vec<u8>)>> = (0..5)
        .map(|i| vec![("payload".to_string(), format!("{{\"n\":{i}}}").into_bytes())])
        .collect();
    redis_client::add(&mut conn, &format!("{stream}.in"), &entries);
    let received = "sluice_pipeline_messages_total{pipeline=\"relay\",outcome=\"received\"}";
    assert!(
        eventually(Duration::from_secs(30), || http_get(&addr, "/metrics")
            .and_then(|(_, m)| metric(&m, received))
            .is_some_and(|n| n >= 5.0)),
        "the messages never reached the pipeline; log:\n{}",
        daemon.log_text()
    );

    let asked = Instant::now();
    let status = daemon.terminate(Duration::from_secs(25));
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "the drain took {took:?} with --drain-timeout 2s"
    );
    // Not confirmed, so not acked: they stay pending for the next run.
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(format!("{stream}.in"))
        .arg("g")
        .query(&mut conn)
        .unwrap();
    let redis::Value::Array(summary) = pending else {
        panic!("XPENDING: {pending:?}")
    };
    assert_eq!(summary.first(), Some(&redis::Value::Int(5)), "{summary:?}");
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
