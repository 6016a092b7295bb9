//! The dead-letter envelope: the original message plus `sluice-error-*`
//! headers saying where and why it failed. One envelope for every broker.

use crate::message::{Coordinates, Message};
use crate::stage::PluginInfo;
use std::time::SystemTime;

/// Prefix of every header the engine adds to a dead-lettered message.
pub const HEADER_PREFIX: &str = "sluice-error-";

/// Why a delivery is being dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The stage that failed (`<source>` for decode errors; the route stage
    /// for an unknown route; the sink for `sink-rejected`).
    pub stage: String,
    /// The plugin the stage runs, when there is one.
    pub plugin: Option<PluginInfo>,
    /// `fatal`, `retryable` (with `attempts = 1`), `retries-exhausted`, `trap`, `out-of-fuel`, `timeout`,
    /// `memory-limit`, `output-limit`, `bad-output`, `instantiate`, `unknown-route`, `decode`, `sink-rejected`.
    pub class: String,
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
        class: impl Into<String>,
        text: impl Into<String>,
        at: SystemTime,
    ) -> Self {
        Failure {
            stage: stage.into(),
            plugin: None,
            class: class.into(),
            text: text.into(),
            attempts: 1,
            first_failure: at,
            last_failure: at,
            retry_after: None,
        }
    }
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
    add("class", failure.class.clone());
    add("text", failure.text.clone());
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
