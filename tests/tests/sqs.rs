//! The SQS connector against an SQS emulator (moto, started by the test
//! command), driven through the `sluice` binary: the conformance suite
//! (every message comes out or lands in the DLQ queue with key, attributes,
//! queue and message id, SIGKILL mid-stream loses nothing, two daemons
//! share a queue, an unreachable endpoint is exit 2, the examples run; no
//! restart scenario: moto keeps nothing across one), and what is SQS's own:
//! a FIFO queue keeps the order per group, a message SQS refuses is
//! dead-lettered, batches stay under the request size limit, the
//! visibility timeout is renewed while a message is in the pipeline,
//! retries wait in the queue.
//!
//! moto's cost per request grows with the depth of the queue (see
//! docs/benchmarks-history.md, the RabbitMQ and SQS relays), so these tests
//! move hundreds of messages, not thousands, and run one at a time.

use aws_sdk_sqs::types::QueueAttributeName;
use sluice_tests::conformance::{
    self as suite, Broker, Coordinates, Example, Input, Output, Role, Scale, Stream,
};
use sluice_tests::daemon::{eventually, relay_config, summary, Daemon, Names};
use sluice_tests::sqs_client::{
    self, client, count, create, create_with, drain, one_at_a_time, runtime, send, sqs_endpoint,
    Got,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The source table reading `queue` at `endpoint`.
fn source_table(endpoint: &str, queue: &str, visibility: &str) -> String {
    format!(
        r#"{{ type = "sqs", queue = "{queue}", region = "us-east-1", endpoint_url = "{endpoint}", wait = "1s", visibility_timeout = "{visibility}", connect_timeout = "3s" }}"#
    )
}

/// The sink table writing to `queue` at `endpoint`.
fn sink_table(endpoint: &str, queue: &str) -> String {
    format!(
        r#"{{ type = "sqs", queue = "{queue}", region = "us-east-1", endpoint_url = "{endpoint}" }}"#
    )
}

/// queue → json-filter → queue, DLQ a queue too.
fn write_config(dir: &Path, endpoint: &str, input: &str, output: &str, dlq: &str) -> PathBuf {
    relay_config(
        dir,
        &source_table(endpoint, input, "10s"),
        &sink_table(endpoint, output),
        &sink_table(endpoint, dlq),
    )
}

fn key_of(m: &Got) -> String {
    m.attribute("sluice-key")
        .expect("every message carries its key")
}

/// Queues at an endpoint; the key travels as the attribute `sluice-key`,
/// headers as the other attributes. Holds moto for the test (one SQS test
/// at a time).
struct Sqs {
    _moto: MutexGuard<'static, ()>,
    rt: tokio::runtime::Runtime,
    client: aws_sdk_sqs::Client,
    endpoint: String,
    /// Queue URLs by name.
    urls: Mutex<HashMap<String, String>>,
}

impl Sqs {
    fn at(endpoint: &str) -> Sqs {
        let moto = one_at_a_time();
        sqs_client::emulator_credentials();
        // Multi-threaded: a producer thread and the test's checks call in at once.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .load()
                .await;
            aws_sdk_sqs::Client::new(&config)
        });
        Sqs {
            _moto: moto,
            rt,
            client,
            endpoint: endpoint.into(),
            urls: Mutex::default(),
        }
    }

    /// The URL of queue `name` (made by the test or by a daemon).
    fn url(&self, name: &str) -> String {
        if let Some(url) = self.urls.lock().unwrap().get(name) {
            return url.clone();
        }
        let url = self.rt.block_on(async {
            self.client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("queue {name}: {e:?}"))
                .queue_url()
                .unwrap()
                .to_string()
        });
        self.urls.lock().unwrap().insert(name.into(), url.clone());
        url
    }
}

impl Broker for Sqs {
    const NAME: &'static str = "sqs";
    const SCALE: Scale = Scale {
        round_trip: 300,
        crash: Stream {
            total: 600,
            batch: 20,
            pause: Duration::from_millis(100),
        },
        kills: [80, 220, 360],
        shared: Stream {
            total: 400,
            batch: 400,
            pause: Duration::ZERO,
        },
    };
    /// moto slows down as a queue grows: the first 300 orders.
    const EXAMPLE_ORDERS: usize = 300;

    /// SQS takes at most 1 MiB (the body, base64 for bytes, and attributes).
    fn odd(case: &str) -> suite::Odd {
        match case {
            "1MiB" | "16MiB" => suite::Odd::Refused("over SQS's limit"),
            // Attributes come back in SQS's order.
            "binary-header-value" | "repeated-header" | "100-headers" => suite::Odd::Reordered,
            _ => suite::Odd::Same,
        }
    }

    fn new(_dir: &Path) -> Self {
        Sqs::at(&sqs_endpoint())
    }

    fn unreachable(_dir: &Path) -> (Self, String) {
        (Sqs::at("http://127.0.0.1:1"), "http://127.0.0.1:1".into())
    }

    /// Queue names allow no dots (but `.fifo`).
    fn legal(name: String) -> String {
        name.replace('.', "-")
    }

    fn create(&self, names: &[&str]) {
        for name in names {
            let url = self.rt.block_on(create(&self.client, name));
            self.urls.lock().unwrap().insert(name.to_string(), url);
        }
    }

    /// A killed daemon's messages come back after a 4 s visibility timeout
    /// (the renewer keeps them for a living one).
    fn source(&self, t: &Names, role: Role) -> String {
        let visibility = if role == Role::Killed { "4s" } else { "10s" };
        source_table(&self.endpoint, &t.input, visibility)
    }

    fn sink(&self, name: &str) -> String {
        sink_table(&self.endpoint, name)
    }

    fn produce(&self, to: &str, messages: &[Input]) {
        let messages: Vec<_> = messages
            .iter()
            .map(|m| {
                let mut attributes = vec![("sluice-key".to_string(), m.key.clone())];
                attributes.extend(m.headers.iter().cloned());
                (
                    String::from_utf8(m.payload.clone()).unwrap(),
                    attributes,
                    None,
                )
            })
            .collect();
        self.rt
            .block_on(send(&self.client, &self.url(to), &messages));
    }

    /// Visible and in flight.
    fn count(&self, name: &str) -> usize {
        self.rt.block_on(count(&self.client, &self.url(name)))
    }

    fn read(&self, name: &str) -> Vec<Output> {
        self.rt
            .block_on(drain(&self.client, &self.url(name)))
            .into_iter()
            .map(|m| Output {
                key: m.attribute("sluice-key"),
                payload: m.body.into_bytes(),
                headers: m.attributes,
            })
            .collect()
    }

    /// A message leaves the queue (deleted) only once it is done.
    fn unacked(&self, input: &str, _group: &str) -> usize {
        self.count(input)
    }

    fn coordinates(&self, t: &Names) -> Coordinates {
        let queue = t.input.clone();
        Box::new(move |_| {
            vec![
                ("sluice-error-source-queue", Some(queue.clone())),
                ("sluice-error-source-message-id", None),
            ]
        })
    }

    /// A standard queue delivers at least once: AWS documents occasional
    /// duplicates, and moto's ReceiveMessage is not atomic, so two receives
    /// running at once can both take the same visible message (seen once in
    /// CI: 401 of 400). Many would mean a bug (deletes lost, visibility not
    /// renewed), so they are bounded.
    fn allowed_duplicates(total: usize) -> usize {
        total / 50
    }

    const KEEPS_ORDER: bool = false;

    /// The daemons create their queues (`create_queue = true`).
    fn example(&self, unique: &str) -> Example {
        let q = |name: &str| format!("{unique}-{name}");
        let quoted = |name: &str| (format!("\"{name}\""), format!("\"{}\"", q(name)));
        let endpoint = (
            "\"http://127.0.0.1:19324\"".to_string(),
            format!("\"{}\"", self.endpoint),
        );
        let names = ["orders", "orders-europe", "orders-americas", "orders-dlq"];
        let mut orders_replacements = vec![endpoint.clone()];
        orders_replacements.extend(names.map(quoted));
        Example {
            load: "sqs-load.toml",
            load_replacements: vec![endpoint, quoted("orders")],
            orders: "sqs-orders.toml",
            orders_replacements,
            input: q("orders"),
            group: String::new(),
            europe: q("orders-europe"),
            americas: q("orders-americas"),
            dlq: q("orders-dlq"),
        }
    }
}

sluice_tests::conformance!(Sqs);

#[test]
fn a_fifo_queue_keeps_the_order_of_each_group() {
    let _moto = one_at_a_time();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let n = Names::new("sqs-fifo");
    let (input, output, dlq) = (
        format!("{}.fifo", n.input.replace('.', "-")),
        format!("{}.fifo", n.output.replace('.', "-")),
        format!("{}.fifo", n.dlq.replace('.', "-")),
    );
    let sqs = rt.block_on(client());
    let urls: Vec<String> = [&input, &output, &dlq]
        .iter()
        .map(|q| rt.block_on(create(&sqs, q)))
        .collect();
    let groups = ["g1", "g2", "g3"];
    let total = 300;
    let messages: Vec<_> = (0..total)
        .map(|i| {
            (
                format!(r#"{{"amount":{i}}}"#),
                vec![("sluice-key".to_string(), format!("k{i}"))],
                Some(groups[i % 3].to_string()),
            )
        })
        .collect();
    rt.block_on(send(&sqs, &urls[0], &messages));
    let config = write_config(dir.path(), &sqs_endpoint(), &input, &output, &dlq);
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    // moto serves a FIFO queue slowly (300 messages took ~55 s here alone,
    // over 60 s while the other SQS tests ran): a loose bound.
    assert!(
        eventually(Duration::from_secs(240), || rt
            .block_on(count(&sqs, &urls[1]))
            >= total),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let out = rt.block_on(drain(&sqs, &urls[1]));
    assert_eq!(out.len(), total);
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for m in &out {
        let group = m
            .group
            .clone()
            .expect("the group id is carried to the output");
        let i: usize = m.attribute("sluice-key").unwrap()[1..].parse().unwrap();
        assert_eq!(group, groups[i % 3], "message {i} stays in its group");
        if let Some(prev) = last.insert(group.clone(), i) {
            assert!(prev < i, "group {group} out of order: {prev} then {i}");
        }
    }
}

#[test]
fn a_message_sqs_refuses_is_dead_lettered_with_the_reason_and_its_batch_still_goes_out() {
    // The output queue takes messages up to 1 KiB (`MaximumMessageSize`);
    // every seventh input is 2 KB. SQS refuses a batch holding one of those
    // as a whole, so the sink sends that batch's messages one by one: the
    // big ones are dead-lettered (class `sink-rejected`, with SQS's reason),
    // the rest go out, once each.
    let _moto = one_at_a_time();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let n = suite::plain_names::<Sqs>("refused");
    let sqs = rt.block_on(client());
    let input = rt.block_on(create(&sqs, &n.input));
    let output = rt.block_on(create_with(
        &sqs,
        &n.output,
        &[(QueueAttributeName::MaximumMessageSize, "1024")],
    ));
    let dlq_url = rt.block_on(create(&sqs, &n.dlq));
    let total = 70;
    let big = |i: usize| i % 7 == 3;
    let body = |i: usize| {
        if big(i) {
            format!(r#"{{"amount":{i},"pad":"{}"}}"#, "x".repeat(2000))
        } else {
            format!(r#"{{"amount":{i}}}"#)
        }
    };
    let headers: Vec<(String, String)> =
        (0..9).map(|h| (format!("h{h}"), format!("v{h}"))).collect();
    let inputs: Vec<_> = (0..total)
        .map(|i| {
            let mut attributes = vec![("sluice-key".to_string(), format!("k{i}"))];
            attributes.extend(headers.iter().cloned());
            (body(i), attributes, None)
        })
        .collect();
    rt.block_on(send(&sqs, &input, &inputs));
    let config = write_config(dir.path(), &sqs_endpoint(), &n.input, &n.output, &n.dlq);
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    let settled = || {
        rt.block_on(async { count(&sqs, &output).await + count(&sqs, &dlq_url).await }) >= total
            && rt.block_on(count(&sqs, &input)) == 0
    };
    assert!(
        eventually(Duration::from_secs(60), settled),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let shown = sluice_tests::daemon::dlq_show(&config);
    assert_eq!(shown.len(), total / 7, "dlq show reads every dead letter");
    for d in &shown {
        assert_eq!(d["error"]["class"], "sink-rejected", "{d}");
        assert!(d["error"]["text"].as_str().unwrap().contains("1024"), "{d}");
        assert_eq!(d["message"]["headers"]["h8"], "v8", "{d}");
    }
    let out = rt.block_on(drain(&sqs, &output));
    let dead = rt.block_on(drain(&sqs, &dlq_url));
    let mut out_keys: Vec<String> = out.iter().map(key_of).collect();
    out_keys.sort();
    let mut want: Vec<String> = (0..total)
        .filter(|i| !big(*i))
        .map(|i| format!("k{i}"))
        .collect();
    want.sort();
    assert_eq!(out_keys, want, "every message that fits went out, once");
    let dead_keys: BTreeSet<String> = dead.iter().map(key_of).collect();
    assert_eq!(
        dead_keys,
        (0..total)
            .filter(|i| big(*i))
            .map(|i| format!("k{i}"))
            .collect(),
        "the big ones are dead-lettered"
    );
    assert_eq!(dead.len(), dead_keys.len(), "once each");
    for m in &dead {
        assert_eq!(
            m.attribute("sluice-error-class").as_deref(),
            Some("sink-rejected"),
            "{:?}",
            m.attributes
        );
        assert_eq!(
            m.attribute("sluice-error-stage"),
            Some(format!("sqs:{}", n.output))
        );
        let text = m.attribute("sluice-error-text").unwrap_or_default();
        assert!(text.contains("1024"), "SQS's reason is kept: {text}");
        assert!(m.body.len() > 2000, "the whole message is in the DLQ");
        assert!(
            m.wire_attributes <= 10,
            "{} attributes: {:?}",
            m.wire_attributes,
            m.attributes
        );
        for (h, v) in &headers {
            assert_eq!(m.attribute(h).as_ref(), Some(v), "{:?}", m.attributes);
        }
    }
}

#[test]
fn batches_stay_under_the_sqs_request_size_limit() {
    // Twelve 300 KB messages: ten in one SendMessageBatch would be 3 MB,
    // over SQS's 1 MiB per request, and SQS would refuse the batch every
    // time. The sink sends at most three of them per request.
    let _moto = one_at_a_time();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let n = suite::plain_names::<Sqs>("big-batch");
    let sqs = rt.block_on(client());
    let urls: Vec<String> = [&n.input, &n.output, &n.dlq]
        .iter()
        .map(|q| rt.block_on(create(&sqs, q)))
        .collect();
    let total = 12;
    let inputs: Vec<_> = (0..total)
        .map(|i| {
            (
                format!(r#"{{"amount":{i},"pad":"{}"}}"#, "y".repeat(300_000)),
                vec![("sluice-key".to_string(), format!("k{i}"))],
                None,
            )
        })
        .collect();
    for chunk in inputs.chunks(3) {
        rt.block_on(send(&sqs, &urls[0], chunk));
    }
    let daemon = Daemon::start(
        &write_config(dir.path(), &sqs_endpoint(), &n.input, &n.output, &n.dlq),
        &dir.path().join("sluice.log"),
    );
    assert!(
        eventually(Duration::from_secs(60), || rt
            .block_on(count(&sqs, &urls[1]))
            >= total),
        "{}",
        daemon.log_text()
    );
    let log = daemon.log_text();
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let out = rt.block_on(drain(&sqs, &urls[1]));
    let keys: BTreeSet<String> = out.iter().map(key_of).collect();
    assert_eq!(
        (keys.len(), out.len()),
        (total, total),
        "all delivered, once"
    );
    assert!(out.iter().all(|m| m.body.len() > 300_000));
    assert_eq!(
        rt.block_on(count(&sqs, &urls[2])),
        0,
        "nothing dead-lettered"
    );
    assert!(!log.contains("SendMessageBatch failed"), "{log}");
}

#[test]
fn the_visibility_timeout_is_renewed_while_a_message_is_in_the_pipeline() {
    let _moto = one_at_a_time();
    // Each message spends about 4.5 s in the pipeline (the flaky stage
    // fails twice, backing off 1.5 s and 3 s), more than twice the 2 s
    // visibility timeout. Without renewal SQS would hand every one out
    // again meanwhile, and they would come out twice.
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let n = suite::plain_names::<Sqs>("renew");
    let sqs = rt.block_on(client());
    let urls: Vec<String> = [&n.input, &n.output, &n.dlq]
        .iter()
        .map(|q| rt.block_on(create(&sqs, q)))
        .collect();
    let at = format!(
        r#"region = "us-east-1", endpoint_url = "{}""#,
        sqs_endpoint()
    );
    let config = dir.path().join("renew.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[pipelines.slow]
concurrency = 4
source = {{ type = "sqs", queue = "{input}", {at}, wait = "1s", visibility_timeout = "2s" }}
dlq = {{ type = "sqs", queue = "{dlq}", {at} }}
sinks.out = {{ type = "sqs", queue = "{output}", {at} }}

[[pipelines.slow.stages]]
name = "flaky"
kind = "filter"
plugin = {plugin}
params = {{ fail_attempts = 2 }}
retry = {{ attempts = 3, initial = "1500ms", factor = 2.0, jitter = 0.0 }}
"#,
            input = n.input,
            output = n.output,
            dlq = n.dlq,
            plugin = sluice_tests::daemon::plugin_literal("flaky"),
        ),
    )
    .unwrap();
    let total = 12;
    rt.block_on(send(
        &sqs,
        &urls[0],
        &(0..total)
            .map(|i| {
                (
                    format!(r#"{{"amount":{i}}}"#),
                    vec![("sluice-key".to_string(), format!("k{i}"))],
                    None,
                )
            })
            .collect::<Vec<_>>(),
    ));
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    assert!(
        eventually(Duration::from_secs(90), || rt
            .block_on(count(&sqs, &urls[1]))
            >= total),
        "{}",
        daemon.log_text()
    );
    // Give a second delivery, had there been one, time to arrive too.
    std::thread::sleep(Duration::from_secs(3));
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap();
    let out = rt.block_on(drain(&sqs, &urls[1]));
    let keys: BTreeSet<String> = out.iter().map(key_of).collect();
    assert_eq!(keys.len(), total, "{log}");
    assert_eq!(
        out.len(),
        total,
        "no message was handed out twice while in the pipeline; log:\n{log}"
    );
    let [received, delivered, _, dead, acked] =
        sluice_tests::daemon::summary(&log, "slow").expect("summary line");
    assert_eq!(
        (received, delivered, dead, acked),
        (total as u64, total as u64, 0, total as u64),
        "{log}"
    );
}

#[test]
fn retries_through_sqs_wait_in_the_queue_and_count_receives() {
    // `retry.republish` on SQS: a retryable error makes the message
    // invisible for the backoff delay instead of holding a worker; the
    // receive count is the attempt. `heal` fails twice then passes,
    // `exhaust` always fails and dead-letters on the third receive.
    let _moto = one_at_a_time();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (heal, exhaust) = (
        suite::plain_names::<Sqs>("retry-heal"),
        suite::plain_names::<Sqs>("retry-exhaust"),
    );
    let sqs = rt.block_on(client());
    let mut urls = Vec::new();
    for q in [
        &heal.input,
        &heal.output,
        &heal.dlq,
        &exhaust.input,
        &exhaust.output,
        &exhaust.dlq,
    ] {
        urls.push(rt.block_on(create(&sqs, q)));
    }
    let at = format!(
        r#"region = "us-east-1", endpoint_url = "{}""#,
        sqs_endpoint()
    );
    let pipeline = |name: &str, n: &Names, fail_attempts: u32| {
        let source = format!(
            r#"{{ type = "sqs", queue = "{}", {at}, wait = "1s", visibility_timeout = "10s" }}"#,
            n.input
        );
        let out = format!(r#"{{ type = "sqs", queue = "{}", {at} }}"#, n.output);
        let dlq = format!(r#"{{ type = "sqs", queue = "{}", {at} }}"#, n.dlq);
        sluice_tests::daemon::republish_pipeline(name, &source, &out, &dlq, "1s", fail_attempts)
    };
    let config = dir.path().join("retry.toml");
    std::fs::write(
        &config,
        pipeline("heal", &heal, 2) + &pipeline("exhaust", &exhaust, 99),
    )
    .unwrap();
    let total = 20;
    let msgs: Vec<_> = (0..total)
        .map(|i| {
            (
                format!(r#"{{"amount":{i}}}"#),
                vec![("sluice-key".to_string(), format!("k{i}"))],
                None,
            )
        })
        .collect();
    rt.block_on(send(&sqs, &urls[0], &msgs));
    rt.block_on(send(&sqs, &urls[3], &msgs));
    let daemon = Daemon::start(&config, &dir.path().join("sluice.log"));
    let done = || {
        rt.block_on(async {
            count(&sqs, &urls[1]).await >= total && count(&sqs, &urls[5]).await >= total
        })
    };
    assert!(
        eventually(Duration::from_secs(90), done),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap();
    let healed = rt.block_on(drain(&sqs, &urls[1]));
    assert_eq!(
        healed.iter().map(key_of).collect::<BTreeSet<_>>().len(),
        total,
        "{log}"
    );
    assert_eq!(healed.len(), total, "each once");
    let [received, delivered, _, dead, acked] = summary(&log, "heal").expect("summary");
    assert_eq!(
        (received, delivered, dead, acked),
        (3 * total as u64, total as u64, 0, 3 * total as u64),
        "{log}"
    );
    let dlq = rt.block_on(drain(&sqs, &urls[5]));
    assert_eq!(dlq.len(), total);
    for m in &dlq {
        assert_eq!(
            m.attribute("sluice-error-class").as_deref(),
            Some("retries-exhausted"),
            "{m:?}"
        );
        assert_eq!(
            m.attribute("sluice-error-attempts").as_deref(),
            Some("3"),
            "{m:?}"
        );
        assert_eq!(
            m.attribute("sluice-error-source-receive-count").as_deref(),
            Some("3"),
            "{m:?}"
        );
    }
    assert_eq!(
        rt.block_on(async { count(&sqs, &urls[0]).await + count(&sqs, &urls[3]).await }),
        0,
        "the inputs are deleted"
    );
}
