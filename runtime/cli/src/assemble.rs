//! Config → runnable pieces. Plugins are loaded (compiled or taken from the
//! artifact cache) and type-checked first, so a bad plugin is reported
//! before anything connects; then sources and sinks are opened.

use crate::exit::CliError;
use sluice_brokers::dlq::{DlqFormat, EnvelopeSink};
use sluice_brokers::SinkConfig;
use sluice_config::{Config, PipelineConfig, StageConfig};
use sluice_core::{Pipeline, Sink, StageSpec, SystemClock};
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

/// Open a pipeline's sinks and its DLQ (in its `dlq_format`); with
/// `appending`, file sinks add to their files instead of truncating them
/// (a replay adds to what an earlier run wrote).
///
/// # Errors
/// As for [`connect`].
pub async fn open_outputs(
    config: &Config,
    pipeline: &PipelineConfig,
    appending: bool,
) -> Result<(Vec<(String, Arc<dyn Sink>)>, Arc<dyn Sink>), CliError> {
    let base = &config.base_dir;
    let context = |e: sluice_brokers::ConnectError| in_pipeline(pipeline, e);
    let chosen = |sink: &SinkConfig| {
        if appending {
            sink.appending()
        } else {
            sink.clone()
        }
    };
    let mut sinks = Vec::with_capacity(pipeline.sinks.len());
    for (name, sink) in &pipeline.sinks {
        let sink = chosen(sink).open(base, name).await.map_err(context)?;
        sinks.push((name.clone(), sink));
    }
    let mut dlq = chosen(&pipeline.dlq)
        .open(base, &format!("{}.dlq", pipeline.name))
        .await
        .map_err(context)?;
    if pipeline.dlq_format == DlqFormat::Envelope {
        dlq = Arc::new(EnvelopeSink(dlq));
    }
    Ok((sinks, dlq))
}

/// A connector's error, in the words of the pipeline it is for.
pub fn in_pipeline(pipeline: &PipelineConfig, e: sluice_brokers::ConnectError) -> CliError {
    CliError::from(e).context(&format!("pipeline `{}`", pipeline.name))
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
    let source = pipeline
        .source
        .open(&config.base_dir)
        .await
        .map_err(|e| in_pipeline(pipeline, e))?;
    let (sinks, dlq) = open_outputs(config, pipeline, false).await?;
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
