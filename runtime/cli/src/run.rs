//! `sluice run CONFIG`: run every pipeline until its source ends or a signal
//! arrives, then print the per-stage summary.

use crate::assemble;
use crate::exit::CliError;
use sluice_brokers::SinkConfig;
use std::path::Path;
use tokio_util::sync::CancellationToken;

pub fn run(path: &Path) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(run_async(path));
    // Do not wait for blocking reads that can never finish (a stdin source
    // after a signal): everything that matters was settled above.
    runtime.shutdown_background();
    result
}

async fn run_async(path: &Path) -> Result<(), CliError> {
    // Validate everything (config, plugins) before connecting to anything.
    let config = sluice_config::load(path)?;
    let host = assemble::host()?;
    let mut stages = Vec::with_capacity(config.pipelines.len());
    for pipeline in &config.pipelines {
        stages.push(assemble::load_stages(&host, &config, pipeline)?);
    }
    let mut pipelines = Vec::with_capacity(config.pipelines.len());
    for (pipeline, stages) in config.pipelines.iter().zip(stages) {
        pipelines.push(assemble::connect(&config, pipeline, stages).await?);
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    let handles: Vec<_> = pipelines.into_iter().map(|p| tokio::spawn(p.run(shutdown.clone()))).collect();
    let mut failure = None;
    let mut reports = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(Ok(report)) => reports.push(report),
            Ok(Err(e)) => failure = Some(e.into()),
            Err(e) => failure = Some(CliError::Invalid(format!("pipeline task failed: {e}"))),
        }
    }
    let to_stdout = !config.pipelines.iter().any(|p| {
        matches!(p.dlq, SinkConfig::Stdout(_)) || p.sinks.iter().any(|(_, s)| matches!(s, SinkConfig::Stdout(_)))
    });
    for report in &reports {
        if to_stdout {
            print!("{report}");
        } else {
            eprint!("{report}");
        }
    }
    failure.map_or(Ok(()), Err)
}

/// First SIGINT/SIGTERM: stop taking messages and drain. Second: exit now
/// (unacknowledged messages are redelivered by their brokers).
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received: draining (send it again to exit at once)");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting without draining");
    std::process::exit(130);
}
