//! The running pipelines of `sluice run`, and reloading them.
//!
//! A reload reads and validates the whole new config, loads (compiles or
//! takes from the cache) and instantiates every plugin of it, and connects
//! whatever new sources and sinks it needs, before it touches anything
//! running; if any step fails, nothing changes. Then, per pipeline:
//!
//! - same source, sinks, DLQ and engine settings, other stages (config or
//!   plugin file content): the new chain is swapped in live
//!   ([`LiveStages::swap`]); each message runs the version it started with;
//! - anything else changed: that pipeline drains and restarts on the new
//!   config (its counters carry on);
//! - new pipelines start, pipelines no longer in the file drain and stop;
//! - the rest is left alone.
//!
//! A pipeline drained for a restart gets the drain timeout, like a process
//! stop; a stop asked for meanwhile (SIGTERM) ends the reload at once and
//! leaves the new pipelines unstarted, so the process still exits within
//! its drain timeout.

use crate::assemble;
use crate::exit::CliError;
use crate::status::{Endpoint, PipelineStatus, Reload, Status};
use sluice_config::{Config, PipelineConfig, PipelineDiff};
use sluice_core::engine::EngineError;
use sluice_core::stats::ReadProgress;
use sluice_core::tap::Taps;
use sluice_core::Shutdown;
use sluice_core::{
    Chain, LiveStages, Pipeline, PipelineReport, PipelineStats, StageSpec, SystemClock,
};
use sluice_state::Stores;
use sluice_wasm::WasmHost;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// One running pipeline.
struct Running {
    config: PipelineConfig,
    /// The loaded stages' plugin sha256, in stage order.
    shas: Vec<String>,
    live: LiveStages,
    stats: Arc<PipelineStats>,
    /// Its source, sinks and DLQ with their connection states, for
    /// `/readyz` and the status page.
    source: Endpoint,
    sinks: Vec<(String, Endpoint)>,
    dlq: Endpoint,
    taps: Arc<Taps>,
    progress: Option<Arc<ReadProgress>>,
    stop: Shutdown,
    task: JoinHandle<Result<PipelineReport, EngineError>>,
}

/// A pipeline of a new config, loaded and checked, not yet running.
struct Loaded {
    config: PipelineConfig,
    stages: Vec<Arc<StageSpec>>,
    shas: Vec<String>,
}

pub struct Supervisor {
    path: PathBuf,
    host: WasmHost,
    /// Stores stay open across reloads (an embedded file opens once).
    stores: Stores,
    status: Arc<Status>,
    shutdown: Shutdown,
    running: Vec<Running>,
    /// Files that make a reload: the config and every plugin it names.
    pub files: Vec<PathBuf>,
    /// Reports of pipelines that ended, in the order they did.
    pub reports: Vec<PipelineReport>,
    pub failure: Option<CliError>,
    /// Does any pipeline (ever run) write messages to stdout?
    pub stdout_sinks: bool,
    /// Pipelines whose source ended by itself (a file read to its end): a
    /// reload starts them again only if their source, sinks or settings
    /// changed, or they would read the same input twice.
    ended: Vec<PipelineConfig>,
}

impl Supervisor {
    /// Load, check and connect everything in `path`, then start it.
    ///
    /// # Errors
    /// Invalid config or plugin (exit 1); an unreachable broker (exit 2).
    pub async fn start(
        path: &Path,
        host: WasmHost,
        status: Arc<Status>,
        shutdown: Shutdown,
    ) -> Result<Supervisor, CliError> {
        let config = sluice_config::load(path)?;
        let mut s = Supervisor {
            path: path.to_owned(),
            host,
            stores: Stores::default(),
            status,
            shutdown,
            running: Vec::new(),
            files: Vec::new(),
            reports: Vec::new(),
            failure: None,
            stdout_sinks: false,
            ended: Vec::new(),
        };
        let loaded = s.load(&config).await?;
        let mut pipelines = Vec::with_capacity(loaded.len());
        for l in &loaded {
            pipelines.push(assemble::connect(&config, &l.config, l.stages.clone()).await?);
        }
        for (l, p) in loaded.into_iter().zip(pipelines) {
            s.spawn(l, p);
        }
        s.files = watched_files(&config);
        s.stdout_sinks = writes_stdout(&config);
        s.publish_status();
        Ok(s)
    }

    /// Open the stores, then load and instantiate every stage of every
    /// pipeline of `config`.
    async fn load(&self, config: &Config) -> Result<Vec<Loaded>, CliError> {
        let mut stores = Vec::with_capacity(config.pipelines.len());
        for p in &config.pipelines {
            stores.push(assemble::open_stores(&self.stores, p).await?);
        }
        config
            .pipelines
            .iter()
            .zip(stores)
            .map(|(p, stores)| {
                let stages = assemble::load_stages(&self.host, config, p, &stores)?;
                let sinks: Arc<[String]> = p.sinks.iter().map(|(n, _)| n.clone()).collect();
                Chain::new(&stages, sinks, Arc::new(SystemClock)).map_err(|e| {
                    CliError::Invalid(format!(
                        "{}: pipeline `{}`: {e}",
                        config.path.display(),
                        p.name
                    ))
                })?;
                let shas = stages.iter().map(|s| s.factory.plugin().sha256).collect();
                Ok(Loaded {
                    config: p.clone(),
                    stages,
                    shas,
                })
            })
            .collect()
    }

    fn spawn(&mut self, loaded: Loaded, pipeline: Pipeline) {
        let stop = self.shutdown.child();
        let live = pipeline.stages.clone();
        let stats = pipeline.stats.clone();
        let source = Endpoint::source(pipeline.source.as_ref());
        let sinks = pipeline
            .sinks
            .iter()
            .map(|(name, sink)| (name.clone(), Endpoint::sink(sink.as_ref())))
            .collect();
        let dlq = Endpoint::sink(pipeline.dlq.as_ref());
        let taps = pipeline.taps.clone();
        let progress = pipeline.source.progress();
        let task = tokio::spawn(pipeline.run(stop.clone()));
        self.running.push(Running {
            config: loaded.config,
            shas: loaded.shas,
            live,
            stats,
            source,
            sinks,
            dlq,
            taps,
            progress,
            stop,
            task,
        });
    }

    fn publish_status(&self) {
        let pipelines = self
            .running
            .iter()
            .map(|r| PipelineStatus {
                name: r.config.name.clone(),
                source: r.source.clone(),
                sinks: r.sinks.clone(),
                dlq: r.dlq.clone(),
                stats: r.stats.clone(),
                stages: r.live.clone(),
                concurrency: r.config.engine.concurrency,
                taps: r.taps.clone(),
                progress: r.progress.clone(),
            })
            .collect();
        self.status.set_pipelines(pipelines);
    }

    /// Are all pipelines finished (their sources ended)?
    pub fn idle(&self) -> bool {
        self.running.is_empty()
    }

    /// Collect the reports of pipelines that ended by themselves.
    pub async fn reap(&mut self) {
        let mut i = 0;
        let before = self.running.len();
        while i < self.running.len() {
            if self.running[i].task.is_finished() {
                let r = self.running.remove(i);
                self.ended.push(r.config.clone());
                self.finished(&r.config.name, r.task.await);
            } else {
                i += 1;
            }
        }
        if self.running.len() != before {
            // An ended pipeline's source and sinks no longer count for /readyz.
            self.publish_status();
        }
    }

    fn finished(
        &mut self,
        pipeline: &str,
        result: Result<Result<PipelineReport, EngineError>, tokio::task::JoinError>,
    ) {
        match result {
            Ok(Ok(report)) => self.reports.push(report),
            Ok(Err(e)) => {
                tracing::error!(pipeline, error = %e, "pipeline failed");
                self.failure = Some(e.into())
            }
            Err(e) => {
                tracing::error!(pipeline, error = %e, "pipeline task failed");
                self.failure = Some(CliError::Invalid(format!(
                    "pipeline `{pipeline}`: its task failed: {e}"
                )))
            }
        }
    }

    /// Wait for every pipeline to finish after the shutdown was cancelled,
    /// at most until its drain deadline (the pipelines stop waiting at the
    /// same instant), then make the stores' writes durable. Returns the
    /// names of those still running.
    pub async fn drain(&mut self) -> Vec<String> {
        let deadline = tokio::time::Instant::from_std(self.shutdown.drain_deadline());
        for r in std::mem::take(&mut self.running) {
            let name = r.config.name.clone();
            let mut task = r.task;
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(result) => self.finished(&name, result),
                Err(_) => {
                    let c = r.stats.snapshot();
                    tracing::warn!(pipeline = %name, in_flight = c.received.saturating_sub(c.acked), "drain timeout: leaving the rest unacknowledged; the broker redelivers it");
                    self.running.push(Running { task, ..r });
                }
            }
        }
        self.stores.flush().await;
        self.running.iter().map(|r| r.config.name.clone()).collect()
    }

    /// Reload the config file; see the module docs. Never fails the
    /// process: a failed reload is logged and counted, and everything keeps
    /// running as it was.
    pub async fn reload(&mut self) {
        let result = self.try_reload().await;
        self.status.reloaded(
            match &result {
                Ok(true) => Reload::Ok,
                Ok(false) => Reload::Unchanged,
                Err(_) => Reload::Failed,
            },
            result.as_ref().err().map(ToString::to_string),
        );
        match result {
            Ok(true) => tracing::info!(config = %self.path.display(), "reload applied"),
            Ok(false) => tracing::info!(config = %self.path.display(), "reload: nothing changed"),
            Err(e) => {
                tracing::error!(config = %self.path.display(), error = %e, "reload failed; the running pipelines keep running unchanged")
            }
        }
    }

    async fn try_reload(&mut self) -> Result<bool, CliError> {
        let config = sluice_config::load(&self.path)?;
        let loaded = self.load(&config).await?;
        // Plan, and connect what has to be (re)started, before touching anything.
        // An ended pipeline counts as there: it starts again only if it changed
        // outside its stages, or it would read the same input twice.
        let old: Vec<PipelineConfig> = self
            .running
            .iter()
            .map(|r| r.config.clone())
            .chain(self.ended.iter().cloned())
            .collect();
        let diff = PipelineDiff::between(&old, &config.pipelines);
        let has = |list: &[String], name: &str| list.iter().any(|n| n == name);
        let mut swaps = Vec::new();
        let mut starts = Vec::new();
        for l in loaded {
            let name = l.config.name.as_str();
            let running = self.running.iter().position(|r| r.config.name == name);
            if has(&diff.add, name) || has(&diff.restart, name) {
                // Nothing has changed yet, so a stop asked for meanwhile
                // may abandon the connect (a broker slow to answer).
                let connect = assemble::connect(&config, &l.config, l.stages.clone());
                let pipeline = tokio::select! {
                    pipeline = connect => pipeline?,
                    _ = self.shutdown.cancelled() => {
                        return Err(CliError::Connection(format!(
                            "pipeline `{name}`: connect abandoned, the daemon is stopping"
                        )))
                    }
                };
                starts.push((l, pipeline));
            } else if let Some(i) = running {
                // The config may be the same while a plugin file was rebuilt.
                if has(&diff.swap, name) || self.running[i].shas != l.shas {
                    swaps.push((i, l));
                }
            }
        }
        let stops: Vec<usize> = (0..self.running.len())
            .filter(|&i| {
                let name = &self.running[i].config.name;
                has(&diff.remove, name) || starts.iter().any(|(l, _)| &l.config.name == name)
            })
            .collect();
        let changed = !swaps.is_empty() || !starts.is_empty() || !stops.is_empty();
        // A pipeline that ended and now starts again on a new config is
        // running, not ended; one removed from the file is forgotten.
        self.ended.retain(|e| {
            !has(&diff.remove, &e.name) && !starts.iter().any(|(l, _)| l.config.name == e.name)
        });

        for (i, l) in swaps {
            let r = &mut self.running[i];
            let stages = carry_stats(&r.live, l.stages);
            let version = r.live.swap(stages);
            tracing::info!(pipeline = %r.config.name, version, "new chain swapped in");
            r.config = l.config;
            r.shas = l.shas;
        }
        // Stop (drain) what goes or restarts; a restarted pipeline keeps its counters.
        let mut carried = Vec::new();
        for i in stops.into_iter().rev() {
            let mut r = self.running.remove(i);
            tracing::info!(pipeline = %r.config.name, "draining for a restart or removal");
            r.stop.cancel();
            carried.push((r.config.name.clone(), r.stats.clone(), r.taps.clone()));
            let deadline = tokio::time::Instant::from_std(r.stop.drain_deadline());
            let ended = tokio::select! {
                biased;
                result = &mut r.task => Drained::Finished(result),
                _ = self.shutdown.cancelled() => Drained::Stopping,
                _ = tokio::time::sleep_until(deadline) => Drained::Late,
            };
            match ended {
                Drained::Finished(result) => self.finished(&r.config.name, result),
                Drained::Late => {
                    // The engine gives up at the same deadline; this is the
                    // backstop, so a restart never waits for ever.
                    let c = r.stats.snapshot();
                    tracing::warn!(pipeline = %r.config.name, in_flight = c.received.saturating_sub(c.acked), "drain timeout during a reload: restarting with the rest unacknowledged; the broker redelivers it");
                    r.task.abort();
                }
                Drained::Stopping => {
                    // The process is stopping: its own drain waits for this
                    // pipeline, and for the ones not yet stopped, with the
                    // process's deadline. Nothing new starts.
                    tracing::warn!(pipeline = %r.config.name, "stop requested during a reload: the new config is not started");
                    self.running.push(r);
                    self.publish_status();
                    return Ok(true);
                }
            }
        }
        for (l, mut pipeline) in starts {
            // A restarted pipeline keeps its counters and its attached taps.
            if let Some((_, stats, taps)) = carried.iter().find(|(n, ..)| *n == l.config.name) {
                pipeline.stats = stats.clone();
                pipeline.taps = taps.clone();
            }
            tracing::info!(pipeline = %l.config.name, "starting");
            self.spawn(l, pipeline);
        }
        self.files = watched_files(&config);
        self.stdout_sinks |= writes_stdout(&config);
        self.publish_status();
        Ok(changed)
    }
}

/// How the drain of a pipeline stopped by a reload ended.
enum Drained {
    Finished(Result<Result<PipelineReport, EngineError>, tokio::task::JoinError>),
    /// The process is stopping (SIGTERM during the reload).
    Stopping,
    /// Its drain deadline passed.
    Late,
}

/// New stage specs that keep the counters of the running stages of the same name.
fn carry_stats(live: &LiveStages, stages: Vec<Arc<StageSpec>>) -> Vec<Arc<StageSpec>> {
    let old = live.current();
    stages
        .into_iter()
        .map(|s| match old.stages.iter().find(|o| o.name == s.name) {
            Some(o) => Arc::new(StageSpec {
                name: s.name.clone(),
                factory: s.factory.clone(),
                retry: s.retry,
                stats: o.stats.clone(),
                plugin: s.plugin.clone(),
            }),
            None => s,
        })
        .collect()
}

fn watched_files(config: &Config) -> Vec<PathBuf> {
    let mut files = vec![config.path.clone()];
    for p in &config.pipelines {
        files.extend(p.stages.iter().filter_map(|s| s.plugin.clone()));
    }
    files.sort();
    files.dedup();
    files
}

fn writes_stdout(config: &Config) -> bool {
    use sluice_brokers::SinkConfig;
    config.pipelines.iter().any(|p| {
        matches!(p.dlq, SinkConfig::Stdout(_))
            || p.sinks
                .iter()
                .any(|(_, s)| matches!(s, SinkConfig::Stdout(_)))
    })
}
