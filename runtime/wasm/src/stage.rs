//! A plugin running as a pipeline stage: [`WasmStageFactory`] (one per
//! configured stage) makes [`WasmStage`]s (one per worker), each with its
//! own `Store` and instance. Every call gets a fresh fuel budget and
//! deadline; a trap of any kind discards the instance and makes a new one.

use crate::bindings::{filter, from_wit, guest_error, route, to_wit, transform};
use crate::host::{Plugin, WorldPre, EPOCH_TICK};
use crate::limits::MemoryCapExceeded;
use crate::state::PluginState;
use sluice_core::Limits;
use sluice_core::{
    Fault, FaultKind, Message, PluginInfo, Stage, StageError, StageFactory, StageKind, StageOutput,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::{Engine, Store, Trap};

/// Everything needed to make instances of one configured stage.
pub struct WasmStageFactory {
    inner: Arc<Shared>,
}

struct Shared {
    engine: Engine,
    plugin: Arc<Plugin>,
    stage: Arc<str>,
    limits: Limits,
    params: Arc<BTreeMap<String, String>>,
    fuel: bool,
    epoch_ticks: Option<u64>,
}

impl WasmStageFactory {
    pub(crate) fn new(
        engine: Engine,
        plugin: Arc<Plugin>,
        stage: &str,
        limits: Limits,
        params: BTreeMap<String, String>,
        fuel: bool,
        epoch: bool,
    ) -> Self {
        let epoch_ticks =
            epoch.then(|| limits.timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64 + 1);
        WasmStageFactory {
            inner: Arc::new(Shared {
                engine,
                plugin,
                stage: stage.into(),
                limits,
                params: Arc::new(params),
                fuel,
                epoch_ticks,
            }),
        }
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// A stage instance with its concrete type (the benchmark and tests use
    /// its batch call).
    ///
    /// # Errors
    /// When instantiation fails (e.g. the component's start function traps).
    pub fn instance(&self) -> wasmtime::Result<WasmStage> {
        let live = self.inner.instantiate()?;
        Ok(WasmStage {
            shared: self.inner.clone(),
            live: Some(live),
            fuel_used: 0,
        })
    }
}

impl StageFactory for WasmStageFactory {
    fn kind(&self) -> StageKind {
        self.inner.plugin.kind
    }

    fn plugin(&self) -> PluginInfo {
        self.inner.plugin.info.clone()
    }

    fn instantiate(&self) -> anyhow::Result<Box<dyn Stage>> {
        let stage = self.instance().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(Box::new(stage))
    }
}

enum Bindings {
    Filter(filter::Filter),
    Transform(transform::Transform),
    Route(route::Route),
}

struct Live {
    store: Store<PluginState>,
    bindings: Bindings,
}

impl Shared {
    fn instantiate(&self) -> wasmtime::Result<Live> {
        let state = PluginState::new(self.stage.clone(), self.params.clone(), self.limits.memory);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        self.arm(&mut store, 1)?;
        let bindings = match &self.plugin.pre {
            WorldPre::Filter(pre) => Bindings::Filter(pre.instantiate(&mut store)?),
            WorldPre::Transform(pre) => Bindings::Transform(pre.instantiate(&mut store)?),
            WorldPre::Route(pre) => Bindings::Route(pre.instantiate(&mut store)?),
        };
        Ok(Live { store, bindings })
    }

    /// A fresh fuel budget and deadline for the next call, which handles
    /// `messages` messages (the per-message limits add up for a batch).
    fn arm(&self, store: &mut Store<PluginState>, messages: u64) -> wasmtime::Result<()> {
        if self.fuel {
            store.set_fuel(self.limits.fuel.saturating_mul(messages))?;
        }
        if let Some(ticks) = self.epoch_ticks {
            store.set_epoch_deadline(ticks.saturating_mul(messages));
        }
        Ok(())
    }

    /// Fuel the last call burnt, from the budget [`Shared::arm`] gave it.
    fn fuel_used(&self, store: &Store<PluginState>, messages: u64) -> u64 {
        if !self.fuel {
            return 0;
        }
        self.limits
            .fuel
            .saturating_mul(messages)
            .saturating_sub(store.get_fuel().unwrap_or(0))
    }

    fn fault(&self, error: wasmtime::Error) -> Fault {
        if let Some(cap) = error.downcast_ref::<MemoryCapExceeded>() {
            return Fault {
                kind: FaultKind::MemoryLimit,
                detail: cap.to_string(),
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => Fault {
                kind: FaultKind::OutOfFuel,
                detail: format!("fuel budget of {} per message exhausted", self.limits.fuel),
            },
            Some(Trap::Interrupt) => Fault {
                kind: FaultKind::Timeout,
                detail: format!("call exceeded its timeout of {:?}", self.limits.timeout),
            },
            _ => Fault {
                kind: FaultKind::Trap,
                detail: one_line(&format!("{error:#}")),
            },
        }
    }
}

/// One live instance of a plugin, used by one worker thread.
pub struct WasmStage {
    shared: Arc<Shared>,
    live: Option<Live>,
    /// Fuel burnt since the last [`Stage::take_fuel_used`].
    fuel_used: u64,
}

impl WasmStage {
    fn live(&mut self) -> Result<&mut Live, Fault> {
        if self.live.is_none() {
            let live = self.shared.instantiate().map_err(|e| Fault {
                kind: FaultKind::Instantiate,
                detail: one_line(&format!("{e:#}")),
            })?;
            self.live = Some(live);
        }
        Ok(self.live.as_mut().expect("instance present"))
    }

    /// The outcome of a call that trapped: replace the instance and report.
    fn trapped(&mut self, error: wasmtime::Error) -> Fault {
        let fault = self.shared.fault(error);
        tracing::warn!(stage = &*self.shared.stage, class = fault.kind.class(), detail = %fault.detail, "plugin fault; replacing instance");
        self.live = self.shared.instantiate().ok();
        fault
    }

    /// Fuel left after the last call (for metrics and the benchmark).
    pub fn fuel_remaining(&self) -> Option<u64> {
        self.live.as_ref().and_then(|l| l.store.get_fuel().ok())
    }
}

impl Stage for WasmStage {
    fn call(&mut self, msg: &Message) -> Result<StageOutput, StageError> {
        let shared = self.shared.clone();
        let live = self.live().map_err(StageError::Fault)?;
        shared
            .arm(&mut live.store, 1)
            .map_err(|e| StageError::Fault(shared.fault(e)))?;
        let wit = to_wit(msg);
        let store = &mut live.store;
        let result = match &live.bindings {
            Bindings::Filter(b) => b
                .call_filter(&mut *store, &wit)
                .map(|r| r.map(StageOutput::Keep)),
            Bindings::Transform(b) => b
                .call_transform(&mut *store, &wit)
                .map(|r| r.map(|v| StageOutput::Messages(v.into_iter().map(from_wit).collect()))),
            Bindings::Route(b) => b
                .call_route(&mut *store, &wit)
                .map(|r| r.map(StageOutput::Routes)),
        };
        let used = shared.fuel_used(store, 1);
        self.fuel_used += used;
        match result {
            Ok(answer) => answer.map_err(guest_error),
            Err(trap) => Err(StageError::Fault(self.trapped(trap))),
        }
    }

    fn call_batch(
        &mut self,
        msgs: &[Message],
    ) -> Result<Vec<Result<StageOutput, StageError>>, Fault> {
        let shared = self.shared.clone();
        let live = self.live()?;
        shared
            .arm(&mut live.store, msgs.len() as u64)
            .map_err(|e| shared.fault(e))?;
        let wit: Vec<_> = msgs.iter().map(to_wit).collect();
        let store = &mut live.store;
        let result = match &live.bindings {
            Bindings::Filter(b) => b.call_filter_batch(&mut *store, &wit).map(|rs| {
                rs.into_iter()
                    .map(|r| r.map(StageOutput::Keep).map_err(guest_error))
                    .collect()
            }),
            Bindings::Transform(b) => b.call_transform_batch(&mut *store, &wit).map(|rs| {
                rs.into_iter()
                    .map(|r| {
                        r.map(|v| StageOutput::Messages(v.into_iter().map(from_wit).collect()))
                            .map_err(guest_error)
                    })
                    .collect::<Vec<_>>()
            }),
            Bindings::Route(b) => b.call_route_batch(&mut *store, &wit).map(|rs| {
                rs.into_iter()
                    .map(|r| r.map(StageOutput::Routes).map_err(guest_error))
                    .collect()
            }),
        };
        let used = shared.fuel_used(store, msgs.len() as u64);
        self.fuel_used += used;
        match result {
            Ok(results) if results.len() == msgs.len() => Ok(results),
            Ok(results) => Err(Fault {
                kind: FaultKind::BadOutput,
                detail: format!(
                    "batch call returned {} results for {} messages",
                    results.len(),
                    msgs.len()
                ),
            }),
            Err(trap) => Err(self.trapped(trap)),
        }
    }

    fn take_fuel_used(&mut self) -> u64 {
        std::mem::take(&mut self.fuel_used)
    }
}

/// A trap's text (message and wasm backtrace) on one line, at most 2 KiB,
/// so it fits a broker header.
fn one_line(text: &str) -> String {
    let mut line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    if line.len() > 2048 {
        let mut cut = 2048;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}
