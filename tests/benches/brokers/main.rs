//! Broker relay benchmark: how fast sluice moves messages from a broker
//! through one Wasm stage back to the same broker, compared with a plain
//! relay written directly against the client library, in the same run, on
//! the same data.
//!
//! ```sh
//! bash tests/brokers.sh            # Redis 6379, RabbitMQ 5672, SQS (moto) 19324, Kafka (tansu) 19092
//! bash plugins/build.sh            # plugins/dist/identity.wasm
//! cargo bench -p sluice-tests --bench brokers
//! ```
//!
//! Environment:
//! - `SLUICE_BENCH_N`        messages per run (default 50000)
//! - `SLUICE_BENCH_SQS_N`    messages per SQS run (default min(N, 500): moto is slow)
//! - `SLUICE_BENCH_BROKERS`  comma list of `redis`, `kafka`, `rabbitmq`, `sqs`
//!   (default all four, in that order)
//! - `SLUICE_BENCH_ROUNDS`   timed runs per variant, median reported (default 5)
//! - `SLUICE_BENCH_TIMEOUT`  seconds one run may take before it is abandoned (default 120)
//! - `SLUICE_BENCH_PREFETCH` RabbitMQ `basic_qos` prefetch of relay and source (default 100, sluice's default)
//! - `SLUICE_BENCH_MD`       also write the tables as markdown to this file
//! - `SLUICE_TEST_REDIS`     Redis URL (default `redis://127.0.0.1:6379`)
//! - `SLUICE_TEST_KAFKA`     Kafka bootstrap address (default `127.0.0.1:19092`)
//! - `SLUICE_TEST_AMQP`      RabbitMQ URL (default `amqp://guest:guest@127.0.0.1:5672/%2f`)
//! - `SLUICE_TEST_SQS`       SQS endpoint (default `http://127.0.0.1:19324`; dummy
//!   credentials and region `us-east-1` unless the environment has others)
//!
//! What it measures, per broker (see BENCHMARKS.md, broker relays):
//! - the input: N messages, each a ~200-byte JSON payload and a key.
//!   Redis (a stream) and Kafka (a topic with 3 partitions) keep what is
//!   read, so their input is written once before anything is timed and
//!   every run reads all of it with a consumer group of its own. RabbitMQ
//!   and SQS queues are consumed destructively, so every run gets a fresh
//!   input queue, filled (untimed) right before it: RabbitMQ a durable queue
//!   of persistent messages, the key in the `sluice-key` header; SQS a
//!   standard queue, the key in the `sluice-key` attribute;
//! - **relay**: a reader and a writer in plain `redis` / `rdkafka` / `lapin` /
//!   `aws-sdk-sqs` code, acknowledging the input only once the output write
//!   is confirmed (the same at-least-once contract sluice keeps), with the
//!   read settings of sluice's source: RabbitMQ, the same prefetch, every
//!   delivery published at once on a confirm channel and acked when its
//!   confirm arrives (so up to prefetch in flight, as in sluice); SQS,
//!   ReceiveMessage of 10 → SendMessageBatch → DeleteMessageBatch, one batch
//!   at a time (sluice overlaps the three in separate tasks);
//! - **sluice**: the `redis-stream` / `kafka` / `rabbitmq` / `sqs` source and
//!   sink opened from their config structs, one `identity` Wasm stage (fuel
//!   and epoch on), a DLQ on the same broker, `Pipeline::run` in process;
//!   concurrency 1 and 2 with the default `max_in_flight` (256 per worker),
//!   and for Redis and Kafka also concurrency 1 with `max_in_flight` 10000
//!   (what the Kafka relay allows; for RabbitMQ the prefetch and for SQS the
//!   sink's one batch at a time bound what is in flight instead).
//!
//! A run's time goes from the moment the consumer is ready to start (group
//! created, subscribed, connections open) until N messages are
//! acknowledged: for the relay, XACKed, delivery-confirmed, basic.acked or
//! deleted; for sluice, counted in `PipelineStats::acked`. For sluice also
//! the time until `Pipeline::run` returned after the cancel (its source has
//! then also sent the acks or deletes it still had queued). Also reported:
//! the time to the first message (for Kafka mostly the group join) and the
//! CPU time per message of this process and of the broker (from `/proc`,
//! when the broker runs on this machine). Each run is checked afterwards
//! (output length; nothing pending, uncommitted, unacked or left in the
//! input queue; no dead letters); a failed check is printed next to its
//! figure and makes the bench exit 1. The bench never judges timings; it
//! prints them, and the ratio sluice/relay.

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
use sluice_core::{
    HumanDuration, Limits, Pipeline, PipelineReport, PipelineStats, RetryPolicy, StageKind,
};
use sluice_tests::amqp_client::amqp_url;
use sluice_tests::kafka_client::kafka_addr;
use sluice_tests::redis_client::redis_url;
use sluice_tests::Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

mod amqp_bench;
mod kafka_bench;
mod redis_bench;
mod report;
mod sqs_bench;

use amqp_bench::*;
use kafka_bench::*;
use redis_bench::*;
use report::*;
use sqs_bench::*;

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
/// The shapes measured for RabbitMQ and SQS. There a larger `max_in_flight`
/// changes nothing: RabbitMQ's prefetch bounds the unacked deliveries (100
/// by default), and the SQS sink sends one batch of 10 at a time.
const QUEUE_SHAPES: [(usize, usize); 2] = [(1, 256), (2, 256)];
/// sluice's default RabbitMQ `prefetch`, used by the relay and the source.
const PREFETCH: u16 = 100;
/// SQS runs move at most this many messages by default. moto's cost per
/// request grows with the queue's depth (it scans the whole queue, several
/// times per message sent or received): at 2000 one run takes minutes, at
/// 500 about 9 s.
const SQS_DEFAULT_N: usize = 500;
/// Generous bound on every set-up step and check (connect, seed, read back).
const STEP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- settings

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Broker {
    Redis,
    Kafka,
    Rabbitmq,
    Sqs,
}

struct Settings {
    n: usize,
    /// Messages per SQS run (moto is slow): `SLUICE_BENCH_SQS_N`, else
    /// min(n, [`SQS_DEFAULT_N`]).
    sqs_n: usize,
    rounds: usize,
    timeout: Duration,
    brokers: Vec<Broker>,
    /// RabbitMQ `basic_qos` prefetch, of the relay and the sluice source alike.
    prefetch: u16,
}

impl Settings {
    fn from_env() -> Settings {
        let brokers = std::env::var("SLUICE_BENCH_BROKERS")
            .unwrap_or_else(|_| "redis,kafka,rabbitmq,sqs".into());
        let brokers = brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(|b| match b {
                "redis" => Broker::Redis,
                "kafka" => Broker::Kafka,
                "rabbitmq" => Broker::Rabbitmq,
                "sqs" => Broker::Sqs,
                other => panic!("SLUICE_BENCH_BROKERS: unknown broker `{other}` (use redis, kafka, rabbitmq, sqs)"),
            })
            .collect();
        let n = env_usize("SLUICE_BENCH_N", 50_000);
        assert!(n > 0, "SLUICE_BENCH_N must be positive");
        let sqs_n = env_usize("SLUICE_BENCH_SQS_N", n.min(SQS_DEFAULT_N));
        assert!(sqs_n > 0, "SLUICE_BENCH_SQS_N must be positive");
        let prefetch = env_usize("SLUICE_BENCH_PREFETCH", PREFETCH.into());
        let prefetch = u16::try_from(prefetch)
            .ok()
            .filter(|p| *p > 0)
            .expect("SLUICE_BENCH_PREFETCH must be 1 to 65535");
        Settings {
            n,
            sqs_n,
            rounds: env_usize("SLUICE_BENCH_ROUNDS", 5).max(1),
            timeout: Duration::from_secs(env_usize("SLUICE_BENCH_TIMEOUT", 120) as u64),
            brokers,
            prefetch,
        }
    }

    /// Messages per run for `broker`.
    fn n_for(&self, broker: Broker) -> usize {
        match broker {
            Broker::Sqs => self.sqs_n,
            _ => self.n,
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// A prefix no earlier run used: every stream, topic, queue and group of
/// this run starts with it.
fn run_prefix() -> String {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("sluice-bench-{}-{ms}", std::process::id())
}

// ---------------------------------------------------------------- input data

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
        EngineOptions {
            concurrency: self.concurrency,
            max_in_flight: self.max_in_flight,
            ..EngineOptions::default()
        }
    }
}

impl Variant {
    fn all(broker: Broker) -> Vec<Variant> {
        let shapes: &[(usize, usize)] = match broker {
            Broker::Redis | Broker::Kafka => &SHAPES,
            Broker::Rabbitmq | Broker::Sqs => &QUEUE_SHAPES,
        };
        let mut all = vec![Variant::Relay];
        all.extend(shapes.iter().map(|&(concurrency, max_in_flight)| {
            Variant::Sluice(Shape {
                concurrency,
                max_in_flight,
            })
        }));
        all
    }

    fn label(self, broker: Broker) -> String {
        match (self, broker) {
            (Variant::Relay, Broker::Redis) => "relay (redis crate)".into(),
            (Variant::Relay, Broker::Kafka) => {
                format!("relay (rdkafka, {KAFKA_IN_FLIGHT} in flight)")
            }
            (Variant::Relay, Broker::Rabbitmq) => "relay (lapin)".into(),
            (Variant::Relay, Broker::Sqs) => "relay (aws-sdk-sqs, one batch at a time)".into(),
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
    /// sluice only: from the start until `Pipeline::run` returned after the
    /// cancel at N acked, i.e. the source has also sent the acks, deletes or
    /// commits it still held, and closed.
    stopped: Option<Duration>,
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
        let since =
            |before: Option<Duration>, now: Option<Duration>| Some(now?.saturating_sub(before?));
        Timed {
            elapsed: self.started.elapsed(),
            first: first.unwrap_or_default(),
            cpu: since(self.cpu, cpu_of("self")),
            broker_cpu: since(self.broker_cpu, self.broker_pid.as_deref().and_then(cpu_of)),
            stopped: None,
        }
    }
}

/// One run's result: timings, or why it has none; and what its checks found.
struct RunResult {
    timed: Result<Timed, String>,
    problems: Vec<String>,
}

/// Names of one run's group and output streams, topics or queues.
#[derive(Clone)]
struct RunNames {
    /// The run's own input queue, where the input is consumed destructively
    /// (RabbitMQ, SQS); Redis and Kafka runs share one input instead.
    input: String,
    group: String,
    output: String,
    dlq: String,
}

impl RunNames {
    fn new(prefix: &str, variant: Variant, round: usize) -> RunNames {
        RunNames::with_separator(prefix, variant, round, '.')
    }

    /// SQS queue names allow no dots: there the parts are joined with `-`.
    fn with_separator(prefix: &str, variant: Variant, round: usize, sep: char) -> RunNames {
        let tag = match variant {
            Variant::Relay => "relay".to_string(),
            Variant::Sluice(shape) => {
                format!("sluice-c{}-f{}", shape.concurrency, shape.max_in_flight)
            }
        };
        let base = format!("{prefix}{sep}{tag}{sep}r{round}");
        RunNames {
            input: format!("{base}{sep}in"),
            group: format!("{base}{sep}g"),
            output: format!("{base}{sep}out"),
            dlq: format!("{base}{sep}dlq"),
        }
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
            break Err(format!(
                "the pipeline stopped after {} of {n} acks",
                counts.acked
            ));
        }
        if started.elapsed() > timeout {
            break Err(format!(
                "abandoned after {timeout:?}: {} of {n} acked",
                counts.acked
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    shutdown.cancel();
    let mut timed = timed;
    let report = match tokio::time::timeout(STEP, &mut run).await {
        Ok(Ok(Ok(report))) => {
            if let Ok(t) = &mut timed {
                t.stopped = Some(started.elapsed());
            }
            Some(report)
        }
        Ok(Ok(Err(e))) => return (timed.and(Err(format!("pipeline failed: {e}"))), None),
        Ok(Err(e)) => return (timed.and(Err(format!("pipeline task failed: {e}"))), None),
        Err(_) => {
            run.abort();
            return (
                timed.and(Err(format!(
                    "the pipeline did not stop within {STEP:?} of the cancel"
                ))),
                None,
            );
        }
    };
    (timed, report)
}

/// Problems in a sluice report: every message received, delivered once,
/// nothing dead-lettered or retried.
fn report_problems(report: Option<&PipelineReport>, n: u64) -> Vec<String> {
    let Some(report) = report else {
        return Vec::new();
    };
    let c = &report.counts;
    let mut problems = Vec::new();
    if c.received != n || c.delivered != n || c.acked != n {
        problems.push(format!(
            "received {} delivered {} acked {} (want {n} each)",
            c.received, c.delivered, c.acked
        ));
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
    sluice_tests::wasm_stage(
        host,
        "identity",
        "identity",
        StageKind::Transform,
        Limits::default(),
        BTreeMap::new(),
        RetryPolicy::default(),
    )
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
    let pipeline = Pipeline::builder("bench", source, dlq)
        .stages(vec![identity_stage(host)])
        .sink("out", sink)
        .options(shape.options())
        .stats(stats.clone())
        .build();
    (pipeline, stats)
}

fn secs(d: Duration) -> HumanDuration {
    HumanDuration(d)
}

/// Where tests/brokers.sh keeps its tools and pid files.
fn sluice_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default()
        .join("sluice")
}

/// The pid tests/brokers.sh recorded for `name`, if that process runs here
/// and its name starts with `comm`.
fn brokers_sh_pid(name: &str, comm: &str) -> Option<String> {
    let pid = std::fs::read_to_string(sluice_cache().join(format!("pids/{name}.pid"))).ok()?;
    local_process(pid.trim(), comm)
}

// ---------------------------------------------------------------- main

fn main() {
    let bench_started = Instant::now();
    let s = Settings::from_env();
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);
    let inputs = generate(s.brokers.iter().map(|b| s.n_for(*b)).max().unwrap_or(s.n));
    let host = sluice_tests::host();
    // Load (compile or fetch from the artifact cache) before anything is timed.
    drop(identity_stage(&host));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut results = Vec::new();
    for broker in &s.brokers {
        eprintln!(
            "bench: {broker:?}: N = {}, {} round(s), timeout {:?} per run",
            s.n_for(*broker),
            s.rounds,
            s.timeout
        );
        let inputs = &inputs[..s.n_for(*broker)];
        results.push(match broker {
            Broker::Redis => bench_redis(&rt, &s, inputs, &host),
            Broker::Kafka => bench_kafka(&rt, &s, inputs, &host),
            Broker::Rabbitmq => bench_amqp(&rt, &s, inputs, &host),
            Broker::Sqs => bench_sqs(&rt, &s, inputs, &host),
        });
    }

    let header = [
        format!("date: {} (UTC)", today()),
        format!("machine: {cores} cores (available_parallelism), CPU: {}", cpu_model()),
        format!(
            "messages: N = {} per run{}, payload {PAYLOAD_BYTES} bytes of JSON, key out of {KEYS} customer ids",
            s.n,
            if s.brokers.contains(&Broker::Sqs) && s.sqs_n != s.n { format!(" (SQS: {})", s.sqs_n) } else { String::new() },
        ),
        "sluice: one identity.wasm transform stage, Limits::default() (fuel and epoch on), EngineOptions::default() apart from concurrency and max_in_flight".into(),
        format!("total bench time: {:.1?}", bench_started.elapsed()),
    ];
    let tables: Vec<Table> = results.iter().map(|r| r.table(s.rounds)).collect();
    let mut text = String::from("sluice broker relay benchmark\n");
    for line in &header {
        text += &format!("  {line}\n");
    }
    for table in &tables {
        text.push('\n');
        text += &table.text();
    }
    println!("{text}");
    let goals: Vec<_> = results.iter().filter_map(BrokerResults::goal).collect();
    let goals_md = sluice_tests::goals::report(&goals);

    if let Some(path) = std::env::var_os("SLUICE_BENCH_MD") {
        let mut md = String::new();
        for line in &header {
            md += &format!("- {line}\n");
        }
        for table in &tables {
            md.push('\n');
            md += &table.markdown();
        }
        md.push('\n');
        md += &goals_md;
        std::fs::write(&path, md)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", PathBuf::from(&path).display()));
        eprintln!(
            "bench: markdown written to {}",
            PathBuf::from(&path).display()
        );
    }
    if results.iter().any(BrokerResults::failed) {
        eprintln!("bench: SOME RUNS FAILED OR FAILED THEIR CHECKS (see the check column); their figures are not valid");
        std::process::exit(1);
    }
}
