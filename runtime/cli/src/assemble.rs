//! Config → runnable pieces. Plugins are loaded (compiled or taken from the
//! artifact cache) and type-checked first, so a bad plugin is reported
//! before anything connects; then sources and sinks are opened.

use crate::exit::CliError;
use sluice_brokers::dlq::{DlqFormat, EnvelopeSink};
use sluice_config::{Config, PipelineConfig, StageConfig};
use sluice_core::{Pipeline, StageSpec, SystemClock};
use sluice_wasm::{HostOptions, LoadError, WasmHost, WasmStageFactory};
use std::sync::Arc;

/// The process's Wasm host, limits on, artifact cache from the environment.
///
/// # Errors
/// If wasmtime rejects the engine configuration.
pub fn host() -> Result<WasmHost, CliError> {
    WasmHost::new(HostOptions::default())
        .map_err(|e| CliError::Invalid(format!("wasm engine: {e:#}")))
}

/// Load and type-check every stage's plugin.
///
/// # Errors
/// [`CliError::Invalid`] naming the config file, the stage and the plugin.
pub fn load_stages(
    host: &WasmHost,
    config: &Config,
    pipeline: &PipelineConfig,
) -> Result<Vec<Arc<StageSpec>>, CliError> {
    pipeline
        .stages
        .iter()
        .map(|stage| {
            let factory = load_stage(host, stage).map_err(|e| {
                let at = stage
                    .written
                    .line
                    .map(|(l, c)| format!(":{l}:{c}"))
                    .unwrap_or_default();
                CliError::Invalid(format!(
                    "{}{at}: {}: {e}",
                    config.path.display(),
                    stage.written.key
                ))
            })?;
            Ok(Arc::new(StageSpec::new(
                stage.name.clone(),
                Arc::new(factory),
                stage.retry,
            )))
        })
        .collect()
}

fn load_stage(host: &WasmHost, stage: &StageConfig) -> Result<WasmStageFactory, LoadError> {
    let plugin = host.load(&stage.plugin)?;
    host.stage(
        plugin,
        &stage.name,
        stage.kind,
        stage.limits,
        stage.params.clone(),
    )
}

/// Connect a pipeline's source, sinks and DLQ.
///
/// # Errors
/// [`CliError::Connection`] for an unreachable broker, [`CliError::Invalid`]
/// for an unusable endpoint (a missing input file).
pub async fn connect(
    config: &Config,
    pipeline: &PipelineConfig,
    stages: Vec<Arc<StageSpec>>,
) -> Result<Pipeline, CliError> {
    let base = &config.base_dir;
    let context = |e: sluice_brokers::ConnectError| -> CliError {
        let e: CliError = e.into();
        match e {
            CliError::Invalid(m) => CliError::Invalid(format!("pipeline `{}`: {m}", pipeline.name)),
            CliError::Connection(m) => {
                CliError::Connection(format!("pipeline `{}`: {m}", pipeline.name))
            }
        }
    };
    let source = pipeline.source.open(base).await.map_err(context)?;
    let mut sinks = Vec::with_capacity(pipeline.sinks.len());
    for (name, sink) in &pipeline.sinks {
        sinks.push((name.clone(), sink.open(base, name).await.map_err(context)?));
    }
    let mut dlq = pipeline
        .dlq
        .open(base, &format!("{}.dlq", pipeline.name))
        .await
        .map_err(context)?;
    if pipeline.dlq_format == DlqFormat::Envelope {
        dlq = Arc::new(EnvelopeSink(dlq));
    }
    Ok(Pipeline {
        name: pipeline.name.clone(),
        source,
        stages: stages.into(),
        sinks,
        dlq,
        options: pipeline.engine.clone(),
        clock: Arc::new(SystemClock),
        stats: Arc::default(),
    })
}
