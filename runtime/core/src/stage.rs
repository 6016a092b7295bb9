//! The [`Stage`] trait: one step of a chain (a filter, a transform or a
//! router). sluice-wasm implements it for plugin components; tests and the
//! benchmark implement it with native closures.

use crate::message::Message;
use std::path::PathBuf;
use std::time::Duration;

/// The kinds of stage: one per WIT world a plugin implements, and the
/// built-in `dedupe` (host code, no plugin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Filter,
    Transform,
    Route,
    /// Drops a message whose id was already delivered (sluice-state).
    Dedupe,
}

impl StageKind {
    /// The kinds a plugin implements, one per WIT world.
    pub const WORLDS: [StageKind; 3] = [StageKind::Filter, StageKind::Transform, StageKind::Route];

    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Filter => "filter",
            StageKind::Transform => "transform",
            StageKind::Route => "route",
            StageKind::Dedupe => "dedupe",
        }
    }

    /// Whether a stage of this kind runs a plugin.
    pub fn has_plugin(self) -> bool {
        self != StageKind::Dedupe
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a stage decided for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutput {
    /// Filter: keep (`true`) or drop (`false`).
    Keep(bool),
    /// Transform: zero (drop), one (map) or many (split) messages.
    Messages(Vec<Message>),
    /// Route: the names of the sinks the message goes to.
    Routes(Vec<String>),
    /// Dedupe: keep the message, holding this claim on its id until it is
    /// delivered (completed) or not (released); see [`crate::claim`].
    Claimed(crate::claim::Claim),
    /// Dedupe: the message's id was already delivered; drop it.
    Duplicate,
}

/// Why a stage host stopped a call: not the plugin's answer but something the
/// host saw. Deterministic: the message is dead-lettered without retry. A
/// fault that stopped the plugin mid-call also replaces its instance before
/// the next call ([`FaultKind::replaces_instance`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A trap: `unreachable` (a panic), out-of-bounds access, stack overflow...
    Trap,
    /// The per-message fuel budget ran out.
    OutOfFuel,
    /// The per-call wall-clock deadline passed.
    Timeout,
    /// The plugin asked for more memory than the stage's cap.
    MemoryLimit,
    /// The plugin answered something the host cannot use (wrong kind of result).
    BadOutput,
    /// A fresh instance could not be created.
    Instantiate,
    /// The plugin returned more than the stage's output caps allow
    /// (`max_outputs`, `max_output_bytes`, `max_call_output_bytes`).
    OutputLimit,
}

impl FaultKind {
    /// The error class written to `sluice-error-class`.
    pub fn class(self) -> crate::dlq::FailureClass {
        self.into()
    }

    /// Whether the stage's instance is thrown away for this fault: yes when
    /// the call was stopped mid-way (its state cannot be trusted), no when
    /// the call finished and only its answer was refused (over an output cap,
    /// a wrong result count) or no instance could be made at all.
    pub fn replaces_instance(self) -> bool {
        match self {
            FaultKind::Trap
            | FaultKind::OutOfFuel
            | FaultKind::Timeout
            | FaultKind::MemoryLimit => true,
            FaultKind::BadOutput | FaultKind::OutputLimit | FaultKind::Instantiate => false,
        }
    }
}

/// A host-side fault with its detail text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub detail: String,
}

/// A stage call that did not produce an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageError {
    /// The plugin said: try again later (WIT `error::retryable`).
    Retryable(String),
    /// The plugin said: this message will never pass (WIT `error::fatal`).
    Fatal(String),
    /// The host stopped the call (trap, fuel, deadline, memory).
    Fault(Fault),
}

/// One live stage: owns its plugin instance; used by one worker thread.
pub trait Stage: Send {
    /// Run the stage on one message. After a [`StageError::Fault`] whose
    /// kind [replaces the instance](FaultKind::replaces_instance) the stage
    /// must use a fresh instance for its next call.
    fn call(&mut self, msg: &Message) -> Result<StageOutput, StageError>;

    /// Run the stage on several messages in one call: one result per
    /// message, in order. `Err` means the whole call faulted (a trap in the
    /// middle of a batch); the stage has then replaced its instance and the
    /// caller retries the messages one by one to find the culprit. The
    /// default calls [`Stage::call`] for each message.
    fn call_batch(
        &mut self,
        msgs: &[&Message],
    ) -> Result<Vec<Result<StageOutput, StageError>>, Fault> {
        Ok(msgs.iter().map(|m| self.call(m)).collect())
    }

    /// What the stage's calls used since the last call of this method, for
    /// metrics. Native stages use none of it.
    fn take_usage(&mut self) -> Usage {
        Usage::default()
    }
}

/// What a stage's calls used, as [`Stage::take_usage`] reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Fuel (Wasm instructions, roughly) burnt.
    pub fuel: u64,
    /// Plugin log lines dropped by the stage's log rate limit.
    pub log_suppressed: u64,
}

/// Which plugin file a stage runs; written into DLQ envelopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginInfo {
    pub path: PathBuf,
    /// Hex sha256 of the component file.
    pub sha256: String,
}

/// Makes [`Stage`]s: one per worker. Built once when the config loads
/// (compilation happens there), never on the message path.
pub trait StageFactory: Send + Sync {
    fn kind(&self) -> StageKind;
    fn plugin(&self) -> PluginInfo;
    /// A new independent stage instance.
    ///
    /// # Errors
    /// When the plugin cannot be instantiated (e.g. its start function traps).
    fn instantiate(&self) -> anyhow::Result<Box<dyn Stage>>;
}

/// A [`StageFactory`] made from a closure: native stages for tests and the
/// benchmark baseline.
pub struct NativeStage<F> {
    kind: StageKind,
    f: F,
}

impl<F> NativeStage<F>
where
    F: Fn(&Message) -> Result<StageOutput, StageError> + Send + Sync + Clone + 'static,
{
    pub fn new(kind: StageKind, f: F) -> Self {
        NativeStage { kind, f }
    }
}

struct NativeInstance<F>(F);

impl<F> Stage for NativeInstance<F>
where
    F: Fn(&Message) -> Result<StageOutput, StageError> + Send + 'static,
{
    fn call(&mut self, msg: &Message) -> Result<StageOutput, StageError> {
        (self.0)(msg)
    }
}

impl<F> StageFactory for NativeStage<F>
where
    F: Fn(&Message) -> Result<StageOutput, StageError> + Send + Sync + Clone + 'static,
{
    fn kind(&self) -> StageKind {
        self.kind
    }
    fn plugin(&self) -> PluginInfo {
        PluginInfo {
            path: PathBuf::from("<native>"),
            sha256: String::new(),
        }
    }
    fn instantiate(&self) -> anyhow::Result<Box<dyn Stage>> {
        Ok(Box::new(NativeInstance(self.f.clone())))
    }
}

/// Limits for one stage. Defaults are safe, not unlimited. Every limit holds
/// per message, also inside a batch call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly wasm instructions) one call may burn.
    pub fuel: u64,
    /// Wall-clock time one call may take, time spent waiting in host calls
    /// (WASI clocks and poll) included.
    pub timeout: Duration,
    /// Bytes of linear memory an instance may grow to.
    pub memory: u64,
    /// Messages a call may return for one input (a transform's fan-out).
    pub max_outputs: usize,
    /// Bytes of one output message: key, payload, header names and values.
    pub max_output_bytes: u64,
    /// Bytes of all the outputs for one input together.
    pub max_call_output_bytes: u64,
    /// Plugin log lines (`host.log`, stdout, stderr) a stage may write per
    /// second, over all its instances; the rest are counted and summarised.
    pub log_lines_per_second: u32,
    /// Longest plugin log line in bytes; a longer one is cut.
    pub log_line_bytes: usize,
    /// Key-value operations (the `kv` capability) a call may make per
    /// message; past them an operation fails with `limit`.
    pub kv_ops: u32,
}

impl Limits {
    pub const DEFAULT_FUEL: u64 = 500_000_000;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_MEMORY: u64 = 128 * 1024 * 1024;
    pub const DEFAULT_MAX_OUTPUTS: usize = 10_000;
    pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;
    pub const DEFAULT_MAX_CALL_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;
    pub const DEFAULT_LOG_LINES_PER_SECOND: u32 = 100;
    pub const DEFAULT_LOG_LINE_BYTES: usize = 8 * 1024;
    pub const DEFAULT_KV_OPS: u32 = 100;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: Self::DEFAULT_FUEL,
            timeout: Self::DEFAULT_TIMEOUT,
            memory: Self::DEFAULT_MEMORY,
            max_outputs: Self::DEFAULT_MAX_OUTPUTS,
            max_output_bytes: Self::DEFAULT_MAX_OUTPUT_BYTES,
            max_call_output_bytes: Self::DEFAULT_MAX_CALL_OUTPUT_BYTES,
            log_lines_per_second: Self::DEFAULT_LOG_LINES_PER_SECOND,
            log_line_bytes: Self::DEFAULT_LOG_LINE_BYTES,
            kv_ops: Self::DEFAULT_KV_OPS,
        }
    }
}
