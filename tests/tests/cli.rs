//! The `sluice` binary: `check` on good and bad configs, `run` on the
//! quickstart with every record accounted for, logs and exit codes.

use sluice_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .env(
            "SLUICE_CACHE_DIR",
            repo().join("target/test-artifact-cache"),
        )
        .output()
        .expect("sluice runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The quickstart config rewritten to run from `dir` (absolute inputs and
/// plugins, outputs under `dir/out`).
fn quickstart_in(dir: &Path) -> PathBuf {
    let examples = repo().join("examples");
    let text = std::fs::read_to_string(examples.join("quickstart.toml"))
        .unwrap()
        .replace(
            "\"orders.jsonl\"",
            &format!("{:?}", examples.join("orders.jsonl")),
        )
        .replace(
            "\"../plugins/dist/",
            &format!("\"{}/", repo().join("plugins/dist").display()),
        );
    let path = dir.join("quickstart.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_the_quickstart_and_prints_the_resolved_pipeline() {
    let out = sluice(&[
        "check",
        repo().join("examples/quickstart.toml").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout.contains("stage       big-orders (filter)"),
        "{stdout}"
    );
    assert!(stdout.contains("route.DE=\"europe\""), "{stdout}");
    assert!(stdout.contains("OK (1 pipeline(s))"), "{stdout}");
}

#[test]
fn every_invalid_config_fails_check_with_its_expected_message() {
    let dir = repo().join("tests/ui/invalid");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "the invalid-config cases are there");
    let mut failures = Vec::new();
    for case in &cases {
        let expected = std::fs::read_to_string(case.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{} has no .expected file", case.display()));
        let out = sluice(&["check", case.to_str().unwrap()]);
        let err = stderr(&out);
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{}: exit {:?}, want 1\n{err}",
                case.display(),
                out.status.code()
            ));
            continue;
        }
        if !err.contains(&case.display().to_string()) {
            failures.push(format!(
                "{}: the message does not name the file:\n{err}",
                case.display()
            ));
        }
        for want in expected.lines().filter(|l| !l.trim().is_empty()) {
            if !err.contains(want) {
                failures.push(format!("{}: missing `{want}` in:\n{err}", case.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_typo_in_a_key_names_the_key_and_the_line() {
    let case = repo().join("tests/ui/invalid/typo-key.toml");
    let out = sluice(&["check", case.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("typo-key.toml:12:1: unknown field `timout`"),
        "{err}"
    );
    assert!(err.contains("help:"), "{err}");
}

#[test]
fn the_quickstart_accounts_for_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = quickstart_in(dir.path());
    let out = sluice(&["run", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The expected outcome of every input line, computed here independently.
    let (mut europe, mut americas, mut dropped, mut dead) = (0, 0, 0, 0);
    let input = std::fs::read_to_string(repo().join("examples/orders.jsonl")).unwrap();
    for line in input.lines() {
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(line) else {
            dead += 1;
            continue;
        };
        match doc["amount"].as_f64() {
            None => dead += 1,
            Some(a) if a < 100.0 => dropped += 1,
            Some(_) => match doc["country"].as_str().unwrap() {
                "DE" | "FR" | "NL" => europe += 1,
                _ => americas += 1,
            },
        }
    }
    let lines = |name: &str| {
        std::fs::read_to_string(dir.path().join("out").join(name))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(lines("europe.jsonl").len(), europe);
    assert_eq!(lines("americas.jsonl").len(), americas);
    let dlq = lines("dlq.jsonl");
    assert_eq!(dlq.len(), dead);
    assert_eq!(europe + americas + dropped + dead, input.lines().count());
    for line in &dlq {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        let class = doc["headers"]["sluice-error-class"].as_str().unwrap();
        assert!(class == "decode" || class == "fatal", "{line}");
        assert!(!doc["headers"]["sluice-error-text"]
            .as_str()
            .unwrap()
            .is_empty());
    }
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!(
            "received {}, delivered {}, dropped {dropped}, dead-lettered {dead}",
            input.lines().count(),
            europe + americas
        )),
        "{summary}"
    );
    assert!(summary.contains("big-orders"), "{summary}");
}

#[test]
fn guest_output_is_logged_with_the_stage_and_json_logs_work() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"n\":1}\n{\"n\":2,\"panic\":true}\n{\"n\":3}\n",
    )
    .unwrap();
    let config = format!(
        r#"
[pipelines.p]
batch = 1  # one call per message, so the log has one line per message
source = {{ type = "file", path = "in.jsonl" }}
dlq = {{ type = "file", path = "dlq.jsonl" }}
sinks.out = {{ type = "file", path = "out.jsonl", format = "lines" }}
[[pipelines.p.stages]]
name = "noisy"
kind = "filter"
plugin = "{}"
"#,
        plugin("panicker").display()
    );
    let path = dir.path().join("p.toml");
    std::fs::write(&path, config).unwrap();
    let out = sluice(&["--log-format", "json", "run", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let logs: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let guest: Vec<_> = logs
        .iter()
        .filter(|l| l["stage"] == "noisy" && l["stream"] == "stdout")
        .collect();
    assert_eq!(guest.len(), 3, "one stdout line per call: {logs:?}");
    assert!(
        logs.iter().any(|l| l["stream"] == "stderr"
            && l["message"]
                .as_str()
                .unwrap_or("")
                .contains("asked to panic")),
        "the panic message reaches the log"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap(),
        "{\"n\":1}\n{\"n\":3}\n"
    );
}

#[test]
fn run_with_a_missing_input_file_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, "[pipelines.p]\nsource = { type = \"file\", path = \"nope.jsonl\" }\ndlq = { type = \"stdout\" }\nsinks.out = { type = \"stdout\" }\n").unwrap();
    let out = sluice(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope.jsonl"), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    for args in [
        &["run"][..],                                  // missing CONFIG
        &["no-such-command"],                          // unknown subcommand
        &["run", "p.toml", "--no-such-flag"],          // unknown flag
        &["run", "p.toml", "--drain-timeout", "soon"], // a value that does not parse
    ] {
        let out = sluice(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("error:"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    for args in [&["--help"][..], &["--version"], &["run", "--help"]] {
        let out = sluice(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}

fn pipe_config(dir: &Path) -> PathBuf {
    let config = format!(
        r#"
[pipelines.pipe]
source = {{ type = "stdin", format = "json", key_field = "id" }}
dlq = {{ type = "file", path = "dlq.jsonl" }}
sinks.out = {{ type = "stdout", format = "lines" }}
[[pipelines.pipe.stages]]
name = "big"
kind = "filter"
plugin = "{}"
params = {{ min = 10 }}
"#,
        plugin("json-filter").display()
    );
    let path = dir.join("pipe.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn stdin_to_stdout_works_as_a_shell_filter() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = pipe_config(dir.path());
    let mut child = Command::new(sluice_bin())
        .args(["--log", "error", "run", config.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"id\":1,\"amount\":50}\n{\"id\":2,\"amount\":5}\nbroken\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"id\":1,\"amount\":50}\n",
        "only the kept record on stdout"
    );
    assert!(
        stderr(&out).contains("received 3, delivered 1, dropped 1, dead-lettered 1"),
        "summary on stderr when stdout is a sink: {}",
        stderr(&out)
    );
}

#[test]
fn sigterm_drains_and_exits_zero() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = pipe_config(dir.path());
    let mut child = Command::new(sluice_bin())
        .args(["run", config.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"id\":1,\"amount\":50}\n").unwrap();
    stdin.flush().unwrap();
    // stdin stays open: only the signal can end this run.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"id\":1,\"amount\":50}\n"
    );
    assert!(
        stderr(&out).contains("received 1, delivered 1"),
        "{}",
        stderr(&out)
    );
}

/// `sluice test` on each example plugin with the shared order fixtures: the
/// results match the checked expectations (kept/dropped, reshaped and
/// redacted messages, routes, fatal errors for malformed input).
#[test]
fn sluice_test_runs_each_plugin_on_fixtures_and_matches_the_expectation() {
    let fixtures = repo().join("tests/fixtures");
    let input = fixtures.join("orders.jsonl");
    for (name, params) in [
        ("json-filter", vec!["field=amount", "min=100"]),
        ("order-transform", vec!["redact=card", "tag=t@1"]),
        (
            "country-router",
            vec!["field=country", "route.DE=europe", "route.US=americas"],
        ),
    ] {
        let plugin = plugin(name);
        let expect = fixtures.join(format!("orders.{name}.expected.jsonl"));
        let mut args = vec![
            "test",
            plugin.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--expect",
            expect.to_str().unwrap(),
            "--params",
        ];
        args.extend(params);
        let out = sluice(&args);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("4 of 4 results as expected"),
            "{name}: {}",
            stderr(&out)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&expect).unwrap(),
            "{name}: stdout is the results"
        );
    }
}

#[test]
fn sluice_test_reports_a_mismatch_with_a_diff_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = repo().join("tests/fixtures");
    // Expect the second order (12.5) to be kept: it is not.
    let expected = std::fs::read_to_string(fixtures.join("orders.json-filter.expected.jsonl"))
        .unwrap()
        .replacen("{\"kept\":false}", "{\"kept\":true}", 1);
    let expect = dir.path().join("wrong.jsonl");
    std::fs::write(&expect, expected).unwrap();
    let plugin = plugin("json-filter");
    let input = fixtures.join("orders.jsonl");
    let out = sluice(&[
        "test",
        plugin.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--expect",
        expect.to_str().unwrap(),
        "--params",
        "field=amount",
        "min=100",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("input 2 (line 2):\n  expected {\"kept\":true}\n  got      {\"kept\":false}"),
        "{err}"
    );
    assert!(err.contains("1 of 4 results differ"), "{err}");

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"payload\": 1}\n{\"paylod\": 2}\n").unwrap();
    let out = sluice(&[
        "test",
        plugin.to_str().unwrap(),
        "--input",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("{}:2: unknown field `paylod`", bad.display())),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dlq_stats_and_show_read_a_file_dlq_in_either_format() {
    // The quickstart dead-letters its malformed and amount-less orders. With
    // the DLQ as `json` lines (headers) and as `lines` (then the envelope
    // form), `sluice dlq stats` groups the same dead letters and `sluice dlq
    // show` prints each with its class, stage and original payload.
    for lines in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = quickstart_in(dir.path());
        if lines {
            let text = std::fs::read_to_string(&config).unwrap().replace(
                r#"path = "out/dlq.jsonl" }"#,
                r#"path = "out/dlq.jsonl", format = "lines" }"#,
            );
            assert!(
                text.contains(r#"format = "lines" }"#),
                "the quickstart's dlq table moved"
            );
            std::fs::write(&config, text).unwrap();
        }
        let out = sluice(&["run", config.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let written = std::fs::read_to_string(dir.path().join("out/dlq.jsonl")).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(written.lines().next().unwrap()).unwrap();
        if lines {
            assert!(
                first["error"]["class"].is_string(),
                "envelope form: {first}"
            );
        } else {
            assert!(
                first["headers"]["sluice-error-class"].is_string(),
                "headers form: {first}"
            );
        }

        let show = sluice(&["dlq", "show", "--limit", "100000", config.to_str().unwrap()]);
        assert!(show.status.success(), "{}", stderr(&show));
        let shown: Vec<serde_json::Value> = String::from_utf8_lossy(&show.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            shown.len(),
            written.lines().count(),
            "every dead letter shown"
        );
        for d in &shown {
            let class = d["error"]["class"].as_str().unwrap();
            assert!(class == "fatal" || class == "decode", "{d}");
            assert!(d["at"].as_str().unwrap().starts_with("line="), "{d}");
            assert!(d["error"]["source-line"].is_string(), "{d}");
        }
        let fatal = shown
            .iter()
            .filter(|d| d["error"]["class"] == "fatal")
            .count();

        let filtered = sluice(&[
            "dlq",
            "show",
            "--filter",
            "class=fatal",
            config.to_str().unwrap(),
        ]);
        let n = String::from_utf8_lossy(&filtered.stdout).lines().count();
        assert_eq!(n, fatal.min(100), "--filter class=fatal");

        let stats = sluice(&["dlq", "stats", config.to_str().unwrap()]);
        assert!(stats.status.success(), "{}", stderr(&stats));
        let text = String::from_utf8_lossy(&stats.stdout);
        assert!(
            text.contains(&format!(
                "pipeline orders: {} dead letter(s) in its file DLQ",
                shown.len()
            )),
            "{text}"
        );
        let counted: usize = text
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
            .sum();
        assert_eq!(counted, shown.len(), "the groups add up: {text}");
    }
    let bad = sluice(&["dlq", "show", "--filter", "colour=red", "x.toml"]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn dlq_replay_of_a_file_dlq_delivers_through_the_fixed_plugin_and_rewrites_the_dlq() {
    // 50 orders from a file; key k7's five fail (retryable, one attempt)
    // and are dead-lettered to a file. A line that is no dead letter is
    // added to the DLQ by hand. `sluice dlq replay` with the plugin fixed
    // appends the five to the output (the earlier output stays) and
    // rewrites the DLQ without them; the other line stays.
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..50)
        .map(|i| format!("{{\"amount\":{i},\"key\":\"k{}\"}}\n", i % 10))
        .collect();
    std::fs::write(dir.path().join("orders.jsonl"), input).unwrap();
    let pipeline = |name: &str, params: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                r#"
[pipelines.orders]
source = {{ type = "file", path = "orders.jsonl", key_field = "key" }}
sinks.out = {{ type = "file", path = "out/out.jsonl" }}
dlq = {{ type = "file", path = "out/dlq.jsonl" }}
retry = {{ attempts = 1 }}

[[pipelines.orders.stages]]
name = "flaky"
kind = "filter"
plugin = {plugin}
params = {params}
"#,
                plugin = daemon::plugin_literal("flaky"),
            ),
        )
        .unwrap();
        path
    };
    let failing = pipeline(
        "failing.toml",
        r#"{ fail_attempts = 100, fail_matching = '"key":"k7"' }"#,
    );
    let fixed = pipeline("fixed.toml", "{ fail_attempts = 0 }");
    let run = sluice(&["run", failing.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    let read = |name: &str| std::fs::read_to_string(dir.path().join("out").join(name)).unwrap();
    assert_eq!(read("out.jsonl").lines().count(), 45);
    assert_eq!(read("dlq.jsonl").lines().count(), 5);
    let foreign = "a line that is not a dead letter";
    std::fs::write(
        dir.path().join("out/dlq.jsonl"),
        format!("{}{foreign}\n", read("dlq.jsonl")),
    )
    .unwrap();

    let replay = sluice(&["dlq", "replay", fixed.to_str().unwrap()]);
    assert!(replay.status.success(), "{}", stderr(&replay));
    let report = String::from_utf8_lossy(&replay.stdout);
    assert!(
        report.contains("replayed 5 of 5 dead letter(s) from its file DLQ: 5 delivered")
            && report.contains("5 removed from the DLQ"),
        "{report}"
    );
    assert_eq!(
        read("dlq.jsonl"),
        format!("{foreign}\n"),
        "only the other line is left"
    );
    let mut amounts: Vec<u64> = read("out.jsonl")
        .lines()
        .map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).unwrap();
            line["payload"]["amount"].as_u64().unwrap()
        })
        .collect();
    amounts.sort_unstable();
    assert_eq!(
        amounts,
        (0..50).collect::<Vec<u64>>(),
        "the output kept its 45 and got the 5"
    );
}
