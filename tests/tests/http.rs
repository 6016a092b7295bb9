//! Outbound HTTP from plugins (capability `http`) against real HTTP servers
//! on 127.0.0.1. The `http-probe` plugin GETs the URL in each message and
//! is dead-lettered with the `wasi:http` error code it was given when a
//! request fails, so each dead letter shows what the host told the plugin:
//! a host not on the allow-list, a listed name that resolves to a loopback
//! address, a slow server cut at the grant's timeout (and at the call's),
//! a response over `max_response`; the servers that should not be reached
//! count no request, and the messages after each refusal go through. Then
//! the enrichment example (`examples/enrich.toml`) with its tier service:
//! one lookup per customer, the rest from the stage's key-value store.

use sluice_tests::daemon::{example_in, free_port, http_get, plugin_literal, summary};
use sluice_tests::http_server::{Answer, TestServer};
use sluice_tests::{output_text as text, run_sluice as sluice};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A file of URLs → http-probe → file; `stage_extra` goes into the stage.
fn config(dir: &Path, urls: &[String], stage_extra: &str) -> PathBuf {
    std::fs::write(dir.join("urls.txt"), urls.join("\n") + "\n").unwrap();
    let text = format!(
        r#"
[pipelines.probe]
concurrency = 1
batch = 1
source = {{ type = "file", path = "urls.txt", format = "lines" }}
dlq = {{ type = "file", path = "out/dlq.jsonl" }}
sinks.out = {{ type = "file", path = "out/out.jsonl" }}

[[pipelines.probe.stages]]
name = "probe"
kind = "transform"
plugin = {plugin}
{stage_extra}
"#,
        plugin = plugin_literal("http-probe")
    );
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The payload of each line of a JSON-lines sink file.
fn payloads(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"].clone())
        .collect()
}

/// Each dead letter's error text, by its payload (the URL).
fn dead_letters(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dir.join("out/dlq.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let doc: serde_json::Value = serde_json::from_str(l).unwrap();
            let url = doc["payload"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_owned();
            (url, doc["headers"]["sluice-error-text"].to_string())
        })
        .collect()
}

#[test]
fn a_plugin_that_imports_wasi_http_loads_only_where_its_stage_grants_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &["http://127.0.0.1:9/".into()], "");
    let out = sluice(&["check", config.to_str().unwrap()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for needed in [
        "pipelines.probe.stages[0]",
        "wasi:http/",
        "capabilities = { http = { allow",
    ] {
        assert!(said.contains(needed), "{needed} in {said}");
    }

    let granted = config.with_file_name("granted.toml");
    std::fs::write(
        &granted,
        std::fs::read_to_string(&config).unwrap()
            + "capabilities = { http = { allow = [\"127.0.0.1:9\"] } }\n",
    )
    .unwrap();
    let out = sluice(&["check", granted.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    // A bad allow-list entry names the key.
    let bad = config.with_file_name("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&config).unwrap()
            + "capabilities = { http = { allow = [\"api.example.com\"] } }\n",
    )
    .unwrap();
    let out = sluice(&["check", bad.to_str().unwrap()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("capabilities.http.allow") && said.contains("HOST:PORT"),
        "{said}"
    );
}

#[test]
fn requests_go_only_where_the_grant_lets_them_within_its_bounds() {
    let server = TestServer::start(|path| match path.split('?').next().unwrap_or_default() {
        "/hello" => Answer::ok("hello"),
        "/slow" => Answer {
            delay: Duration::from_secs(8),
            ..Answer::ok("late")
        },
        "/huge" => Answer::ok(vec![b'x'; 3 * 1024 * 1024]),
        _ => Answer {
            status: 404,
            ..Answer::ok("no")
        },
    });
    // Two servers the plugin must not reach: one not listed at all, one
    // listed by a name that resolves to a loopback address.
    let unlisted = TestServer::start(|_| Answer::ok("unlisted"));
    let by_name = TestServer::start(|_| Answer::ok("by name"));
    let port = server.addr.port();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let urls = vec![
        url("/hello"),
        format!("http://127.0.0.1:{}/hello", unlisted.addr.port()),
        format!("http://localhost:{}/hello", by_name.addr.port()),
        url("/slow"),
        url("/huge"),
        url("/hello?again"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &urls,
        &format!(
            "timeout = \"5s\"\ncapabilities = {{ http = {{ allow = [\"127.0.0.1:{port}\", \"localhost:{}\"], timeout = \"500ms\", max_response = \"1MiB\" }} }}",
            by_name.addr.port()
        ),
    );
    let started = Instant::now();
    let out = sluice(&["run", config.to_str().unwrap()]);
    let elapsed = started.elapsed();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");

    let delivered = payloads(&dir.path().join("out/out.jsonl"));
    assert_eq!(delivered.len(), 2, "{delivered:?}\n{log}");
    for answer in &delivered {
        assert_eq!(
            (answer["status"].as_u64(), answer["body"].as_str()),
            (Some(200), Some("hello"))
        );
    }
    let dead = dead_letters(dir.path());
    let told = |u: &str| {
        dead.get(u)
            .cloned()
            .unwrap_or_else(|| panic!("{u} not dead-lettered: {dead:?}\n{log}"))
    };
    assert!(told(&urls[1]).contains("HttpRequestDenied"), "{dead:?}");
    assert!(
        told(&urls[2]).contains("DestinationIpProhibited"),
        "{dead:?}"
    );
    assert!(told(&urls[3]).contains("Timeout"), "{dead:?}");
    // A body cut short reaches the plugin as a stream error: its code
    // (`HTTP-response-body-size`) or, in wasmtime's text, the limit.
    let huge = told(&urls[4]);
    assert!(
        huge.contains("HttpResponseBodySize") || huge.contains("body size exceeds limit: 1048576"),
        "{dead:?}"
    );
    assert_eq!(dead.len(), 4, "{dead:?}");
    assert_eq!(summary(&log, "probe"), Some([6, 2, 0, 4, 6]), "{log}");
    assert_eq!(unlisted.total(), 0, "the unlisted server was reached");
    assert_eq!(
        by_name.total(),
        0,
        "a listed name led to a loopback address"
    );
    assert_eq!(server.hits("/slow"), 1);
    // The refusals are in the stage's log too, saying why.
    assert!(log.contains("outbound HTTP request failed"), "{log}");
}

#[test]
fn the_call_timeout_ends_a_request_the_grant_would_still_wait_for() {
    let server = TestServer::start(|_| Answer {
        delay: Duration::from_secs(6),
        ..Answer::ok("late")
    });
    let port = server.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &[format!("http://127.0.0.1:{port}/slow")],
        &format!("timeout = \"300ms\"\ncapabilities = {{ http = {{ allow = [\"127.0.0.1:{port}\"], timeout = \"60s\" }} }}"),
    );
    let started = Instant::now();
    let out = sluice(&["run", config.to_str().unwrap()]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    // 300 ms, loosely: well before the server's 6 s answer.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(summary(&log, "probe"), Some([1, 0, 0, 1, 1]), "{log}");
    let dlq = std::fs::read_to_string(dir.path().join("out/dlq.jsonl")).unwrap();
    assert!(dlq.contains("Timeout") || dlq.contains("timeout"), "{dlq}");
}

/// The tier service of the example, on a free port; stopped (by its PID)
/// when dropped.
struct TierService {
    child: std::process::Child,
    port: u16,
}

impl TierService {
    fn start() -> TierService {
        let port = free_port();
        let child = Command::new("python3")
            .arg(sluice_tests::repo().join("examples/tier-service.py"))
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the tier service");
        let service = TierService { child, port };
        let up = sluice_tests::daemon::eventually(Duration::from_secs(20), || {
            http_get(&service.addr(), "/stats").is_some()
        });
        assert!(up, "the tier service did not start");
        service
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stats(&self) -> serde_json::Value {
        let (_, body) = http_get(&self.addr(), "/stats").expect("stats");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for TierService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_enrichment_example_looks_each_customer_up_once_and_routes_by_tier() {
    let service = TierService::start();
    let dir = tempfile::tempdir().unwrap();
    let config = example_in(
        dir.path(),
        "enrich.toml",
        &[
            ("127.0.0.1:8787".into(), service.addr()),
            ("\"out/".into(), format!("\"{}/out/", dir.path().display())),
        ],
    );
    let out = sluice(&["run", config.to_str().unwrap()]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");

    let orders =
        std::fs::read_to_string(sluice_tests::repo().join("examples/orders.jsonl")).unwrap();
    let mut customers = BTreeSet::new();
    let mut routed = 0;
    for tier in ["gold", "silver", "bronze", "standard"] {
        for order in payloads(&dir.path().join(format!("out/tier-{tier}.jsonl"))) {
            routed += 1;
            let customer = order["customer_id"].as_str().unwrap().to_owned();
            let last = customer.chars().last().unwrap().to_digit(10).unwrap();
            let want = match last {
                0 => "gold",
                1..=3 => "silver",
                4..=6 => "bronze",
                _ => "standard",
            };
            assert_eq!(tier, want, "{customer}");
            customers.insert(customer);
        }
    }
    let [received, delivered, dropped, dead, acked] = summary(&log, "enrich").expect("a summary");
    assert_eq!(received as usize, orders.lines().count());
    assert_eq!((delivered as usize, dropped), (routed, 0), "{log}");
    assert_eq!(delivered + dead, received);
    assert_eq!(acked, received);
    let stats = service.stats();
    assert_eq!(
        stats["customers"].as_u64(),
        Some(customers.len() as u64),
        "{stats}"
    );
    assert_eq!(
        stats["lookups"].as_u64(),
        Some(customers.len() as u64),
        "one lookup per customer: {stats}"
    );

    // A second run finds every tier in the store.
    let out = sluice(&["run", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        service.stats()["lookups"].as_u64(),
        Some(customers.len() as u64)
    );
}
