//! Config → runnable pieces. Plugins are loaded (compiled or taken from the
//! artifact cache) and type-checked first, so a bad plugin is reported
//! before anything connects; then sources and sinks are opened.

use crate::exit::CliError;
use sluice_brokers::dlq::{DlqFormat, EnvelopeSink};
use sluice_brokers::SinkConfig;
use sluice_config::{Config, PipelineConfig, StageConfig};
use sluice_core::{Pipeline, Sink, StageFactory, StageSpec, SystemClock};
use sluice_state::dedupe::DedupeFactory;
use sluice_state::{Store, StoreConfig, Stores};
use sluice_wasm::{Grants, HostOptions, LoadError, WasmHost};
use std::collections::HashMap;
use std::sync::Arc;

/// The stores a pipeline's stages use, by configuration, opened.
pub type OpenStores = HashMap<StoreConfig, Arc<dyn Store>>;

/// Open (and for Redis, reach) every store a pipeline's stages use.
///
/// # Errors
/// [`CliError::Connection`] naming the pipeline, the stage and the store.
pub async fn open_stores(
    stores: &Stores,
    pipeline: &PipelineConfig,
) -> Result<OpenStores, CliError> {
    let mut open = OpenStores::new();
    let uses_store = |s: &&StageConfig| s.dedupe.is_some() || s.capabilities.kv;
    for stage in pipeline.stages.iter().filter(uses_store) {
        if open.contains_key(&stage.store) {
            continue;
        }
        let store = stores.open(&stage.store).await.map_err(|e| {
            CliError::Connection(format!(
                "pipeline `{}`: stage `{}`: {e}",
                pipeline.name, stage.name
            ))
        })?;
        open.insert(stage.store.clone(), store);
    }
    Ok(open)
}

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
    stores: &OpenStores,
) -> Result<Vec<Arc<StageSpec>>, CliError> {
    pipeline
        .stages
        .iter()
        .map(|stage| {
            let factory = load_stage(host, pipeline, stage, stores).map_err(|e| {
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
                factory,
                stage.retry,
            )))
        })
        .collect()
}

/// A stage's factory: its plugin loaded, or a built-in stage on its store
/// (one `stores` does not hold, as for `check`, is a stand-in that fails).
fn load_stage(
    host: &WasmHost,
    pipeline: &PipelineConfig,
    stage: &StageConfig,
    stores: &OpenStores,
) -> Result<Arc<dyn StageFactory>, LoadError> {
    let store = || {
        stores
            .get(&stage.store)
            .cloned()
            .unwrap_or_else(|| sluice_state::unopened(&stage.store))
    };
    match (&stage.plugin, &stage.dedupe) {
        (Some(path), _) => {
            let plugin = host.load(path)?;
            let grants = Grants {
                kv: stage
                    .capabilities
                    .kv
                    .then(|| store().kv(&format!("{}/{}", pipeline.name, stage.name))),
                http: stage.capabilities.http.clone().map(Arc::new),
            };
            let factory = host.stage(
                plugin,
                &stage.name,
                stage.kind,
                stage.limits,
                stage.params.clone(),
                grants,
            )?;
            Ok(Arc::new(factory))
        }
        (None, Some(dedupe)) => Ok(Arc::new(DedupeFactory::new(
            &pipeline.name,
            &stage.name,
            dedupe.clone(),
            store(),
        ))),
        (None, None) => unreachable!("the config gives every stage a plugin or a built-in"),
    }
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
        taps: Arc::default(),
    })
}
