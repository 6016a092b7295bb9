//! Broker relay benchmark: how fast sluice moves messages from a broker
//! through one Wasm stage back to the same broker, compared with a plain
//! relay written directly against the client library, in the same run, on
//! the same data.
//!
//! ```sh
//! bash tests/brokers.sh            # Redis on 6379, Kafka (tansu) on 19092
//! cargo bench -p sluice-tests --bench brokers
//! ```
//!
//! Environment:
//! - `SLUICE_BENCH_N`        messages per run (default 50000)
//! - `SLUICE_BENCH_BROKERS`  comma list of `redis`, `kafka` (default both)
//! - `SLUICE_BENCH_ROUNDS`   timed runs per variant, median reported (default 5)
//! - `SLUICE_BENCH_TIMEOUT`  seconds one run may take before it is abandoned (default 120)
//! - `SLUICE_BENCH_MD`       also write the tables as markdown to this file
//! - `SLUICE_TEST_REDIS`     Redis URL (default `redis://127.0.0.1:6379`)
//! - `SLUICE_TEST_KAFKA`     Kafka bootstrap address (default `127.0.0.1:19092`)
//!
//! What it measures, per broker (see BENCHMARKS.md, run 4):
//! - the input: N entries (Redis stream) or records (Kafka topic with 3
//!   partitions), each a ~200-byte JSON payload and a key, written once
//!   before anything is timed. Every run reads all of them with a consumer
//!   group of its own, so every run reads the same data;
//! - **relay**: a consumer-group reader and a writer in plain `redis` /
//!   `rdkafka` code, acknowledging the input only once the output write is
//!   confirmed (the same at-least-once contract sluice keeps);
//! - **sluice**: the `redis-stream` / `kafka` source and sink opened from
//!   their config structs, one `identity` Wasm stage (fuel and epoch on),
//!   a DLQ on the same broker, `Pipeline::run` in process; concurrency 1
//!   and 2 with the default `max_in_flight` (256 per worker), and
//!   concurrency 1 with `max_in_flight` 10000 (what the Kafka relay allows).
//!
//! A run's time goes from the moment the consumer is subscribed (group
//! created) until N messages are acknowledged: for the relay, XACKed or
//! delivery-confirmed; for sluice, counted in `PipelineStats::acked`. Also
//! reported: the time to the first message (for Kafka mostly the group
//! join) and the CPU time per message of this process and of the broker
//! (from `/proc`, when the broker runs on this machine). Each run is checked
//! afterwards (output length, nothing pending or uncommitted, no dead
//! letters); a failed check is printed next to its figure and makes the
//! bench exit 1. The bench never judges timings; it prints them, and the
//! ratio sluice/relay.

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message as _};
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use sluice_brokers::kafka::{KafkaSinkConfig, KafkaSourceConfig, OffsetReset};
use sluice_brokers::redis::{Start, StreamSinkConfig, StreamSourceConfig};
use sluice_brokers::{SinkConfig, SourceConfig};
use sluice_core::engine::EngineOptions;
use sluice_core::{HumanDuration, Limits, Pipeline, PipelineReport, PipelineStats, RetryPolicy, StageKind, SystemClock};
use sluice_tests::kafka_client::kafka_addr;
use sluice_tests::redis_client::redis_url;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Size of every generated payload, exactly.
const PAYLOAD_BYTES: usize = 200;
/// Distinct keys (customer ids) in the input.
const KEYS: u64 = 5000;
/// Entries per XREADGROUP, for the relay and for sluice's source.
const COUNT: usize = 100;
/// How long one XREADGROUP waits for new entries (BLOCK), both variants.
const BLOCK: Duration = Duration::from_millis(100);
/// Partitions of every Kafka topic the bench creates (the DLQ gets one).
const PARTITIONS: i32 = 3;
/// Delivery reports the Kafka relay keeps outstanding at most.
const KAFKA_IN_FLIGHT: usize = 10_000;
/// How often the Kafka relay commits (sluice's default `commit_interval`).
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// The sluice engine shapes measured: (concurrency, max_in_flight). 256 is
/// the engine's default `max_in_flight`; the last row raises it to the
/// relay's [`KAFKA_IN_FLIGHT`].
const SHAPES: [(usize, usize); 3] = [(1, 256), (2, 256), (1, KAFKA_IN_FLIGHT)];
/// Generous bound on every set-up step and check (connect, seed, read back).
const STEP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- settings

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Broker {
    Redis,
    Kafka,
}

struct Settings {
    n: usize,
    rounds: usize,
    timeout: Duration,
    brokers: Vec<Broker>,
}

impl Settings {
    fn from_env() -> Settings {
        let brokers = std::env::var("SLUICE_BENCH_BROKERS").unwrap_or_else(|_| "redis,kafka".into());
        let brokers = brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(|b| match b {
                "redis" => Broker::Redis,
                "kafka" => Broker::Kafka,
                other => panic!("SLUICE_BENCH_BROKERS: unknown broker `{other}` (use redis, kafka)"),
            })
            .collect();
        let n = env_usize("SLUICE_BENCH_N", 50_000);
        assert!(n > 0, "SLUICE_BENCH_N must be positive");
        Settings {
            n,
            rounds: env_usize("SLUICE_BENCH_ROUNDS", 5).max(1),
            timeout: Duration::from_secs(env_usize("SLUICE_BENCH_TIMEOUT", 120) as u64),
            brokers,
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// A prefix no earlier run used: every stream, topic and group of this run
/// starts with it.
fn run_prefix() -> String {
    let ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("sluice-bench-{}-{ms}", std::process::id())
}

// ---------------------------------------------------------------- input data

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One input message: key and JSON payload of exactly [`PAYLOAD_BYTES`].
struct Input {
    key: String,
    payload: String,
}

fn generate(n: usize) -> Vec<Input> {
    const COUNTRIES: [&str; 6] = ["DE", "FR", "US", "GB", "JP", "BR"];
    let mut rng = Rng(0x0B40_CE55_5EED_0001);
    (0..n)
        .map(|i| {
            let customer = rng.below(KEYS);
            let cents = 500 + rng.below(200_000);
            let mut payload = format!(
                r#"{{"id":"o-{i:07}","customer_id":"c-{customer:04}","country":"{}","amount":{}.{:02},"items":{},"note":""#,
                COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize],
                cents / 100,
                cents % 100,
                1 + rng.below(4),
            );
            let pad = PAYLOAD_BYTES - 2 - payload.len(); // 2: the closing `"}`
            payload.extend(std::iter::repeat_n('x', pad));
            payload.push_str("\"}");
            assert_eq!(payload.len(), PAYLOAD_BYTES);
            Input { key: format!("c-{customer:04}"), payload }
        })
        .collect()
}

// ---------------------------------------------------------------- runs

/// The variants measured per broker, in table order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Variant {
    Relay,
    Sluice(Shape),
}

/// What a sluice variant changes in `EngineOptions::default()`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Shape {
    concurrency: usize,
    max_in_flight: usize,
}

impl Shape {
    fn options(self) -> EngineOptions {
        EngineOptions { concurrency: self.concurrency, max_in_flight: self.max_in_flight, ..EngineOptions::default() }
    }
}

impl Variant {
    fn all() -> Vec<Variant> {
        let mut all = vec![Variant::Relay];
        all.extend(SHAPES.iter().map(|&(concurrency, max_in_flight)| Variant::Sluice(Shape { concurrency, max_in_flight })));
        all
    }

    fn label(self, broker: Broker) -> String {
        match (self, broker) {
            (Variant::Relay, Broker::Redis) => "relay (redis crate)".into(),
            (Variant::Relay, Broker::Kafka) => format!("relay (rdkafka, {KAFKA_IN_FLIGHT} in flight)"),
            (Variant::Sluice(shape), _) => {
                let mut label = format!("sluice, concurrency {}", shape.concurrency);
                if shape.max_in_flight != EngineOptions::default().max_in_flight {
                    label += &format!(", max_in_flight {}", shape.max_in_flight);
                }
                label
            }
        }
    }
}

/// What one timed run measured.
#[derive(Clone, Debug)]
struct Timed {
    /// From subscription to N acknowledged.
    elapsed: Duration,
    /// From subscription to the first message in hand.
    first: Duration,
    /// CPU time (user + system) this process used meanwhile, all threads.
    cpu: Option<Duration>,
    /// CPU time the broker process used meanwhile, when it runs on this machine.
    broker_cpu: Option<Duration>,
}

/// CPU time used so far by process `pid` (user + system, all threads), from
/// `/proc/PID/stat`, in USER_HZ ticks of 10 ms.
fn cpu_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)` one; utime and stime are fields 14 and 15 of the line.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// `pid` if it is a local process whose name starts with `name`.
fn local_process(pid: &str, name: &str) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    comm.starts_with(name).then(|| pid.to_string())
}

/// Starts the clocks of one run: wall time, this process's CPU time and the
/// broker's (given its local pid).
struct Stopwatch {
    started: Instant,
    cpu: Option<Duration>,
    broker_pid: Option<String>,
    broker_cpu: Option<Duration>,
}

impl Stopwatch {
    fn start(broker_pid: Option<&str>) -> Stopwatch {
        Stopwatch {
            started: Instant::now(),
            cpu: cpu_of("self"),
            broker_pid: broker_pid.map(String::from),
            broker_cpu: broker_pid.and_then(cpu_of),
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The run is done; `first` is when its first message was in hand.
    fn stop(&self, first: Option<Duration>) -> Timed {
        let since = |before: Option<Duration>, now: Option<Duration>| Some(now?.saturating_sub(before?));
        Timed {
            elapsed: self.started.elapsed(),
            first: first.unwrap_or_default(),
            cpu: since(self.cpu, cpu_of("self")),
            broker_cpu: since(self.broker_cpu, self.broker_pid.as_deref().and_then(cpu_of)),
        }
    }
}

/// One run's result: timings, or why it has none; and what its checks found.
struct RunResult {
    timed: Result<Timed, String>,
    problems: Vec<String>,
}

/// Names of one run's group and output streams or topics.
#[derive(Clone)]
struct RunNames {
    group: String,
    output: String,
    dlq: String,
}

impl RunNames {
    fn new(prefix: &str, variant: Variant, round: usize) -> RunNames {
        let tag = match variant {
            Variant::Relay => "relay".to_string(),
            Variant::Sluice(shape) => format!("sluice-c{}-f{}", shape.concurrency, shape.max_in_flight),
        };
        let base = format!("{prefix}.{tag}.r{round}");
        RunNames { group: format!("{base}.g"), output: format!("{base}.out"), dlq: format!("{base}.dlq") }
    }
}

/// Run a pipeline until `n` messages are acked (or `timeout`), then stop it
/// and return the timings with the final report.
async fn time_pipeline(
    pipeline: Pipeline,
    stats: Arc<PipelineStats>,
    n: u64,
    timeout: Duration,
    broker_pid: Option<&str>,
) -> (Result<Timed, String>, Option<PipelineReport>) {
    let shutdown = CancellationToken::new();
    let started = Stopwatch::start(broker_pid);
    let mut run = tokio::spawn(pipeline.run(shutdown.clone()));
    let mut first = None;
    let timed = loop {
        let counts = stats.snapshot();
        if first.is_none() && counts.received > 0 {
            first = Some(started.elapsed());
        }
        if counts.acked >= n {
            break Ok(started.stop(first));
        }
        if run.is_finished() {
            break Err(format!("the pipeline stopped after {} of {n} acks", counts.acked));
        }
        if started.elapsed() > timeout {
            break Err(format!("abandoned after {timeout:?}: {} of {n} acked", counts.acked));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    shutdown.cancel();
    let report = match tokio::time::timeout(STEP, &mut run).await {
        Ok(Ok(Ok(report))) => Some(report),
        Ok(Ok(Err(e))) => return (timed.and(Err(format!("pipeline failed: {e}"))), None),
        Ok(Err(e)) => return (timed.and(Err(format!("pipeline task failed: {e}"))), None),
        Err(_) => {
            run.abort();
            return (timed.and(Err(format!("the pipeline did not stop within {STEP:?} of the cancel"))), None);
        }
    };
    (timed, report)
}

/// Problems in a sluice report: every message received, delivered once,
/// nothing dead-lettered or retried.
fn report_problems(report: Option<&PipelineReport>, n: u64) -> Vec<String> {
    let Some(report) = report else { return Vec::new() };
    let c = &report.counts;
    let mut problems = Vec::new();
    if c.received != n || c.delivered != n || c.acked != n {
        problems.push(format!("received {} delivered {} acked {} (want {n} each)", c.received, c.delivered, c.acked));
    }
    if c.dead_lettered > 0 {
        problems.push(format!("{} dead-lettered", c.dead_lettered));
    }
    if c.sink_retries > 0 {
        problems.push(format!("{} sink retries", c.sink_retries));
    }
    problems
}

/// A fresh `identity` stage (kind transform) on `host`.
fn identity_stage(host: &sluice_wasm::WasmHost) -> Arc<sluice_core::StageSpec> {
    sluice_tests::wasm_stage(host, "identity", "identity", StageKind::Transform, Limits::default(), BTreeMap::new(), RetryPolicy::default())
}

/// Assemble a one-stage pipeline; returns it with its stats.
fn one_stage_pipeline(
    source: Box<dyn sluice_core::Source>,
    sink: Arc<dyn sluice_core::Sink>,
    dlq: Arc<dyn sluice_core::Sink>,
    host: &sluice_wasm::WasmHost,
    shape: Shape,
) -> (Pipeline, Arc<PipelineStats>) {
    let stats = Arc::<PipelineStats>::default();
    let pipeline = Pipeline {
        name: "bench".into(),
        source,
        stages: vec![identity_stage(host)],
        sinks: vec![("out".into(), sink)],
        dlq,
        options: shape.options(),
        clock: Arc::new(SystemClock),
        stats: stats.clone(),
    };
    (pipeline, stats)
}

fn secs(d: Duration) -> HumanDuration {
    HumanDuration(d)
}

// ---------------------------------------------------------------- Redis

/// A multiplexed connection with a response timeout long enough for big
/// pipelines.
async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(10)))
        .set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(url)
        .expect("SLUICE_TEST_REDIS is a valid Redis URL")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| panic!("cannot reach Redis at {url} (start it with `bash tests/brokers.sh redis`): {e}"))
}

/// XADD every input to `stream` (fields `payload` and `key`), pipelined.
async fn redis_seed(conn: &mut redis::aio::MultiplexedConnection, stream: &str, inputs: &[Input]) {
    for chunk in inputs.chunks(1000) {
        let mut pipe = redis::pipe();
        for input in chunk {
            pipe.cmd("XADD").arg(stream).arg("*").arg("payload").arg(&input.payload).arg("key").arg(&input.key).ignore();
        }
        pipe.query_async::<()>(conn).await.expect("seeding the input stream (XADD)");
    }
}

/// The plain relay: XREADGROUP COUNT 100 BLOCK 100 → one pipeline of XADDs
/// → XACK once the XADDs are answered; until `n` are relayed.
async fn redis_relay(url: &str, input: &str, names: &RunNames, n: usize, timeout: Duration, broker_pid: Option<&str>) -> Result<Timed, String> {
    let mut conn = redis_connection(url).await;
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(input)
        .arg(&names.group)
        .arg("0")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| format!("XGROUP CREATE: {e}"))?;
    let options = StreamReadOptions::default().group(&names.group, "relay").count(COUNT).block(BLOCK.as_millis() as usize);
    let started = Stopwatch::start(broker_pid);
    let mut first = None;
    let mut relayed = 0;
    while relayed < n {
        if started.elapsed() > timeout {
            return Err(format!("abandoned after {timeout:?}: {relayed} of {n} relayed"));
        }
        let reply: Option<StreamReadReply> =
            conn.xread_options(&[input], &[">"], &options).await.map_err(|e| format!("XREADGROUP: {e}"))?;
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
        pipe.query_async::<()>(&mut conn).await.map_err(|e| format!("XADD pipeline: {e}"))?;
        let _: usize = conn.xack(input, &names.group, &ids).await.map_err(|e| format!("XACK: {e}"))?;
        relayed += ids.len();
    }
    Ok(started.stop(first))
}

/// sluice: redis-stream source → identity.wasm → redis-stream sink.
async fn redis_sluice(
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
        connect_timeout: secs(Duration::from_secs(10)),
    });
    // Sinks first: the source creates the group, and the clock starts right after.
    let out = sink(&names.output).open(base, "out").await.expect("opening the redis-stream sink");
    let dlq = sink(&names.dlq).open(base, "bench.dlq").await.expect("opening the redis-stream DLQ");
    let source = source.open(base).await.expect("opening the redis-stream source");
    let (pipeline, stats) = one_stage_pipeline(source, out, dlq, host, shape);
    time_pipeline(pipeline, stats, n as u64, timeout, broker_pid).await
}

/// Entries of `group` on `stream` read and not acked.
async fn redis_pending(conn: &mut redis::aio::MultiplexedConnection, stream: &str, group: &str) -> Result<u64, String> {
    let reply: redis::Value =
        redis::cmd("XPENDING").arg(stream).arg(group).query_async(conn).await.map_err(|e| format!("XPENDING: {e}"))?;
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
async fn redis_check_and_clean(conn: &mut redis::aio::MultiplexedConnection, input: &str, names: &RunNames, n: usize) -> Vec<String> {
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
    let _: Result<(), _> = redis::cmd("XGROUP").arg("DESTROY").arg(input).arg(&names.group).query_async(conn).await;
    problems
}

/// A field of `INFO` output (`name:value` lines).
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(|v| v.trim().to_string())
}

/// The whole Redis half: seed, then rounds of every variant, interleaved.
fn bench_redis(rt: &tokio::runtime::Runtime, s: &Settings, inputs: &[Input], host: &sluice_wasm::WasmHost) -> BrokerResults {
    let url = redis_url();
    let prefix = run_prefix();
    let input = format!("{prefix}.in");
    rt.block_on(async {
        let mut conn = redis_connection(&url).await;
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.expect("INFO server");
        let seeding = Instant::now();
        redis_seed(&mut conn, &input, inputs).await;
        let seeded = seeding.elapsed();
        eprintln!("bench: redis: {} entries added to `{input}` in {seeded:.2?}", inputs.len());
        let version = info_field(&info, "redis_version").unwrap_or_else(|| "(version unknown)".into());
        let pid = info_field(&info, "process_id").and_then(|p| local_process(&p, "redis-server"));
        let pid = pid.as_deref();
        let mut results = BrokerResults::new(Broker::Redis, format!("Redis {version}"), seeded);
        for round in 0..s.rounds {
            for variant in Variant::all() {
                let names = RunNames::new(&prefix, variant, round);
                let (timed, mut problems) = match variant {
                    Variant::Relay => (redis_relay(&url, &input, &names, s.n, s.timeout, pid).await, Vec::new()),
                    Variant::Sluice(shape) => {
                        let (timed, report) = redis_sluice(&url, &input, &names, host, shape, s.n, s.timeout, pid).await;
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

// ---------------------------------------------------------------- Kafka

fn kafka_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

/// Create topics (name, partitions); each must be new.
async fn kafka_create(brokers: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = kafka_config(brokers).create().expect("Kafka admin client");
    let new: Vec<NewTopic<'_>> = topics.iter().map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1))).collect();
    let results = admin
        .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
        .await
        .unwrap_or_else(|e| panic!("cannot reach Kafka at {brokers} (start it with `bash tests/brokers.sh kafka`): {e}"));
    for result in results {
        if let Err((topic, code)) = result {
            panic!("creating Kafka topic {topic}: {code}");
        }
    }
}

/// Delete topics, ignoring failures (a broker without deletion keeps them).
async fn kafka_delete(brokers: &str, topics: &[&str]) {
    if let Ok(admin) = kafka_config(brokers).create::<AdminClient<DefaultClientContext>>() {
        let _ = tokio::time::timeout(STEP, admin.delete_topics(topics, &AdminOptions::new())).await;
    }
}

/// An idempotent, acks=all producer with linger.ms=5: the settings of
/// sluice's kafka sink.
fn kafka_producer(brokers: &str) -> FutureProducer {
    kafka_config(brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("Kafka producer")
}

/// Queue one record, waiting while librdkafka's queue is full.
async fn kafka_send(producer: &FutureProducer, record: FutureRecord<'_, [u8], [u8]>) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
    let mut record = record;
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Produce every input to `topic` and wait for all delivery reports.
async fn kafka_seed(brokers: &str, topic: &str, inputs: &[Input]) {
    let producer = kafka_producer(brokers);
    let mut reports = FuturesUnordered::new();
    for input in inputs {
        let record = FutureRecord::to(topic).key(input.key.as_bytes()).payload(input.payload.as_bytes());
        reports.push(kafka_send(&producer, record).await.expect("queueing an input record"));
    }
    while let Some(report) = reports.next().await {
        match report {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => panic!("seeding the input topic: {e}"),
            Err(_) => panic!("seeding the input topic: the producer went away"),
        }
    }
}

/// Per input partition: offsets taken and not yet delivered, and the next
/// offset after the highest taken. Everything below the first undelivered
/// offset may be committed.
#[derive(Default)]
struct Progress {
    partitions: HashMap<i32, (BTreeSet<i64>, i64)>,
    committed: HashMap<i32, i64>,
}

impl Progress {
    fn taken(&mut self, partition: i32, offset: i64) {
        let (in_flight, next) = self.partitions.entry(partition).or_default();
        in_flight.insert(offset);
        *next = (*next).max(offset + 1);
    }

    fn delivered(&mut self, partition: i32, offset: i64) {
        if let Some((in_flight, _)) = self.partitions.get_mut(&partition) {
            in_flight.remove(&offset);
        }
    }

    /// Partitions whose commit point moved since the last call.
    fn to_commit(&mut self, topic: &str) -> Option<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (partition, (in_flight, next)) in &self.partitions {
            let point = in_flight.first().copied().unwrap_or(*next);
            if self.committed.get(partition) != Some(&point) {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(point)).expect("offset list");
                self.committed.insert(*partition, point);
            }
        }
        (tpl.count() > 0).then_some(tpl)
    }
}

/// The plain relay: StreamConsumer (fresh group, earliest, no auto-commit)
/// → FutureProducer, up to [`KAFKA_IN_FLIGHT`] delivery reports
/// outstanding; offsets committed every second up to the first record not
/// yet delivered, and at the end.
async fn kafka_relay(brokers: &str, input: &str, names: &RunNames, n: usize, timeout: Duration, broker_pid: Option<&str>) -> Result<Timed, String> {
    let producer = kafka_producer(brokers);
    let consumer: StreamConsumer = kafka_config(brokers)
        .set("group.id", &names.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    consumer.subscribe(&[input]).map_err(|e| format!("subscribe: {e}"))?;
    let started = Stopwatch::start(broker_pid);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = None;
    let mut progress = Progress::default();
    let mut in_flight = FuturesUnordered::new();
    let mut tick = tokio::time::interval(COMMIT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut delivered = 0;
    while delivered < n {
        tokio::select! {
            biased;
            Some((partition, offset, report)) = in_flight.next(), if !in_flight.is_empty() => {
                match report {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(format!("delivery failed: {e}")),
                    Err(_) => return Err("the producer went away".into()),
                }
                progress.delivered(partition, offset);
                delivered += 1;
            }
            _ = tick.tick() => {
                if let Some(tpl) = progress.to_commit(input) {
                    consumer.commit(&tpl, CommitMode::Async).map_err(|e| format!("commit: {e}"))?;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("abandoned after {timeout:?}: {delivered} of {n} delivered"));
            }
            fetched = consumer.recv(), if in_flight.len() < KAFKA_IN_FLIGHT => {
                let m = fetched.map_err(|e| format!("consume: {e}"))?;
                first.get_or_insert_with(|| started.elapsed());
                let mut record = FutureRecord::<[u8], [u8]>::to(&names.output).payload(m.payload().unwrap_or_default());
                if let Some(key) = m.key() {
                    record = record.key(key);
                }
                let (partition, offset) = (m.partition(), m.offset());
                let report = kafka_send(&producer, record).await.map_err(|e| format!("produce: {e}"))?;
                progress.taken(partition, offset);
                in_flight.push(async move { (partition, offset, report.await) });
            }
        }
    }
    let timed = started.stop(first);
    if let Some(tpl) = progress.to_commit(input) {
        consumer.commit(&tpl, CommitMode::Sync).map_err(|e| format!("final commit: {e}"))?;
    }
    consumer.unsubscribe();
    Ok(timed)
}

/// sluice: kafka source → identity.wasm → kafka sink, DLQ a kafka topic.
async fn kafka_sluice(
    brokers: &str,
    input: &str,
    names: &RunNames,
    host: &sluice_wasm::WasmHost,
    shape: Shape,
    n: usize,
    timeout: Duration,
    broker_pid: Option<&str>,
) -> (Result<Timed, String>, Option<PipelineReport>) {
    let base = Path::new(".");
    let sink = |topic: &str| {
        SinkConfig::Kafka(KafkaSinkConfig {
            brokers: brokers.into(),
            topic: Some(topic.into()),
            connect_timeout: secs(Duration::from_secs(10)),
            properties: BTreeMap::new(),
        })
    };
    let source = SourceConfig::Kafka(KafkaSourceConfig {
        brokers: brokers.into(),
        group: names.group.clone(),
        topics: vec![input.into()],
        topic_pattern: None,
        auto_offset_reset: OffsetReset::Earliest,
        commit_interval: secs(COMMIT_EVERY),
        connect_timeout: secs(Duration::from_secs(10)),
        properties: BTreeMap::new(),
    });
    // Sinks first: the source subscribes, and the clock starts right after.
    let out = sink(&names.output).open(base, "out").await.expect("opening the kafka sink");
    let dlq = sink(&names.dlq).open(base, "bench.dlq").await.expect("opening the kafka DLQ");
    let source = source.open(base).await.expect("opening the kafka source");
    let (pipeline, stats) = one_stage_pipeline(source, out, dlq, host, shape);
    time_pipeline(pipeline, stats, n as u64, timeout, broker_pid).await
}

/// Records in `topic` (sum of high − low watermarks over its partitions).
fn kafka_count(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Result<i64, String> {
    let mut total = 0;
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, STEP).map_err(|e| format!("watermarks of {topic}/{p}: {e}"))?;
        total += high - low;
    }
    Ok(total)
}

/// After a run: the output topic holds exactly `n` records, the DLQ none,
/// and the group committed every input partition up to its end.
fn kafka_check(brokers: &str, input: &str, names: &RunNames, n: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let consumer: BaseConsumer = match kafka_config(brokers).set("group.id", &names.group).set("enable.auto.commit", "false").create() {
        Ok(c) => c,
        Err(e) => return vec![format!("checking consumer: {e}")],
    };
    match kafka_count(&consumer, &names.output, PARTITIONS) {
        Ok(count) if count == n as i64 => {}
        Ok(count) => problems.push(format!("output topic holds {count} records, want {n}")),
        Err(e) => problems.push(e),
    }
    match kafka_count(&consumer, &names.dlq, 1) {
        Ok(0) => {}
        Ok(count) => problems.push(format!("DLQ topic holds {count} records")),
        Err(e) => problems.push(e),
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(input, p);
    }
    match consumer.committed_offsets(tpl, STEP) {
        Ok(committed) => {
            for e in committed.elements() {
                let high = consumer.fetch_watermarks(input, e.partition(), STEP).map(|(_, h)| h).unwrap_or(-1);
                if e.offset() != Offset::Offset(high) {
                    problems.push(format!("partition {} committed at {:?}, its end is {high}", e.partition(), e.offset()));
                }
            }
        }
        Err(e) => problems.push(format!("committed offsets: {e}")),
    }
    problems
}

/// Where tests/brokers.sh keeps its tools and pid files.
fn sluice_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default()
        .join("sluice")
}

/// The tansu version tests/brokers.sh installed, if it did.
fn tansu_version() -> String {
    std::fs::read_to_string(sluice_cache().join("tools/tansu.version"))
        .map(|v| format!("tansu {} (tests/brokers.sh)", v.trim()))
        .unwrap_or_else(|_| "Kafka-compatible broker (version unknown)".into())
}

/// The pid of the tansu that tests/brokers.sh started, if it runs.
fn tansu_pid() -> Option<String> {
    let pid = std::fs::read_to_string(sluice_cache().join("pids/tansu.pid")).ok()?;
    local_process(pid.trim(), "tansu")
}

/// The whole Kafka half: seed, then rounds of every variant, interleaved.
fn bench_kafka(rt: &tokio::runtime::Runtime, s: &Settings, inputs: &[Input], host: &sluice_wasm::WasmHost) -> BrokerResults {
    let brokers = kafka_addr();
    let prefix = run_prefix();
    let input = format!("{prefix}.in");
    rt.block_on(async {
        kafka_create(&brokers, &[(&input, PARTITIONS)]).await;
        let seeding = Instant::now();
        kafka_seed(&brokers, &input, inputs).await;
        let seeded = seeding.elapsed();
        eprintln!("bench: kafka: {} records produced to `{input}` in {seeded:.2?}", inputs.len());
        let mut results = BrokerResults::new(Broker::Kafka, format!("{} at {brokers}", tansu_version()), seeded);
        let pid = tansu_pid();
        let pid = pid.as_deref();
        let mut topics = vec![input.clone()];
        for round in 0..s.rounds {
            for variant in Variant::all() {
                let names = RunNames::new(&prefix, variant, round);
                kafka_create(&brokers, &[(&names.output, PARTITIONS), (&names.dlq, 1)]).await;
                let (timed, mut problems) = match variant {
                    Variant::Relay => (kafka_relay(&brokers, &input, &names, s.n, s.timeout, pid).await, Vec::new()),
                    Variant::Sluice(shape) => {
                        let (timed, report) = kafka_sluice(&brokers, &input, &names, host, shape, s.n, s.timeout, pid).await;
                        (timed, report_problems(report.as_ref(), s.n as u64))
                    }
                };
                let (b, i, to_check, n) = (brokers.clone(), input.clone(), names.clone(), s.n);
                let checked = tokio::task::spawn_blocking(move || kafka_check(&b, &i, &to_check, n));
                problems.extend(checked.await.expect("kafka check task"));
                topics.extend([names.output, names.dlq]);
                results.record(variant, round, s.rounds, RunResult { timed, problems });
            }
        }
        kafka_delete(&brokers, &topics.iter().map(String::as_str).collect::<Vec<_>>()).await;
        results
    })
}

// ---------------------------------------------------------------- results

/// Every run of one broker, by variant.
struct BrokerResults {
    broker: Broker,
    server: String,
    seeded: Duration,
    runs: HashMap<Variant, Vec<RunResult>>,
}

impl BrokerResults {
    fn new(broker: Broker, server: String, seeded: Duration) -> BrokerResults {
        BrokerResults { broker, server, seeded, runs: HashMap::new() }
    }

    fn record(&mut self, variant: Variant, round: usize, rounds: usize, run: RunResult) {
        let what = format!("bench: {:?} round {}/{rounds}: {}", self.broker, round + 1, variant.label(self.broker));
        match &run.timed {
            Ok(t) => eprintln!("{what}: {:.2?} (first message after {:.2?})", t.elapsed, t.first),
            Err(e) => eprintln!("{what}: FAILED: {e}"),
        }
        for p in &run.problems {
            eprintln!("{what}: CHECK FAILED: {p}");
        }
        self.runs.entry(variant).or_default().push(run);
    }

    fn failed(&self) -> bool {
        self.runs.values().flatten().any(|r| r.timed.is_err() || !r.problems.is_empty())
    }

    /// Medians over the successful runs of one variant.
    fn summary(&self, variant: Variant, n: usize) -> Option<Summary> {
        let timed: Vec<&Timed> = self.runs.get(&variant)?.iter().filter_map(|r| r.timed.as_ref().ok()).collect();
        if timed.is_empty() {
            return None;
        }
        let of = |f: &dyn Fn(&Timed) -> f64| median(&mut timed.iter().map(|t| f(t)).collect::<Vec<_>>());
        let secs = of(&|t| t.elapsed.as_secs_f64());
        let (min, max) = timed.iter().map(|t| t.elapsed.as_secs_f64()).fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
        Some(Summary {
            secs,
            rate: n as f64 / secs,
            steady_rate: of(&|t| n as f64 / (t.elapsed - t.first).as_secs_f64().max(1e-9)),
            first_ms: of(&|t| t.first.as_secs_f64() * 1000.0),
            cpu_us: per_message(timed.iter().map(|t| t.cpu), n),
            broker_cpu_us: per_message(timed.iter().map(|t| t.broker_cpu), n),
            spread: (max - min) / secs * 100.0,
        })
    }

    fn table(&self, n: usize, rounds: usize) -> Table {
        let title = match self.broker {
            Broker::Redis => "Redis streams: input stream → (relay | sluice) → output stream",
            Broker::Kafka => "Kafka: input topic (3 partitions) → (relay | sluice) → output topic (3 partitions)",
        };
        let mut t = Table::new(
            title,
            &[
                "variant",
                "messages",
                "seconds",
                "msg/s",
                "vs relay",
                "first msg (ms)",
                "msg/s after first",
                "bench CPU µs/msg",
                "broker CPU µs/msg",
                "spread",
                "ok runs",
                "check",
            ],
        );
        let relay = self.summary(Variant::Relay, n).map(|r| r.rate);
        for variant in Variant::all() {
            let runs = self.runs.get(&variant).map(Vec::as_slice).unwrap_or_default();
            let ok = runs.iter().filter(|r| r.timed.is_ok()).count();
            let problems: Vec<String> = runs
                .iter()
                .flat_map(|r| r.timed.as_ref().err().into_iter().chain(&r.problems).cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let check = if problems.is_empty() { "ok".to_string() } else { problems.join("; ") };
            let mut row = vec![variant.label(self.broker), n.to_string()];
            match self.summary(variant, n) {
                Some(m) => row.extend([
                    format!("{:.2}", m.secs),
                    thousands(m.rate),
                    match (variant, relay) {
                        (Variant::Relay, _) => "1.00x".into(),
                        (_, Some(r)) => format!("{:.2}x", m.rate / r),
                        (_, None) => "-".into(),
                    },
                    format!("{:.0}", m.first_ms),
                    thousands(m.steady_rate),
                    m.cpu_us.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into()),
                    m.broker_cpu_us.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into()),
                    format!("{:.0}%", m.spread),
                ]),
                None => row.extend(["-", "-", "-", "-", "-", "-", "-", "-"].map(String::from)),
            }
            row.extend([format!("{ok}/{rounds}"), check]);
            t.rows.push(row);
        }
        t.notes.push(format!(
            "server: {}; input written once in {:.2} s; median of {rounds} runs per variant, rounds interleaved.",
            self.server,
            self.seeded.as_secs_f64()
        ));
        t.notes.push("seconds: from subscription (group created) to N acknowledged; msg/s = N / seconds; vs relay = msg/s ratio sluice/relay.".into());
        t.notes.push("first msg: time until the first message was in hand (Kafka: mostly the group join); msg/s after first = N / (seconds - first msg).".into());
        t.notes.push("CPU µs/msg: user + system CPU time during the timed part / N, median; bench = this whole process (client and".into());
        t.notes.push("sluice engine, all threads), broker = the broker process (when it runs on this machine; 10 ms ticks).".into());
        t.notes.push("spread: (max - min) / median of the seconds over the rounds.".into());
        t
    }
}

/// Medians of one variant's successful runs.
struct Summary {
    secs: f64,
    rate: f64,
    steady_rate: f64,
    first_ms: f64,
    /// Median CPU microseconds per message, of this process and of the broker.
    cpu_us: Option<f64>,
    broker_cpu_us: Option<f64>,
    /// (max − min) / median of the seconds, in percent.
    spread: f64,
}

/// Median of some CPU times, in microseconds per message; `None` if any is unknown.
fn per_message(cpu: impl Iterator<Item = Option<Duration>>, n: usize) -> Option<f64> {
    let mut us: Vec<f64> = cpu.map(|c| c.map(|c| c.as_secs_f64() * 1e6 / n as f64)).collect::<Option<_>>()?;
    Some(median(&mut us))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------- output

struct Table {
    title: String,
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    fn new(title: &str, head: &[&'static str]) -> Table {
        Table { title: title.into(), head: head.to_vec(), rows: Vec::new(), notes: Vec::new() }
    }

    /// Aligned plain text: the first column left, the others right.
    fn text(&self) -> String {
        let mut widths: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::from(" ");
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                let pad = " ".repeat(w - cell.chars().count());
                let last = i + 1 == cells.len();
                match (i, last) {
                    (0, _) => write!(out, " {cell}{pad}"),
                    (_, true) => write!(out, "  {cell}"), // the check column: left, unpadded
                    _ => write!(out, "  {pad}{cell}"),
                }
                .expect("write to a String");
            }
            out.push('\n');
            out
        };
        let mut out = format!("{}\n", self.title);
        out += &line(self.head.clone());
        out += &format!("  {}\n", "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
        for row in &self.rows {
            out += &line(row.iter().map(String::as_str).collect());
        }
        for note in &self.notes {
            out += &format!("  {note}\n");
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!("#### {}\n\n| {} |\n|", self.title, self.head.join(" | "));
        for i in 0..self.head.len() {
            out += if i == 0 || i + 1 == self.head.len() { " --- |" } else { " ---: |" };
        }
        out.push('\n');
        for row in &self.rows {
            out += &format!("| {} |\n", row.join(" | "));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                out += &format!("{note}\n");
            }
        }
        out
    }
}

fn thousands(v: f64) -> String {
    let digits = format!("{v:.0}");
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Today's date (UTC) as YYYY-MM-DD, from the civil-from-days conversion.
fn today() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64 + 719_468; // days since 0000-03-01
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

// ---------------------------------------------------------------- main

fn main() {
    let bench_started = Instant::now();
    let s = Settings::from_env();
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    let inputs = generate(s.n);
    let host = sluice_tests::host();
    // Load (compile or fetch from the artifact cache) before anything is timed.
    drop(identity_stage(&host));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");

    let mut results = Vec::new();
    for broker in &s.brokers {
        eprintln!("bench: {broker:?}: N = {}, {} round(s), timeout {:?} per run", s.n, s.rounds, s.timeout);
        results.push(match broker {
            Broker::Redis => bench_redis(&rt, &s, &inputs, &host),
            Broker::Kafka => bench_kafka(&rt, &s, &inputs, &host),
        });
    }

    let header = [
        format!("date: {} (UTC)", today()),
        format!("machine: {cores} cores (available_parallelism), CPU: {}", cpu_model()),
        format!(
            "messages: N = {}, payload {PAYLOAD_BYTES} bytes of JSON, key out of {KEYS} customer ids; XREADGROUP COUNT {COUNT} BLOCK {} ms",
            s.n,
            BLOCK.as_millis()
        ),
        "sluice: one identity.wasm transform stage, Limits::default() (fuel and epoch on), EngineOptions::default() apart from concurrency and max_in_flight".into(),
        format!("total bench time: {:.1?}", bench_started.elapsed()),
    ];
    let tables: Vec<Table> = results.iter().map(|r| r.table(s.n, s.rounds)).collect();
    let mut text = String::from("sluice broker relay benchmark\n");
    for line in &header {
        text += &format!("  {line}\n");
    }
    for table in &tables {
        text.push('\n');
        text += &table.text();
    }
    println!("{text}");

    if let Some(path) = std::env::var_os("SLUICE_BENCH_MD") {
        let mut md = String::new();
        for line in &header {
            md += &format!("- {line}\n");
        }
        for table in &tables {
            md.push('\n');
            md += &table.markdown();
        }
        std::fs::write(&path, md).unwrap_or_else(|e| panic!("cannot write {}: {e}", PathBuf::from(&path).display()));
        eprintln!("bench: markdown written to {}", PathBuf::from(&path).display());
    }
    if results.iter().any(BrokerResults::failed) {
        eprintln!("bench: SOME RUNS FAILED OR FAILED THEIR CHECKS (see the check column); their figures are not valid");
        std::process::exit(1);
    }
}
