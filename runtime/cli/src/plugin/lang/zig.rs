//! Plugins in Zig: `wit-bindgen c` writes the world's C bindings into
//! `build/bindings/` (as for [C](super::c)); Zig compiles `src/plugin.zig`
//! (which `@cImport`s `<world>.h` and defines the `exports_*` functions the
//! bindings call), the generated `<world>.c` and any `src/*.c` against
//! Zig's own wasi-libc into a reactor core module (ReleaseSmall), and
//! [`componentize`](crate::plugin::build::componentize) makes the component.
//!
//! Install the tools with `bash plugins/toolchains/zig.sh`.

use super::c::{bindings, files, write_component, WIT_BINDGEN_VERSION};
use crate::plugin::build::{run, tool, BuildError, Job};
use crate::plugin::lang::TemplateFile;
use crate::plugin::manifest::World;
use std::process::Command;

/// The Zig the toolchain script installs; `std.json` and the build flags
/// below are written for it.
const ZIG_VERSION: &str = "0.15.2";

fn hint() -> String {
    format!(
        "install the Zig toolchain with `bash plugins/toolchains/zig.sh` (PyPI ziglang=={ZIG_VERSION} in a venv, and `cargo install --locked wit-bindgen-cli@{WIT_BINDGEN_VERSION}`) and put $HOME/.cache/sluice/tools/bin on PATH"
    )
}

pub fn template(world: World) -> Vec<TemplateFile> {
    let source = match world {
        World::Filter => include_str!("../../../templates/zig/filter.zig"),
        World::Transform => include_str!("../../../templates/zig/transform.zig"),
        World::Route => include_str!("../../../templates/zig/route.zig"),
    };
    vec![("src/plugin.zig", source)]
}

pub fn build(job: &Job) -> Result<(), BuildError> {
    let zig = tool("zig", &hint())?;
    let wit_bindgen = tool("wit-bindgen", &hint())?;
    let src = job.dir.join("src");
    let root = src.join("plugin.zig");
    if !root.is_file() {
        return Err(BuildError::other(
            format!("reading {}", root.display()),
            "missing (a Zig plugin's root source is src/plugin.zig)",
        ));
    }
    let bindings = bindings(job, &wit_bindgen)?;
    let c_sources = files(&src, "c")?;
    let core = job.work.join(format!("{}.core.wasm", job.manifest.name));
    let mut cmd = Command::new(zig);
    cmd.args([
        "build-exe",
        "-target",
        "wasm32-wasi",
        "-O",
        "ReleaseSmall",
        "-fno-entry",
        "-mexec-model=reactor",
        "-lc",
    ])
    .arg("--cache-dir")
    .arg(job.work.join("zig-cache"))
    .arg("-I")
    .arg(&bindings.dir)
    .arg("-I")
    .arg(&src)
    .arg(&root)
    .arg(&bindings.c)
    .args(&c_sources)
    .arg(&bindings.object)
    .arg(format!("-femit-bin={}", core.display()));
    run(
        &format!("compiling with zig (zig {ZIG_VERSION} expected)"),
        &mut cmd,
    )?;
    write_component(&core, &job.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_world_template_imports_its_bindings_and_exports_both_functions() {
        for world in [World::Filter, World::Transform, World::Route] {
            let w = world.as_str();
            let files = template(world);
            assert_eq!(
                files.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
                ["src/plugin.zig"]
            );
            let text = files[0].1;
            for needle in [
                format!("@cInclude(\"{w}.h\")"),
                format!("export fn exports_{w}_{w}("),
                format!("export fn exports_{w}_{w}_batch("),
            ] {
                assert!(text.contains(&needle), "the {w} template lacks {needle}");
            }
        }
    }
}
