//! `sluice`: run message pipelines through sandboxed WebAssembly plugins.
//!
//! Exit codes: 0 success, 1 invalid input (config or plugin), 2 connection
//! error.

mod assemble;
mod check;
mod exit;
mod logging;
mod run;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "sluice", version, about = "Run message pipelines through sandboxed WebAssembly plugins")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `sluice=debug,sluice::plugin=trace`
    /// (overrides RUST_LOG).
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run every pipeline of CONFIG until its sources end or a signal
    /// (SIGINT/SIGTERM) arrives; then print a per-stage summary.
    Run {
        /// The pipeline TOML file.
        config: PathBuf,
    },
    /// Parse and validate CONFIG, load and type-check every plugin, and
    /// print the resolved pipelines. Connects to nothing.
    Check {
        /// The pipeline TOML file.
        config: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, cli.log.as_deref());
    let result = match cli.command {
        Command::Check { config } => check::check(&config),
        Command::Run { config } => run::run(&config),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.code())
        }
    }
}
