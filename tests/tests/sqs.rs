//! The SQS connector against an SQS emulator (moto, started by the test
//! command), driven through the `sluice` binary: every message comes out or
//! lands in the DLQ queue with key and attributes, a FIFO queue keeps the
//! order per group, an unreachable endpoint is exit 2.

use sluice_tests::daemon::{eventually, relay_config, Daemon, Names};
use sluice_tests::sqs_client::{client, count, create, drain, runtime, send, sqs_endpoint};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// queue → json-filter → queue, DLQ a queue too.
fn write_config(dir: &Path, endpoint: &str, input: &str, output: &str, dlq: &str) -> PathBuf {
    let at = format!(r#"region = "us-east-1", endpoint_url = "{endpoint}""#);
    let source = format!(r#"{{ type = "sqs", queue = "{input}", {at}, wait = "1s", visibility_timeout = "10s", connect_timeout = "3s" }}"#);
    let out = format!(r#"{{ type = "sqs", queue = "{output}", {at} }}"#);
    let dlq = format!(r#"{{ type = "sqs", queue = "{dlq}", {at} }}"#);
    relay_config(dir, &source, &out, &dlq)
}

/// Message `i`: attribute `sluice-key = k{i}`, `trace = t{i}`; every tenth
/// is not JSON.
fn message(i: usize, group: Option<&str>) -> (String, Vec<(String, String)>, Option<String>) {
    let body = if i % 10 == 7 { "not json".to_string() } else { format!(r#"{{"amount":{i}}}"#) };
    (body, vec![("sluice-key".into(), format!("k{i}")), ("trace".into(), format!("t{i}"))], group.map(String::from))
}

#[test]
fn every_message_is_delivered_or_dead_lettered_with_key_and_attributes() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("sqs-roundtrip");
    let n = Names { input: n.input.replace('.', "-"), output: n.output.replace('.', "-"), dlq: n.dlq.replace('.', "-"), group: n.group };
    let sqs = rt.block_on(client());
    let urls: Vec<String> = [&n.input, &n.output, &n.dlq].iter().map(|q| rt.block_on(create(&sqs, q))).collect();
    let total = 300;
    rt.block_on(send(&sqs, &urls[0], &(0..total).map(|i| message(i, None)).collect::<Vec<_>>()));
    let daemon = Daemon::start(&write_config(dir.path(), &sqs_endpoint(), &n.input, &n.output, &n.dlq), &dir.path().join("sluice.log"));
    let arrived = eventually(Duration::from_secs(60), || rt.block_on(async { count(&sqs, &urls[1]).await + count(&sqs, &urls[2]).await }) >= total);
    assert!(arrived, "{}", daemon.log_text());
    assert!(eventually(Duration::from_secs(30), || rt.block_on(count(&sqs, &urls[0])) == 0), "input deleted; {}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(30)).success());

    let out = rt.block_on(drain(&sqs, &urls[1]));
    let dlq = rt.block_on(drain(&sqs, &urls[2]));
    let keys = |g: &[sluice_tests::sqs_client::Got]| g.iter().filter_map(|m| m.attribute("sluice-key")).collect::<BTreeSet<_>>();
    let want_out: BTreeSet<String> = (0..total).filter(|i| i % 10 != 7).map(|i| format!("k{i}")).collect();
    let want_dlq: BTreeSet<String> = (0..total).filter(|i| i % 10 == 7).map(|i| format!("k{i}")).collect();
    assert_eq!(keys(&out), want_out);
    assert_eq!(out.len(), want_out.len(), "no duplicates without failures");
    assert_eq!(keys(&dlq), want_dlq);
    for m in &out {
        let i: usize = m.attribute("sluice-key").unwrap()[1..].parse().unwrap();
        assert_eq!(m.attribute("trace"), Some(format!("t{i}")));
        assert_eq!(m.body, format!(r#"{{"amount":{i}}}"#));
    }
    for m in &dlq {
        assert_eq!(m.attribute("sluice-error-source-queue").as_deref(), Some(n.input.as_str()), "{m:?}");
        assert!(m.attribute("sluice-error-source-message-id").is_some(), "{m:?}");
        assert_eq!(m.attribute("sluice-error-class").as_deref(), Some("fatal"));
        assert_eq!(m.body, "not json");
    }
}

#[test]
fn a_fifo_queue_keeps_the_order_of_each_group() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("sqs-fifo");
    let (input, output, dlq) = (format!("{}.fifo", n.input.replace('.', "-")), format!("{}.fifo", n.output.replace('.', "-")), format!("{}.fifo", n.dlq.replace('.', "-")));
    let sqs = rt.block_on(client());
    let urls: Vec<String> = [&input, &output, &dlq].iter().map(|q| rt.block_on(create(&sqs, q))).collect();
    let groups = ["g1", "g2", "g3"];
    let total = 300;
    let messages: Vec<_> = (0..total).map(|i| (format!(r#"{{"amount":{i}}}"#), vec![("sluice-key".to_string(), format!("k{i}"))], Some(groups[i % 3].to_string()))).collect();
    rt.block_on(send(&sqs, &urls[0], &messages));
    let config = write_config(dir.path(), &sqs_endpoint(), &input, &output, &dlq);
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    assert!(eventually(Duration::from_secs(60), || rt.block_on(count(&sqs, &urls[1])) >= total), "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let out = rt.block_on(drain(&sqs, &urls[1]));
    assert_eq!(out.len(), total);
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for m in &out {
        let group = m.group.clone().expect("the group id is carried to the output");
        let i: usize = m.attribute("sluice-key").unwrap()[1..].parse().unwrap();
        assert_eq!(group, groups[i % 3], "message {i} stays in its group");
        if let Some(prev) = last.insert(group.clone(), i) {
            assert!(prev < i, "group {group} out of order: {prev} then {i}");
        }
    }
}

#[test]
fn an_unreachable_endpoint_at_start_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    sluice_tests::sqs_client::emulator_credentials();
    let config = write_config(dir.path(), "http://127.0.0.1:1", "in", "out", "dlq");
    let status = Daemon::start(&config, &dir.path().join("sluice.log")).wait(Duration::from_secs(60));
    let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("http://127.0.0.1:1"), "the message names the endpoint: {log}");
}
