//! Shared helpers for sluice's behaviour tests: where the real plugin
//! components and the `sluice` binary are, a virtual clock, and a one-call
//! way to run a pipeline over the in-memory source and sinks.
//!
//! Plugins are built from source by `plugins/build.sh` (the test command
//! runs it first). A missing component fails the test loudly; nothing is
//! skipped.

pub mod amqp_client;
pub mod burst;
pub mod conformance;
pub mod daemon;
pub mod goals;
pub mod http_server;
pub mod kafka_client;
pub mod otlp;
pub mod rabbitmq_node;
pub mod redis_client;
pub mod sqs_client;

use sluice_core::engine::EngineOptions;
use sluice_core::memory::{AckLog, MemorySink, MemorySource};
use sluice_core::{
    Clock, Limits, Message, Pipeline, PipelineReport, RetryPolicy, StageKind, StageSpec,
};
use sluice_wasm::{ArtifactCache, HostOptions, WasmHost};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// xorshift64*: a deterministic, dependency-free generator for test and
/// bench inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `plugins/dist/NAME.wasm`, which must exist.
pub fn plugin(name: &str) -> PathBuf {
    let path = repo().join("plugins/dist").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `bash plugins/build.sh` (the test command does)",
        path.display()
    );
    path
}

/// A tool the test command installs (`tests/brokers.sh`): `$VAR` when set,
/// else `tools/PATH` under the cache (`~/.cache/sluice`); it must exist.
pub fn tool(var: &str, path: &str) -> PathBuf {
    let bin = std::env::var(var).map(PathBuf::from).unwrap_or_else(|_| {
        let cache = std::env::var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
        cache.join("sluice/tools").join(path)
    });
    assert!(
        bin.exists(),
        "{} is missing: `tests/brokers.sh` installs it (tests/run.sh does)",
        bin.display()
    );
    bin
}

/// The `sluice` binary of this build, which must exist.
pub fn sluice_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let bin = dir.join("sluice");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p sluice-cli` first (the test command does)",
        bin.display()
    );
    bin
}

/// Run `sluice ARGS` to its end.
pub fn run_sluice(args: &[&str]) -> std::process::Output {
    std::process::Command::new(sluice_bin())
        .args(args)
        .output()
        .expect("sluice runs")
}

/// A finished command's stdout, then its stderr, as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A Wasm host with limits on and a private artifact cache.
pub fn host() -> WasmHost {
    let cache = ArtifactCache::at(repo().join("target/test-artifact-cache"));
    WasmHost::new(HostOptions {
        fuel: true,
        epoch: true,
        cache,
    })
    .expect("wasm host")
}

/// `[("k", "v")]` → params map.
pub fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A stage running a real plugin component.
pub fn wasm_stage(
    host: &WasmHost,
    name: &str,
    plugin_name: &str,
    kind: StageKind,
    limits: Limits,
    params: BTreeMap<String, String>,
    retry: RetryPolicy,
) -> Arc<StageSpec> {
    let plugin = host.load(&plugin(plugin_name)).expect("plugin loads");
    let factory = host
        .stage(plugin, name, kind, limits, params, Default::default())
        .expect("plugin kind matches");
    Arc::new(StageSpec::new(name, Arc::new(factory), retry))
}

/// Time that only moves when a worker waits with nothing arriving; records
/// every such wait (a retry's backoff) as a sleep. Before moving on it gives
/// what is still on its way a short real moment (50 ms) to arrive, so a
/// test's input is all in before the first backoff ends.
pub struct VirtualClock {
    now: Mutex<SystemTime>,
    pub sleeps: Mutex<Vec<Duration>>,
}

impl VirtualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(VirtualClock {
            now: Mutex::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            sleeps: Mutex::default(),
        })
    }

    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap()
    }
    fn wait(&self, duration: Duration, arrive: &mut dyn FnMut(Duration) -> bool) -> bool {
        if arrive(Duration::from_millis(50)) {
            return true;
        }
        self.sleeps.lock().unwrap().push(duration);
        *self.now.lock().unwrap() += duration;
        false
    }
}

/// What a run over the in-memory source and sinks produced.
pub struct Run {
    pub report: PipelineReport,
    pub sinks: BTreeMap<String, Vec<Message>>,
    pub dlq: Vec<Message>,
    pub acks: Arc<AckLog>,
}

impl Run {
    pub fn acked(&self) -> Vec<u64> {
        let mut acked = self.acks.acked.lock().unwrap().clone();
        acked.sort_unstable();
        acked
    }
}

/// Run `stages` over `input` into memory sinks named `sinks` and a memory DLQ.
pub fn run_pipeline(
    input: Vec<Message>,
    stages: Vec<Arc<StageSpec>>,
    sinks: &[&str],
    options: EngineOptions,
    clock: Arc<dyn Clock>,
) -> Run {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (source, acks) = MemorySource::new("input", input);
    let memory_sinks: Vec<(String, Arc<MemorySink>)> = sinks
        .iter()
        .map(|n| (n.to_string(), MemorySink::new(*n)))
        .collect();
    let dlq = MemorySink::new("dlq");
    let mut pipeline = Pipeline::builder("test", Box::new(source), dlq.clone())
        .stages(stages)
        .options(options)
        .clock(clock);
    for (name, sink) in &memory_sinks {
        pipeline = pipeline.sink(name.clone(), sink.clone());
    }
    let pipeline = pipeline.build();
    let report = runtime
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(120),
                pipeline.run(sluice_core::Shutdown::default()),
            )
            .await
        })
        .expect("pipeline finished within 120 s")
        .expect("pipeline ran");
    Run {
        report,
        sinks: memory_sinks
            .iter()
            .map(|(n, s)| (n.clone(), s.messages()))
            .collect(),
        dlq: dlq.messages(),
        acks,
    }
}

/// One message with a JSON payload and a key.
pub fn json_message(key: &str, payload: serde_json::Value) -> Message {
    Message::new(payload.to_string()).with_key(key)
}
