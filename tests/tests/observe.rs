//! Observing a running daemon, against a real Redis: the status page in
//! headless Chromium (Debian's `chromium`), its JSON API, and `/metrics`
//! checked by `promtool check metrics` (Debian's `prometheus` package).
//!
//! The pipeline: Redis stream → `valid` (json-filter: a payload that is not
//! JSON is dead-lettered, fatal) → `mark` (identity) → Redis stream, fed
//! for the whole test so every stage has a rate.

use sluice_tests::daemon::{eventually, free_addr, http_get, plugin_literal, Daemon, Names};
use sluice_tests::redis_client::{add, connection, len, redis_url};
use sluice_tests::{repo, tool};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Setup {
    dir: tempfile::TempDir,
    url: String,
    n: Names,
    http: String,
}

impl Setup {
    fn new(test: &str) -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
            url: redis_url(),
            n: Names::new(test),
            http: free_addr(),
        };
        let (url, n) = (&s.url, &s.n);
        let config = format!(
            r#"
[pipelines.orders]
source = {{ type = "redis-stream", url = "{url}", stream = "{input}", group = "{group}", block = "100ms" }}
dlq = {{ type = "redis-stream", url = "{url}", stream = "{dlq}" }}
sinks.out = {{ type = "redis-stream", url = "{url}", stream = "{output}" }}

[[pipelines.orders.stages]]
name = "valid"
kind = "filter"
plugin = {filter}
params = {{ field = "amount", min = 0 }}

[[pipelines.orders.stages]]
name = "mark"
kind = "transform"
plugin = {identity}
"#,
            input = n.input,
            group = n.group,
            dlq = n.dlq,
            output = n.output,
            filter = plugin_literal("json-filter"),
            identity = plugin_literal("identity"),
        );
        std::fs::write(s.config(), config).unwrap();
        s
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("pipeline.toml")
    }

    fn start(&self, flags: &[&str]) -> Daemon {
        Daemon::start_ready(
            &self.config(),
            &self.dir.path().join("sluice.log"),
            &self.http,
            flags,
        )
    }

    /// Feed the input until `stop`: 20 messages every 100 ms, one in ten
    /// not JSON (dead-lettered by `valid`). Bounded: at most 60 s.
    fn feed(&self, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
        let (url, stream) = (self.url.clone(), self.n.input.clone());
        std::thread::spawn(move || {
            let mut conn = connection(&url);
            let mut sent = 0;
            for _ in 0..600 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let batch: Vec<Vec<(String, Vec<u8>)>> = (sent..sent + 20)
                    .map(|i| {
                        let payload = if i % 10 == 9 {
                            format!("order {i} is not json").into_bytes()
                        } else {
                            format!(r#"{{"id":{i},"amount":{}}}"#, i % 7).into_bytes()
                        };
                        vec![("payload".to_string(), payload)]
                    })
                    .collect();
                add(&mut conn, &stream, &batch);
                sent += 20;
                std::thread::sleep(Duration::from_millis(100));
            }
            sent
        })
    }

    fn api(&self) -> serde_json::Value {
        let (code, body) = http_get(&self.http, "/api/v1/pipelines").expect("the API answers");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
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

/// Where the test leaves files for people to look at (the screenshot).
fn artifacts() -> PathBuf {
    let dir = std::env::var("SLUICE_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target/test-artifacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Debian's chromium, headless, with no network but loopback.
fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let bin = std::env::var("SLUICE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&bin).exists(),
        "{bin} is missing: tests/run.sh installs Debian's chromium"
    );
    let profile = tempfile::tempdir().unwrap();
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            // Nothing but the daemon (loopback bypasses the proxy): a page
            // that needed a CDN would break.
            "--proxy-server=127.0.0.1:9",
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs")
}

/// The value of attribute `name` in each element of `html` whose opening
/// tag carries `marker` (the page builds its DOM with known attributes).
fn attribute_values(html: &str, marker: &str, name: &str) -> Vec<String> {
    html.split('<')
        .filter(|tag| tag.contains(marker))
        .filter_map(|tag| {
            let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
            let end = tag[start..].find('"')? + start;
            Some(tag[start..end].to_string())
        })
        .collect()
}

#[test]
fn status_page_in_chromium_shows_every_stage_moving_and_the_latest_dead_letter() {
    let s = Setup::new("observe-page");
    let daemon = s.start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = s.feed(stop.clone());
    // Rates need two samples a second apart and messages in between.
    assert!(
        eventually(Duration::from_secs(30), || {
            let api = s.api();
            let stages = &api["pipelines"][0]["stages"];
            stages.as_array().is_some_and(|st| {
                st.len() == 2 && st.iter().all(|x| x["rates"]["in"].as_f64() > Some(0.0))
            }) && api["pipelines"][0]["dead_letters"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
        }),
        "no rates or dead letters: {}\n{}",
        s.api(),
        daemon.log_text()
    );
    let api = s.api();
    assert_eq!(api["api"], "sluice/v1");
    let pipeline = &api["pipelines"][0];
    assert_eq!(pipeline["name"], "orders");
    assert!(pipeline["source"]["endpoint"]
        .as_str()
        .is_some_and(|e| e.contains(&s.n.input)));
    assert_eq!(pipeline["sinks"][0]["name"], "out");
    let latest = &pipeline["dead_letters"][0];
    assert_eq!(latest["stage"], "valid");
    assert_eq!(latest["class"], "fatal");
    let reason = latest["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("payload is not valid JSON") && !reason.contains("is not json"),
        "the reason, never the payload: {reason}"
    );

    let page = format!("http://{}/", s.http);
    let dom = chromium(&["--dump-dom"], &page);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    for stage in ["valid", "mark"] {
        let rates = attribute_values(&html, &format!("data-stage=\"{stage}\""), "data-rate-in");
        let rate: f64 = rates
            .first()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no stage `{stage}` with a rate in the page:\n{html}"));
        assert!(rate > 0.0, "stage `{stage}` shows no rate: {rate}\n{html}");
    }
    let reasons: Vec<&str> = html
        .split("<td class=\"reason\">")
        .skip(1)
        .filter_map(|t| t.split('<').next())
        .collect();
    assert!(
        !reasons.is_empty() && reasons.iter().all(|r| r.contains("not valid JSON")),
        "the latest dead letters' reasons are on the page: {reasons:?}\n{html}"
    );
    assert!(
        html.contains("data-name=\"out\""),
        "the sink is drawn:\n{html}"
    );

    let shot = artifacts().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,900",
        ],
        &page,
    );
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot at {}: {}",
        shot.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("status page screenshot: {}", shot.display());

    stop.store(true, Ordering::Relaxed);
    let sent = feeder.join().unwrap();
    let dead = sent / 10;
    assert!(
        eventually(Duration::from_secs(30), || len(
            &mut connection(&s.url),
            &s.n.dlq
        ) == dead),
        "every non-JSON message dead-lettered: {} of {dead}",
        len(&mut connection(&s.url), &s.n.dlq)
    );
    drop(daemon);
}

#[test]
fn metrics_pass_promtool_in_both_formats_and_the_api_names_the_routes() {
    let s = Setup::new("observe-metrics");
    let daemon = s.start(&[]);
    add(
        &mut connection(&s.url),
        &s.n.input,
        &[vec![("payload".to_string(), b"not json".to_vec())]],
    );
    assert!(
        eventually(Duration::from_secs(30), || len(
            &mut connection(&s.url),
            &s.n.dlq
        ) == 1),
        "{}",
        daemon.log_text()
    );
    let promtool = tool("SLUICE_PROMTOOL", "prometheus/usr/bin/promtool");
    let (code, text) = http_get(&s.http, "/metrics").unwrap();
    assert_eq!(code, 200);
    let check = |text: &str| {
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = check(&text);
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for family in [
        "sluice_pipeline_messages_total",
        "sluice_messages_total",
        "sluice_stage_duration_seconds",
        "sluice_reloads_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}:\n{text}"
        );
    }
    assert!(
        text.lines().any(|l| l
            == "sluice_messages_total{pipeline=\"orders\",stage=\"valid\",outcome=\"dead_lettered\"} 1"),
        "{text}"
    );

    // OpenMetrics for a scraper that asks for it.
    let open = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&s.http).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    assert!(
        open.contains("application/openmetrics-text") && open.ends_with("# EOF\n"),
        "{open}"
    );

    let api = s.api();
    assert_eq!(api["pipelines"][0]["counts"]["dead_lettered"], 1, "{api}");
    assert_eq!(http_get(&s.http, "/nope").map(|(c, _)| c), Some(404));
    let (code, page) = http_get(&s.http, "/").unwrap();
    assert_eq!(code, 200);
    assert!(
        page.contains("api/v1/pipelines")
            && !page.contains("http://")
            && !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    drop(daemon);
}

/// The spec's log events as JSON lines (`--log-format json`), from a
/// finite file pipeline: `flaky` fails one message once (retried), `valid`
/// dead-letters the one that is not JSON.
#[test]
fn log_events_invoked_completed_failed_are_json_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"amount\":1}\n{\"amount\":2,\"tag\":\"retry-me\"}\nnot json\n",
    )
    .unwrap();
    let config = format!(
        r#"
[pipelines.p]
batch = 1
source = {{ type = "file", path = "in.jsonl", format = "lines" }}
dlq = {{ type = "file", path = "dlq.jsonl" }}
sinks.out = {{ type = "file", path = "out.jsonl", format = "lines" }}

[[pipelines.p.stages]]
name = "flaky"
kind = "filter"
plugin = {flaky}
params = {{ fail_attempts = 1, fail_matching = "retry-me" }}
retry = {{ attempts = 3, initial = "10ms", jitter = 0 }}

[[pipelines.p.stages]]
name = "valid"
kind = "filter"
plugin = {filter}
"#,
        flaky = plugin_literal("flaky"),
        filter = plugin_literal("json-filter"),
    );
    let path = dir.path().join("p.toml");
    std::fs::write(&path, config).unwrap();
    let out = sluice_tests::run_sluice(&[
        "--log-format",
        "json",
        "--log",
        "info,sluice_core=debug",
        "run",
        path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let events = |name: &str| -> Vec<&serde_json::Value> {
        logs.iter().filter(|l| l["event"] == name).collect()
    };

    let failed = events("failed");
    assert_eq!(failed.len(), 2, "one retry, one dead letter: {failed:?}");
    let retry = failed
        .iter()
        .find(|l| l["next"] == "retry")
        .expect("a retry");
    assert_eq!(retry["level"], "WARN");
    assert_eq!(retry["pipeline"], "p");
    assert_eq!(retry["stage"], "flaky");
    assert_eq!(retry["at"], "line=2");
    assert_eq!(retry["attempt"], 1);
    assert_eq!(retry["class"], "retryable");
    assert_eq!(retry["delay_ms"], 10);
    assert!(retry["reason"]
        .as_str()
        .unwrap()
        .contains("attempt 1 of 1 fails"));
    let dead = failed
        .iter()
        .find(|l| l["next"] == "dlq")
        .expect("a dead letter");
    assert_eq!(dead["stage"], "valid");
    assert_eq!(dead["at"], "line=3");
    assert_eq!(dead["attempt"], 1);
    assert_eq!(dead["class"], "fatal");
    assert!(dead["reason"].as_str().unwrap().contains("not valid JSON"));

    // Each stage call: invoked, then completed, with the stage and sizes.
    let invoked = events("invoked");
    let completed = events("completed");
    for stage in ["flaky", "valid"] {
        let calls = invoked.iter().filter(|l| l["stage"] == stage).count();
        let done = completed.iter().filter(|l| l["stage"] == stage).count();
        assert!(
            calls >= 2 && calls == done,
            "{stage}: {calls} invoked, {done} completed"
        );
    }
    assert!(invoked
        .iter()
        .all(|l| l["level"] == "DEBUG" && l["pipeline"] == "p" && l["messages"] == 1));
    assert!(completed
        .iter()
        .filter(|l| l.get("stage").is_some())
        .all(|l| l["duration_us"].is_u64() && l["failures"].is_u64()));
    assert!(
        invoked
            .iter()
            .any(|l| l["stage"] == "flaky" && l["attempt"] == 2),
        "the retry is invoked as attempt 2"
    );

    // Each message, once settled: its position and outcome.
    let mut settled: Vec<(String, String)> = completed
        .iter()
        .filter(|l| l.get("at").is_some())
        .map(|l| {
            (
                l["at"].as_str().unwrap().to_string(),
                l["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    settled.sort();
    assert_eq!(
        settled,
        [
            ("line=1".into(), "delivered".into()),
            ("line=2".into(), "delivered".into()),
            ("line=3".into(), "dead_lettered".into()),
        ]
    );
}

/// `sluice tap` against a running daemon: the outputs of one stage, live,
/// as JSON lines; refusals name what is wrong.
#[test]
fn tap_prints_the_messages_leaving_one_stage_live() {
    let s = Setup::new("observe-tap");
    let daemon = s.start(&["--tap"]);
    let tap = Command::new(sluice_tests::sluice_bin())
        .args(["tap", &s.http, "--pipeline", "orders", "--stage", "mark"])
        .args(["--outputs", "--limit", "5", "--payload-bytes", "12"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || s.api()["pipelines"][0]["taps"]
            .as_array()
            .is_some_and(|t| t.len() == 1)),
        "the tap shows as attached: {}",
        s.api()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = s.feed(stop.clone());
    let out = wait_output(tap, Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("attached to pipeline `orders`, mark outputs"),
        "{stderr}"
    );
    let copies: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert_eq!(copies.len(), 5, "--limit 5: {stdout}");
    for c in &copies {
        assert_eq!(c["pipeline"], "orders");
        assert_eq!(c["at"], "mark");
        assert_eq!(c["side"], "outputs");
        let payload = c["payload"].as_str().unwrap();
        assert!(
            payload.starts_with("{\"id\":") && payload.len() <= 12,
            "{c}"
        );
        assert!(
            c["payload_bytes"].as_u64() > Some(12) && c["truncated"] == true,
            "{c}"
        );
    }
    assert!(
        eventually(Duration::from_secs(10), || s.api()["pipelines"][0]["taps"]
            .as_array()
            .is_some_and(|t| t.is_empty())),
        "a finished tap detaches: {}",
        s.api()
    );

    let refused =
        sluice_tests::run_sluice(&["tap", &s.http, "--pipeline", "orders", "--stage", "nope"]);
    assert_eq!(refused.status.code(), Some(1));
    let text = sluice_tests::output_text(&refused);
    assert!(
        text.contains("no stage or sink `nope`") && text.contains("stages: valid, mark"),
        "{text}"
    );
    let unreachable = sluice_tests::run_sluice(&["tap", &free_addr(), "--pipeline", "orders"]);
    assert_eq!(
        unreachable.status.code(),
        Some(2),
        "{}",
        sluice_tests::output_text(&unreachable)
    );
    drop(daemon);
}

/// The tap is off unless the daemon allows it.
#[test]
fn tap_is_refused_without_the_tap_flag() {
    let s = Setup::new("observe-tap-off");
    let daemon = s.start(&[]);
    let out = sluice_tests::run_sluice(&["tap", &s.http, "--pipeline", "orders", "--limit", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let text = sluice_tests::output_text(&out);
    assert!(text.contains("403") && text.contains("--tap"), "{text}");
    drop(daemon);
}

/// A tap whose reader reads nothing costs the pipeline nothing: the same
/// load drains in about the same time with it attached (loosely: within
/// 3× and 5 s), and the copies it could not take are counted.
#[test]
fn a_tap_that_reads_nothing_does_not_slow_the_pipeline() {
    let s = Setup::new("observe-tap-stall");
    let daemon = s.start(&["--tap"]);
    const N: usize = 3000;
    let payload = format!(r#"{{"amount":1,"pad":"{}"}}"#, "x".repeat(3000));
    let load = |from: usize| {
        let mut conn = connection(&s.url);
        for chunk in (from..from + N).collect::<Vec<_>>().chunks(500) {
            let batch: Vec<Vec<(String, Vec<u8>)>> = chunk
                .iter()
                .map(|_| vec![("payload".to_string(), payload.clone().into_bytes())])
                .collect();
            add(&mut conn, &s.n.input, &batch);
        }
    };
    let drained = |total: usize| {
        let started = std::time::Instant::now();
        assert!(
            eventually(Duration::from_secs(120), || len(
                &mut connection(&s.url),
                &s.n.output
            ) == total),
            "{}",
            daemon.log_text()
        );
        started.elapsed()
    };
    load(0);
    let alone = drained(N);

    // A reader that sends its request and never reads a byte.
    let stalled = {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(&s.http).unwrap();
        write!(
            stream,
            "GET /api/v1/tap?pipeline=orders&stage=mark&side=outputs HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        stream
    };
    assert!(eventually(Duration::from_secs(10), || s.api()["pipelines"]
        [0]["taps"]
        .as_array()
        .is_some_and(|t| t.len() == 1)));
    load(N);
    let tapped = drained(2 * N);
    let dropped = s.api()["pipelines"][0]["taps"][0]["dropped"]
        .as_u64()
        .unwrap_or(0);
    eprintln!("{N} messages of 3 KB: {alone:?} alone, {tapped:?} with a stalled tap ({dropped} copies dropped)");
    assert!(
        tapped <= alone * 3 + Duration::from_secs(5),
        "a stalled tap slowed the pipeline: {alone:?} → {tapped:?}"
    );
    assert!(
        dropped > 0,
        "a reader that reads nothing drops copies, counted"
    );
    drop(stalled);
    drop(daemon);
}

/// Wait for a child to exit within `within` (killed after it), with its output.
fn wait_output(mut child: std::process::Child, within: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + within;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// `sluice run` on a file: a progress line, redrawn on a terminal (here a
/// pseudo-terminal from `script`), a plain log line otherwise; both end
/// with the records, 100% of the file and `(done)`.
#[test]
fn a_file_run_shows_its_progress_on_a_terminal_and_in_plain_lines() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..50).map(|i| format!("{{\"amount\":{i}}}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
    let config = format!(
        r#"
[pipelines.load]
source = {{ type = "file", path = "in.jsonl" }}
dlq = {{ type = "file", path = "dlq.jsonl" }}
sinks.out = {{ type = "file", path = "out.jsonl" }}

[[pipelines.load.stages]]
name = "valid"
kind = "filter"
plugin = {filter}
"#,
        filter = plugin_literal("json-filter"),
    );
    let path = dir.path().join("p.toml");
    std::fs::write(&path, config).unwrap();

    let plain = sluice_tests::run_sluice(&["run", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(plain.status.success(), "{stderr}");
    assert!(
        stderr.contains("load: 50 records, 100% of ")
            && stderr.contains("in.jsonl")
            && stderr.contains("(done)"),
        "a plain progress line at the end: {stderr}"
    );
    assert!(!stderr.contains('\r'), "no redraws off a terminal");

    let command = format!(
        "{} run {}",
        sluice_tests::sluice_bin().display(),
        path.display()
    );
    let tty = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{text}");
    assert!(
        text.contains("\rload: 50 records, 100% of ")
            && text.contains("in.jsonl, ")
            && text.contains("(done)"),
        "the line is redrawn in place on a terminal: {text:?}"
    );
}
