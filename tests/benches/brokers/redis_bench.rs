//! The Redis streams half: seed, plain relay, sluice, checks.
use super::*;
// ---------------------------------------------------------------- Redis

/// A multiplexed connection with a response timeout long enough for big
/// pipelines.
pub(crate) async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(10)))
        .set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(url)
        .expect("SLUICE_TEST_REDIS is a valid Redis URL")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach Redis at {url} (start it with `bash tests/brokers.sh redis`): {e}")
        })
}

/// XADD every input to `stream` (fields `payload` and `key`), pipelined.
pub(crate) async fn redis_seed(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    inputs: &[Input],
) {
    for chunk in inputs.chunks(1000) {
        let mut pipe = redis::pipe();
        for input in chunk {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("payload")
                .arg(&input.payload)
                .arg("key")
                .arg(&input.key)
                .ignore();
        }
        pipe.query_async::<()>(conn)
            .await
            .expect("seeding the input stream (XADD)");
    }
}

/// The plain relay: XREADGROUP COUNT 100 BLOCK 100 → one pipeline of XADDs
/// → XACK once the XADDs are answered; until `n` are relayed.
pub(crate) async fn redis_relay(
    url: &str,
    input: &str,
    names: &RunNames,
    n: usize,
    timeout: Duration,
    broker_pid: Option<&str>,
) -> Result<Timed, String> {
    let mut conn = redis_connection(url).await;
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(input)
        .arg(&names.group)
        .arg("0")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| format!("XGROUP CREATE: {e}"))?;
    let options = StreamReadOptions::default()
        .group(&names.group, "relay")
        .count(COUNT)
        .block(BLOCK.as_millis() as usize);
    let started = Stopwatch::start(broker_pid);
    let mut first = None;
    let mut relayed = 0;
    while relayed < n {
        if started.elapsed() > timeout {
            return Err(format!(
                "abandoned after {timeout:?}: {relayed} of {n} relayed"
            ));
        }
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[input], &[">"], &options)
            .await
            .map_err(|e| format!("XREADGROUP: {e}"))?;
        let Some(reply) = reply else { continue };
        let mut pipe = redis::pipe();
        let mut ids = Vec::with_capacity(COUNT);
        for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
            let xadd = pipe.cmd("XADD").arg(&names.output).arg("*");
            for field in ["payload", "key"] {
                if let Some(redis::Value::BulkString(value)) = entry.map.get(field) {
                    xadd.arg(field).arg(value.as_slice());
                }
            }
            ids.push(entry.id);
        }
        if ids.is_empty() {
            continue;
        }
        first.get_or_insert_with(|| started.elapsed());
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("XADD pipeline: {e}"))?;
        let _: usize = conn
            .xack(input, &names.group, &ids)
            .await
            .map_err(|e| format!("XACK: {e}"))?;
        relayed += ids.len();
    }
    Ok(started.stop(first))
}

/// sluice: redis-stream source → identity.wasm → redis-stream sink.
#[allow(clippy::too_many_arguments)] // one per knob the bench turns
pub(crate) async fn redis_sluice(
    url: &str,
    input: &str,
    names: &RunNames,
    host: &sluice_wasm::WasmHost,
    shape: Shape,
    n: usize,
    timeout: Duration,
    broker_pid: Option<&str>,
) -> (Result<Timed, String>, Option<PipelineReport>) {
    let base = Path::new(".");
    let sink = |stream: &str| {
        SinkConfig::RedisStream(StreamSinkConfig {
            url: url.into(),
            stream: Some(stream.into()),
            maxlen: None,
            payload_field: "payload".into(),
            key_field: "key".into(),
            password_env: None,
            tls: None,
            connect_timeout: secs(Duration::from_secs(10)),
        })
    };
    let source = SourceConfig::RedisStream(StreamSourceConfig {
        url: url.into(),
        stream: input.into(),
        group: names.group.clone(),
        consumer: Some("bench".into()),
        start: Start::Earliest,
        count: COUNT,
        block: secs(BLOCK),
        claim_idle: secs(Duration::from_secs(60)),
        payload_field: "payload".into(),
        key_field: "key".into(),
        password_env: None,
        tls: None,
        connect_timeout: secs(Duration::from_secs(10)),
        retry_stream: None,
    });
    // Sinks first: the source creates the group, and the clock starts right after.
    let out = sink(&names.output)
        .open(base, "out")
        .await
        .expect("opening the redis-stream sink");
    let dlq = sink(&names.dlq)
        .open(base, "bench.dlq")
        .await
        .expect("opening the redis-stream DLQ");
    let source = source
        .open(base)
        .await
        .expect("opening the redis-stream source");
    let (pipeline, stats) = one_stage_pipeline(source, out, dlq, host, shape);
    time_pipeline(pipeline, stats, n as u64, timeout, broker_pid).await
}

/// Entries of `group` on `stream` read and not acked.
pub(crate) async fn redis_pending(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
) -> Result<u64, String> {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await
        .map_err(|e| format!("XPENDING: {e}"))?;
    match reply {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(count)) => Ok(*count as u64),
            other => Err(format!("XPENDING: unexpected reply {other:?}")),
        },
        other => Err(format!("XPENDING: unexpected reply {other:?}")),
    }
}

/// After a run: the output holds exactly `n` entries, the DLQ none, and the
/// group has nothing pending. Deletes the run's streams and group.
pub(crate) async fn redis_check_and_clean(
    conn: &mut redis::aio::MultiplexedConnection,
    input: &str,
    names: &RunNames,
    n: usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    let out: usize = conn.xlen(&names.output).await.unwrap_or(0);
    if out != n {
        problems.push(format!("output stream holds {out} entries, want {n}"));
    }
    let dlq: usize = conn.xlen(&names.dlq).await.unwrap_or(0);
    if dlq != 0 {
        problems.push(format!("DLQ stream holds {dlq} entries"));
    }
    match redis_pending(conn, input, &names.group).await {
        Ok(0) => {}
        Ok(p) => problems.push(format!("{p} entries still pending in the group")),
        Err(e) => problems.push(e),
    }
    let _: Result<(), _> = conn.del(&[&names.output, &names.dlq]).await;
    let _: Result<(), _> = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(input)
        .arg(&names.group)
        .query_async(conn)
        .await;
    problems
}

/// A field of `INFO` output (`name:value` lines).
pub(crate) fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The whole Redis half: seed, then rounds of every variant, interleaved.
pub(crate) fn bench_redis(
    rt: &tokio::runtime::Runtime,
    s: &Settings,
    inputs: &[Input],
    host: &sluice_wasm::WasmHost,
) -> BrokerResults {
    let url = redis_url();
    let prefix = run_prefix();
    let input = format!("{prefix}.in");
    rt.block_on(async {
        let mut conn = redis_connection(&url).await;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .expect("INFO server");
        let seeding = Instant::now();
        redis_seed(&mut conn, &input, inputs).await;
        let seeded = seeding.elapsed();
        eprintln!(
            "bench: redis: {} entries added to `{input}` in {seeded:.2?}",
            inputs.len()
        );
        let version =
            info_field(&info, "redis_version").unwrap_or_else(|| "(version unknown)".into());
        let pid = info_field(&info, "process_id").and_then(|p| local_process(&p, "redis-server"));
        let pid = pid.as_deref();
        let mut results = BrokerResults::new(Broker::Redis, format!("Redis {version}"), s.n);
        results.input = format!("input written once in {:.2} s", seeded.as_secs_f64());
        results.settings = format!(
            "XREADGROUP COUNT {COUNT} BLOCK {} ms (relay and source)",
            BLOCK.as_millis()
        );
        for round in 0..s.rounds {
            for variant in Variant::all(Broker::Redis) {
                let names = RunNames::new(&prefix, variant, round);
                let (timed, mut problems) = match variant {
                    Variant::Relay => (
                        redis_relay(&url, &input, &names, s.n, s.timeout, pid).await,
                        Vec::new(),
                    ),
                    Variant::Sluice(shape) => {
                        let (timed, report) =
                            redis_sluice(&url, &input, &names, host, shape, s.n, s.timeout, pid)
                                .await;
                        (timed, report_problems(report.as_ref(), s.n as u64))
                    }
                };
                problems.extend(redis_check_and_clean(&mut conn, &input, &names, s.n).await);
                results.record(variant, round, s.rounds, RunResult { timed, problems });
            }
        }
        let _: Result<(), _> = conn.del(&input).await;
        results
    })
}
