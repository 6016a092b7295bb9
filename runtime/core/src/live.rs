//! A pipeline's chain of stages as a swappable value, for hot swap.
//!
//! [`LiveStages`] holds the current version of the stage list. Every worker
//! checks the version before it takes its next batch and, when it changed,
//! builds a new [`Chain`](crate::Chain) from it. A batch runs entirely on
//! the chain it started with, so every message sees one version of every
//! stage from the first stage to the last; nothing is dropped or run twice
//! by a swap.
//!
//! ```
//! # use sluice_core::{LiveStages, StageSpec};
//! # use std::sync::Arc;
//! let live = LiveStages::new(Vec::new());
//! let handle = live.clone(); // kept by whoever reloads
//! handle.swap(Vec::<Arc<StageSpec>>::new());
//! assert_eq!(live.current().version, 1);
//! ```

use crate::chain::StageSpec;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// One version of the stage list.
#[derive(Debug)]
pub struct StageVersion {
    /// 0 for the list the pipeline started with, +1 per swap.
    pub version: u64,
    pub stages: Vec<Arc<StageSpec>>,
}

/// The stage list of a running pipeline; cheap to clone (a shared handle).
#[derive(Debug, Clone)]
pub struct LiveStages(Arc<ArcSwap<StageVersion>>);

impl LiveStages {
    pub fn new(stages: Vec<Arc<StageSpec>>) -> Self {
        LiveStages(Arc::new(ArcSwap::from_pointee(StageVersion {
            version: 0,
            stages,
        })))
    }

    /// The version workers run now.
    pub fn current(&self) -> Arc<StageVersion> {
        self.0.load_full()
    }

    /// Install a new stage list; workers take it up before their next
    /// batch. Returns the new version number. The caller has validated and
    /// compiled the stages (a chain that fails to instantiate keeps the
    /// worker on its old version).
    pub fn swap(&self, stages: Vec<Arc<StageSpec>>) -> u64 {
        let version = self.0.load().version + 1;
        self.0.store(Arc::new(StageVersion { version, stages }));
        version
    }
}

impl From<Vec<Arc<StageSpec>>> for LiveStages {
    fn from(stages: Vec<Arc<StageSpec>>) -> Self {
        LiveStages::new(stages)
    }
}
