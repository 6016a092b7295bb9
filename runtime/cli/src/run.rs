//! `sluice run CONFIG`: run every pipeline until its source ends or a signal
//! arrives, reloading on config or plugin changes and SIGHUP, then print the
//! per-stage summary.
//!
//! Lifecycle: everything is validated (config, plugins) before anything
//! connects, and an unreachable broker at start is exit 2. The first
//! SIGTERM/SIGINT stops the sources taking new messages and lets what is in
//! flight finish and be acknowledged, for at most the drain timeout; a
//! second signal exits at once. Whatever was not acknowledged is redelivered
//! by its broker. The signal cancels the one [`Shutdown`] every pipeline
//! and source holds, with the drain deadline, even while a reload runs.

use crate::exit::CliError;
use crate::status::Status;
use crate::supervisor::Supervisor;
use crate::watch::{Trigger, Triggers};
use sluice_core::Shutdown;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How the process runs (flags, not TOML).
pub struct RunOptions {
    /// Serve the status page, its JSON API, `/metrics`, `/healthz` and
    /// `/readyz` here.
    pub http: Option<SocketAddr>,
    /// The longest a graceful stop waits for in-flight messages.
    pub drain_timeout: Duration,
    /// Reload when the config or a plugin file changes (SIGHUP always does).
    pub watch: bool,
    /// Who may attach `sluice tap` to the HTTP listener.
    pub tap: crate::http::TapAccess,
    /// OpenTelemetry traces.
    pub trace: crate::telemetry::TraceOptions,
}

pub fn run(path: &Path, options: RunOptions) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the async runtime: {e}")))?;
    let tracing = crate::telemetry::init(&options.trace, runtime.handle().clone())?;
    let result = runtime.block_on(run_async(path, options));
    if let Some(tracing) = tracing {
        tracing.shutdown(); // the runtime still runs its exports
    }
    // Do not wait for blocking reads that can never finish (a stdin source
    // after a signal): everything that matters was settled above.
    runtime.shutdown_background();
    result
}

async fn run_async(path: &Path, options: RunOptions) -> Result<(), CliError> {
    let status = Arc::new(Status::default());
    if let Some(addr) = options.http {
        crate::http::serve(addr, status.clone(), options.tap.clone()).await?;
    }
    let host = crate::assemble::host()?;
    let shutdown = Shutdown::new(options.drain_timeout);
    let mut triggers = Triggers::new(options.watch);
    let mut supervisor = Supervisor::start(path, host, status.clone(), shutdown.clone()).await?;
    status.set_ready(true);
    let progress = crate::progress::Progress::new(status.clone());
    tokio::spawn(progress.clone().run());
    triggers.watch(&supervisor.files);
    tokio::spawn(signals(shutdown.clone()));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            trigger = triggers.next() => {
                let why = match trigger { Trigger::Signal => "SIGHUP", Trigger::Files => "files changed" };
                tracing::info!(why, "reloading");
                supervisor.reload().await;
                triggers.watch(&supervisor.files);
            }
            _ = tick.tick() => {
                progress.track();
                supervisor.reap().await;
                if supervisor.idle() {
                    break;
                }
            }
        }
    }
    shutdown.cancel(); // already, after a signal; the first deadline holds
    let left = supervisor.drain().await;
    progress.finish();
    if !left.is_empty() {
        tracing::warn!(pipelines = ?left, timeout = ?options.drain_timeout, "drain timeout passed; exiting with messages unacknowledged (they are redelivered)");
    }
    // The summary goes to stdout unless messages do.
    let to_stdout = !supervisor.stdout_sinks;
    for report in &supervisor.reports {
        if to_stdout {
            print!("{report}");
        } else {
            eprint!("{report}");
        }
    }
    supervisor.failure.map_or(Ok(()), Err)
}

/// Cancels `shutdown` at the first SIGINT/SIGTERM; a second one exits the
/// process at once (unacknowledged messages are redelivered by their
/// brokers).
async fn signals(shutdown: Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!(timeout = ?shutdown.drain_timeout(), "signal received: draining (send it again to exit at once)");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting without draining");
    std::process::exit(130);
}
