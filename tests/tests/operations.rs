//! Running sluice as a daemon, against a real Redis: hot swap of a plugin
//! file and the TOML while messages flow (nothing lost, nothing doubled,
//! the new behaviour after the swap, one reload counted), broken reloads
//! rejected while the old pipeline goes on, SIGTERM with messages in
//! flight, and `/metrics`, `/healthz`, `/readyz`.

use sluice_tests::daemon::{eventually, free_addr, http_get, metric, replace_file, Daemon, Names};
use sluice_tests::plugin;
use sluice_tests::redis_client::{add, connection, len, read_stream, redis_url, Entry};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// Where the test's pipeline reads and writes, and its files.
struct Setup {
    dir: tempfile::TempDir,
    url: String,
    n: Names,
    config: PathBuf,
    mark: PathBuf,
    http: String,
}

impl Setup {
    /// stream → `mark` (a transform whose plugin file starts as a copy of
    /// identity.wasm) → stream; DLQ a stream.
    fn new(test: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("mark.wasm");
        std::fs::copy(plugin("identity"), &mark).unwrap();
        let s = Setup {
            config: dir.path().join("pipeline.toml"),
            mark,
            dir,
            url: redis_url(),
            n: Names::new(test),
            http: free_addr(),
        };
        s.write_config("v1");
        s
    }

    fn config_text(&self, tag: &str) -> String {
        let (url, n) = (&self.url, &self.n);
        format!(
            r#"
[pipelines.swap]
concurrency = 2
source = {{ type = "redis-stream", url = "{url}", stream = "{input}", group = "{group}", block = "100ms" }}
dlq = {{ type = "redis-stream", url = "{url}", stream = "{dlq}" }}
sinks.out = {{ type = "redis-stream", url = "{url}", stream = "{output}" }}

[[pipelines.swap.stages]]
name = "mark"
kind = "transform"
plugin = "mark.wasm"
params = {{ tag = "{tag}", redact = "card" }}
"#,
            input = n.input,
            group = n.group,
            dlq = n.dlq,
            output = n.output,
        )
    }

    fn write_config(&self, tag: &str) {
        replace_file(&self.config, self.config_text(tag).as_bytes());
    }

    fn start(&self) -> Daemon {
        Daemon::start_ready(
            &self.config,
            &self.dir.path().join("sluice.log"),
            &self.http,
            &[],
        )
    }

    fn metrics(&self) -> String {
        http_get(&self.http, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    fn reloads(&self, result: &str) -> f64 {
        metric(
            &self.metrics(),
            &format!("sluice_reloads_total{{result=\"{result}\"}}"),
        )
        .unwrap_or(-1.0)
    }

    fn output(&self) -> Vec<Entry> {
        read_stream(&mut connection(&self.url), &self.n.output)
    }

    fn out_len(&self) -> usize {
        len(&mut connection(&self.url), &self.n.output)
    }

    fn produce(&self, range: std::ops::Range<usize>) {
        add(
            &mut connection(&self.url),
            &self.n.input,
            &range.map(order).collect::<Vec<_>>(),
        );
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let mut conn = connection(&self.url);
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(&self.n.input)
            .arg(&self.n.output)
            .arg(&self.n.dlq)
            .query(&mut conn);
    }
}

/// Order `i`: key `k{i}`, a JSON order order-transform can reshape.
fn order(i: usize) -> Vec<(String, Vec<u8>)> {
    let payload = format!(
        r#"{{"id":"o-{i}","customer_id":"c-{}","country":"DE","currency":"EUR","amount":{}.5,"card":"4111111111111111","items":[{{"sku":"A","qty":1,"price":1.0}}]}}"#,
        i % 100,
        100 + i % 50
    );
    vec![
        ("payload".into(), payload.into_bytes()),
        ("key".into(), format!("k{i}").into_bytes()),
    ]
}

fn index(e: &Entry) -> usize {
    e.field("key").expect("key")[1..].parse().unwrap()
}

#[test]
fn a_plugin_and_config_swap_while_10000_messages_flow_loses_and_doubles_nothing() {
    let s = Setup::new("ops-swap");
    let daemon = s.start();
    let first = 10_000;
    let producer = {
        let (url, input) = (s.url.clone(), s.n.input.clone());
        std::thread::spawn(move || {
            let mut conn = connection(&url);
            for start in (0..first).step_by(200) {
                add(
                    &mut conn,
                    &input,
                    &(start..start + 200).map(order).collect::<Vec<_>>(),
                );
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    assert!(
        eventually(Duration::from_secs(60), || s.out_len() >= 2000),
        "{}",
        daemon.log_text()
    );
    // The plugin file and the TOML, a few milliseconds apart, as a deploy
    // would: identity.wasm becomes order-transform.wasm, tag v1 becomes v2.
    replace_file(&s.mark, &std::fs::read(plugin("order-transform")).unwrap());
    s.write_config("v2");
    let swapped_at = s.out_len();
    assert!(
        eventually(Duration::from_secs(30), || s.reloads("ok") == 1.0),
        "{}\n{}",
        s.metrics(),
        daemon.log_text()
    );
    producer.join().unwrap();
    // Everything added from now on runs the new chain.
    let total = first + 2000;
    s.produce(first..total);
    assert!(
        eventually(Duration::from_secs(60), || s.out_len() >= total),
        "{}",
        daemon.log_text()
    );
    std::thread::sleep(Duration::from_millis(300));

    let out = s.output();
    let distinct: BTreeSet<usize> = out.iter().map(index).collect();
    assert_eq!(
        (distinct.len(), out.len()),
        (total, total),
        "every message exactly once"
    );
    let mut old = 0;
    for e in &out {
        match e.field("x-sluice-transform").as_deref() {
            None => {
                old += 1;
                assert!(
                    e.field("payload").unwrap().contains("4111111111111111"),
                    "identity leaves the card: {e:?}"
                );
                assert!(
                    index(e) < first,
                    "message {} added after the reload ran the old chain",
                    index(e)
                );
            }
            Some("v2") => assert!(
                !e.field("payload").unwrap().contains("4111111111111111"),
                "order-transform redacts: {e:?}"
            ),
            Some(other) => {
                panic!("tag {other}: a message ran half a swap (new plugin, old TOML): {e:?}")
            }
        }
    }
    assert!(
        old >= swapped_at,
        "the old chain ran until the swap: {old} (output {swapped_at} when it began)"
    );
    let m = s.metrics();
    assert_eq!(
        metric(&m, "sluice_reloads_total{result=\"ok\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sluice_reloads_total{result=\"failed\"}"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "sluice_messages_total{pipeline=\"swap\",stage=\"mark\",outcome=\"in\"}"
        ),
        Some(total as f64),
        "stage counters carry over the swap: {m}"
    );
    assert!(eventually(Duration::from_secs(10), || metric(
        &s.metrics(),
        "sluice_pipeline_messages_total{pipeline=\"swap\",outcome=\"acked\"}"
    ) == Some(
        total as f64
    )));
    assert_eq!(
        metric(&s.metrics(), "sluice_in_flight{pipeline=\"swap\"}"),
        Some(0.0)
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    eprintln!(
        "hot swap: {total} messages, {old} on the old chain, {} on the new, 0 lost, 0 duplicates",
        total - old
    );
}

#[test]
fn broken_plugins_and_a_broken_toml_are_rejected_and_the_old_pipeline_goes_on() {
    let s = Setup::new("ops-broken");
    let daemon = s.start();
    let mut sent = 0;
    let mut flow = |s: &Setup, daemon: &Daemon| {
        s.produce(sent..sent + 300);
        sent += 300;
        assert!(
            eventually(Duration::from_secs(30), || s.out_len() >= sent),
            "{}",
            daemon.log_text()
        );
    };
    flow(&s, &daemon);
    let cases: [(&str, Box<dyn Fn(&Setup)>); 3] = [
        (
            "not a component",
            Box::new(|s: &Setup| replace_file(&s.mark, b"\0asm garbage, not a component")),
        ),
        (
            "wrong world",
            Box::new(|s: &Setup| {
                replace_file(&s.mark, &std::fs::read(plugin("json-filter")).unwrap())
            }),
        ),
        (
            "broken TOML",
            Box::new(|s: &Setup| {
                replace_file(&s.mark, &std::fs::read(plugin("identity")).unwrap());
                replace_file(&s.config, b"[pipelines.swap\nsource = ");
            }),
        ),
    ];
    for (i, (what, break_it)) in cases.iter().enumerate() {
        break_it(&s);
        let failed = (i + 1) as f64;
        assert!(
            eventually(Duration::from_secs(30), || s.reloads("failed") == failed),
            "{what}: {}\n{}",
            s.metrics(),
            daemon.log_text()
        );
        flow(&s, &daemon);
    }
    assert_eq!(s.reloads("ok"), 0.0, "nothing was applied");
    let log = daemon.log_text();
    assert!(log.contains("reload failed"), "{log}");
    assert!(log.contains("mark.wasm"), "the plugin is named: {log}");
    assert!(
        log.contains("pipeline.toml"),
        "the config file is named: {log}"
    );
    let out = s.output();
    assert_eq!(out.len(), sent);
    assert!(
        out.iter().all(|e| e.field("x-sluice-transform").is_none()),
        "the old (identity) chain ran throughout"
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}

/// Redis stream ids compare as (milliseconds, sequence).
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap(), seq.parse().unwrap())
}

#[test]
fn sigterm_with_messages_in_flight_exits_0_and_every_acked_message_was_delivered() {
    let s = Setup::new("ops-sigterm");
    let total = 60_000;
    s.produce(0..total);
    let daemon = s.start();
    // The group's lag as Redis reports it: entries not yet read.
    let lag = || metric(&s.metrics(), "sluice_source_lag{pipeline=\"swap\"}");
    assert!(
        eventually(Duration::from_secs(10), || lag()
            .is_some_and(|l| l > 0.0 && l <= total as f64)),
        "lag reported: {:?}",
        lag()
    );
    assert!(
        eventually(Duration::from_secs(60), || s.out_len() >= 1000),
        "{}",
        daemon.log_text()
    );
    let status = daemon.terminate(Duration::from_secs(60));
    assert!(status.success(), "exit 0 after SIGTERM, got {status:?}");

    let mut conn = connection(&s.url);
    let input = read_stream(&mut conn, &s.n.input);
    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&s.n.input)
        .query(&mut conn)
        .unwrap();
    let group: std::collections::HashMap<String, redis::Value> =
        redis::from_redis_value(groups[0].clone()).unwrap();
    let last: String = redis::from_redis_value(group["last-delivered-id"].clone()).unwrap();
    let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(&s.n.input)
        .arg(&s.n.group)
        .arg("-")
        .arg("+")
        .arg(100_000)
        .query(&mut conn)
        .unwrap();
    let pending: BTreeSet<String> = pending.into_iter().map(|p| p.0).collect();
    let acked: Vec<&Entry> = input
        .iter()
        .filter(|e| stream_id(&e.id) <= stream_id(&last) && !pending.contains(&e.id))
        .collect();
    let delivered: BTreeSet<usize> = s.output().iter().map(index).collect();
    assert!(
        acked.len() >= 1000 && acked.len() < total,
        "stopped mid-stream: {} acked of {total}",
        acked.len()
    );
    let missing: Vec<usize> = acked
        .iter()
        .map(|e| index(e))
        .filter(|i| !delivered.contains(i))
        .collect();
    assert!(missing.is_empty(), "acked but not delivered: {missing:?}");
    eprintln!("sigterm: {} of {total} acked and delivered, {} pending (redelivered after a restart), 0 lost", acked.len(), pending.len());
}

#[test]
fn health_and_readiness_answer_and_metrics_carry_every_family() {
    let s = Setup::new("ops-metrics");
    let daemon = s.start();
    s.produce(0..100);
    assert!(
        eventually(Duration::from_secs(30), || s.out_len() >= 100),
        "{}",
        daemon.log_text()
    );
    assert_eq!(http_get(&s.http, "/healthz").map(|(c, _)| c), Some(200));
    assert_eq!(http_get(&s.http, "/readyz").map(|(c, _)| c), Some(200));
    assert_eq!(http_get(&s.http, "/nope").map(|(c, _)| c), Some(404));
    assert!(eventually(Duration::from_secs(10), || metric(
        &s.metrics(),
        "sluice_pipeline_messages_total{pipeline=\"swap\",outcome=\"acked\"}"
    ) == Some(100.0)));
    let m = s.metrics();
    for sample in [
        "sluice_pipeline_messages_total{pipeline=\"swap\",outcome=\"received\"} 100",
        "sluice_pipeline_messages_total{pipeline=\"swap\",outcome=\"delivered\"} 100",
        "sluice_messages_total{pipeline=\"swap\",stage=\"mark\",outcome=\"in\"} 100",
        "sluice_messages_total{pipeline=\"swap\",stage=\"mark\",outcome=\"ok\"} 100",
        "sluice_messages_total{pipeline=\"swap\",stage=\"mark\",outcome=\"dead_lettered\"} 0",
        "sluice_instance_replacements_total{pipeline=\"swap\",stage=\"mark\"} 0",
        "sluice_sink_publish_duration_seconds_count{pipeline=\"swap\"} 100",
        "sluice_in_flight{pipeline=\"swap\"} 0",
        "sluice_reloads_total{result=\"failed\"} 0",
        "sluice_ready 1",
    ] {
        assert!(
            m.lines().any(|l| l == sample),
            "missing `{sample}` in:\n{m}"
        );
    }
    assert!(
        eventually(Duration::from_secs(10), || metric(
            &s.metrics(),
            "sluice_source_lag{pipeline=\"swap\"}"
        ) == Some(0.0)),
        "nothing left to read: {}",
        s.metrics()
    );
    let calls = metric(
        &m,
        "sluice_stage_duration_seconds_count{pipeline=\"swap\",stage=\"mark\"}",
    )
    .unwrap();
    assert!(
        (1.0..=100.0).contains(&calls),
        "one observation per call (batches): {calls}"
    );
    assert!(
        metric(
            &m,
            "sluice_stage_fuel_consumed_total{pipeline=\"swap\",stage=\"mark\"}"
        )
        .unwrap()
            > 0.0,
        "fuel is counted: {m}"
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}

#[test]
fn a_source_change_restarts_only_its_own_pipeline() {
    // Two pipelines in one file. Pointing `b` at another input stream
    // cannot be done live: `b` drains and restarts on the new source; `a`
    // is not touched and keeps its chain.
    let s = Setup::new("ops-restart");
    let (b_in, b_in2, b_out, b_group) = (
        format!("{}.b", s.n.input),
        format!("{}.b2", s.n.input),
        format!("{}.b", s.n.output),
        format!("{}.b", s.n.group),
    );
    let second = |input: &str| {
        format!(
            r#"
[pipelines.b]
source = {{ type = "redis-stream", url = "{url}", stream = "{input}", group = "{b_group}", block = "100ms" }}
dlq = {{ type = "redis-stream", url = "{url}", stream = "{dlq}" }}
sinks.out = {{ type = "redis-stream", url = "{url}", stream = "{b_out}" }}
"#,
            url = s.url,
            dlq = s.n.dlq,
        )
    };
    replace_file(&s.config, (s.config_text("v1") + &second(&b_in)).as_bytes());
    let daemon = s.start();
    let mut conn = connection(&s.url);
    s.produce(0..500);
    add(&mut conn, &b_in, &(0..300).map(order).collect::<Vec<_>>());
    assert!(
        eventually(Duration::from_secs(30), || s.out_len() >= 500
            && len(&mut connection(&s.url), &b_out) >= 300),
        "{}",
        daemon.log_text()
    );

    replace_file(
        &s.config,
        (s.config_text("v1") + &second(&b_in2)).as_bytes(),
    );
    assert!(
        eventually(Duration::from_secs(30), || s.reloads("ok") == 1.0),
        "{}",
        daemon.log_text()
    );
    add(
        &mut conn,
        &b_in2,
        &(300..600).map(order).collect::<Vec<_>>(),
    );
    add(&mut conn, &b_in, &(600..700).map(order).collect::<Vec<_>>());
    s.produce(500..1000);
    assert!(
        eventually(Duration::from_secs(30), || s.out_len() >= 1000
            && len(&mut connection(&s.url), &b_out) >= 600),
        "{}",
        daemon.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = daemon.log_text();
    let b_keys: BTreeSet<usize> = read_stream(&mut conn, &b_out).iter().map(index).collect();
    assert_eq!(
        b_keys,
        (0..600).collect(),
        "b read the new stream after the restart, and no longer the old one"
    );
    assert_eq!(s.out_len(), 1000, "a went on untouched");
    assert!(
        log.lines()
            .any(|l| l.contains("draining for a restart") && l.contains("pipeline=b")),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("draining for a restart") && l.contains("pipeline=swap")),
        "a was not restarted: {log}"
    );
    assert!(!log.contains("new chain swapped in"), "{log}");
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let _: Result<(), _> = redis::cmd("DEL")
        .arg(&b_in)
        .arg(&b_in2)
        .arg(&b_out)
        .query(&mut conn);
}

#[test]
fn a_reload_does_not_rerun_a_pipeline_whose_file_source_ended() {
    let s = Setup::new("ops-ended");
    let input = s.dir.path().join("ten.jsonl");
    std::fs::write(
        &input,
        (0..10)
            .map(|i| format!("{{\"n\":{i}}}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let file_pipeline = r#"
[pipelines.once]
source = { type = "file", path = "ten.jsonl" }
dlq = { type = "file", path = "once-dlq.jsonl" }
sinks.out = { type = "file", path = "once-out.jsonl" }
"#;
    replace_file(&s.config, (s.config_text("v1") + file_pipeline).as_bytes());
    let daemon = s.start();
    let out = s.dir.path().join("once-out.jsonl");
    let lines = || {
        std::fs::read_to_string(&out)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(30), || lines() == 10
            && daemon.log_text().contains("pipeline stopped pipeline=once")),
        "{}",
        daemon.log_text()
    );
    // A stage change in the other pipeline: swapped live; `once` stays done.
    replace_file(&s.mark, &std::fs::read(plugin("order-transform")).unwrap());
    replace_file(&s.config, (s.config_text("v2") + file_pipeline).as_bytes());
    assert!(
        eventually(Duration::from_secs(30), || s.reloads("ok") == 1.0),
        "{}",
        daemon.log_text()
    );
    s.produce(0..50);
    assert!(
        eventually(Duration::from_secs(30), || s.out_len() >= 50),
        "{}",
        daemon.log_text()
    );
    assert!(s
        .output()
        .iter()
        .all(|e| e.field("x-sluice-transform").as_deref() == Some("v2")));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lines(), 10, "the file was not read a second time");
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}

#[test]
fn with_no_watch_only_sighup_reloads() {
    let s = Setup::new("ops-hup");
    let daemon = Daemon::start_with(
        &s.config,
        &s.dir.path().join("sluice.log"),
        &["--http", &s.http, "--no-watch"],
    );
    assert!(
        eventually(Duration::from_secs(30), || http_get(&s.http, "/readyz")
            .is_some_and(|(c, _)| c == 200)),
        "{}",
        daemon.log_text()
    );
    replace_file(&s.mark, &std::fs::read(plugin("order-transform")).unwrap());
    s.write_config("v2");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.reloads("ok"), 0.0, "no reload without the signal");
    let sent = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(daemon.pid().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    assert!(
        eventually(Duration::from_secs(30), || s.reloads("ok") == 1.0),
        "{}",
        daemon.log_text()
    );
    s.produce(0..20);
    assert!(
        eventually(Duration::from_secs(30), || s.out_len() >= 20),
        "{}",
        daemon.log_text()
    );
    assert!(s
        .output()
        .iter()
        .all(|e| e.field("x-sluice-transform").as_deref() == Some("v2")));
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}
