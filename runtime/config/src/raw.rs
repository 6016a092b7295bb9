//! The TOML as written: serde structs with `deny_unknown_fields` everywhere.
//! Optional fields stay optional here; defaults are applied in `resolve`.

use crate::units::{ByteSize, HumanDuration, Name};
use serde::Deserialize;
use sluice_brokers::dlq::DlqFormat;
use sluice_brokers::{SinkConfig, SourceConfig};
use sluice_core::StageKind;
use sluice_state::StoreConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub pipelines: BTreeMap<Name, Spanned<Pipeline>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub source: Spanned<SourceConfig>,
    #[serde(default)]
    pub stages: Vec<Spanned<Stage>>,
    #[serde(default)]
    pub sinks: BTreeMap<Name, Spanned<SinkConfig>>,
    pub dlq: Spanned<SinkConfig>,
    pub dlq_format: Option<Spanned<DlqFormat>>,
    pub concurrency: Option<Spanned<usize>>,
    pub buffer: Option<Spanned<usize>>,
    pub max_in_flight: Option<Spanned<usize>>,
    pub max_in_flight_bytes: Option<Spanned<ByteSize>>,
    pub max_message_bytes: Option<Spanned<ByteSize>>,
    pub too_large_keep: Option<Spanned<ByteSize>>,
    pub batch: Option<Spanned<usize>>,
    pub retry: Option<Spanned<Retry>>,
    /// Where the pipeline's stages keep state (dedupe ids).
    pub store: Option<Spanned<StoreConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: Name,
    pub kind: Spanned<StageKind>,
    /// Every kind but `dedupe` runs a plugin.
    pub plugin: Option<Spanned<PathBuf>>,
    pub fuel: Option<u64>,
    pub timeout: Option<HumanDuration>,
    pub memory: Option<ByteSize>,
    pub max_outputs: Option<usize>,
    pub max_output_bytes: Option<ByteSize>,
    pub max_call_output_bytes: Option<ByteSize>,
    pub log_lines_per_second: Option<u32>,
    pub log_line_bytes: Option<ByteSize>,
    pub kv_ops: Option<Spanned<u32>>,
    pub retry: Option<Spanned<Retry>>,
    #[serde(default)]
    pub params: toml::Table,
    /// What the plugin may import beyond `host`: a list of names
    /// (`["kv"]`) or a table (`{ kv = true, http = { allow = [...] } }`).
    pub capabilities: Option<Spanned<toml::Value>>,
    /// `dedupe` stages: where the id comes from, how long it is kept.
    pub id: Option<Spanned<String>>,
    pub window: Option<HumanDuration>,
    pub capacity: Option<Spanned<u64>>,
    pub claim_ttl: Option<HumanDuration>,
    /// Where this stage keeps state, instead of the pipeline's store.
    pub store: Option<Spanned<StoreConfig>>,
}

/// `capabilities.http`: outbound HTTP for a stage's plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCapability {
    pub allow: Vec<String>,
    pub timeout: Option<HumanDuration>,
    pub max_response: Option<ByteSize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    pub attempts: Option<u32>,
    pub initial: Option<HumanDuration>,
    pub factor: Option<f64>,
    pub max: Option<HumanDuration>,
    pub jitter: Option<f64>,
    /// Pipeline level only: retry through the broker instead of on the worker.
    pub republish: Option<bool>,
}
