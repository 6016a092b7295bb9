//! What each plugin instance's `Store` holds: its WASI context (with every
//! capability denied), its memory cap, its params, its stage name and the
//! deadline of the call it is in.

use crate::deadline::DeadlinePoll;
use crate::limits::MemoryCap;
use crate::log_limit::LogLimiter;
use crate::wasi_policy;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub struct PluginState {
    pub stage: Arc<str>,
    pub params: Arc<BTreeMap<String, String>>,
    pub memory: MemoryCap,
    /// The stage's log rate limit, shared by its instances.
    pub log: Arc<LogLimiter>,
    /// When the current call must end, host waits included.
    pub deadline: Instant,
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
            deadline: Instant::now(),
            table: ResourceTable::new(),
        }
    }

    /// `wasi:io/poll` under this call's deadline.
    pub(crate) fn poll(&mut self) -> DeadlinePoll<'_> {
        DeadlinePoll {
            table: &mut self.table,
            deadline: self.deadline,
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
