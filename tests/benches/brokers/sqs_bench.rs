//! The SQS half (against the moto emulator): a fresh input queue per run,
//! plain relay, sluice, checks.
use super::*;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use sluice_brokers::sqs::{Endpoint, SqsSinkConfig, SqsSourceConfig, KEY_ATTRIBUTE};
use sluice_tests::sqs_client::{self, sqs_endpoint};
// ---------------------------------------------------------------- SQS

/// Messages per ReceiveMessage (`MaxNumberOfMessages`): sluice's default
/// `batch`, and the most SQS allows.
const SQS_BATCH: i32 = 10;
/// Long-polling wait per ReceiveMessage (`WaitTimeSeconds`): sluice's default.
const SQS_WAIT: Duration = Duration::from_secs(20);
/// Visibility timeout given at receive: sluice's default.
const SQS_VISIBILITY: Duration = Duration::from_secs(30);

/// Send every input to `url` in batches of 10, the key in the `sluice-key`
/// attribute (as sluice's sink writes it).
pub(crate) async fn sqs_seed(client: &aws_sdk_sqs::Client, url: &str, inputs: &[Input]) {
    let messages: Vec<(String, Vec<(String, String)>, Option<String>)> = inputs
        .iter()
        .map(|i| {
            (
                i.payload.clone(),
                vec![(KEY_ATTRIBUTE.to_string(), i.key.clone())],
                None,
            )
        })
        .collect();
    sqs_client::send(client, url, &messages).await;
}

/// The plain relay, one batch at a time: ReceiveMessage (the same
/// MaxNumberOfMessages, WaitTimeSeconds, visibility timeout and attribute
/// names as sluice's source) → SendMessageBatch of those messages (body and
/// message attributes) to the output → once that succeeded,
/// DeleteMessageBatch of them; until `n` are relayed.
pub(crate) async fn sqs_relay(
    client: &aws_sdk_sqs::Client,
    input: &str,
    output: &str,
    n: usize,
    timeout: Duration,
    broker_pid: Option<&str>,
) -> Result<Timed, String> {
    let started = Stopwatch::start(broker_pid);
    let deadline = tokio::time::Instant::now() + timeout;
    let abandoned =
        |relayed: usize| format!("abandoned after {timeout:?}: {relayed} of {n} relayed");
    let mut first = None;
    let mut relayed = 0;
    while relayed < n {
        let receive = client
            .receive_message()
            .queue_url(input)
            .max_number_of_messages(SQS_BATCH)
            .wait_time_seconds(SQS_WAIT.as_secs() as i32)
            .visibility_timeout(SQS_VISIBILITY.as_secs() as i32)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send();
        let received = tokio::time::timeout_at(deadline, receive)
            .await
            .map_err(|_| abandoned(relayed))?
            .map_err(|e| format!("ReceiveMessage: {}", DisplayErrorContext(e)))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        first.get_or_insert_with(|| started.elapsed());
        let mut sends = Vec::with_capacity(messages.len());
        let mut deletes = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let send = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(m.body().unwrap_or_default())
                .set_message_attributes(m.message_attributes().cloned())
                .build()
                .map_err(|e| format!("send entry: {e}"))?;
            sends.push(send);
            let delete = DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .map_err(|e| format!("delete entry: {e}"))?;
            deletes.push(delete);
        }
        let sent = client
            .send_message_batch()
            .queue_url(output)
            .set_entries(Some(sends))
            .send();
        let sent = tokio::time::timeout_at(deadline, sent)
            .await
            .map_err(|_| abandoned(relayed))?
            .map_err(|e| format!("SendMessageBatch: {}", DisplayErrorContext(e)))?;
        if !sent.failed().is_empty() {
            return Err(format!(
                "SendMessageBatch: {} entries failed",
                sent.failed().len()
            ));
        }
        let deleted = client
            .delete_message_batch()
            .queue_url(input)
            .set_entries(Some(deletes))
            .send();
        let deleted = tokio::time::timeout_at(deadline, deleted)
            .await
            .map_err(|_| abandoned(relayed))?
            .map_err(|e| format!("DeleteMessageBatch: {}", DisplayErrorContext(e)))?;
        if !deleted.failed().is_empty() {
            return Err(format!(
                "DeleteMessageBatch: {} entries failed",
                deleted.failed().len()
            ));
        }
        relayed += messages.len();
    }
    Ok(started.stop(first))
}

/// sluice: sqs source → identity.wasm → sqs sink, DLQ an SQS queue. Queues
/// are given by URL.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn sqs_sluice(
    input: &str,
    output: &str,
    dlq: &str,
    host: &sluice_wasm::WasmHost,
    shape: Shape,
    n: usize,
    timeout: Duration,
    broker_pid: Option<&str>,
) -> (Result<Timed, String>, Option<PipelineReport>) {
    let base = Path::new(".");
    let endpoint = sqs_endpoint();
    let sink = |queue: &str| {
        SinkConfig::Sqs(SqsSinkConfig {
            queue: Some(queue.into()),
            region: None, // from the environment, as the bench's own client
            endpoint_url: Some(endpoint.clone()),
            message_group_id: None,
            create_queue: false,
            tls: None,
            connect_timeout: secs(Duration::from_secs(10)),
        })
    };
    let source = SourceConfig::Sqs(SqsSourceConfig {
        endpoint: Endpoint {
            queue: input.into(),
            region: None,
            endpoint_url: Some(endpoint.clone()),
            create_queue: false,
            tls: None,
        },
        wait: secs(SQS_WAIT),
        batch: SQS_BATCH,
        visibility_timeout: secs(SQS_VISIBILITY),
        connect_timeout: secs(Duration::from_secs(10)),
    });
    let out = sink(output)
        .open(base, "out")
        .await
        .expect("opening the sqs sink");
    let dlq = sink(dlq)
        .open(base, "bench.dlq")
        .await
        .expect("opening the sqs DLQ");
    let source = source.open(base).await.expect("opening the sqs source");
    let (pipeline, stats) = one_stage_pipeline(source, out, dlq, host, shape);
    time_pipeline(pipeline, stats, n as u64, timeout, broker_pid).await
}

/// The URLs of one run's queues.
struct Queues {
    input: String,
    output: String,
    dlq: String,
}

impl Queues {
    async fn create(client: &aws_sdk_sqs::Client, names: &RunNames) -> Queues {
        Queues {
            input: sqs_client::create(client, &names.input).await,
            output: sqs_client::create(client, &names.output).await,
            dlq: sqs_client::create(client, &names.dlq).await,
        }
    }
}

/// After a run: the output holds exactly `n` messages, the input none
/// (visible or in flight), the DLQ none. Deletes the run's queues.
async fn sqs_check_and_clean(
    client: &aws_sdk_sqs::Client,
    queues: &Queues,
    n: usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    let input = sqs_client::count(client, &queues.input).await;
    if input != 0 {
        problems.push(format!(
            "input queue still holds {input} messages (visible or in flight)"
        ));
    }
    let output = sqs_client::count(client, &queues.output).await;
    if output != n {
        problems.push(format!("output queue holds {output} messages, want {n}"));
    }
    let dlq = sqs_client::count(client, &queues.dlq).await;
    if dlq != 0 {
        problems.push(format!("DLQ holds {dlq} messages"));
    }
    for url in [&queues.input, &queues.output, &queues.dlq] {
        let _ = client.delete_queue().queue_url(url).send().await;
    }
    problems
}

/// The moto version tests/brokers.sh installed, from its virtualenv.
fn moto_version() -> String {
    let lib = sluice_cache().join("tools/moto/lib");
    let version = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|python| {
            std::fs::read_dir(python.path().join("site-packages"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .find_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            Some(
                name.strip_prefix("moto-")?
                    .strip_suffix(".dist-info")?
                    .to_string(),
            )
        });
    match version {
        Some(v) => format!("moto {v} (tests/brokers.sh)"),
        None => "SQS emulator (version unknown)".into(),
    }
}

/// The whole SQS half: rounds of every variant, interleaved, each run on
/// queues of its own, seeded (untimed) with `inputs` right before it.
pub(crate) fn bench_sqs(
    rt: &tokio::runtime::Runtime,
    s: &Settings,
    inputs: &[Input],
    host: &sluice_wasm::WasmHost,
) -> BrokerResults {
    let prefix = run_prefix();
    let n = inputs.len();
    let pid = brokers_sh_pid("sqs", "moto_server");
    let pid = pid.as_deref();
    rt.block_on(async {
        // Dummy credentials and a region in the environment, for the bench's
        // client and the connectors alike.
        let client = sqs_client::client().await;
        let mut results = BrokerResults::new(Broker::Sqs, format!("{} at {}", moto_version(), sqs_endpoint()), n);
        results.settings = format!(
            "ReceiveMessage MaxNumberOfMessages {SQS_BATCH} WaitTimeSeconds {} VisibilityTimeout {} (relay and source), SendMessageBatch and DeleteMessageBatch of up to 10",
            SQS_WAIT.as_secs(),
            SQS_VISIBILITY.as_secs()
        );
        let mut seed_times = Vec::new();
        for round in 0..s.rounds {
            for variant in Variant::all(Broker::Sqs) {
                let names = RunNames::with_separator(&prefix, variant, round, '-');
                let queues = Queues::create(&client, &names).await;
                let seeding = Instant::now();
                sqs_seed(&client, &queues.input, inputs).await;
                seed_times.push(seeding.elapsed().as_secs_f64());
                let (timed, mut problems) = match variant {
                    Variant::Relay => (sqs_relay(&client, &queues.input, &queues.output, n, s.timeout, pid).await, Vec::new()),
                    Variant::Sluice(shape) => {
                        let (timed, report) =
                            sqs_sluice(&queues.input, &queues.output, &queues.dlq, host, shape, n, s.timeout, pid).await;
                        (timed, report_problems(report.as_ref(), n as u64))
                    }
                };
                problems.extend(sqs_check_and_clean(&client, &queues, n).await);
                results.record(variant, round, s.rounds, RunResult { timed, problems });
            }
        }
        results.input = format!(
            "input sent (SendMessageBatch of 10) to a fresh queue before every run, untimed, median {:.2} s",
            if seed_times.is_empty() { 0.0 } else { median(&mut seed_times) }
        );
        results
    })
}
