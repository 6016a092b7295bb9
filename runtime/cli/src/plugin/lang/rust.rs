//! Plugins in Rust: a `cdylib` crate using the `wit-bindgen` crate, built
//! with cargo for `wasm32-wasip2` (whose linker emits a component directly).
//!
//! Two toolchains work: a rustup toolchain with the `wasm32-wasip2` target
//! installed (`rustup target add wasm32-wasip2`), or, where none has it,
//! Debian's `rustc-web`, which ships std's source so std is built for the
//! target with `-Zbuild-std` and linked against Debian's `wasi-libc`.
//! Cargo's output goes to `$SLUICE_PLUGIN_TARGET_DIR` when set (so several
//! plugins share one build of std), else the plugin's own `target/`.

use crate::plugin::build::{run, tool, BuildError, Job};
use crate::plugin::lang::TemplateFile;
use crate::plugin::manifest::World;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

pub fn template(world: World, kv: bool) -> Vec<TemplateFile> {
    let lib = match (world, kv) {
        (_, true) => include_str!("../../../templates/rust/src/filter-kv.rs"),
        (World::Filter, false) => include_str!("../../../templates/rust/src/filter.rs"),
        (World::Transform, false) => include_str!("../../../templates/rust/src/transform.rs"),
        (World::Route, false) => include_str!("../../../templates/rust/src/route.rs"),
    };
    vec![
        (
            "Cargo.toml",
            include_str!("../../../templates/rust/Cargo.toml"),
        ),
        ("src/lib.rs", lib),
    ]
}

pub fn build(job: &Job) -> Result<(), BuildError> {
    let manifest = job.dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(BuildError::other(
            "a Rust plugin",
            format!(
                "{} is missing (`sluice plugin new --lang rust` writes one)",
                manifest.display()
            ),
        ));
    }
    let target_dir = std::env::var_os("SLUICE_PLUGIN_TARGET_DIR")
        .map_or_else(|| job.dir.join("target"), PathBuf::from);
    let mut cargo = toolchain()?;
    cargo
        .current_dir(job.dir)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target_dir);
    run("cargo build", &mut cargo)?;
    let crate_name = package_name(&manifest)?.replace('-', "_");
    let built = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{crate_name}.wasm"));
    std::fs::copy(&built, &job.out)
        .map_err(|e| BuildError::other(format!("copying {}", built.display()), e))?;
    Ok(())
}

/// A `cargo` command for the first toolchain that can build for the target.
fn toolchain() -> Result<Command, BuildError> {
    let hint = "install Rust with rustup and run `rustup target add wasm32-wasip2` \
                (on Debian without rustup targets: apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc)";
    if let Ok(cargo) = tool("cargo", hint) {
        if has_target_std(&cargo.with_file_name("rustc")) {
            return Ok(Command::new(cargo));
        }
    }
    // Debian's rustc-web: std from source, linked with Debian's wasi-libc.
    let (cargo, rustc, libc) = (
        Path::new("/usr/bin/cargo"),
        Path::new("/usr/bin/rustc"),
        Path::new("/usr/lib/wasm32-wasi"),
    );
    let std_src = Path::new("/usr/lib/rustlib/src/rust/library/std");
    if cargo.is_file() && rustc.is_file() && std_src.is_dir() && libc.join("libc.a").is_file() {
        let mut cmd = Command::new(cargo);
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_BUILD_RUSTFLAGS",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("RUSTC", rustc)
            .env("RUSTC_BOOTSTRAP", "1")
            .env(
                "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
                format!("-L native={}", libc.display()),
            )
            .arg("-Zbuild-std=std,panic_abort");
        return Ok(cmd);
    }
    Err(BuildError::MissingTool {
        tool: format!("a Rust toolchain with the {TARGET} target"),
        hint: hint.to_string(),
    })
}

/// Whether the rustc next to a cargo has std for the target (rustup
/// installs it under the sysroot's `lib/rustlib/<target>`).
fn has_target_std(rustc: &Path) -> bool {
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    out.status.success()
        && Path::new(&sysroot)
            .join("lib/rustlib")
            .join(TARGET)
            .join("lib")
            .is_dir()
}

/// `[package] name` of a Cargo.toml.
fn package_name(manifest: &Path) -> Result<String, BuildError> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| BuildError::other(format!("reading {}", manifest.display()), e))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| BuildError::other(format!("parsing {}", manifest.display()), e))?;
    doc.get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| BuildError::other(manifest.display().to_string(), "has no [package] name"))
}
