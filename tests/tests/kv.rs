//! Plugin state (capability `kv`, `sluice:plugin@0.2.0`) with no broker:
//! the `kv-tally` plugin over a file, on the embedded store and on Redis.
//! It counts each key's messages in its stage's store, so the counts it
//! writes show what the store kept: across an instance replaced after a
//! trap, across a restart of the daemon, and apart per stage. A stage that
//! does not grant `kv` refuses the plugin (`check` exits 1 naming the
//! import and the key), and the per-message operation cap dead-letters a
//! message that goes past it while the rest go on.

use sluice_tests::daemon::{plugin_literal, summary, unique};
use sluice_tests::redis_client;
use sluice_tests::{output_text as text, run_sluice as sluice};
use std::path::{Path, PathBuf};

/// A file → kv-tally (one stage per name of `stages`) → file pipeline
/// named `pipeline` in `dir`, on `store`; `stage_extra` is added to each
/// stage (its capabilities, limits, params).
fn config(dir: &Path, pipeline: &str, store: &str, stages: &[&str], stage_extra: &str) -> PathBuf {
    let mut text = format!(
        r#"
[pipelines.{pipeline}]
source = {{ type = "file", path = "in.jsonl", format = "json", key_field = "customer" }}
dlq = {{ type = "file", path = "out/dlq.jsonl" }}
sinks.out = {{ type = "file", path = "out/out.jsonl" }}
store = {store}
# One message per call: a batch that faults is redone one message at a
# time, and the increments made before the fault would be made again.
batch = 1
concurrency = 1
"#
    );
    for name in stages {
        text.push_str(&format!(
            "\n[[pipelines.{pipeline}.stages]]\nname = \"{name}\"\nkind = \"transform\"\nplugin = {}\n{stage_extra}\n",
            plugin_literal("kv-tally")
        ));
    }
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn input(dir: &Path, customers: &[&str]) {
    let lines: Vec<String> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let note = if c.ends_with("!trap") { "trap" } else { "ok" };
            let c = c.trim_end_matches("!trap");
            format!(r#"{{"customer":"{c}","n":{i},"note":"{note}"}}"#)
        })
        .collect();
    std::fs::write(dir.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
}

/// `(id, seen, first)` of each output, in order.
fn tallies(dir: &Path) -> Vec<(String, i64, String)> {
    std::fs::read_to_string(dir.join("out/out.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let doc: serde_json::Value = serde_json::from_str(line).unwrap();
            let out = &doc["payload"];
            (
                out["id"].as_str().unwrap().to_owned(),
                out["seen"].as_i64().unwrap(),
                out["first"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn run(config: &Path) -> String {
    let out = sluice(&["run", config.to_str().unwrap()]);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn a_stage_without_the_grant_refuses_the_plugin_naming_the_import_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), &["a"]);
    let config = config(
        dir.path(),
        "tally",
        r#"{ type = "embedded", path = "state" }"#,
        &["count"],
        "",
    );
    for command in ["check", "run"] {
        let out = sluice(&[command, config.to_str().unwrap()]);
        let text = text(&out);
        assert_eq!(out.status.code(), Some(1), "{command}: {text}");
        for needed in [
            "pipelines.tally.stages[0]",
            "sluice:plugin/kv@0.2.0",
            "capabilities = [\"kv\"]",
        ] {
            assert!(text.contains(needed), "{command}: {needed} in {text}");
        }
    }
    assert!(!dir.path().join("out/out.jsonl").exists(), "nothing ran");
}

#[test]
fn an_unknown_capability_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), &["a"]);
    let config = config(
        dir.path(),
        "tally",
        r#"{ type = "embedded", path = "state" }"#,
        &["count"],
        r#"capabilities = ["kv", "sockets"]"#,
    );
    let out = sluice(&["check", config.to_str().unwrap()]);
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("pipelines.tally.stages[0].capabilities")
            && text.contains("unknown capability `sockets`")
            && text.contains("\"kv\""),
        "{text}"
    );
}

#[test]
fn state_survives_a_replaced_instance_and_a_restart_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "tally",
        r#"{ type = "embedded", path = "state" }"#,
        &["count"],
        r#"capabilities = ["kv"]"#,
    );
    input(dir.path(), &["a", "b", "a", "a!trap", "a"]);
    let log = run(&config);
    let got = tallies(dir.path());
    let first_a = r#"{"customer":"a","n":0,"note":"ok"}"#;
    assert_eq!(
        got,
        vec![
            ("a".to_owned(), 1, first_a.to_owned()),
            (
                "b".to_owned(),
                1,
                r#"{"customer":"b","n":1,"note":"ok"}"#.to_owned()
            ),
            ("a".to_owned(), 2, first_a.to_owned()),
            // The trap counted the fourth before it failed; the instance
            // that replaced the trapped one reads the store, not memory.
            ("a".to_owned(), 4, first_a.to_owned()),
        ],
        "{log}"
    );
    let dlq = std::fs::read_to_string(dir.path().join("out/dlq.jsonl")).unwrap();
    assert_eq!(dlq.lines().count(), 1, "{dlq}");
    assert!(dlq.contains(r#""sluice-error-class":"trap""#), "{dlq}");
    assert!(
        log.contains("trap requested (seen:a = 3)"),
        "the plugin's panic, in the log: {log}"
    );
    assert_eq!(summary(&log, "tally"), Some([5, 4, 0, 1, 5]), "{log}");

    // A new daemon on the same store goes on counting.
    input(dir.path(), &["a", "c"]);
    let log = run(&config);
    assert_eq!(
        tallies(dir.path()),
        vec![
            ("a".to_owned(), 5, first_a.to_owned()),
            (
                "c".to_owned(),
                1,
                r#"{"customer":"c","n":1,"note":"ok"}"#.to_owned()
            ),
        ],
        "{log}"
    );
}

#[test]
fn past_its_operation_cap_a_message_is_dead_lettered_and_the_rest_go_on() {
    let dir = tempfile::tempdir().unwrap();
    // Four operations a message (increment, compare-and-set, get, one
    // extra get) fit a cap of 4; ten extra gets do not.
    let config = config(
        dir.path(),
        "tally",
        r#"{ type = "embedded", path = "state" }"#,
        &["count"],
        "capabilities = [\"kv\"]\nkv_ops = 4\nparams = { extra_gets = 1 }",
    );
    input(dir.path(), &["a", "b"]);
    let log = run(&config);
    assert_eq!(tallies(dir.path()).len(), 2, "{log}");

    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("extra_gets = 1", "extra_gets = 10");
    std::fs::write(&config, text).unwrap();
    input(dir.path(), &["a", "b", "c"]);
    let log = run(&config);
    assert!(tallies(dir.path()).is_empty(), "{log}");
    let dlq = std::fs::read_to_string(dir.path().join("out/dlq.jsonl")).unwrap();
    assert_eq!(dlq.lines().count(), 3, "{dlq}");
    assert!(
        dlq.contains("kv_ops") && dlq.contains("4 per message"),
        "{dlq}"
    );
    assert_eq!(summary(&log, "tally"), Some([3, 0, 0, 3, 3]), "{log}");
}

#[test]
fn on_redis_stages_keep_apart_and_state_is_in_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = unique("tally").replace('-', "_");
    let url = redis_client::redis_url();
    let config = config(
        dir.path(),
        &pipeline,
        &format!(r#"{{ type = "redis", url = "{url}" }}"#),
        &["count", "recount"],
        r#"capabilities = ["kv"]"#,
    );
    input(dir.path(), &["a", "a", "b"]);
    let log = run(&config);
    // The second stage counts in its own namespace: the same counts, not
    // the first stage's plus its own.
    let seen: Vec<(String, i64)> = tallies(dir.path())
        .into_iter()
        .map(|(id, seen, _)| (id, seen))
        .collect();
    assert_eq!(
        seen,
        vec![("a".into(), 1), ("a".into(), 2), ("b".into(), 1)],
        "{log}"
    );
    let mut conn = redis_client::connection(&url);
    let mut stored = |stage: &str, key: &str| -> Option<String> {
        redis::cmd("GET")
            .arg(format!("sluice:kv:{pipeline}/{stage}:{key}"))
            .query(&mut conn)
            .unwrap()
    };
    assert_eq!(stored("count", "seen:a").as_deref(), Some("2"));
    assert_eq!(stored("recount", "seen:a").as_deref(), Some("2"));
    assert_eq!(stored("count", "seen:b").as_deref(), Some("1"));

    // A second daemon (here: a second run) shares the server's state.
    input(dir.path(), &["b"]);
    run(&config);
    assert_eq!(tallies(dir.path())[0].1, 2);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("sluice:kv:{pipeline}/*"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        keys.len(),
        8,
        "seen and first of a and b, per stage: {keys:?}"
    );
    let _: () = redis::cmd("DEL").arg(&keys).query(&mut conn).unwrap();
}
