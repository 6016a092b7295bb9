//! `sluice`: run message pipelines through sandboxed WebAssembly plugins.
//!
//! Exit codes: 0 success, 1 invalid input (config or plugin), 2 connection
//! error.

mod alloc;
mod assemble;
mod check;
mod dlq;
mod exit;
mod http;
mod logging;
mod plugin;
mod progress;
mod replay;
mod run;
mod status;
mod supervisor;
mod tap;
mod telemetry;
mod watch;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Run message pipelines through sandboxed WebAssembly plugins"
)]
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
        /// Serve the status page (/), its JSON API (/api/v1/pipelines),
        /// /metrics (Prometheus), /healthz and /readyz on this address,
        /// e.g. 127.0.0.1:9090. Off by default.
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// After SIGTERM/SIGINT, how long to let in-flight messages finish
        /// before exiting anyway (their brokers redeliver them).
        #[arg(long, value_name = "DURATION", default_value_t = sluice_core::shutdown::DEFAULT_DRAIN.into())]
        drain_timeout: humantime::Duration,
        /// Do not watch the config and plugin files (SIGHUP still reloads).
        #[arg(long)]
        no_watch: bool,
        /// Allow `sluice tap` on the --http listener: it shows message
        /// contents. Off loopback it also needs a token (SLUICE_TAP_TOKEN
        /// or --tap-token-file).
        #[arg(long, requires = "http")]
        tap: bool,
        /// A file whose first line is the token a tap must present
        /// (`Authorization: Bearer TOKEN`); SLUICE_TAP_TOKEN works too.
        #[arg(long, value_name = "FILE", requires = "tap")]
        tap_token_file: Option<PathBuf>,
        /// Send OpenTelemetry traces (a span per message and per stage
        /// call) to this OTLP/HTTP collector, e.g. http://127.0.0.1:4318.
        /// OTEL_EXPORTER_OTLP_ENDPOINT works too. Off by default.
        #[arg(long, value_name = "URL")]
        otlp_endpoint: Option<String>,
        /// The share of new traces recorded, 0..1 (parent-based: a message
        /// whose traceparent says sampled is recorded). Default: all, or
        /// OTEL_TRACES_SAMPLER.
        #[arg(long, value_name = "RATIO")]
        trace_sample: Option<f64>,
    },
    /// Print copies of the messages entering or leaving one stage (or handed
    /// to the sinks) of a running daemon, live, as JSON lines. The daemon
    /// must run with `--http ADDR --tap`. A tap never slows the pipeline:
    /// copies it cannot take in time are dropped and counted on stderr.
    Tap {
        /// The daemon's --http address, e.g. 127.0.0.1:9090.
        addr: String,
        /// The pipeline to tap.
        #[arg(long)]
        pipeline: String,
        /// A stage or sink of it; every sink when left out.
        #[arg(long)]
        stage: Option<String>,
        /// The messages handed to the stage.
        #[arg(long, conflicts_with = "outputs")]
        inputs: bool,
        /// The messages the stage passes on (the default).
        #[arg(long)]
        outputs: bool,
        /// Stop after this many messages.
        #[arg(long)]
        limit: Option<u64>,
        /// The share of messages copied, in (0, 1], e.g. 0.01.
        #[arg(long, default_value_t = 1.0)]
        sample: f64,
        /// Cut payloads at this many bytes.
        #[arg(long, default_value_t = 4096)]
        payload_bytes: usize,
        /// A file whose first line is the daemon's tap token (else
        /// SLUICE_TAP_TOKEN, if set).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Run one plugin offline on fixture messages (JSON lines: key, headers,
    /// payload, attempt), as the world it implements; print one result per
    /// input and, with --expect, compare (exit 1 on a difference).
    Test {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        /// Fixture messages, one JSON object per line.
        #[arg(long)]
        input: PathBuf,
        /// Expected results, one JSON line per input (the output of a run you checked).
        #[arg(long)]
        expect: Option<PathBuf>,
        /// Stage params, as in the TOML's `params` (repeatable).
        #[arg(long = "params", value_name = "KEY=VALUE", num_args = 1..)]
        params: Vec<String>,
    },
    /// Tools for plugin authors: a new plugin from a template, a build with
    /// the right toolchain for its language.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Look at what is in a pipeline's DLQ, as its CONFIG configures it,
    /// without consuming it (counts by reason, or the dead letters), or
    /// replay dead letters through the pipeline once its plugin is fixed.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Parse and validate CONFIG, load and type-check every plugin, and
    /// print the resolved pipelines. Connects to nothing.
    Check {
        /// The pipeline TOML file.
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Count dead letters grouped by class, stage, plugin sha256 and error
    /// text, with the first and last failure of each group.
    Stats {
        /// The pipeline TOML file.
        config: PathBuf,
        #[command(flatten)]
        select: DlqSelect,
    },
    /// Print dead letters as JSON lines: where, why (`error`) and the
    /// original message, oldest first.
    Show {
        /// The pipeline TOML file.
        config: PathBuf,
        #[command(flatten)]
        select: DlqSelect,
        /// At most this many per pipeline.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Send the selected dead letters back through their pipeline with
    /// the plugins as they are now, and remove each from the DLQ once it
    /// settled again (delivered, dropped, or dead-lettered anew).
    Replay {
        /// The pipeline TOML file.
        config: PathBuf,
        #[command(flatten)]
        select: DlqSelect,
        /// Where a dead letter re-enters: at the stage that failed (when
        /// only filters come before it, else at the start), or at the start.
        #[arg(long, value_enum, default_value = "stage")]
        from: replay::EntryPoint,
        /// Say what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// A dead letter replayed this many times already stays in the DLQ
        /// and is reported (the `sluice-replay-count` header).
        #[arg(long, default_value_t = 3)]
        max_replays: u32,
    },
}

/// Which pipeline's dead letters, and which of them.
#[derive(clap::Args)]
struct DlqSelect {
    /// Only this pipeline (default: every pipeline of CONFIG).
    #[arg(long)]
    pipeline: Option<String>,
    /// `class=…,stage=…,sha=…,since=…` (since: an RFC 3339 time or a
    /// duration ago, e.g. 1h; sha: a prefix of the plugin's sha256).
    #[arg(long, default_value = "")]
    filter: String,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Write a buildable plugin folder NAME/ from a template: manifest,
    /// plugin contract (wit/), source, build script and sample fixtures.
    New {
        /// The plugin's language.
        #[arg(long, value_enum)]
        lang: plugin::manifest::Language,
        /// The world it implements.
        #[arg(long, value_enum)]
        kind: plugin::manifest::World,
        /// A capability it imports (`kv`: the stage's key-value store;
        /// the template is then a filter, in rust or js).
        #[arg(long = "capability", value_enum, value_name = "CAPABILITY")]
        capabilities: Vec<plugin::manifest::Capability>,
        /// The plugin's name (lower-case letters, digits and `-`); also the folder's.
        name: String,
        /// Where to create the folder.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Build the plugin folder PATH (its sluice-plugin.toml names the
    /// language) with that language's toolchain into PATH/dist/NAME.wasm,
    /// and check the component loads as the world the manifest names.
    Build {
        /// The plugin folder.
        path: PathBuf,
        /// Write the component here instead.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    alloc::return_large_blocks();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap exits 2 on a usage error, the code the spec keeps for
        // connection errors: a bad command line is invalid input (1).
        // --help and --version are not errors and still exit 0.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                std::process::ExitCode::from(1)
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    logging::init(cli.log_format, cli.log.as_deref());
    let result = match cli.command {
        Command::Check { config } => check::check(&config),
        Command::Dlq {
            command: DlqCommand::Stats { config, select },
        } => dlq::Filter::parse(&select.filter)
            .and_then(|f| dlq::stats(&config, select.pipeline.as_deref(), &f)),
        Command::Dlq {
            command:
                DlqCommand::Show {
                    config,
                    select,
                    limit,
                },
        } => dlq::Filter::parse(&select.filter)
            .and_then(|f| dlq::show(&config, select.pipeline.as_deref(), &f, limit)),
        Command::Dlq {
            command:
                DlqCommand::Replay {
                    config,
                    select,
                    from,
                    dry_run,
                    max_replays,
                },
        } => dlq::Filter::parse(&select.filter).and_then(|f| {
            let options = replay::Options {
                from,
                dry_run,
                max_replays,
            };
            replay::replay(&config, select.pipeline.as_deref(), &f, &options)
        }),
        Command::Test {
            plugin,
            input,
            expect,
            params,
        } => plugin::test::test(&plugin, &input, expect.as_deref(), &params),
        Command::Plugin {
            command:
                PluginCommand::New {
                    lang,
                    kind,
                    capabilities,
                    name,
                    dir,
                },
        } => plugin::new::new(&dir, &name, lang, kind, &capabilities).map(drop),
        Command::Plugin {
            command: PluginCommand::Build { path, out },
        } => plugin::build::build(&path, out.as_deref()).map(drop),
        Command::Run {
            config,
            http,
            drain_timeout,
            no_watch,
            tap,
            tap_token_file,
            otlp_endpoint,
            trace_sample,
        } => tap::token(tap_token_file.as_deref()).and_then(|token| {
            run::run(
                &config,
                run::RunOptions {
                    http,
                    drain_timeout: drain_timeout.into(),
                    watch: !no_watch,
                    tap: http::TapAccess {
                        enabled: tap,
                        token,
                    },
                    trace: telemetry::TraceOptions {
                        endpoint: otlp_endpoint,
                        sample: trace_sample,
                    },
                },
            )
        }),
        Command::Tap {
            addr,
            pipeline,
            stage,
            inputs,
            outputs: _,
            limit,
            sample,
            payload_bytes,
            token_file,
        } => tap::token(token_file.as_deref()).and_then(|token| {
            tap::tap(&tap::TapRequest {
                addr,
                pipeline,
                stage,
                inputs,
                limit,
                sample,
                payload_bytes,
                token,
            })
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.code())
        }
    }
}
