//! sluice's connectors: each module holds one connector's config struct, its
//! source, its sink and its tests. [`SourceConfig`] and [`SinkConfig`] are
//! the `type = "..."` tables of a pipeline TOML; `open` connects them.
//!
//! Connectors never touch wasmtime; they only speak
//! [`sluice_core::Source`] and [`sluice_core::Sink`].

pub mod file;
pub mod lines;
pub mod stdio;

pub use sluice_core::memory;

use serde::Deserialize;
use sluice_core::{Sink, Source};
use std::path::Path;
use std::sync::Arc;

/// Why a connector could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The configuration points at something that does not exist or cannot
    /// be used (a missing input file). Exit code 1.
    #[error("{0}")]
    Invalid(String),
    /// The broker (or file system) did not answer. Exit code 2.
    #[error("{0}")]
    Unreachable(String),
}

/// A pipeline's `source` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// Read a file line by line, then end.
    File(file::FileSourceConfig),
    /// Read standard input line by line until EOF.
    Stdin(stdio::StdinSourceConfig),
}

/// A `sinks.NAME` or `dlq` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// Append messages to a file, one per line.
    File(file::FileSinkConfig),
    /// Write messages to standard output, one per line.
    Stdout(stdio::StdoutSinkConfig),
}

impl SourceConfig {
    /// The connector's `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::File(_) => "file",
            SourceConfig::Stdin(_) => "stdin",
        }
    }

    /// Connect. Relative paths are resolved against `base` (the config
    /// file's directory).
    ///
    /// # Errors
    /// See [`ConnectError`].
    pub async fn open(&self, base: &Path) -> Result<Box<dyn Source>, ConnectError> {
        match self {
            SourceConfig::File(c) => c.open(base).await,
            SourceConfig::Stdin(c) => Ok(c.open()),
        }
    }
}

impl SinkConfig {
    /// The connector's `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
            SinkConfig::Stdout(_) => "stdout",
        }
    }

    /// Connect. Relative paths are resolved against `base`.
    ///
    /// # Errors
    /// See [`ConnectError`].
    pub async fn open(&self, base: &Path) -> Result<Arc<dyn Sink>, ConnectError> {
        match self {
            SinkConfig::File(c) => c.open(base).await,
            SinkConfig::Stdout(c) => Ok(c.open()),
        }
    }
}
