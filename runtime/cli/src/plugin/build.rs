//! `sluice plugin build DIR [--out FILE]`: build a plugin folder with the
//! toolchain of its language ([`super::lang`]), then load the result with
//! the host and check it implements the manifest's world. The compiled form
//! lands in the artifact cache, so the daemon's first start with the new
//! component is fast too.
//!
//! Each language module gets a [`Job`] and uses the helpers here: [`tool`]
//! finds a program or says how to install it, [`run`] runs one step and
//! reports its output when it fails, [`componentize`] turns a core module
//! (C, Zig) into a component with the WASI preview1 reactor adapter.

use super::lang;
use super::manifest::{Manifest, World};
use crate::exit::CliError;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The plugin contract this host implements, written into every template
/// and used by builds whose folder has no `wit/` of its own: 0.1.0, and
/// 0.2.0 for plugins that import a capability.
pub const PLUGIN_WIT: &str = include_str!("../../../../wit/plugin.wit");
pub const PLUGIN_WIT_0_2: &str = include_str!("../../../../wit/0.2.0/plugin.wit");

/// The contract a plugin with `manifest` is built against.
pub fn contract(manifest: &Manifest) -> &'static str {
    if manifest.uses_kv() {
        PLUGIN_WIT_0_2
    } else {
        PLUGIN_WIT
    }
}

/// One build: everything a language module needs. Every path is absolute,
/// so a toolchain may run in any working directory.
pub struct Job<'a> {
    /// The plugin folder (holds `sluice-plugin.toml`).
    pub dir: &'a Path,
    pub manifest: &'a Manifest,
    /// A folder holding `plugin.wit` (the folder's own `wit/`, or the
    /// host's contract written to `work/wit`).
    pub wit: PathBuf,
    /// Scratch space for intermediate files: `DIR/build/`, created.
    pub work: PathBuf,
    /// Where the component must be written.
    pub out: PathBuf,
}

impl Job<'_> {
    pub fn world(&self) -> World {
        self.manifest.world
    }

    /// The WIT world to build against (`filter`, or `filter-kv`).
    pub fn world_name(&self) -> String {
        self.manifest.world_name()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("`{tool}` was not found on PATH; {hint}")]
    MissingTool { tool: String, hint: String },
    #[error("{step} failed ({status}):\n{output}")]
    Step {
        step: String,
        status: String,
        output: String,
    },
    #[error("{what}: {detail}")]
    Other { what: String, detail: String },
}

impl BuildError {
    pub fn other(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        BuildError::Other {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// Build the plugin in `dir`; returns the component's path.
///
/// # Errors
/// [`CliError::Invalid`]: a bad manifest, a missing tool (with how to
/// install it), a failed step (with its output), or a component that does
/// not load or implements another world than the manifest says.
pub fn build(dir: &Path, out: Option<&Path>) -> Result<PathBuf, CliError> {
    let manifest = Manifest::read(dir)?;
    let started = Instant::now();
    // Absolute, since the toolchains run with the plugin folder as their working directory.
    let shown = dir;
    let dir = &absolute(dir);
    let work = dir.join("build");
    let fail = |e: BuildError| {
        CliError::Invalid(format!(
            "{}: building {} plugin `{}`: {e}",
            shown.display(),
            manifest.language.as_str(),
            manifest.name
        ))
    };
    std::fs::create_dir_all(&work)
        .map_err(|e| fail(BuildError::other(format!("creating {}", work.display()), e)))?;
    let wit = if dir.join("wit").join("plugin.wit").is_file() {
        dir.join("wit")
    } else {
        let wit = work.join("wit");
        std::fs::create_dir_all(&wit)
            .and_then(|()| std::fs::write(wit.join("plugin.wit"), contract(&manifest)))
            .map_err(|e| fail(BuildError::other("writing the plugin contract", e)))?;
        wit
    };
    let out = out.map_or_else(|| manifest.default_output(dir), Path::to_path_buf);
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            fail(BuildError::other(
                format!("creating {}", parent.display()),
                e,
            ))
        })?;
    }
    let job = Job {
        dir,
        manifest: &manifest,
        wit,
        work,
        out: absolute(&out),
    };
    lang::build(&job).map_err(fail)?;
    eprintln!("  loading the component and checking its world …");
    check(&job)?;
    let size = std::fs::metadata(&job.out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{}: {} `{}` plugin built in {:.1?} ({} bytes, world {})",
        out.display(),
        manifest.language.as_str(),
        manifest.name,
        started.elapsed(),
        size,
        manifest.world.as_str()
    );
    Ok(out)
}

/// Load the built component with the host (which also compiles it into the
/// artifact cache) and compare its world with the manifest's.
fn check(job: &Job) -> Result<(), CliError> {
    let host = crate::assemble::host()?;
    let plugin = host.load(&job.out).map_err(|e| {
        CliError::Invalid(format!(
            "{}: the built component does not load: {e}",
            job.out.display()
        ))
    })?;
    if plugin.kind != job.world().kind() {
        return Err(CliError::Invalid(format!(
            "{}: the built component implements world `{}`, but {} says `{}`",
            job.out.display(),
            plugin.kind.as_str(),
            job.dir.join(super::manifest::FILE).display(),
            job.world().as_str()
        )));
    }
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Find `name` on PATH.
///
/// # Errors
/// [`BuildError::MissingTool`] carrying `hint` (how to install it).
pub fn tool(name: &str, hint: &str) -> Result<PathBuf, BuildError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| BuildError::MissingTool {
            tool: name.to_string(),
            hint: hint.to_string(),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run one build step, its output captured; a failure carries the command
/// line and the tail of what it printed.
///
/// # Errors
/// [`BuildError::Step`] when it cannot start or exits non-zero.
pub fn run(step: &str, cmd: &mut Command) -> Result<(), BuildError> {
    let line = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    tracing::debug!(step, command = %line, "plugin build step");
    // Name each step as it starts: some take minutes (a first Rust build,
    // componentize-py).
    eprintln!("  {step} …");
    let started = std::time::Instant::now();
    let output = cmd.output().map_err(|e| BuildError::Step {
        step: step.to_string(),
        status: "did not start".into(),
        output: format!("$ {line}\n{e}"),
    })?;
    if output.status.success() {
        eprintln!("  {step}: done in {:.1?}", started.elapsed());
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(60)..].join("\n");
    Err(BuildError::Step {
        step: step.to_string(),
        status: output.status.to_string(),
        output: format!("$ {line}\n{tail}"),
    })
}

/// Turn a core Wasm module that embeds its component type (wit-bindgen's
/// `*_component_type.o` custom section) and imports `wasi_snapshot_preview1`
/// into a component, with wasmtime's preview1 reactor adapter.
///
/// # Errors
/// [`BuildError::Other`] with wit-component's explanation.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, BuildError> {
    let adapter = wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|e| e.adapter("wasi_snapshot_preview1", adapter))
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| BuildError::other("making a component of the core module", format!("{e:#}")))
}
