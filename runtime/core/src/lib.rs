//! The heart of sluice: the message model, the [`Source`]/[`Sink`]/[`Stage`]
//! traits every connector and plugin host implements, and the pipeline
//! engine that moves each [`Delivery`] through a chain of stages, retries,
//! dead-letters, and acknowledges it only once every sink has confirmed.
//!
//! Nothing here knows about wasmtime or any broker client: the engine can be
//! driven entirely by the in-memory [`memory`] source and sink and native
//! [`Stage`] implementations.
//!
//! ```no_run
//! # async fn demo(pipeline: sluice_core::Pipeline) -> Result<(), sluice_core::engine::EngineError> {
//! // Stopped with `shutdown.cancel()`: in-flight messages get 30 s to finish.
//! let shutdown = sluice_core::Shutdown::new(std::time::Duration::from_secs(30));
//! let report = pipeline.run(shutdown).await?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

pub mod ack;
#[cfg(feature = "proptest")]
pub mod arbitrary;
pub mod budget;
pub mod chain;
pub mod claim;
pub mod clock;
pub mod dlq;
pub mod engine;
pub mod events;
pub mod grant;
pub mod health;
pub mod kv;
pub mod live;
pub mod log_limit;
pub mod memory;
pub mod message;
pub mod retry;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod stage;
pub mod stats;
pub mod tap;
pub mod trace;
pub mod units;

pub use ack::{AckHandle, Acker};
pub use budget::{ByteLimits, Outbox, ReadAhead};
pub use chain::{Chain, ChainOutcome, StageSpec};
pub use claim::{Claim, ClaimStore};
pub use clock::{Clock, SystemClock};
pub use dlq::{Failure, FailureClass};
pub use engine::{Pipeline, PipelineBuilder, PipelineReport};
pub use grant::HttpGrant;
pub use health::Health;
pub use kv::{Kv, KvError};
pub use live::{LiveStages, StageVersion};
pub use message::{Coordinates, Delivery, HeaderType, Message, Refusal};
pub use retry::RetryPolicy;
pub use shutdown::Shutdown;
pub use sink::{Confirm, Sink, SinkError};
pub use source::{Source, SourceError};
pub use stage::{
    Fault, FaultKind, Limits, NativeStage, PluginInfo, Stage, StageError, StageFactory, StageKind,
    StageOutput, Usage,
};
pub use stats::{PipelineStats, StageStats};
pub use units::HumanDuration;
