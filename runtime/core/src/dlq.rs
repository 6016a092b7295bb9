//! The dead-letter envelope: the original message plus `sluice-error-*`
//! headers saying where and why it failed. One envelope for every broker.

use crate::message::{Coordinates, Message};
use crate::stage::{FaultKind, PluginInfo};
use std::time::SystemTime;

/// Prefix of every header the engine adds to a dead-lettered message.
pub const HEADER_PREFIX: &str = "sluice-error-";

/// Why a message was dead-lettered: the value of `sluice-error-class`.
/// The one list of classes; the docs and the failure table follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The plugin said the message will never pass (WIT `error::fatal`).
    Fatal,
    /// The plugin said "try again later" and the stage does not retry
    /// (`max_attempts = 1`); also a retry on its way back through the broker.
    Retryable,
    /// Retryable errors until `max_attempts` was reached.
    RetriesExhausted,
    /// The plugin trapped (a panic, an out-of-bounds access...).
    Trap,
    /// The message used up the stage's `fuel`.
    OutOfFuel,
    /// The call ran past the stage's `timeout` (also while waiting in a host call).
    Timeout,
    /// The plugin asked for more memory than the stage's `memory`.
    MemoryLimit,
    /// The plugin returned more than `max_outputs` / `max_output_bytes` /
    /// `max_call_output_bytes` allow.
    OutputLimit,
    /// The plugin answered something its kind of stage cannot return.
    BadOutput,
    /// No instance of the plugin could be started.
    Instantiate,
    /// A route stage named a sink the pipeline does not have.
    UnknownRoute,
    /// The source could not decode what the broker delivered.
    Decode,
    /// A sink refused the message for good (too large, malformed for it).
    SinkRejected,
    /// The message is larger than the pipeline's `max_message_bytes`; it
    /// never entered the chain.
    TooLarge,
}

impl FailureClass {
    /// Every class, in the order the docs list them.
    pub const ALL: [FailureClass; 14] = [
        FailureClass::Fatal,
        FailureClass::Retryable,
        FailureClass::RetriesExhausted,
        FailureClass::Trap,
        FailureClass::OutOfFuel,
        FailureClass::Timeout,
        FailureClass::MemoryLimit,
        FailureClass::OutputLimit,
        FailureClass::BadOutput,
        FailureClass::Instantiate,
        FailureClass::UnknownRoute,
        FailureClass::Decode,
        FailureClass::SinkRejected,
        FailureClass::TooLarge,
    ];

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Fatal => "fatal",
            FailureClass::Retryable => "retryable",
            FailureClass::RetriesExhausted => "retries-exhausted",
            FailureClass::Trap => "trap",
            FailureClass::OutOfFuel => "out-of-fuel",
            FailureClass::Timeout => "timeout",
            FailureClass::MemoryLimit => "memory-limit",
            FailureClass::OutputLimit => "output-limit",
            FailureClass::BadOutput => "bad-output",
            FailureClass::Instantiate => "instantiate",
            FailureClass::UnknownRoute => "unknown-route",
            FailureClass::Decode => "decode",
            FailureClass::SinkRejected => "sink-rejected",
            FailureClass::TooLarge => "too-large",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<FaultKind> for FailureClass {
    fn from(kind: FaultKind) -> Self {
        match kind {
            FaultKind::Trap => FailureClass::Trap,
            FaultKind::OutOfFuel => FailureClass::OutOfFuel,
            FaultKind::Timeout => FailureClass::Timeout,
            FaultKind::MemoryLimit => FailureClass::MemoryLimit,
            FaultKind::BadOutput => FailureClass::BadOutput,
            FaultKind::Instantiate => FailureClass::Instantiate,
            FaultKind::OutputLimit => FailureClass::OutputLimit,
        }
    }
}

/// Why a delivery is being dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The stage that failed (`<source>` for decode errors; the route stage
    /// for an unknown route; the sink for `sink-rejected`).
    pub stage: String,
    /// The plugin the stage runs, when there is one.
    pub plugin: Option<PluginInfo>,
    pub class: FailureClass,
    /// The error text.
    pub text: String,
    /// How many times the failing stage was called for this message.
    pub attempts: u32,
    pub first_failure: SystemTime,
    pub last_failure: SystemTime,
    /// Set when the failure is not final: a retryable error in a pipeline
    /// that retries through its broker (`retry.republish`), to be tried
    /// again after this delay instead of being dead-lettered.
    pub retry_after: Option<std::time::Duration>,
}

impl Failure {
    /// A failure that happened once, now.
    pub fn once(
        stage: impl Into<String>,
        class: FailureClass,
        text: impl Into<String>,
        at: SystemTime,
    ) -> Self {
        Failure {
            stage: stage.into(),
            plugin: None,
            class,
            text: text.into(),
            attempts: 1,
            first_failure: at,
            last_failure: at,
            retry_after: None,
        }
    }
}

/// The most bytes of error text a dead letter carries; a longer text is cut
/// (and says by how much), so the reason fits every broker's header and
/// attribute limits beside the original message.
pub const MAX_TEXT: usize = 4096;

/// `text`, cut to [`MAX_TEXT`] bytes at a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}

/// The message to publish to the DLQ for `original`.
pub fn envelope(
    pipeline: &str,
    original: &Message,
    coordinates: &Coordinates,
    failure: &Failure,
) -> Message {
    let mut msg = original.clone();
    let mut add = |name: &str, value: String| {
        msg.headers
            .push((format!("{HEADER_PREFIX}{name}"), value.into_bytes()))
    };
    add("pipeline", pipeline.to_owned());
    add("stage", failure.stage.clone());
    if let Some(plugin) = &failure.plugin {
        add("plugin", plugin.path.display().to_string());
        add("plugin-sha256", plugin.sha256.clone());
    }
    add("class", failure.class.as_str().to_owned());
    add("text", bounded(&failure.text));
    add("attempts", failure.attempts.to_string());
    add(
        "first-failure",
        humantime::format_rfc3339_millis(failure.first_failure).to_string(),
    );
    add(
        "last-failure",
        humantime::format_rfc3339_millis(failure.last_failure).to_string(),
    );
    add("source", original.source.clone());
    for (name, value) in &coordinates.0 {
        add(&format!("source-{name}"), value.clone());
    }
    msg
}
