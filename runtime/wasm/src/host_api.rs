//! The `sluice:plugin/host` interface every plugin imports: `log` and
//! `config`, served from the store's [`PluginState`](crate::state::PluginState).
//! Log lines count against the stage's log rate limit ([`sluice_core::log_limit`]).
//! Versions 0.1.0 and 0.2.0 of the interface are the same functions.

use crate::bindings::host::{self, Level};
use crate::bindings::host_v0_2;
use crate::state::PluginState;
use wasmtime::component::{HasSelf, Linker};

impl host::Host for PluginState {
    fn log(&mut self, level: Level, text: String) {
        if !self.log.admit() {
            return;
        }
        let stage = &*self.stage;
        let text = self.log.cut(&text);
        match level {
            Level::Trace => tracing::trace!(target: "sluice::plugin", stage, "{text}"),
            Level::Debug => tracing::debug!(target: "sluice::plugin", stage, "{text}"),
            Level::Info => tracing::info!(target: "sluice::plugin", stage, "{text}"),
            Level::Warn => tracing::warn!(target: "sluice::plugin", stage, "{text}"),
            Level::Error => tracing::error!(target: "sluice::plugin", stage, "{text}"),
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.params.get(&key).cloned()
    }
}

impl host_v0_2::Host for PluginState {
    fn log(&mut self, level: host_v0_2::Level, text: String) -> wasmtime::Result<()> {
        let level = match level {
            host_v0_2::Level::Trace => Level::Trace,
            host_v0_2::Level::Debug => Level::Debug,
            host_v0_2::Level::Info => Level::Info,
            host_v0_2::Level::Warn => Level::Warn,
            host_v0_2::Level::Error => Level::Error,
        };
        host::Host::log(self, level, text);
        Ok(())
    }

    fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(host::Host::config(self, key))
    }
}

/// Add the `host` interface, both versions, to `linker`.
///
/// # Errors
/// If the linker already defines it.
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    host::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)?;
    host_v0_2::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)
}
