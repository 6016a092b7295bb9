//! `pipeline.toml`: parse → validate → resolve into an immutable [`Config`].
//!
//! ```no_run
//! let config = sluice_config::load("examples/quickstart.toml".as_ref())?;
//! for pipeline in &config.pipelines {
//!     println!("{} has {} stages", pipeline.name, pipeline.stages.len());
//! }
//! # Ok::<(), sluice_config::ConfigError>(())
//! ```
//!
//! Every error names the file, the line and the key, and says how to fix it.

mod diff;
mod error;
mod raw;
mod resolve;
mod units;

pub use diff::PipelineDiff;
pub use error::ConfigError;
pub use resolve::{load, parse, Capabilities, Config, PipelineConfig, StageConfig, Written};
pub use units::{ByteSize, HumanDuration, Name};
