//! The RabbitMQ half: a fresh input queue per run, plain relay, sluice, checks.
use super::*;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, PublisherConfirm};
use sluice_brokers::amqp::{AmqpSinkConfig, AmqpSourceConfig, KEY_HEADER};
// ---------------------------------------------------------------- RabbitMQ

/// Publisher confirms the seeding keeps outstanding at most.
const SEED_WINDOW: usize = 5000;
/// How long the bench waits for a channel or connection to close. lapin's
/// `Connection::close` once never returned here (after a relay run; the
/// broker still showed the connection open, with no channel), so every
/// close is bounded and a hang is reported, not waited for.
const CLOSE: Duration = Duration::from_secs(5);

/// Close a connection gracefully, within [`CLOSE`].
pub(crate) async fn amqp_close(conn: &Connection, what: &str) {
    match tokio::time::timeout(CLOSE, conn.close(200, "bench done".into())).await {
        Ok(_) => {}
        Err(_) => eprintln!("bench: rabbitmq: closing the {what} connection did not finish within {CLOSE:?}; dropping it"),
    }
}

/// Close a channel gracefully, within [`CLOSE`].
async fn close_channel(ch: &lapin::Channel, what: &str) {
    match tokio::time::timeout(CLOSE, ch.close(200, "bench done".into())).await {
        Ok(_) => {}
        Err(_) => eprintln!("bench: rabbitmq: closing the {what} channel did not finish within {CLOSE:?}; dropping it"),
    }
}

/// Connect, named `name` (so the bench's connections show as such in
/// RabbitMQ), within [`STEP`].
pub(crate) async fn amqp_connect(url: &str, name: &str) -> Result<Connection, String> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(STEP, Connection::connect(url, properties)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!(
            "cannot reach RabbitMQ at {url} (start it with `bash tests/brokers.sh rabbitmq`): {e}"
        )),
        Err(_) => Err(format!("RabbitMQ at {url} did not answer within {STEP:?}")),
    }
}

/// Declare durable queues (each may exist).
pub(crate) async fn amqp_declare(conn: &Connection, queues: &[&str]) -> Result<(), String> {
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    for q in queues {
        ch.queue_declare(
            (*q).into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("declaring {q}: {e}"))?;
    }
    close_channel(&ch, "declaring").await;
    Ok(())
}

/// Delete queues, ignoring failures.
pub(crate) async fn amqp_delete(conn: &Connection, queues: &[&str]) {
    if let Ok(ch) = conn.create_channel().await {
        for q in queues {
            let _ = ch
                .queue_delete((*q).into(), QueueDeleteOptions::default())
                .await;
        }
        close_channel(&ch, "deleting").await;
    }
}

/// A confirm's outcome as a result: only an ack with nothing returned is OK.
async fn confirmed(confirm: PublisherConfirm) -> Result<(), String> {
    match confirm.await {
        Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => Ok(()),
        Ok(Confirmation::Ack(Some(_))) => Err("publish returned unroutable".into()),
        Ok(Confirmation::Nack(_)) => Err("publish nacked by the broker".into()),
        Err(e) => Err(format!("publisher confirm: {e}")),
    }
}

/// Publish every input to `queue` through the default exchange: persistent,
/// mandatory, key in the `sluice-key` header (as sluice's sink writes it),
/// on a confirm-mode channel, up to [`SEED_WINDOW`] confirms outstanding;
/// returns once all are confirmed.
pub(crate) async fn amqp_seed(
    conn: &Connection,
    queue: &str,
    inputs: &[Input],
) -> Result<(), String> {
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("confirm.select: {e}"))?;
    let mut confirms = FuturesUnordered::new();
    for input in inputs {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from(KEY_HEADER),
            AMQPValue::LongString(LongString::from(input.key.as_bytes())),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                options,
                input.payload.as_bytes(),
                properties,
            )
            .await
            .map_err(|e| format!("seeding {queue}: {e}"))?;
        confirms.push(confirmed(confirm));
        while confirms.len() >= SEED_WINDOW {
            confirms.next().await.expect("not empty")?;
        }
    }
    while let Some(done) = confirms.next().await {
        done?;
    }
    close_channel(&ch, "seeding").await;
    Ok(())
}

/// The plain relay: one connection consuming `names.input` with
/// `basic_qos(prefetch)` and manual acks, one connection publishing to
/// `names.output` (default exchange, persistent, mandatory) on a
/// confirm-mode channel. Every delivery is published at once; it is acked
/// when its publisher confirm arrives, so up to `prefetch` are in flight,
/// as in sluice (whose source the same prefetch bounds). Until `n` are
/// acked.
pub(crate) async fn amqp_relay(
    url: &str,
    names: &RunNames,
    prefetch: u16,
    n: usize,
    timeout: Duration,
    broker_pid: Option<&str>,
) -> Result<Timed, String> {
    let consuming = amqp_connect(url, "sluice-bench-relay-in").await?;
    let publishing = amqp_connect(url, "sluice-bench-relay-out").await?;
    let relayed = relay_on(
        &consuming,
        &publishing,
        names,
        prefetch,
        n,
        timeout,
        broker_pid,
    )
    .await;
    // Closing the consuming connection gives back whatever was left unacked.
    amqp_close(&consuming, "relay's consuming").await;
    amqp_close(&publishing, "relay's publishing").await;
    relayed
}

async fn relay_on(
    consuming: &Connection,
    publishing: &Connection,
    names: &RunNames,
    prefetch: u16,
    n: usize,
    timeout: Duration,
    broker_pid: Option<&str>,
) -> Result<Timed, String> {
    // The clock starts where sluice's does: connections open (the connectors'
    // `open`), channels and consumer not yet set up (the source's `run`).
    let started = Stopwatch::start(broker_pid);
    let deadline = tokio::time::Instant::now() + timeout;
    let out = publishing
        .create_channel()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    out.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("confirm.select: {e}"))?;
    let input = consuming
        .create_channel()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    input
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| format!("basic.qos: {e}"))?;
    let mut consumer = input
        .basic_consume(
            names.input.as_str().into(),
            "sluice-bench-relay".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("basic.consume: {e}"))?;
    let relayed = relay_loop(&out, &mut consumer, names, n, timeout, deadline, &started).await;
    close_channel(&input, "relay's consuming").await;
    close_channel(&out, "relay's publishing").await;
    relayed
}

/// Publish every delivery as it comes, ack it once confirmed; until `n` are
/// acked. Returns the timings.
async fn relay_loop(
    out: &lapin::Channel,
    consumer: &mut lapin::Consumer,
    names: &RunNames,
    n: usize,
    timeout: Duration,
    deadline: tokio::time::Instant,
    started: &Stopwatch,
) -> Result<Timed, String> {
    let mut first = None;
    let mut in_flight = FuturesUnordered::new();
    let mut acked = 0;
    while acked < n {
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                done?;
                acked += 1;
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("abandoned after {timeout:?}: {acked} of {n} acked"));
            }
            next = consumer.next() => {
                let d = match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Err(format!("consumer: {e}")),
                    None => return Err("the broker cancelled the consumer".into()),
                };
                first.get_or_insert_with(|| started.elapsed());
                let properties = d.properties.clone().with_delivery_mode(2);
                let options = BasicPublishOptions { mandatory: true, ..Default::default() };
                let confirm = out
                    .basic_publish("".into(), names.output.as_str().into(), options, &d.data, properties)
                    .await
                    .map_err(|e| format!("basic.publish: {e}"))?;
                let acker = d.acker;
                in_flight.push(async move {
                    confirmed(confirm).await?;
                    acker.ack(BasicAckOptions::default()).await.map(drop).map_err(|e| format!("basic.ack: {e}"))
                });
            }
        }
    }
    Ok(started.stop(first))
}

/// sluice: rabbitmq source → identity.wasm → rabbitmq sink, DLQ a queue.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn amqp_sluice(
    url: &str,
    names: &RunNames,
    host: &sluice_wasm::WasmHost,
    shape: Shape,
    prefetch: u16,
    n: usize,
    timeout: Duration,
    broker_pid: Option<&str>,
) -> (Result<Timed, String>, Option<PipelineReport>) {
    let base = Path::new(".");
    let sink = |queue: &str| {
        SinkConfig::Rabbitmq(AmqpSinkConfig {
            url: url.into(),
            exchange: String::new(),
            routing_key: Some(queue.into()),
            persistent: true,
            mandatory: true,
            declare_queue: false, // the bench declared it, as for the relay
            password_env: None,
            tls: None,
            connect_timeout: secs(Duration::from_secs(10)),
        })
    };
    let source = SourceConfig::Rabbitmq(AmqpSourceConfig {
        url: url.into(),
        queue: names.input.clone(),
        declare: true,
        durable: true,
        exclusive: false,
        auto_delete: false,
        arguments: BTreeMap::new(),
        bindings: Vec::new(),
        prefetch,
        requeue: true,
        password_env: None,
        tls: None,
        connect_timeout: secs(Duration::from_secs(10)),
    });
    let out = sink(&names.output)
        .open(base, "out")
        .await
        .expect("opening the rabbitmq sink");
    let dlq = sink(&names.dlq)
        .open(base, "bench.dlq")
        .await
        .expect("opening the rabbitmq DLQ");
    let source = source
        .open(base)
        .await
        .expect("opening the rabbitmq source");
    let (pipeline, stats) = one_stage_pipeline(source, out, dlq, host, shape);
    time_pipeline(pipeline, stats, n as u64, timeout, broker_pid).await
}

/// Ready messages and consumers of `queue` (a passive declare).
async fn amqp_depth(conn: &Connection, queue: &str) -> Result<(u32, u32), String> {
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("passive declare of {queue}: {e}"))?;
    close_channel(&ch, "checking").await;
    Ok((q.message_count(), q.consumer_count()))
}

/// After a run (its consuming connection closed, so whatever it left unacked
/// is back in the input): the output holds exactly `n` messages, the input
/// and the DLQ none. Deletes the run's queues.
pub(crate) async fn amqp_check_and_clean(
    conn: &Connection,
    names: &RunNames,
    n: usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    // A consumer still registered would hold unacked messages: wait for it to go.
    let waiting = Instant::now();
    let input = loop {
        match amqp_depth(conn, &names.input).await {
            Ok((_, consumers)) if consumers > 0 && waiting.elapsed() < STEP => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => break other,
        }
    };
    match input {
        Ok((0, 0)) => {}
        Ok((ready, 0)) => problems.push(format!(
            "input queue still holds {ready} messages (unacked or never taken)"
        )),
        Ok((ready, consumers)) => problems.push(format!(
            "input queue: {ready} ready, {consumers} consumers still attached"
        )),
        Err(e) => problems.push(e),
    }
    match amqp_depth(conn, &names.output).await {
        Ok((count, _)) if count as usize == n => {}
        Ok((count, _)) => problems.push(format!("output queue holds {count} messages, want {n}")),
        Err(e) => problems.push(e),
    }
    match amqp_depth(conn, &names.dlq).await {
        Ok((0, _)) => {}
        Ok((count, _)) => problems.push(format!("DLQ holds {count} messages")),
        Err(e) => problems.push(e),
    }
    amqp_delete(conn, &[&names.input, &names.output, &names.dlq]).await;
    problems
}

/// The RabbitMQ node's OS pid (if it runs on this machine) and version,
/// from `rabbitmqctl`, else from tests/brokers.sh's pid file.
pub(crate) fn rabbitmq_node() -> (Option<String>, String) {
    let asked = std::process::Command::new("rabbitmqctl")
        .args(["-q", "eval", "[os:getpid(), rabbit_misc:version()]."])
        .output();
    let answer = asked
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // `["2971","3.10.8"]`
    let parts: Vec<&str> = answer.split('"').skip(1).step_by(2).collect();
    let pid = parts
        .first()
        .and_then(|p| local_process(p, "beam.smp"))
        .or_else(|| brokers_sh_pid("rabbitmq", "beam.smp"));
    let version = parts
        .get(1)
        .map(|v| format!("RabbitMQ {v}"))
        .unwrap_or_else(|| "RabbitMQ (version unknown)".into());
    (pid, version)
}

/// The whole RabbitMQ half: rounds of every variant, interleaved, each run
/// on an input queue of its own, seeded (untimed) with `inputs` right
/// before it.
pub(crate) fn bench_amqp(
    rt: &tokio::runtime::Runtime,
    s: &Settings,
    inputs: &[Input],
    host: &sluice_wasm::WasmHost,
) -> BrokerResults {
    let url = amqp_url();
    let prefix = run_prefix();
    let n = inputs.len();
    let (pid, version) = rabbitmq_node();
    let pid = pid.as_deref();
    rt.block_on(async {
        let admin = amqp_connect(&url, "sluice-bench-admin").await.unwrap_or_else(|e| panic!("{e}"));
        let mut results = BrokerResults::new(Broker::Rabbitmq, format!("{version} at {}", url.rsplit('@').next().unwrap_or(&url)), n);
        results.settings = format!(
            "prefetch (basic_qos) {} on the consuming channel, persistent mandatory publishes to the default exchange with publisher confirms, one ack per message (relay and sluice)",
            s.prefetch
        );
        let mut seed_times = Vec::new();
        for round in 0..s.rounds {
            for variant in Variant::all(Broker::Rabbitmq) {
                let names = RunNames::new(&prefix, variant, round);
                let seeding = Instant::now();
                let seeded = async {
                    amqp_declare(&admin, &[&names.input, &names.output, &names.dlq]).await?;
                    amqp_seed(&admin, &names.input, inputs).await
                };
                if let Err(e) = seeded.await {
                    results.record(variant, round, s.rounds, RunResult { timed: Err(format!("seeding: {e}")), problems: Vec::new() });
                    amqp_delete(&admin, &[&names.input, &names.output, &names.dlq]).await;
                    continue;
                }
                seed_times.push(seeding.elapsed().as_secs_f64());
                let (timed, mut problems) = match variant {
                    Variant::Relay => (amqp_relay(&url, &names, s.prefetch, n, s.timeout, pid).await, Vec::new()),
                    Variant::Sluice(shape) => {
                        let (timed, report) = amqp_sluice(&url, &names, host, shape, s.prefetch, n, s.timeout, pid).await;
                        (timed, report_problems(report.as_ref(), n as u64))
                    }
                };
                problems.extend(amqp_check_and_clean(&admin, &names, n).await);
                results.record(variant, round, s.rounds, RunResult { timed, problems });
            }
        }
        results.input = format!(
            "input published (persistent, confirmed) to a fresh durable queue before every run, untimed, median {:.2} s",
            if seed_times.is_empty() { 0.0 } else { median(&mut seed_times) }
        );
        amqp_close(&admin, "bench's admin").await;
        results
    })
}
