//! [`WasmHost`]: one wasmtime `Engine` for the whole process with a
//! `Linker` per set of granted capabilities, the epoch ticker that enforces
//! call deadlines, and plugin loading (read → hash → compile or load from
//! cache → detect world and needed capabilities); a stage then links its
//! plugin with its grants (`InstancePre`).

use crate::bindings::{filter, route, transform};
use crate::cache::ArtifactCache;
use crate::capabilities::{Capability, Grants, Linkers};
use crate::deadline::Deadlined;
use crate::error::LoadError;
use crate::host_api;
use crate::stage::WasmStageFactory;
use crate::state::PluginState;
use sha2::{Digest, Sha256};
use sluice_core::Limits;
use sluice_core::{PluginInfo, StageKind};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// How often the epoch advances; the granularity of `timeout`.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Engine-wide switches. Both limits are on in production; the benchmark
/// turns them off to measure what they cost.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Meter fuel so `fuel` limits work.
    pub fuel: bool,
    /// Epoch interruption so `timeout` limits work.
    pub epoch: bool,
    pub cache: ArtifactCache,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            fuel: true,
            epoch: true,
            cache: ArtifactCache::from_env(),
        }
    }
}

/// The pre-linked form of a component, one variant per world.
#[derive(Clone)]
pub(crate) enum WorldPre {
    Filter(filter::FilterPre<PluginState>),
    Transform(transform::TransformPre<PluginState>),
    Route(route::RoutePre<PluginState>),
}

/// A compiled plugin component. Shared by every stage that uses it; each
/// links it with its own grants.
pub struct Plugin {
    pub info: PluginInfo,
    pub kind: StageKind,
    component: Component,
    /// The capabilities its imports need, with the import that needs each.
    needs: Vec<(Capability, String)>,
}

impl Plugin {
    /// The capabilities the plugin imports.
    pub fn needs(&self) -> impl Iterator<Item = Capability> + '_ {
        self.needs.iter().map(|(c, _)| *c)
    }
}

/// The process-wide Wasm host.
pub struct WasmHost {
    engine: Engine,
    linkers: Linkers,
    options: HostOptions,
    /// Epoch ticks so far, when epoch interruption is on.
    ticks: Option<Arc<AtomicU64>>,
    loaded: Mutex<HashMap<(PathBuf, String), Arc<Plugin>>>,
}

impl WasmHost {
    /// # Errors
    /// If wasmtime rejects the engine configuration.
    pub fn new(options: HostOptions) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.consume_fuel(options.fuel);
        config.epoch_interruption(options.epoch);
        let engine = Engine::new(&config)?;
        let linkers = Linkers::new(&engine, |linker: &mut Linker<PluginState>| {
            wasmtime_wasi::p2::add_to_linker_sync(linker)?;
            // `poll` and `pollable.block` are the WASI calls that wait: served
            // with the call's deadline instead (crate::deadline).
            linker.allow_shadowing(true);
            wasmtime_wasi::p2::bindings::sync::io::poll::add_to_linker::<PluginState, Deadlined>(
                linker,
                PluginState::poll,
            )?;
            linker.allow_shadowing(false);
            host_api::add_to_linker(linker)
        })?;
        let ticks = options.epoch.then(|| spawn_epoch_ticker(&engine));
        Ok(WasmHost {
            engine,
            linkers,
            options,
            ticks,
            loaded: Mutex::default(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether fuel is metered.
    pub(crate) fn fuel(&self) -> bool {
        self.options.fuel
    }

    /// The epoch tick count, when epoch interruption is on.
    pub(crate) fn ticks(&self) -> Option<Arc<AtomicU64>> {
        self.ticks.clone()
    }

    /// Load a plugin: compile it (or take it from the artifact cache), find
    /// which world it implements and which capabilities it imports, and
    /// check the host provides its other imports. A file already loaded
    /// with the same content is returned from memory.
    ///
    /// # Errors
    /// Unreadable file, not a component, no sluice world, missing imports.
    pub fn load(&self, path: &Path) -> Result<Arc<Plugin>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let key = (path.to_owned(), sha256.clone());
        if let Some(plugin) = self.loaded.lock().expect("plugin table poisoned").get(&key) {
            return Ok(plugin.clone());
        }
        let compile_error = |e: wasmtime::Error| {
            let reason = format!("{e:#}");
            let reason = reason
                .lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches([' ', '[', '='])
                .to_owned();
            LoadError::Compile {
                path: path.to_owned(),
                reason,
            }
        };
        let started = std::time::Instant::now();
        let component = self
            .options
            .cache
            .load_or_compile(&self.engine, &sha256, &bytes)
            .map_err(compile_error)?;
        tracing::debug!(plugin = %path.display(), elapsed = ?started.elapsed(), "plugin loaded");
        let kind = detect_world(&self.engine, &component).ok_or_else(|| LoadError::NoWorld {
            path: path.to_owned(),
            exports: export_names(&self.engine, &component),
        })?;
        let needs = component
            .component_type()
            .imports(&self.engine)
            .filter_map(|(name, _)| Some((Capability::of_import(name)?, name.to_owned())))
            .collect();
        let plugin = Arc::new(Plugin {
            info: PluginInfo {
                path: path.to_owned(),
                sha256,
            },
            kind,
            component,
            needs,
        });
        // Every other import must be one the host provides.
        self.link(&plugin, self.linkers.everything())?;
        self.loaded
            .lock()
            .expect("plugin table poisoned")
            .insert(key, plugin.clone());
        Ok(plugin)
    }

    /// A stage factory running `plugin` as stage `stage` of kind `kind`,
    /// linked with what the stage grants.
    ///
    /// # Errors
    /// When the plugin implements another world than `kind`, or imports a
    /// capability the stage does not grant.
    pub fn stage(
        &self,
        plugin: Arc<Plugin>,
        stage: &str,
        kind: StageKind,
        limits: Limits,
        params: BTreeMap<String, String>,
        grants: Grants,
    ) -> Result<WasmStageFactory, LoadError> {
        if plugin.kind != kind {
            return Err(LoadError::KindMismatch {
                path: plugin.info.path.clone(),
                expected: kind,
                found: plugin.kind,
            });
        }
        if let Some((capability, import)) = plugin.needs.iter().find(|(c, _)| !grants.has(*c)) {
            return Err(LoadError::NotGranted {
                path: plugin.info.path.clone(),
                import: import.clone(),
                capability: *capability,
            });
        }
        let pre = self.link(&plugin, self.linkers.granting(&grants))?;
        Ok(WasmStageFactory::new(
            self, plugin, pre, stage, limits, params, grants,
        ))
    }

    /// Link `plugin` with `linker` and type-check its world's exports.
    fn link(&self, plugin: &Plugin, linker: &Linker<PluginState>) -> Result<WorldPre, LoadError> {
        let link_error = |e: wasmtime::Error| LoadError::Link {
            path: plugin.info.path.clone(),
            reason: format!("{e:#}"),
        };
        let instance_pre = linker
            .instantiate_pre(&plugin.component)
            .map_err(link_error)?;
        Ok(match plugin.kind {
            StageKind::Filter => {
                WorldPre::Filter(filter::FilterPre::new(instance_pre).map_err(link_error)?)
            }
            StageKind::Transform => {
                WorldPre::Transform(transform::TransformPre::new(instance_pre).map_err(link_error)?)
            }
            StageKind::Route => {
                WorldPre::Route(route::RoutePre::new(instance_pre).map_err(link_error)?)
            }
            StageKind::Dedupe => unreachable!("detect_world finds plugin worlds only"),
        })
    }
}

/// Which world a component implements, by the names it exports.
fn detect_world(engine: &Engine, component: &Component) -> Option<StageKind> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    StageKind::WORLDS.into_iter().find(|kind| {
        let single = kind.as_str();
        let batch = format!("{single}-batch");
        exports.contains(&single) && exports.contains(&batch.as_str())
    })
}

fn export_names(engine: &Engine, component: &Component) -> String {
    let ty = component.component_type();
    let names: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    names.join(", ")
}

/// Advance the engine's epoch every [`EPOCH_TICK`] until the engine is gone;
/// the count of ticks so far is the clock host waits end by
/// ([`crate::deadline`]), so they end when Wasm code would.
fn spawn_epoch_ticker(engine: &Engine) -> Arc<AtomicU64> {
    let ticks = Arc::new(AtomicU64::new(0));
    let counted = ticks.clone();
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => {
                    engine.increment_epoch();
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                None => return,
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch thread: stage timeouts will not fire");
    }
    ticks
}
