//! Plugins in C: `wit-bindgen c` writes the world's bindings into
//! `build/bindings/` (`<world>.c`, `<world>.h`, `<world>_component_type.o`),
//! Debian's clang compiles them with every `src/*.c` against Debian's
//! wasi-libc into a reactor core module, and [`componentize`] makes the
//! component.
//!
//! The plugin's own sources are `src/*.c` (and headers beside them); they
//! `#include "<world>.h"`. Install the tools with `bash plugins/toolchains/c.sh`.

use crate::plugin::build::{componentize, run, tool, BuildError, Job};
use crate::plugin::lang::TemplateFile;
use crate::plugin::manifest::World;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `wit-bindgen-cli` the toolchain scripts install (C and Zig plugins).
pub(super) const WIT_BINDGEN_VERSION: &str = "0.63.0";
const CLANG: &str = "clang-22";
/// Debian's wasi-libc: headers and libraries in multiarch folders.
const WASI_INCLUDE: &str = "/usr/include/wasm32-wasi";
const WASI_LIB: &str = "/usr/lib/wasm32-wasi";
/// Debian's compiler-rt builtins for wasm32, which clang links.
const BUILTINS: &str = "/usr/lib/llvm-22/lib/clang/22/lib/wasi/libclang_rt.builtins-wasm32.a";

const HINT: &str = "install the C toolchain with `bash plugins/toolchains/c.sh` (Debian clang-22, lld-22, libclang-rt-22-dev-wasm32 and wasi-libc; `cargo install --locked wit-bindgen-cli@0.63.0`) and put $HOME/.cache/sluice/tools/bin on PATH";

pub fn template(world: World) -> Vec<TemplateFile> {
    let source = match world {
        World::Filter => include_str!("../../../templates/c/filter.c"),
        World::Transform => include_str!("../../../templates/c/transform.c"),
        World::Route => include_str!("../../../templates/c/route.c"),
    };
    vec![("src/plugin.c", source)]
}

pub fn build(job: &Job) -> Result<(), BuildError> {
    let wit_bindgen = tool("wit-bindgen", HINT)?;
    let clang = tool(CLANG, HINT)?;
    tool("wasm-ld-22", HINT)?;
    for file in [
        format!("{WASI_LIB}/libc.a"),
        format!("{WASI_INCLUDE}/stdlib.h"),
        BUILTINS.to_string(),
    ] {
        if !Path::new(&file).is_file() {
            return Err(BuildError::MissingTool {
                tool: file,
                hint: HINT.to_string(),
            });
        }
    }
    let bindings = bindings(job, &wit_bindgen)?;
    let sources = sources(&job.dir.join("src"), "c")?;
    let sysroot = sysroot(&job.work)?;
    let core = job.work.join(format!("{}.core.wasm", job.manifest.name));
    let mut cmd = Command::new(clang);
    cmd.arg("--target=wasm32-wasip1")
        .arg(format!("--sysroot={}", sysroot.display()))
        // --strip-debug: Debian's libc.a carries DWARF, three quarters of a small module.
        .args([
            "-mexec-model=reactor",
            "-O2",
            "-std=c17",
            "-Wall",
            "-Wextra",
            "-Wl,--strip-debug",
        ])
        .arg("-I")
        .arg(job.dir.join("src"))
        .arg("-I")
        .arg(&bindings.dir)
        .args(&sources)
        .arg(&bindings.c)
        .arg(&bindings.object)
        .arg("-o")
        .arg(&core);
    run("compiling with clang", &mut cmd)?;
    write_component(&core, &job.out)
}

/// The generated bindings of one world.
pub(super) struct Bindings {
    /// The folder holding them (an include path).
    pub dir: PathBuf,
    /// `<world>.c`.
    pub c: PathBuf,
    /// `<world>_component_type.o`: the custom section that tells
    /// [`componentize`] the world.
    pub object: PathBuf,
}

/// Run `wit-bindgen c` for the job's world into `build/bindings/`.
pub(super) fn bindings(job: &Job, wit_bindgen: &Path) -> Result<Bindings, BuildError> {
    let world = job.world().as_str();
    let dir = job.work.join("bindings");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| BuildError::other(format!("removing {}", dir.display()), e))?;
    }
    let mut cmd = Command::new(wit_bindgen);
    cmd.args(["c", "--world", world])
        .arg(&job.wit)
        .arg("--out-dir")
        .arg(&dir);
    run(
        &format!("generating the C bindings (wit-bindgen {WIT_BINDGEN_VERSION} expected)"),
        &mut cmd,
    )?;
    let bindings = Bindings {
        c: dir.join(format!("{world}.c")),
        object: dir.join(format!("{world}_component_type.o")),
        dir,
    };
    for file in [&bindings.c, &bindings.object] {
        if !file.is_file() {
            return Err(BuildError::other(
                "wit-bindgen c",
                format!(
                    "did not write {} (is it wit-bindgen-cli {WIT_BINDGEN_VERSION}?)",
                    file.display()
                ),
            ));
        }
    }
    Ok(bindings)
}

/// The files `dir/*.EXT`, sorted; at least one.
pub(super) fn sources(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, BuildError> {
    let files = files(dir, ext)?;
    if files.is_empty() {
        return Err(BuildError::other(
            format!("reading {}", dir.display()),
            format!("no .{ext} files (the plugin's sources go in src/)"),
        ));
    }
    Ok(files)
}

/// The files `dir/*.EXT`, sorted; maybe none.
pub(super) fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, BuildError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        BuildError::other(
            format!("reading {}", dir.display()),
            format!("{e} (the plugin's sources go in src/)"),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// A sysroot holding only Debian's wasi-libc, symlinked where clang looks
/// for target `wasm32-wasip1` (`include/wasm32-wasip1`, `lib/wasm32-wasip1`):
/// Debian installs it for the older name `wasm32-wasi`, which clang 22
/// deprecates, and `--sysroot=/usr` would put the host's `/usr/include` on
/// the Wasm include path.
fn sysroot(work: &Path) -> Result<PathBuf, BuildError> {
    let root = work.join("sysroot");
    for (sub, target) in [("include", WASI_INCLUDE), ("lib", WASI_LIB)] {
        let parent = root.join(sub);
        let link = parent.join("wasm32-wasip1");
        if std::fs::read_link(&link).is_ok_and(|t| t == Path::new(target)) {
            continue;
        }
        let made = std::fs::create_dir_all(&parent).and_then(|()| {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(target, &link)
        });
        made.map_err(|e| BuildError::other(format!("linking {} to {target}", link.display()), e))?;
    }
    Ok(root)
}

/// Read the core module, componentize it, write the component.
pub(super) fn write_component(core: &Path, out: &Path) -> Result<(), BuildError> {
    let module = std::fs::read(core)
        .map_err(|e| BuildError::other(format!("reading {}", core.display()), e))?;
    let component = componentize(&module)?;
    std::fs::write(out, component)
        .map_err(|e| BuildError::other(format!("writing {}", out.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_world_template_includes_its_bindings_and_defines_both_exports() {
        for world in [World::Filter, World::Transform, World::Route] {
            let w = world.as_str();
            let files = template(world);
            assert_eq!(
                files.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
                ["src/plugin.c"]
            );
            let text = files[0].1;
            for needle in [
                format!("#include \"{w}.h\""),
                format!("exports_{w}_{w}("),
                format!("exports_{w}_{w}_batch("),
            ] {
                assert!(text.contains(&needle), "the {w} template lacks {needle}");
            }
        }
    }

    #[test]
    fn sources_are_sorted_and_missing_ones_say_where_they_go() {
        let dir = std::env::temp_dir().join(format!("sluice-c-sources-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["b.c", "a.c", "a.h"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        assert_eq!(
            sources(&dir, "c").unwrap(),
            [dir.join("a.c"), dir.join("b.c")]
        );
        let err = sources(&dir, "zig").unwrap_err().to_string();
        assert!(
            err.contains("no .zig files") && err.contains("src/"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
