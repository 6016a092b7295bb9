//! The `dedupe` stage against each broker: what at-least-once leaves behind
//! (redeliveries after a SIGKILL, copies of one id in flight on two daemons)
//! comes out once.
//!
//! The one window left is a crash after a sink confirmed a message and
//! before its id was recorded: the redelivered copy then passes. The
//! scenarios count how often that happens and print it; they fail when
//! more duplicates pass than that window can explain.

use super::{
    json_messages, keys, kill_in_turn, logs, names, produce_stream, ready, settle, stop, wait_for,
    Broker, Input, Role, LONG,
};
use crate::daemon::{free_addr, plugin_literal, unique, Daemon, Names};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the dedupe stage keeps its ids in a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kept {
    /// The test command's Redis (shared by every daemon of the test).
    Redis,
    /// An embedded store in the test's directory (one daemon at a time).
    Embedded,
}

impl Kept {
    fn toml(self, dir: &Path) -> String {
        match self {
            Kept::Redis => format!(
                r#"{{ type = "redis", url = "{}" }}"#,
                crate::redis_client::redis_url()
            ),
            Kept::Embedded => {
                format!(r#"{{ type = "embedded", path = {:?} }}"#, dir.join("state"))
            }
        }
    }
}

/// The most copies of delivered messages that may pass per SIGKILL: those
/// a kill catches after a sink received them and before their ids were
/// recorded (the sink's confirm on its way, or the record). That is bounded
/// by what can be in flight at all: the pipeline's `max_in_flight` (256)
/// per worker (2). Measured on Redis streams, 3 kills: 0–84 with the Redis
/// store, 0–299 with the embedded store (its group commits widen the
/// window); without the stage, 66 in the same session.
const WINDOW_PER_KILL: usize = 2 * 256;

/// The relay pipeline with a dedupe stage `once` first: `t.input` →
/// dedupe (by `id`, on `kept`) → json-filter → `output`, DLQ `t.dlq`. The
/// stage's ids are its own (namespaced by pipeline and stage), so a test
/// on the shared Redis names its stage ([`unique`]), and daemons that must
/// see each other's ids use the same name.
pub fn dedupe_config<B: Broker>(
    broker: &B,
    dir: &Path,
    t: &Names,
    output: &str,
    role: Role,
    (kept, once, id): (Kept, &str, &str),
) -> PathBuf {
    let text = format!(
        r#"
[pipelines.relay]
concurrency = 2
source = {source}
dlq = {dlq}
sinks.out = {out}
store = {store}

[[pipelines.relay.stages]]
name = "{once}"
kind = "dedupe"
id = "{id}"
window = "1h"

[[pipelines.relay.stages]]
name = "valid"
kind = "filter"
plugin = {plugin}
params = {{ field = "amount", min = 0 }}
"#,
        source = broker.source(t, role),
        dlq = broker.sink(&t.dlq),
        out = broker.sink(output),
        store = kept.toml(dir),
        plugin = plugin_literal("json-filter"),
    );
    let path = dir.join(format!("{}.toml", unique("dedupe")));
    std::fs::write(&path, text).unwrap();
    path
}

/// How many times each key came out.
fn counted(outputs: &[String]) -> BTreeMap<&String, usize> {
    let mut seen = BTreeMap::new();
    for k in outputs {
        *seen.entry(k).or_insert(0) += 1;
    }
    seen
}

/// Inputs flow in while three daemons in turn are killed with SIGKILL
/// mid-stream, a dedupe stage (by key) first; a fourth finishes. Every
/// input comes out (none lost), and an id comes out twice only through the
/// window between a sink receiving a message and its record
/// ([`WINDOW_PER_KILL`]).
pub fn dedupe_sigkill<B: Broker>(kept: Kept) {
    let dir = tempfile::tempdir().unwrap();
    let broker = B::new(dir.path());
    let t = names(&broker, &format!("dedupe-{kept:?}").to_lowercase());
    let stage = unique("once");
    let config = dedupe_config(
        &broker,
        dir.path(),
        &t,
        &t.output,
        Role::Killed,
        (kept, &stage, "key"),
    );
    let log = dir.path().join("sluice.log");
    let crash = B::SCALE.crash;
    let kills = B::SCALE.kills;
    let total = crash.total;
    // JSON payloads only: every input comes out (none is dead-lettered).
    let seen = kill_in_turn(
        &config,
        &log,
        kills,
        || produce_stream(&broker, &t.input, crash, json_messages),
        || broker.count(&t.output),
    );
    let daemon = Daemon::start(&config, &log);
    settle(&broker, &t, &[&t.output], total, &[&daemon]);
    let text = daemon.log_text();
    stop(daemon);
    let out = keys(&broker.read(&t.output));
    let dlq = keys(&broker.read(&t.dlq));
    let got = counted(&out);
    assert_eq!(
        got.len(),
        total,
        "every input came out once at least (zero lost)"
    );
    let duplicates = out.len() - got.len();
    eprintln!(
        "{} dedupe ({kept:?} store) crash test: {total} messages, SIGKILL after {seen:?} delivered, 0 lost, {duplicates} duplicates passed (window), {} in the DLQ",
        B::NAME,
        dlq.len()
    );
    assert!(
        duplicates <= WINDOW_PER_KILL * kills.len(),
        "{duplicates} duplicates passed the dedupe stage in {} kills; log:\n{text}",
        kills.len()
    );
}

/// Every input twice, under two keys (`kI` and `kI-copy`, so the copies
/// go to different partitions, workers and daemons) with one id (header
/// `trace = tI`): two daemons sharing the input and one Redis store, both
/// consuming, let exactly one copy of each id out.
pub fn dedupe_two_daemons<B: Broker>() {
    let dir = tempfile::tempdir().unwrap();
    let broker = B::new(dir.path());
    let t = names(&broker, "dedupe-shared");
    let stage = unique("once");
    let start = |name: &'static str| {
        let http = free_addr();
        let config = dedupe_config(
            &broker,
            dir.path(),
            &t,
            &t.output,
            Role::Sharing(name),
            (Kept::Redis, &stage, "header:trace"),
        );
        let log = dir.path().join(format!("{name}.log"));
        (Daemon::start_with(&config, &log, &["--http", &http]), http)
    };
    let (a, http_a) = start("a");
    let (b, http_b) = start("b");
    assert!(
        wait_for(LONG, || ready(&http_a)
            && ready(&http_b)
            && broker.sharing(&t, &[&a, &b])),
        "both daemons consume; logs:\n{}",
        logs(&[&a, &b])
    );
    let total = B::SCALE.shared.total;
    let doubled: Vec<Input> = json_messages(0..total)
        .into_iter()
        .flat_map(|m| {
            let copy = Input {
                key: format!("{}-copy", m.key),
                ..m.clone()
            };
            [m, copy]
        })
        .collect();
    for chunk in doubled.chunks(B::SCALE.shared.batch * 2) {
        broker.produce(&t.input, chunk);
        std::thread::sleep(B::SCALE.shared.pause);
    }
    // Every id out once; the copies wait for their claims, then drop.
    assert!(
        wait_for(LONG, || broker.count(&t.output) >= total
            && broker.unacked(&t.input, &t.group) == 0),
        "not every id came out ({} of {total}), or inputs are unacknowledged ({}); logs:\n{}",
        broker.count(&t.output),
        broker.unacked(&t.input, &t.group),
        logs(&[&a, &b])
    );
    let text = logs(&[&a, &b]);
    stop(a);
    stop(b);
    let out = broker.read(&t.output);
    let traces: Vec<String> = out
        .iter()
        .filter_map(|o| o.header("trace").map(str::to_owned))
        .collect();
    let got = counted(&traces);
    let twice: Vec<_> = got
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(trace, _)| {
            let keys: Vec<&str> = out
                .iter()
                .filter(|o| o.header("trace") == Some(trace.as_str()))
                .filter_map(|o| o.key.as_deref())
                .collect();
            (trace, keys)
        })
        .collect();
    eprintln!(
        "{} dedupe, two daemons: {total} ids sent twice, {} out, {} ids twice",
        B::NAME,
        out.len(),
        twice.len()
    );
    assert_eq!(got.len(), total, "every id came out; logs:\n{text}");
    assert!(twice.is_empty(), "ids out twice: {twice:?}; logs:\n{text}");
    assert!(broker.read(&t.dlq).is_empty(), "nothing dead-lettered");
}
