//! The shared scenarios, each a function generic over the broker; the
//! [`conformance!`](crate::conformance!) macro makes them `#[test]`s.

use super::*;
use crate::daemon::{eventually, example_in, free_addr, summary, unique, Daemon};
use std::collections::BTreeSet;
use std::time::Duration;

/// Wait until every input of `t` is acknowledged and `outputs` plus the DLQ
/// hold at least `want` messages: then each input was delivered or
/// dead-lettered (a queue's ready count misses deliveries still held, which
/// the graceful stop that follows finishes).
pub(super) fn settle<B: Broker>(
    broker: &B,
    t: &Names,
    outputs: &[&str],
    want: usize,
    daemons: &[&Daemon],
) {
    let done = wait_for(LONG, || {
        broker.unacked(&t.input, &t.group) == 0
            && outputs
                .iter()
                .chain([&t.dlq.as_str()])
                .map(|o| broker.count(o))
                .sum::<usize>()
                >= want
    });
    assert!(
        done,
        "{want} inputs not all done within {LONG:?} ({} unacked); logs:\n{}",
        broker.unacked(&t.input, &t.group),
        logs(daemons)
    );
}

/// SIGTERM, and the daemon exits 0 after its drain.
pub(super) fn stop(daemon: Daemon) {
    let log = daemon.log.clone();
    let status = daemon.terminate(LONG);
    assert!(
        status.success(),
        "SIGTERM ends with exit 0, got {status:?}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// 1000 inputs (fewer on a slow broker), every tenth malformed, produced
/// before the daemon starts: each well-formed one comes out once with its
/// key, header and payload; each malformed one is dead-lettered once with
/// its key, header and payload, the reason (pipeline, stage, class `fatal`,
/// text) and where it came from; every input is acknowledged; SIGTERM exits 0.
pub fn round_trip<B: Broker>() {
    let dir = tempfile::tempdir().unwrap();
    let broker = B::new(dir.path());
    let t = names(&broker, "roundtrip");
    let total = B::SCALE.round_trip;
    broker.produce(&t.input, &messages(0..total));
    let undecodable = broker.produce_undecodable(&t.input, "undecodable");
    let config = config(&broker, dir.path(), &t, &t.output, Role::Alone);
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    let inputs = total + usize::from(undecodable.is_some());
    settle(&broker, &t, &[&t.output], inputs, &[&daemon]);
    stop(daemon);
    assert_eq!(
        broker.unacked(&t.input, &t.group),
        0,
        "every input was acknowledged"
    );

    // `sluice dlq` reads the DLQ back (without consuming it) and groups it.
    let shown = crate::daemon::dlq_show(&config);
    let shown_keys: BTreeSet<String> = shown
        .iter()
        .map(|d| d["message"]["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    for d in &shown {
        let class = d["error"]["class"].as_str().unwrap_or_default();
        assert!(["fatal", "decode"].contains(&class), "{d}");
        assert_eq!(d["pipeline"], "relay", "{d}");
    }
    let (status, stats, stderr) =
        crate::daemon::sluice_dlq(&["stats", &config.display().to_string()]);
    assert!(status.success(), "{stderr}");
    let fatal = (0..total).filter(|i| malformed(*i)).count();
    assert!(
        stats.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3
                && cols[0] == fatal.to_string()
                && cols[1] == "fatal"
                && cols[2] == "valid"
        }),
        "stats counts the {fatal} fatal ones of stage valid:\n{stats}"
    );

    let out = broker.read(&t.output);
    let dlq = broker.read(&t.dlq);
    assert_eq!(shown.len(), dlq.len(), "dlq show saw every dead letter");
    let want_out: BTreeSet<String> = (0..total)
        .filter(|i| !malformed(*i))
        .map(|i| format!("k{i}"))
        .collect();
    let mut want_dlq: BTreeSet<String> = (0..total)
        .filter(|i| malformed(*i))
        .map(|i| format!("k{i}"))
        .collect();
    if undecodable.is_some() {
        want_dlq.insert("undecodable".into());
    }
    assert_eq!(keys(&out).into_iter().collect::<BTreeSet<_>>(), want_out);
    assert_eq!(out.len(), want_out.len(), "no duplicates without failures");
    assert_eq!(keys(&dlq).into_iter().collect::<BTreeSet<_>>(), want_dlq);
    assert_eq!(shown_keys, want_dlq, "dlq show names the same dead letters");
    assert_eq!(dlq.len(), want_dlq.len(), "each dead-lettered once");
    for o in &out {
        let i: usize = o.key.as_deref().unwrap()[1..].parse().unwrap();
        assert_eq!(o.header("trace"), Some(format!("t{i}").as_str()), "{o:?}");
        assert_eq!(o.payload, message(i).payload, "{o:?}");
    }
    let coordinates = broker.coordinates(&t);
    for d in &dlq {
        let key = d.key.as_deref().unwrap();
        for (name, value) in coordinates(key) {
            match value {
                Some(v) => assert_eq!(d.header(name), Some(v.as_str()), "{name}: {d:?}"),
                None => assert!(d.header(name).is_some(), "{name}: {d:?}"),
            }
        }
        assert_eq!(d.header("sluice-error-pipeline"), Some("relay"), "{d:?}");
        let text = d.header("sluice-error-text").unwrap_or_default();
        if key == "undecodable" {
            assert_eq!(d.header("sluice-error-class"), Some("decode"), "{d:?}");
            let want = undecodable.unwrap();
            assert!(text.contains(want), "the text says `{want}`: {d:?}");
            continue;
        }
        let i: usize = key[1..].parse().unwrap();
        assert_eq!(d.header("sluice-error-class"), Some("fatal"), "{d:?}");
        assert_eq!(d.header("sluice-error-stage"), Some("valid"), "{d:?}");
        assert!(!text.is_empty(), "the DLQ says why: {d:?}");
        assert_eq!(d.payload, b"not json", "the original payload is kept");
        assert_eq!(
            d.header("trace"),
            Some(format!("t{i}").as_str()),
            "the original headers are kept: {d:?}"
        );
    }
}

/// `round_trip` inputs of 50 keys; the flaky plugin fails the first message
/// of key `k7` (amount 7) twice (retryable), with a 10 s first backoff:
/// while it is parked (30 s in all) the later messages of `k7` wait behind
/// it and every other key's messages are delivered; then `k7`'s, each once
/// and (where the broker keeps order) in order.
pub fn parking<B: Broker>() {
    let dir = tempfile::tempdir().unwrap();
    let broker = B::new(dir.path());
    let t = names(&broker, "parking");
    let total = B::SCALE.round_trip;
    let inputs = keyed_inputs(total, 50);
    let failing = inputs.iter().filter(|m| m.key == "k7").count();
    broker.produce(&t.input, &inputs);
    let config = flaky_pipeline(
        &dir.path().join("parking.toml"),
        &broker,
        &t,
        r#"{ attempts = 3, initial = "10s", jitter = 0 }"#,
        r#"{ fail_attempts = 2, fail_matching = '"amount":7,' }"#,
    );
    let started = std::time::Instant::now();
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    let others = total - failing;
    assert!(
        wait_for(LONG, || broker.count(&t.output) >= others),
        "the other keys were not delivered; log:\n{}",
        daemon.log_text()
    );
    let others_took = started.elapsed();
    // k7's first message passes on its third call, 10 s + 20 s after the
    // first: well after the others, unless they were slower than that.
    if others_took < Duration::from_secs(25) {
        assert_eq!(
            broker.count(&t.output),
            others,
            "only the other keys are out after {others_took:?}"
        );
    }
    settle(&broker, &t, &[&t.output], total, &[&daemon]);
    stop(daemon);
    let out = broker.read(&t.output);
    assert!(broker.read(&t.dlq).is_empty(), "nothing dead-lettered");
    let amount = |o: &Output| amount_of(&o.payload).expect("an amount") as usize;
    let mut all: Vec<usize> = out.iter().map(amount).collect();
    all.sort_unstable();
    let duplicates = all.len() - {
        all.dedup();
        all.len()
    };
    assert_eq!(all, (0..total).collect::<Vec<_>>(), "each delivered");
    // No crash, so no duplicate: a message held past a broker's redelivery
    // or claim timeout (parked here for 30 s) is not handed out again.
    assert_eq!(duplicates, 0, "duplicates with no crash");
    if B::KEEPS_ORDER {
        for k in 0..50 {
            let of_key: Vec<usize> = out
                .iter()
                .filter(|o| o.key.as_deref() == Some(format!("k{k}").as_str()))
                .map(amount)
                .collect();
            let mut sorted = of_key.clone();
            sorted.sort_unstable();
            assert_eq!(of_key, sorted, "key k{k} kept its order");
        }
    }
}

/// The `amount` of a JSON payload made by [`keyed_inputs`].
fn amount_of(payload: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(payload).ok()?["amount"].as_u64()
}

/// `total` JSON inputs `{"amount":i,"key":"kN"}` of `keys` keys (key
/// `k{i % keys}`), each with a header `trace`.
pub fn keyed_inputs(total: usize, keys: usize) -> Vec<Input> {
    (0..total)
        .map(|i| Input {
            key: format!("k{}", i % keys),
            payload: format!(r#"{{"amount":{i},"key":"k{}"}}"#, i % keys).into_bytes(),
            headers: vec![("trace".into(), format!("t{i}"))],
        })
        .collect()
}

/// Write a relay pipeline at `path`: the broker's source (as for
/// [`Role::Alone`]), its output and DLQ, `retry` as the pipeline's policy,
/// and one stage `flaky` (the test plugin) with `params`.
pub fn flaky_pipeline<B: Broker>(
    path: &Path,
    broker: &B,
    t: &Names,
    retry: &str,
    params: &str,
) -> PathBuf {
    flaky_pipeline_as(path, broker, t, Role::Alone, retry, params)
}

/// [`flaky_pipeline`] with the source as for `role`.
pub fn flaky_pipeline_as<B: Broker>(
    path: &Path,
    broker: &B,
    t: &Names,
    role: Role,
    retry: &str,
    params: &str,
) -> PathBuf {
    std::fs::write(
        path,
        format!(
            r#"
[pipelines.relay]
concurrency = 2
source = {source}
dlq = {dlq}
sinks.out = {out}
retry = {retry}

[[pipelines.relay.stages]]
name = "flaky"
kind = "filter"
plugin = {plugin}
params = {params}
"#,
            source = broker.source(t, role),
            dlq = broker.sink(&t.dlq),
            out = broker.sink(&t.output),
            plugin = crate::daemon::plugin_literal("flaky"),
        ),
    )
    .unwrap();
    path.to_path_buf()
}

/// `sluice dlq replay` with `args` on `config`: exit 0; its report.
fn replay(config: &Path, args: &[&str]) -> String {
    let config = config.display().to_string();
    let mut all = vec!["replay", config.as_str()];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = crate::daemon::sluice_dlq(&all);
    assert!(status.success(), "dlq replay failed: {stdout}{stderr}");
    stdout
}

/// The `amount`s of the dead letters `sluice dlq show` sees, sorted, and
/// the replay count each carries.
fn dead_amounts(config: &Path) -> Vec<(u64, Option<String>)> {
    let mut dead: Vec<(u64, Option<String>)> = crate::daemon::dlq_show(config)
        .iter()
        .map(|d| {
            // A JSON payload is shown as JSON, another as a string.
            let doc = match &d["message"]["payload"] {
                serde_json::Value::String(text) => serde_json::from_str(text).unwrap_or_default(),
                json => json.clone(),
            };
            let replays = d["message"]["headers"]["sluice-replay-count"]
                .as_str()
                .map(str::to_string);
            (doc["amount"].as_u64().unwrap_or(u64::MAX), replays)
        })
        .collect();
    dead.sort();
    dead
}

/// 100 inputs, key k7's ten fail (retryable, one attempt allowed) and are
/// dead-lettered. `sluice dlq replay` with the plugin still failing puts
/// them back in the DLQ each time, `sluice-replay-count` 1, 2, 3; the
/// fourth replay stops at the guard and says so. With the plugin fixed
/// (its params changed), a replay delivers all ten and the DLQ holds none.
pub fn dlq_replay<B: Broker>() {
    let dir = tempfile::tempdir().unwrap();
    let broker = B::new(dir.path());
    let t = names(&broker, "replay");
    let total = 100;
    let inputs = keyed_inputs(total, 10);
    broker.produce(&t.input, &inputs);
    let retry = "{ attempts = 1 }";
    let failing = flaky_pipeline(
        &dir.path().join("failing.toml"),
        &broker,
        &t,
        retry,
        r#"{ fail_attempts = 100, fail_matching = '"key":"k7"' }"#,
    );
    let fixed = flaky_pipeline(
        &dir.path().join("fixed.toml"),
        &broker,
        &t,
        retry,
        r#"{ fail_attempts = 0 }"#,
    );
    let daemon = Daemon::start(&failing, &dir.path().join("sluice.log"));
    settle(&broker, &t, &[&t.output], total, &[&daemon]);
    stop(daemon);
    let k7: Vec<u64> = (0..total as u64).filter(|i| i % 10 == 7).collect();
    let dead = |replays: Option<&str>| -> Vec<(u64, Option<String>)> {
        k7.iter()
            .map(|a| (*a, replays.map(str::to_string)))
            .collect()
    };
    assert_eq!(dead_amounts(&failing), dead(None), "k7's ten dead-lettered");
    for round in 1..=3 {
        let report = replay(&failing, &[]);
        assert!(
            report.contains("replayed 10 of 10") && report.contains("10 dead-lettered again"),
            "round {round}: {report}"
        );
        let replays = round.to_string();
        assert_eq!(
            dead_amounts(&failing),
            dead(Some(&replays)),
            "round {round}: back in the DLQ, counted"
        );
    }
    let report = replay(&failing, &[]);
    assert!(
        report.contains("replayed 0 of 0")
            && report.contains("10 dead letter(s) stay in the DLQ: replayed 3 time(s) already"),
        "the guard stops the fourth replay: {report}"
    );
    assert_eq!(
        dead_amounts(&failing),
        dead(Some("3")),
        "the guard keeps them"
    );
    let dry = replay(&fixed, &["--max-replays", "4", "--dry-run"]);
    assert!(dry.contains("would replay 10 dead letter(s)"), "{dry}");
    assert_eq!(
        dead_amounts(&failing),
        dead(Some("3")),
        "a dry run changes nothing"
    );
    let report = replay(&fixed, &["--max-replays", "4", "--filter", "stage=flaky"]);
    assert!(
        report.contains("replayed 10 of 10") && report.contains("10 delivered"),
        "{report}"
    );
    assert!(
        dead_amounts(&fixed).is_empty(),
        "the DLQ holds none of them"
    );
    let out = broker.read(&t.output);
    let mut amounts: Vec<u64> = out
        .iter()
        .map(|o| amount_of(&o.payload).expect("an amount"))
        .collect();
    amounts.sort_unstable();
    assert_eq!(
        amounts,
        (0..total as u64).collect::<Vec<_>>(),
        "each delivered once"
    );
    for o in out.iter().filter(|o| o.key.as_deref() == Some("k7")) {
        assert!(
            o.headers
                .iter()
                .any(|(n, v)| n == "sluice-replay-count" && v == "4"),
            "a replayed message says so: {:?}",
            o.headers
        );
        assert!(
            o.headers.iter().any(|(n, _)| n == "trace"),
            "{:?}",
            o.headers
        );
    }
}

/// Retries through the broker (`retry.republish`) cut by a SIGKILL: 200
/// inputs of 20 keys, key k7's ten fail twice (retryable) and pass on the
/// third attempt. The daemon is killed once the other keys are out, while
/// k7's retries wait in the broker; a second daemon finishes. Every input
/// is delivered, none lost, none dead-lettered; duplicates are counted.
pub fn sigkill_during_retries<B: Broker>() {
    let dir = tempfile::tempdir().unwrap();
    let broker = B::new(dir.path());
    let t = names(&broker, "retrykill");
    let total = 200;
    let inputs = keyed_inputs(total, 20);
    broker.produce(&t.input, &inputs);
    let config = flaky_pipeline_as(
        &dir.path().join("retrykill.toml"),
        &broker,
        &t,
        Role::Killed,
        r#"{ attempts = 3, initial = "3s", factor = 1, jitter = 0, republish = true }"#,
        r#"{ fail_attempts = 2, fail_matching = '"key":"k7"' }"#,
    );
    let log = dir.path().join("sluice.log");
    let started = std::time::Instant::now();
    let daemon = Daemon::start(&config, &log);
    let others = total - total / 20;
    assert!(
        wait_for(LONG, || broker.count(&t.output) >= others),
        "the other keys were not delivered; log:
{}",
        daemon.log_text()
    );
    let killed_after = started.elapsed();
    let out_at_kill = broker.count(&t.output);
    daemon.kill9();
    let daemon = Daemon::start(&config, &log);
    // Counted, not read: reading a queue consumes it.
    assert!(
        wait_for(LONG, || broker.count(&t.output) >= total),
        "not every input came out after the kill ({} of {total}); log:\n{}",
        broker.count(&t.output),
        daemon.log_text()
    );
    settle(&broker, &t, &[&t.output], total, &[&daemon]);
    stop(daemon);
    let out = broker.read(&t.output);
    let amounts: BTreeSet<u64> = out.iter().filter_map(|o| amount_of(&o.payload)).collect();
    assert_eq!(amounts, (0..total as u64).collect(), "zero lost");
    assert!(broker.read(&t.dlq).is_empty(), "nothing dead-lettered");
    eprintln!(
        "{} SIGKILL during retries: killed after {killed_after:?} with {out_at_kill} of {total} out, 0 lost, {} duplicates",
        B::NAME,
        out.len() - total
    );
}

/// Daemons on `config` started one after another while `produce` runs,
/// each killed with SIGKILL once `done()` reaches its threshold of `kills`;
/// returns what `done()` was at each kill.
pub(super) fn kill_in_turn(
    config: &Path,
    log: &Path,
    kills: [usize; 3],
    produce: impl FnOnce() + Send,
    done: impl Fn() -> usize,
) -> Vec<usize> {
    std::thread::scope(|s| {
        let producer = s.spawn(produce);
        let mut seen = Vec::new();
        for threshold in kills {
            let daemon = Daemon::start(config, log);
            assert!(
                wait_for(LONG, || done() >= threshold),
                "never reached {threshold}; log:\n{}",
                daemon.log_text()
            );
            seen.push(done());
            daemon.kill9();
        }
        producer.join().unwrap();
        seen
    })
}

/// Inputs flow in while three daemons in turn are killed with SIGKILL
/// mid-stream; a fourth finishes. Every input is delivered or
/// dead-lettered, none lost; duplicates are counted.
pub fn sigkill_mid_stream<B: Broker>() {
    let dir = tempfile::tempdir().unwrap();
    let broker = B::new(dir.path());
    let t = names(&broker, "crash");
    let config = config(&broker, dir.path(), &t, &t.output, Role::Killed);
    let log = dir.path().join("sluice.log");
    let Scale { crash, kills, .. } = B::SCALE;
    let total = crash.total;
    let delivered = || broker.count(&t.output) + broker.count(&t.dlq);
    let seen = kill_in_turn(
        &config,
        &log,
        kills,
        || produce_stream(&broker, &t.input, crash, messages),
        delivered,
    );
    assert!(
        seen.iter().all(|k| *k < total),
        "each kill happened mid-stream: {seen:?} of {total}"
    );

    let daemon = Daemon::start(&config, &log);
    settle(&broker, &t, &[&t.output], total, &[&daemon]);
    stop(daemon);
    let mut all = keys(&broker.read(&t.output));
    all.extend(keys(&broker.read(&t.dlq)));
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), total, "zero lost");
    eprintln!(
        "{} crash test: {total} messages, SIGKILL after {seen:?} delivered, 0 lost, {} duplicates",
        B::NAME,
        all.len() - total
    );
}

/// Two daemons on one input, each with an output of its own, both
/// consuming before the inputs come: both do work, and together they
/// deliver or dead-letter every input (once each, or within what the broker
/// allows).
pub fn two_daemons<B: Broker>() {
    let dir = tempfile::tempdir().unwrap();
    let broker = B::new(dir.path());
    let t = names(&broker, "shared");
    let (out_a, out_b) = (
        B::legal(format!("{}.a", t.output)),
        B::legal(format!("{}.b", t.output)),
    );
    broker.create(&[&out_a, &out_b]);
    let start = |name: &'static str, output: &str| {
        let http = free_addr();
        let config = config(&broker, dir.path(), &t, output, Role::Sharing(name));
        let log = dir.path().join(format!("{name}.log"));
        (Daemon::start_with(&config, &log, &["--http", &http]), http)
    };
    let (a, http_a) = start("a", &out_a);
    let (b, http_b) = start("b", &out_b);
    assert!(
        wait_for(LONG, || ready(&http_a)
            && ready(&http_b)
            && broker.sharing(&t, &[&a, &b])),
        "both daemons consume; logs:\n{}",
        logs(&[&a, &b])
    );
    let total = B::SCALE.shared.total;
    produce_stream(&broker, &t.input, B::SCALE.shared, messages);
    settle(&broker, &t, &[&out_a, &out_b], total, &[&a, &b]);
    let logs = logs(&[&a, &b]);
    stop(a);
    stop(b);
    let (got_a, got_b, dlq) = (
        keys(&broker.read(&out_a)),
        keys(&broker.read(&out_b)),
        keys(&broker.read(&t.dlq)),
    );
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "both daemons did work: a={} b={}; logs:\n{logs}",
        got_a.len(),
        got_b.len()
    );
    let all: Vec<&String> = got_a.iter().chain(&got_b).chain(&dlq).collect();
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(distinct.len(), total, "together every input; logs:\n{logs}");
    let duplicates = all.len() - total;
    eprintln!(
        "{} two daemons: {total} messages, a={} b={} dlq={}, {duplicates} duplicates",
        B::NAME,
        got_a.len(),
        got_b.len(),
        dlq.len()
    );
    assert!(
        duplicates <= B::allowed_duplicates(total),
        "{duplicates} duplicates of {total} (at most {} allowed); logs:\n{logs}",
        B::allowed_duplicates(total)
    );
}

/// A broker nobody listens on at start: the daemon exits 2 and the
/// message names the address.
pub fn unreachable_at_start<B: Broker>() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, endpoint) = B::unreachable(dir.path());
    let t = plain_names::<B>("down");
    let config = config(&broker, dir.path(), &t, &t.output, Role::Alone);
    let status = Daemon::start(&config, &dir.path().join("sluice.log")).wait(LONG);
    let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&endpoint),
        "the message names the broker as `{endpoint}`: {log}"
    );
}

/// A private broker stopped mid-stream, with deliveries unacknowledged and
/// publishes unconfirmed (or, where [`Restart::RESTART`] says so, at a
/// quiet point), and started again on the same data after two seconds: the
/// daemon stays up, connects again and loses nothing.
pub fn broker_restart<B: Restart>() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = B::private(dir.path());
    let t = names(&broker, "restart");
    let (first, stop_after, more) = B::RESTART;
    let total = first + more;
    let config = config(&broker, dir.path(), &t, &t.output, Role::Alone);
    // All of the first inputs wait before the daemon starts, so that it is
    // busy with them when the broker stops.
    broker.produce(&t.input, &messages(0..first));
    let http = free_addr();
    let mut daemon =
        Daemon::start_with(&config, &dir.path().join("sluice.log"), &["--http", &http]);
    let delivered = |broker: &B| broker.count(&t.output) + broker.count(&t.dlq);
    let quiet = stop_after >= first;
    if quiet {
        settle(&broker, &t, &[&t.output], first, &[&daemon]);
    } else {
        assert!(
            eventually(LONG, || delivered(&broker) >= stop_after),
            "{}",
            daemon.log_text()
        );
    }
    let before = delivered(&broker);
    broker.stop();
    assert!(
        quiet || before < first,
        "the stop came mid-stream ({before} of {first} delivered)"
    );
    // /readyz says which connection is lost, while it is.
    let mut last = None;
    let down = eventually(LONG, || {
        last = crate::daemon::http_get(&http, "/readyz");
        last.as_ref().is_some_and(|(status, body)| {
            *status == 503 && body.contains("source ") && body.contains(": down: ")
        })
    });
    assert!(
        down,
        "/readyz does not show the source down: {last:?}; log:\n{}",
        daemon.log_text()
    );
    assert!(
        daemon.running(),
        "the daemon does not exit when its broker goes away; log:\n{}",
        daemon.log_text()
    );
    broker.boot();
    broker.produce(&t.input, &messages(first..total));
    settle(&broker, &t, &[&t.output], total, &[&daemon]);
    assert!(
        daemon.running(),
        "the daemon rode out the restart; log:\n{}",
        daemon.log_text()
    );
    broker.assert_reconnected(&daemon);
    assert!(
        eventually(LONG, || ready(&http)),
        "/readyz is not 200 again after the restart: {:?}; log:\n{}",
        crate::daemon::http_get(&http, "/readyz"),
        daemon.log_text()
    );
    stop(daemon);
    let mut all = keys(&broker.read(&t.output));
    all.extend(keys(&broker.read(&t.dlq)));
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), total, "nothing lost across the restart");
    eprintln!(
        "{} restart: broker stopped after {before} of {first} delivered; {total} messages, 0 lost, {} duplicates",
        B::NAME,
        all.len() - total
    );
}

/// The connector's example pair as a user runs it: the orders pipeline
/// starts (and makes its queues), the load puts the orders in, and the
/// orders pipeline acknowledges every one, routing each to a region or
/// the DLQ as its summary line counts.
pub fn examples<B: Broker>() {
    let dir = tempfile::tempdir().unwrap();
    let broker = B::new(dir.path());
    let ex = broker.example(&unique("example"));
    let whole = crate::repo().join("examples/orders.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&whole)
        .unwrap()
        .lines()
        .take(B::EXAMPLE_ORDERS)
        .map(String::from)
        .collect();
    let mut load_replacements = ex.load_replacements;
    if lines.len() < 10_000 {
        // The first N orders only, for a broker that slows down as a queue grows.
        let part = dir.path().join(format!("orders-{}.jsonl", lines.len()));
        std::fs::write(
            &part,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        load_replacements.push((format!("{whole:?}"), format!("{part:?}")));
    }
    let well_formed = lines
        .iter()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    let orders = example_in(dir.path(), ex.orders, &ex.orders_replacements);
    let load = example_in(dir.path(), ex.load, &load_replacements);

    let http = free_addr();
    let daemon = Daemon::start_with(&orders, &dir.path().join("orders.log"), &["--http", &http]);
    assert!(
        wait_for(LONG, || ready(&http)),
        "the orders pipeline connected (and made its queues); {}",
        daemon.log_text()
    );
    let loader = Daemon::start(&load, &dir.path().join("load.log"));
    let load_log = loader.log.clone();
    assert!(
        loader.wait(LONG).success(),
        "{}",
        std::fs::read_to_string(&load_log).unwrap()
    );
    let load_log = std::fs::read_to_string(load_log).unwrap();
    let [_, loaded, _, malformed, _] = summary(&load_log, "load").expect("load summary");
    assert_eq!(
        (loaded, malformed),
        (well_formed as u64, (lines.len() - well_formed) as u64),
        "every well-formed order loaded, the others dead-lettered: {load_log}"
    );
    assert!(
        wait_for(LONG, || broker.unacked(&ex.input, &ex.group) == 0),
        "{} orders left unacknowledged; {}",
        broker.unacked(&ex.input, &ex.group),
        daemon.log_text()
    );
    stop(daemon);
    let log = std::fs::read_to_string(dir.path().join("orders.log")).unwrap();
    let [received, delivered, _dropped, dead, acked] =
        summary(&log, "orders").expect("summary line");
    assert_eq!((received, acked), (loaded, loaded), "{log}");
    let (europe, americas) = (broker.count(&ex.europe), broker.count(&ex.americas));
    assert!(
        europe > 0 && americas > 0,
        "both regions got orders: {europe} {americas}"
    );
    assert_eq!((europe + americas) as u64, delivered, "{log}");
    assert_eq!(broker.count(&ex.dlq) as u64, dead, "{log}");
}
