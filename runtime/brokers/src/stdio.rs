//! `stdin` source and `stdout` sink: sluice as a filter in a shell pipe.

use crate::file::LineSink;
use crate::lines::{self, LineFormat, LineWriter};
use serde::Deserialize;
use sluice_core::Outbox;
use sluice_core::Shutdown;
use sluice_core::{Sink, Source, SourceError};
use std::sync::Arc;

/// `source = { type = "stdin" }`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinSourceConfig {
    /// `json` (default) or `lines`.
    #[serde(default)]
    pub format: LineFormat,
    /// For `json`: the top-level field whose value becomes the message key.
    pub key_field: Option<String>,
}

impl StdinSourceConfig {
    pub(crate) fn open(&self) -> Box<dyn Source> {
        Box::new(StdinSource {
            config: self.clone(),
        })
    }
}

struct StdinSource {
    config: StdinSourceConfig,
}

#[async_trait::async_trait]
impl Source for StdinSource {
    fn describe(&self) -> String {
        "stdin".into()
    }

    async fn run(self: Box<Self>, out: Outbox, shutdown: Shutdown) -> Result<(), SourceError> {
        let reader = tokio::io::BufReader::new(tokio::io::stdin());
        lines::read_lines(
            "stdin",
            reader,
            self.config.format,
            self.config.key_field.as_deref(),
            out,
            shutdown,
        )
        .await
    }
}

/// `sinks.NAME = { type = "stdout" }`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// `json` (default: an envelope per line) or `lines` (payload only).
    #[serde(default)]
    pub format: LineFormat,
}

impl StdoutSinkConfig {
    pub(crate) fn open(&self) -> Arc<dyn Sink> {
        let name = "stdout".to_owned();
        let writer = LineWriter::spawn(name.clone(), Box::new(std::io::stdout()))
            .expect("the stdout writer thread starts");
        Arc::new(LineSink {
            name,
            writer,
            format: self.format,
        })
    }
}
