//! What each plugin instance's `Store` holds: its WASI context (with every
//! capability denied), its memory cap, its params and its stage name.

use crate::limits::MemoryCap;
use crate::log_limit::LogLimiter;
use crate::wasi_policy;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub struct PluginState {
    pub stage: Arc<str>,
    pub params: Arc<BTreeMap<String, String>>,
    pub memory: MemoryCap,
    /// The stage's log rate limit, shared by its instances.
    pub log: Arc<LogLimiter>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl PluginState {
    pub fn new(
        stage: Arc<str>,
        params: Arc<BTreeMap<String, String>>,
        memory_cap: u64,
        log: Arc<LogLimiter>,
    ) -> Self {
        PluginState {
            wasi: wasi_policy::deny_all(&log),
            stage,
            params,
            memory: MemoryCap::new(memory_cap),
            log,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
