//! What each plugin instance's `Store` holds: its WASI context (with every
//! capability denied), its memory cap, its params, its stage name and the
//! deadline of the call it is in.

use crate::deadline::DeadlinePoll;
use crate::limits::MemoryCap;
use crate::log_limit::LogLimiter;
use crate::wasi_policy;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// When a call must end: at an epoch tick (what the engine's epoch deadline
/// is too, so host waits end when Wasm code would), or at an instant when
/// epoch interruption is off.
#[derive(Debug, Clone, Copy)]
pub enum Deadline {
    Tick(u64),
    At(Instant),
}

pub struct PluginState {
    pub stage: Arc<str>,
    pub params: Arc<BTreeMap<String, String>>,
    pub memory: MemoryCap,
    /// The stage's log rate limit, shared by its instances.
    pub log: Arc<LogLimiter>,
    /// When the current call must end, host waits included.
    pub deadline: Deadline,
    /// The epoch tick count a [`Deadline::Tick`] is read against.
    epoch: Option<Arc<AtomicU64>>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl PluginState {
    pub fn new(
        stage: Arc<str>,
        params: Arc<BTreeMap<String, String>>,
        memory_cap: u64,
        log: Arc<LogLimiter>,
        epoch: Option<Arc<AtomicU64>>,
    ) -> Self {
        PluginState {
            wasi: wasi_policy::deny_all(&log),
            stage,
            params,
            memory: MemoryCap::new(memory_cap),
            log,
            deadline: Deadline::At(Instant::now()),
            epoch,
            table: ResourceTable::new(),
        }
    }

    /// `wasi:io/poll` under this call's deadline.
    pub(crate) fn poll(&mut self) -> DeadlinePoll<'_> {
        let deadline = match (self.deadline, &self.epoch) {
            (Deadline::At(at), _) => at,
            (Deadline::Tick(at), Some(epoch)) => {
                let left = at.saturating_sub(epoch.load(Ordering::Relaxed));
                Instant::now() + crate::EPOCH_TICK * u32::try_from(left).unwrap_or(u32::MAX)
            }
            (Deadline::Tick(_), None) => Instant::now(),
        };
        DeadlinePoll {
            table: &mut self.table,
            deadline,
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
