//! A plugin running as a pipeline stage: [`WasmStageFactory`] (one per
//! configured stage) makes [`WasmStage`]s (one per worker), each with its
//! own `Store` and instance.
//!
//! Every call runs under a [`Budget`] of fuel and time: a single call gets
//! the stage's limits, a batch call what its messages are expected to cost
//! ([`crate::budget`]), so a poison message in a batch costs about its own
//! limit, once. The time holds for host waits too ([`crate::deadline`]).
//! What a call returns is checked against the output caps
//! ([`check_output`]). A fault of any kind discards the instance and makes a
//! new one.

use crate::bindings::{filter, from_wit, guest_error, route, to_wit, transform};
use crate::budget::{Budget, Costs};
use crate::capabilities::Grants;
use crate::deadline::WaitPastDeadline;
use crate::host::{Plugin, WasmHost, WorldPre, EPOCH_TICK};
use crate::limits::{check_output, MemoryCapExceeded};
use crate::state::{Deadline, PluginState};
use sluice_core::log_limit::LogLimiter;
use sluice_core::Limits;
use sluice_core::{
    Fault, FaultKind, Message, PluginInfo, Stage, StageError, StageFactory, StageKind, StageOutput,
    Usage,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::{Engine, Store, Trap};

/// Everything needed to make instances of one configured stage.
pub struct WasmStageFactory {
    inner: Arc<Shared>,
}

struct Shared {
    engine: Engine,
    plugin: Arc<Plugin>,
    /// The plugin linked with the stage's grants.
    pre: WorldPre,
    grants: Grants,
    stage: Arc<str>,
    limits: Limits,
    params: Arc<BTreeMap<String, String>>,
    fuel: bool,
    /// The epoch tick count, when epoch interruption is on.
    epoch: Option<Arc<AtomicU64>>,
    /// One log budget for every instance of the stage.
    log: Arc<LogLimiter>,
}

impl WasmStageFactory {
    pub(crate) fn new(
        host: &WasmHost,
        plugin: Arc<Plugin>,
        pre: WorldPre,
        stage: &str,
        limits: Limits,
        params: BTreeMap<String, String>,
        grants: Grants,
    ) -> Self {
        let stage: Arc<str> = stage.into();
        let log = Arc::new(LogLimiter::new(
            stage.clone(),
            limits.log_lines_per_second,
            limits.log_line_bytes,
        ));
        WasmStageFactory {
            inner: Arc::new(Shared {
                engine: host.engine().clone(),
                plugin,
                pre,
                grants,
                stage,
                limits,
                params: Arc::new(params),
                fuel: host.fuel(),
                epoch: host.ticks(),
                log,
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
            costs: Costs::default(),
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
        let state = PluginState::new(
            self.stage.clone(),
            self.params.clone(),
            self.limits.memory,
            self.log.clone(),
            self.epoch.clone(),
            &self.grants,
            self.limits.kv_ops,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        self.arm(&mut store, Budget::single(&self.limits))?;
        let bindings = match &self.pre {
            WorldPre::Filter(pre) => Bindings::Filter(pre.instantiate(&mut store)?),
            WorldPre::Transform(pre) => Bindings::Transform(pre.instantiate(&mut store)?),
            WorldPre::Route(pre) => Bindings::Route(pre.instantiate(&mut store)?),
        };
        Ok(Live { store, bindings })
    }

    /// Give the store the budget of the next call, which starts now. The
    /// deadline of host waits is the epoch's own (a tick count, an atomic
    /// load) when epochs are on, else read from the clock.
    fn arm(&self, store: &mut Store<PluginState>, budget: Budget) -> wasmtime::Result<()> {
        if self.fuel {
            store.set_fuel(budget.fuel)?;
        }
        let deadline = match &self.epoch {
            Some(clock) => {
                let ticks = ticks(budget.time);
                store.set_epoch_deadline(ticks);
                Deadline::Tick(clock.load(Ordering::Relaxed) + ticks)
            }
            None => Deadline::At(Instant::now() + budget.time),
        };
        store.data_mut().deadline = deadline;
        Ok(())
    }

    /// Fuel the last call burnt, from the budget [`Shared::arm`] gave it.
    fn fuel_used(&self, store: &Store<PluginState>, budget: Budget) -> u64 {
        if !self.fuel {
            return 0;
        }
        budget.fuel.saturating_sub(store.get_fuel().unwrap_or(0))
    }

    fn fault(&self, error: wasmtime::Error) -> Fault {
        if error.downcast_ref::<WaitPastDeadline>().is_some() {
            return self.timeout("waiting in a host call");
        }
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
            Some(Trap::Interrupt) => self.timeout("running"),
            _ => Fault {
                kind: FaultKind::Trap,
                detail: one_line(&format!("{error:#}")),
            },
        }
    }

    fn timeout(&self, doing: &str) -> Fault {
        Fault {
            kind: FaultKind::Timeout,
            detail: format!(
                "call exceeded its timeout of {:?} ({doing})",
                self.limits.timeout
            ),
        }
    }
}

/// One live instance of a plugin, used by one worker thread.
pub struct WasmStage {
    shared: Arc<Shared>,
    live: Option<Live>,
    /// What a clean message costs here, to size batch budgets.
    costs: Costs,
    /// Fuel burnt since the last [`Stage::take_usage`].
    fuel_used: u64,
}

/// The live instance, made anew if the last call discarded it.
fn live<'a>(shared: &Shared, live: &'a mut Option<Live>) -> Result<&'a mut Live, Fault> {
    if live.is_none() {
        let made = shared.instantiate().map_err(|e| Fault {
            kind: FaultKind::Instantiate,
            detail: one_line(&format!("{e:#}")),
        })?;
        *live = Some(made);
    }
    Ok(live.as_mut().expect("instance present"))
}

impl WasmStage {
    /// Run one export on the instance under `budget`, for `n` messages.
    fn run<T>(
        &mut self,
        n: usize,
        budget: Budget,
        call: impl FnOnce(&Bindings, &mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<T, Fault> {
        let shared = &*self.shared;
        let live = live(shared, &mut self.live)?;
        // Only batches learn what a message costs (crate::budget).
        let started = (n > 1).then(Instant::now);
        shared
            .arm(&mut live.store, budget)
            .map_err(|e| shared.fault(e))?;
        live.store.data_mut().start_call(n);
        let answer = call(&live.bindings, &mut live.store);
        let fuel = shared.fuel_used(&live.store, budget);
        self.fuel_used += fuel;
        shared.log.settle();
        match answer {
            Ok(answer) => {
                if let Some(started) = started {
                    self.costs.observe(n, started.elapsed(), fuel);
                }
                Ok(answer)
            }
            Err(trap) => {
                let fault = shared.fault(trap);
                Err(self.trapped(fault, n))
            }
        }
    }

    /// The outcome of a call of `n` messages that faulted: replace the
    /// instance and report. A batch that faults (or outgrew its budget) is
    /// redone one message at a time by the chain, which reports the culprit.
    fn trapped(&mut self, fault: Fault, n: usize) -> Fault {
        if n == 1 {
            tracing::warn!(stage = &*self.shared.stage, class = %fault.kind.class(), detail = %fault.detail, "plugin fault; replacing instance");
        } else {
            tracing::debug!(stage = &*self.shared.stage, messages = n, class = %fault.kind.class(), detail = %fault.detail, "batch call faulted or outgrew its budget; replacing instance");
        }
        self.live = self.shared.instantiate().ok();
        fault
    }

    /// Fuel left after the last call (for metrics and the benchmark).
    pub fn fuel_remaining(&self) -> Option<u64> {
        self.live.as_ref().and_then(|l| l.store.get_fuel().ok())
    }

    /// A plugin's answer for one message, checked against the output caps.
    fn checked(&self, answer: Result<StageOutput, StageError>) -> Result<StageOutput, StageError> {
        let output = answer?;
        check_output(&self.shared.limits, &output).map_err(StageError::Fault)?;
        Ok(output)
    }
}

impl Stage for WasmStage {
    fn call(&mut self, msg: &Message) -> Result<StageOutput, StageError> {
        let wit = to_wit(msg);
        let budget = Budget::single(&self.shared.limits);
        let answer = self
            .run(1, budget, |bindings, store| match bindings {
                Bindings::Filter(b) => b.call_filter(store, &wit).map(|r| r.map(StageOutput::Keep)),
                Bindings::Transform(b) => b.call_transform(store, &wit).map(|r| {
                    r.map(|v| StageOutput::Messages(v.into_iter().map(from_wit).collect()))
                }),
                Bindings::Route(b) => b
                    .call_route(store, &wit)
                    .map(|r| r.map(StageOutput::Routes)),
            })
            .map_err(StageError::Fault)?;
        self.checked(answer.map_err(guest_error))
    }

    fn call_batch(
        &mut self,
        msgs: &[&Message],
    ) -> Result<Vec<Result<StageOutput, StageError>>, Fault> {
        let wit: Vec<_> = msgs.iter().map(|m| to_wit(m)).collect();
        let budget = self.costs.batch(&self.shared.limits, msgs.len());
        let answers: Vec<Result<StageOutput, StageError>> =
            self.run(msgs.len(), budget, |bindings, store| match bindings {
                Bindings::Filter(b) => b.call_filter_batch(store, &wit).map(|rs| {
                    rs.into_iter()
                        .map(|r| r.map(StageOutput::Keep).map_err(guest_error))
                        .collect()
                }),
                Bindings::Transform(b) => b.call_transform_batch(store, &wit).map(|rs| {
                    rs.into_iter()
                        .map(|r| {
                            r.map(|v| StageOutput::Messages(v.into_iter().map(from_wit).collect()))
                                .map_err(guest_error)
                        })
                        .collect::<Vec<_>>()
                }),
                Bindings::Route(b) => b.call_route_batch(store, &wit).map(|rs| {
                    rs.into_iter()
                        .map(|r| r.map(StageOutput::Routes).map_err(guest_error))
                        .collect()
                }),
            })?;
        if answers.len() != msgs.len() {
            return Err(Fault {
                kind: FaultKind::BadOutput,
                detail: format!(
                    "batch call returned {} results for {} messages",
                    answers.len(),
                    msgs.len()
                ),
            });
        }
        Ok(answers.into_iter().map(|a| self.checked(a)).collect())
    }

    fn take_usage(&mut self) -> Usage {
        Usage {
            fuel: std::mem::take(&mut self.fuel_used),
            log_suppressed: self.shared.log.take_suppressed(),
        }
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

/// A time budget in epoch ticks, rounded up, plus the tick in progress.
fn ticks(time: std::time::Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos() as u64;
    let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
    nanos.div_ceil(tick).saturating_add(1)
}
