//! The `dedupe` stage with no broker: `examples/dedupe.toml` over a file of
//! orders, 250 of them sent twice, on the embedded store, run twice (the
//! second run finds every id delivered), and `check` with an unreachable
//! Redis store (no connection) against `run` (exit 2). The broker scenarios
//! (SIGKILL, two daemons) are in the conformance suite.

use sluice_tests::daemon::summary;
use sluice_tests::repo;
use sluice_tests::run_sluice as sluice;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `examples/dedupe.toml` rewritten to run from `dir` (the input by
/// absolute path; outputs and the store under `dir/out`).
fn example_in(dir: &Path) -> PathBuf {
    let examples = repo().join("examples");
    let text = std::fs::read_to_string(examples.join("dedupe.toml"))
        .unwrap()
        .replace(
            "\"orders-resent.jsonl\"",
            &format!("{:?}", examples.join("orders-resent.jsonl")),
        );
    let path = dir.join("dedupe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Order ids in a JSON-lines file (orders, or the file sink's envelopes of
/// them), with how often each appears.
fn ids(path: &Path) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        let order = if doc["payload"].is_object() {
            &doc["payload"]
        } else {
            &doc
        };
        let id = order["id"].as_str().unwrap().to_owned();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

#[test]
fn the_example_lets_each_order_out_once_and_a_second_run_remembers_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_in(dir.path());
    let input = ids(&repo().join("examples/orders-resent.jsonl"));
    let sent: usize = input.values().sum();
    let repeated = sent - input.len();
    assert!(repeated > 0, "the example's input repeats orders");

    let out = sluice(&["run", config.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let once = ids(&dir.path().join("out/orders-once.jsonl"));
    assert_eq!(once.len(), input.len(), "every order out");
    assert!(
        once.values().all(|n| *n == 1),
        "each order once: {:?}",
        once.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let [received, delivered, dropped, dead, acked] = summary(&text, "orders").expect("a summary");
    assert_eq!(
        (received, delivered, dropped, dead, acked),
        (
            sent as u64,
            input.len() as u64,
            repeated as u64,
            0,
            sent as u64
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("({repeated} of the dropped were duplicates)")),
        "{text}"
    );

    // The ids are in the embedded store's file: a second run (a restart)
    // drops every order as already delivered.
    std::fs::remove_file(dir.path().join("out/orders-once.jsonl")).unwrap();
    let again = sluice(&["run", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.status.success(), "{text}");
    assert!(ids(&dir.path().join("out/orders-once.jsonl")).is_empty());
    assert_eq!(
        summary(&text, "orders"),
        Some([sent as u64, 0, sent as u64, 0, sent as u64]),
        "{text}"
    );
}

#[test]
fn an_unreachable_redis_store_is_exit_2_at_run_and_not_contacted_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let port = sluice_tests::daemon::free_port();
    let text = std::fs::read_to_string(example_in(dir.path()))
        .unwrap()
        .replace(
            r#"store = { type = "embedded", path = "out/state" }"#,
            &format!(r#"store = {{ type = "redis", url = "redis://u:hidden@127.0.0.1:{port}" }}"#),
        );
    let config = dir.path().join("redis.toml");
    std::fs::write(&config, text).unwrap();

    let check = sluice(&["check", config.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        out.contains("(dedupe)") && out.contains("id=json:/id"),
        "{out}"
    );

    let run = sluice(&["run", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    for want in [
        "pipeline `orders`",
        "stage `once`",
        &format!("127.0.0.1:{port}"),
    ] {
        assert!(err.contains(want), "`{want}` in: {err}");
    }
    assert!(!err.contains("hidden"), "the password is not shown: {err}");
    assert!(
        !dir.path().join("out/orders-once.jsonl").exists(),
        "nothing ran"
    );
}
