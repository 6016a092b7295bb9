//! Capabilities: what a plugin may import beyond `host` and its sandboxed
//! WASI. A stage grants them in the TOML (`capabilities = ["kv"]`), and
//! linking enforces the grant: each set of grants has its own linker, which
//! defines only the granted interfaces, so a plugin that imports one its
//! stage does not grant cannot be instantiated at all. [`WasmHost::stage`]
//! checks the imports first, to name the import and the key that grants it
//! ([`LoadError::NotGranted`]). Each capability is one module here.
//!
//! [`WasmHost::stage`]: crate::WasmHost::stage
//! [`LoadError::NotGranted`]: crate::LoadError::NotGranted

pub(crate) mod http;
pub(crate) mod kv;

use crate::state::PluginState;
use sluice_core::{HttpGrant, Kv};
use std::sync::Arc;
use wasmtime::component::Linker;
use wasmtime::Engine;

/// A capability a stage can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `sluice:plugin/kv@0.2.0`: the stage's key-value namespace.
    Kv,
    /// `wasi:http/*@0.2`: outbound requests to the stage's allow-list.
    Http,
}

impl Capability {
    pub const ALL: [Capability; 2] = [Capability::Kv, Capability::Http];

    /// Its name in the stage's `capabilities`.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Kv => "kv",
            Capability::Http => "http",
        }
    }

    /// The TOML that grants it, for messages.
    pub fn grant_hint(self) -> &'static str {
        match self {
            Capability::Kv => "capabilities = [\"kv\"] (or `kv = true` in a capabilities table)",
            Capability::Http => {
                "capabilities = { http = { allow = [\"HOST:PORT\", ...] } } (with `kv = true` beside it if it needs both)"
            }
        }
    }

    /// The capability an import (`sluice:plugin/kv@0.2.0`,
    /// `wasi:http/outgoing-handler@0.2.6`) needs, if any.
    pub fn of_import(import: &str) -> Option<Capability> {
        if import.starts_with("sluice:plugin/kv@") {
            Some(Capability::Kv)
        } else if import.starts_with("wasi:http/") {
            Some(Capability::Http)
        } else {
            None
        }
    }

    fn bit(self) -> usize {
        1 << self as usize
    }

    fn add_to_linker(self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        match self {
            Capability::Kv => kv::add_to_linker(linker),
            Capability::Http => http::add_to_linker(linker),
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one stage grants, with what serves each grant.
#[derive(Clone, Default)]
pub struct Grants {
    /// The stage's key-value namespace (capability `kv`).
    pub kv: Option<Arc<dyn Kv>>,
    /// Where and how the stage's plugin may send requests (`http`).
    pub http: Option<Arc<HttpGrant>>,
}

impl Grants {
    pub fn has(&self, capability: Capability) -> bool {
        match capability {
            Capability::Kv => self.kv.is_some(),
            Capability::Http => self.http.is_some(),
        }
    }

    fn mask(&self) -> usize {
        Capability::ALL
            .into_iter()
            .filter(|c| self.has(*c))
            .map(Capability::bit)
            .sum()
    }
}

/// One linker per set of grants, each with the interfaces every plugin
/// gets plus the granted ones.
pub(crate) struct Linkers(Vec<Linker<PluginState>>);

impl Linkers {
    /// `base` adds what every plugin gets.
    pub fn new(
        engine: &Engine,
        base: impl Fn(&mut Linker<PluginState>) -> wasmtime::Result<()>,
    ) -> wasmtime::Result<Self> {
        let sets = 1 << Capability::ALL.len();
        let linkers = (0..sets)
            .map(|mask| {
                let mut linker = Linker::new(engine);
                base(&mut linker)?;
                for capability in Capability::ALL {
                    if mask & capability.bit() != 0 {
                        capability.add_to_linker(&mut linker)?;
                    }
                }
                Ok(linker)
            })
            .collect::<wasmtime::Result<_>>()?;
        Ok(Linkers(linkers))
    }

    /// The linker of a stage with `grants`.
    pub fn granting(&self, grants: &Grants) -> &Linker<PluginState> {
        &self.0[grants.mask()]
    }

    /// The linker with every capability (to check a plugin's other imports
    /// when it loads).
    pub fn everything(&self) -> &Linker<PluginState> {
        &self.0[self.0.len() - 1]
    }
}
