//! The wasmtime host for sluice plugins.
//!
//! One [`WasmHost`] per process holds the `Engine` and `Linker`. Loading a
//! plugin compiles it once (or loads the precompiled artifact from the
//! [`ArtifactCache`]), detects which world it implements (filter, transform,
//! route) and pre-links it. [`WasmHost::stage`] then makes a
//! [`WasmStageFactory`] (a `sluice_core::StageFactory`) with the stage's
//! [`Limits`] and params; the engine asks it for one instance per worker.
//!
//! ```no_run
//! use sluice_wasm::{HostOptions, Limits, WasmHost};
//! use sluice_core::StageKind;
//! let host = WasmHost::new(HostOptions::default())?;
//! let plugin = host.load("plugins/dist/json-filter.wasm".as_ref())?;
//! let factory = host.stage(plugin, "big-orders", StageKind::Filter, Limits::default(), Default::default(), Default::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Plugins get no WASI capabilities (see [`wasi_policy`]); their stdout and
//! stderr become log lines tagged with the stage name. What a stage grants
//! beyond that (`kv`) is linked for that stage only ([`capabilities`]).

pub mod bindings;
mod budget;
mod cache;
pub mod capabilities;
mod deadline;
mod error;
mod host;
mod host_api;
mod limits;
mod stage;
mod state;
pub mod wasi_policy;

pub use cache::ArtifactCache;
pub use capabilities::{Capability, Grants};
pub use deadline::WaitPastDeadline;
pub use error::LoadError;
pub use host::{HostOptions, Plugin, WasmHost, EPOCH_TICK};
pub use limits::MemoryCapExceeded;
pub use sluice_core::Limits;
pub use stage::{WasmStage, WasmStageFactory};
