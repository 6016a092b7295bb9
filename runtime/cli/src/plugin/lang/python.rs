//! Plugins in Python: `src/app.py` (and any other modules in `src/`), made
//! into a component by componentize-py (CPython and its standard library
//! built for WASI; the modules are imported at build time and snapshotted,
//! so module level code cannot call the host). The world's exports are
//! methods of a class `WitWorld` in `app`; the bindings (`wit_world`) are
//! generated during the build.
//!
//! ```sh
//! componentize-py -d WIT -w WORLD componentize app -p build/py -o OUT
//! ```
//!
//! `src/` is copied to `build/py` first, so the build leaves no
//! `__pycache__` among the sources. Components are about 18 MB; the host
//! compiles them in about 15 s (release build) and caches the result.

use crate::plugin::build::{run, tool, BuildError, Job};
use crate::plugin::lang::TemplateFile;
use crate::plugin::manifest::World;
use std::path::Path;
use std::process::Command;

/// The folder of a Python plugin's modules, and the module that holds `WitWorld`.
const SRC: &str = "src";
const APP: &str = "app";

const HINT: &str = "install it with `bash plugins/toolchains/python.sh` (pip install componentize-py==0.25.1 into the venv $HOME/.cache/sluice/tools/python/venv) and put $HOME/.cache/sluice/tools/bin on PATH";

pub fn template(world: World) -> Vec<TemplateFile> {
    let app = match world {
        World::Filter => include_str!("../../../templates/python/filter.py"),
        World::Transform => include_str!("../../../templates/python/transform.py"),
        World::Route => include_str!("../../../templates/python/route.py"),
    };
    vec![("src/app.py", app)]
}

pub fn build(job: &Job) -> Result<(), BuildError> {
    let componentize = tool("componentize-py", HINT)?;
    let src = job.dir.join(SRC);
    if !src.join(format!("{APP}.py")).is_file() {
        return Err(BuildError::other(
            format!("{} is missing", src.join(format!("{APP}.py")).display()),
            "a python plugin's module `app` (with the class `WitWorld`) is src/app.py (`sluice plugin new --lang python` writes one)",
        ));
    }
    let modules = job.work.join("py");
    copy_sources(&src, &modules).map_err(|e| {
        BuildError::other(
            format!("copying {} to {}", src.display(), modules.display()),
            e,
        )
    })?;
    run(
        "componentize-py",
        Command::new(componentize)
            .arg("--quiet")
            .arg("--wit-path")
            .arg(&job.wit)
            .args(["--world", &job.world_name()])
            .args(["componentize", APP])
            .arg("--python-path")
            .arg(&modules)
            .arg("--output")
            .arg(&job.out)
            .current_dir(&job.work)
            // componentize-py is Rust inside: with a backtrace its errors are
            // 60 lines of frames and the cause scrolls away.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE"),
    )
}

/// Replace `to` with a copy of `from`, leaving out `__pycache__` folders.
fn copy_sources(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (path, name) = (entry.path(), entry.file_name());
        if entry.file_type()?.is_dir() {
            if name != "__pycache__" {
                copy_sources(&path, &to.join(&name))?;
            }
        } else {
            std::fs::copy(&path, to.join(&name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_world_has_an_app_exporting_both_methods() {
        for (world, single) in [
            (World::Filter, "filter"),
            (World::Transform, "transform"),
            (World::Route, "route"),
        ] {
            let files = template(world);
            let (_, text) = files
                .iter()
                .find(|(path, _)| *path == "src/app.py")
                .expect("src/app.py");
            assert!(
                text.contains("class WitWorld(wit_world.WitWorld):"),
                "{world:?}"
            );
            assert!(
                text.contains(&format!("def {single}(self, msg"))
                    && text.contains(&format!("def {single}_batch(self, msgs")),
                "{world:?}"
            );
        }
    }

    #[test]
    fn sources_are_copied_without_pycache() {
        let tmp = std::env::temp_dir().join(format!("sluice-py-copy-{}", std::process::id()));
        let (from, to) = (tmp.join("src"), tmp.join("py"));
        std::fs::create_dir_all(from.join("pkg/__pycache__")).unwrap();
        std::fs::write(from.join("app.py"), "x = 1\n").unwrap();
        std::fs::write(from.join("pkg/util.py"), "y = 2\n").unwrap();
        std::fs::write(from.join("pkg/__pycache__/util.cpython-314.pyc"), "").unwrap();
        std::fs::create_dir_all(to.join("stale")).unwrap();
        copy_sources(&from, &to).unwrap();
        assert!(to.join("app.py").is_file() && to.join("pkg/util.py").is_file());
        assert!(!to.join("pkg/__pycache__").exists() && !to.join("stale").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
