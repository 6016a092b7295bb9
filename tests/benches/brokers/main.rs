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

mod kafka_bench;
mod redis_bench;
mod report;

use kafka_bench::*;
use redis_bench::*;
use report::*;

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
