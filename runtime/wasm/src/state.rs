//! What each plugin instance's `Store` holds: its WASI context (with every
//! capability denied), its memory cap, its params, its stage name, the
//! deadline of the call it is in, and what its stage's grants serve.

use crate::capabilities::http::HttpAccess;
use crate::capabilities::kv::KvAccess;
use crate::capabilities::Grants;
use crate::deadline::DeadlinePoll;
use crate::limits::MemoryCap;
use crate::wasi_policy;
use sluice_core::log_limit::LogLimiter;
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
    /// Capability `kv`, when granted.
    pub(crate) kv: Option<KvAccess>,
    /// Capability `http` (it refuses every request when not granted).
    pub(crate) http: HttpAccess,
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
}

impl PluginState {
    pub fn new(
        stage: Arc<str>,
        params: Arc<BTreeMap<String, String>>,
        memory_cap: u64,
        log: Arc<LogLimiter>,
        epoch: Option<Arc<AtomicU64>>,
        grants: &Grants,
        kv_ops: u32,
    ) -> Self {
        let http = HttpAccess::new(grants.http.clone(), log.clone());
        PluginState {
            wasi: wasi_policy::deny_all(&log),
            stage,
            params,
            memory: MemoryCap::new(memory_cap),
            log,
            deadline: Deadline::At(Instant::now()),
            epoch,
            kv: grants.kv.clone().map(|kv| KvAccess {
                kv,
                per_message: kv_ops,
                left: 0,
            }),
            http,
            table: ResourceTable::new(),
        }
    }

    /// Arm the per-call counters for a call of `messages` messages.
    pub(crate) fn start_call(&mut self, messages: usize) {
        if let Some(kv) = &mut self.kv {
            let messages = u32::try_from(messages).unwrap_or(u32::MAX);
            kv.left = kv.per_message.saturating_mul(messages);
        }
        // A clock read per call, only where a request can be made.
        if self.http.granted() {
            let deadline = self.deadline_instant();
            self.http.start_call(deadline);
        }
    }

    /// The instant the current call's deadline falls on.
    pub(crate) fn deadline_instant(&self) -> Instant {
        match (self.deadline, &self.epoch) {
            (Deadline::At(at), _) => at,
            (Deadline::Tick(at), Some(epoch)) => {
                let left = at.saturating_sub(epoch.load(Ordering::Relaxed));
                Instant::now() + crate::EPOCH_TICK * u32::try_from(left).unwrap_or(u32::MAX)
            }
            (Deadline::Tick(_), None) => Instant::now(),
        }
    }

    /// `wasi:io/poll` under this call's deadline.
    pub(crate) fn poll(&mut self) -> DeadlinePoll<'_> {
        let deadline = self.deadline_instant();
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
