//! [`PipelineBuilder`]: a [`Pipeline`] from its three required parts (name,
//! source, DLQ) and whatever else differs from the defaults.
//!
//! ```
//! use sluice_core::memory::{MemorySink, MemorySource};
//! use sluice_core::{Message, Pipeline};
//! let (source, _acks) = MemorySource::new("in", vec![Message::new("hello")]);
//! let out = MemorySink::new("out");
//! let pipeline = Pipeline::builder("demo", Box::new(source), MemorySink::new("dlq"))
//!     .sink("out", out.clone())
//!     .build();
//! let runtime = tokio::runtime::Runtime::new().unwrap();
//! runtime.block_on(pipeline.run(sluice_core::Shutdown::default())).unwrap();
//! assert_eq!(out.len(), 1);
//! ```

use super::{EngineOptions, Pipeline};
use crate::clock::{Clock, SystemClock};
use crate::live::LiveStages;
use crate::sink::Sink;
use crate::source::Source;
use crate::stats::PipelineStats;
use std::sync::Arc;

/// Builds a [`Pipeline`]: no stages, no sinks, [`EngineOptions::default`],
/// the system clock and fresh stats until told otherwise.
pub struct PipelineBuilder {
    pipeline: Pipeline,
}

impl Pipeline {
    /// Start a pipeline named `name` that reads `source` and dead-letters
    /// into `dlq`.
    pub fn builder(
        name: impl Into<String>,
        source: Box<dyn Source>,
        dlq: Arc<dyn Sink>,
    ) -> PipelineBuilder {
        PipelineBuilder {
            pipeline: Pipeline {
                name: name.into(),
                source,
                stages: LiveStages::new(Vec::new()),
                sinks: Vec::new(),
                dlq,
                options: EngineOptions::default(),
                clock: Arc::new(SystemClock),
                stats: Arc::default(),
                taps: Arc::default(),
            },
        }
    }
}

impl PipelineBuilder {
    /// The chain (a `Vec<Arc<StageSpec>>`, or a [`LiveStages`] kept to
    /// swap it while running).
    pub fn stages(mut self, stages: impl Into<LiveStages>) -> Self {
        self.pipeline.stages = stages.into();
        self
    }

    /// Add a sink; a route stage names it, and without a route stage every
    /// message goes to all sinks.
    pub fn sink(mut self, name: impl Into<String>, sink: Arc<dyn Sink>) -> Self {
        self.pipeline.sinks.push((name.into(), sink));
        self
    }

    pub fn options(mut self, options: EngineOptions) -> Self {
        self.pipeline.options = options;
        self
    }

    /// The pipeline clock: DLQ timestamps and retry sleeps.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.pipeline.clock = clock;
        self
    }

    /// Stats shared with whoever reads them (the metrics endpoint).
    pub fn stats(mut self, stats: Arc<PipelineStats>) -> Self {
        self.pipeline.stats = stats;
        self
    }

    pub fn build(self) -> Pipeline {
        self.pipeline
    }
}
