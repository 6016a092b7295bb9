//! OpenTelemetry traces against a real OTLP/HTTP receiver (built on the
//! official protobuf definitions) and a real Redis: two pipelines in one
//! daemon, the first writing to a Redis stream the second reads. Each
//! message is one trace: its span in the first pipeline with a child per
//! stage, and, across the Redis hop, its span in the second pipeline under
//! the first (the same trace id, carried by the `traceparent` field).

use sluice_tests::daemon::{eventually, plugin_literal, Daemon, Names};
use sluice_tests::otlp::{Receiver, Span};
use sluice_tests::redis_client::{connection, redis_url};
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn one_trace_per_message_with_a_span_per_stage_across_a_redis_hop() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let (url, n) = (redis_url(), Names::new("traces"));
    const MESSAGES: usize = 5;
    let lines: String = (0..MESSAGES)
        .map(|i| format!("{{\"id\":{i},\"amount\":{i}}}\n"))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
    let config = format!(
        r#"
[pipelines.first]
batch = 1
source = {{ type = "file", path = "in.jsonl" }}
dlq = {{ type = "file", path = "dlq-first.jsonl" }}
sinks.hop = {{ type = "redis-stream", url = "{url}", stream = "{hop}" }}

[[pipelines.first.stages]]
name = "valid"
kind = "filter"
plugin = {filter}

[[pipelines.first.stages]]
name = "mark"
kind = "transform"
plugin = {identity}

[pipelines.second]
batch = 1
source = {{ type = "redis-stream", url = "{url}", stream = "{hop}", group = "{group}", block = "100ms" }}
dlq = {{ type = "file", path = "dlq-second.jsonl" }}
sinks.out = {{ type = "file", path = "out.jsonl", format = "lines" }}

[[pipelines.second.stages]]
name = "again"
kind = "filter"
plugin = {filter}
"#,
        hop = n.input,
        group = n.group,
        filter = plugin_literal("json-filter"),
        identity = plugin_literal("identity"),
    );
    let path = dir.path().join("p.toml");
    std::fs::write(&path, config).unwrap();
    let endpoint = receiver.endpoint();
    let daemon = Daemon::start_with(
        &path,
        &dir.path().join("sluice.log"),
        &["--otlp-endpoint", &endpoint],
    );
    let out = dir.path().join("out.jsonl");
    assert!(
        eventually(Duration::from_secs(60), || std::fs::read_to_string(&out)
            .is_ok_and(|t| t.lines().count() == MESSAGES)),
        "{}",
        daemon.log_text()
    );
    // The batch processor exports every few seconds; the stop exports the rest.
    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let spans = receiver.spans();
    let _: Result<(), _> = redis::cmd("DEL").arg(&n.input).query(&mut connection(&url));

    let messages = |pipeline: &str| -> Vec<&Span> {
        spans
            .iter()
            .filter(|s| s.name == "sluice.message" && s.attributes["sluice.pipeline"] == pipeline)
            .collect()
    };
    let (first, second) = (messages("first"), messages("second"));
    assert_eq!(
        first.len(),
        MESSAGES,
        "one message span per message: {spans:#?}"
    );
    assert_eq!(second.len(), MESSAGES, "{spans:#?}");
    assert!(spans.iter().all(|s| s.service == "sluice"));

    // One trace per message.
    let traces: BTreeMap<&str, &Span> = first.iter().map(|s| (s.trace_id.as_str(), *s)).collect();
    assert_eq!(traces.len(), MESSAGES, "a trace each");
    for m in &first {
        assert!(
            m.parent_span_id.is_empty(),
            "a new trace starts at the file source"
        );
        assert_eq!(m.attributes["sluice.outcome"], "delivered");
        assert!(m.attributes.contains_key("sluice.at.line"), "{m:?}");
        // A child span per stage, each under this message's span.
        let mut stages: Vec<&str> = spans
            .iter()
            .filter(|s| s.name == "sluice.stage" && s.parent_span_id == m.span_id)
            .map(|s| s.attributes["sluice.stage"].as_str())
            .collect();
        stages.sort();
        assert_eq!(stages, ["mark", "valid"], "{m:?}");
    }
    // Across the Redis hop: the same trace, under the first pipeline's span.
    for m in &second {
        let parent = traces
            .get(m.trace_id.as_str())
            .unwrap_or_else(|| panic!("the second pipeline's span is in no first trace: {m:?}"));
        assert_eq!(m.parent_span_id, parent.span_id, "{m:?}");
        assert!(
            m.attributes["sluice.at.id"].contains('-'),
            "a stream id: {m:?}"
        );
        let again = spans
            .iter()
            .filter(|s| s.name == "sluice.stage" && s.parent_span_id == m.span_id)
            .count();
        assert_eq!(again, 1, "its one stage");
    }
    let stage = spans.iter().find(|s| s.name == "sluice.stage").unwrap();
    assert_eq!(
        stage.attributes["sluice.plugin.sha256"].len(),
        64,
        "{stage:?}"
    );
}
