//! Plugins in JavaScript: `src/plugin.js`, an ES module, made into a
//! component by componentize-js (SpiderMonkey in Wasm; the module is
//! evaluated at build time and snapshotted, so its top level cannot call
//! the host). Relative imports from `src/` are bundled in.
//!
//! ```sh
//! componentize-js src/plugin.js --wit WIT --world-name WORLD --disable http fetch-event --out OUT
//! ```
//!
//! `http` and `fetch-event` are disabled because the host provides no
//! `wasi:http`; stdio (console output goes to the host log), random and
//! clocks stay. Components are about 12 MB; the host compiles them in about 17
//! s (release build) and caches the result.

use crate::plugin::build::{run, tool, BuildError, Job};
use crate::plugin::lang::TemplateFile;
use crate::plugin::manifest::World;
use std::process::Command;

/// The ES module a JavaScript plugin is built from, relative to its folder.
const ENTRY: &str = "src/plugin.js";

const HINT: &str = "install it with `bash plugins/toolchains/js.sh` (npm install @bytecodealliance/componentize-js@0.23.0 into $HOME/.cache/sluice/tools/js) and put $HOME/.cache/sluice/tools/bin on PATH";
const NODE_HINT: &str =
    "componentize-js runs on Node.js 18 or newer: install it (Debian: apt-get install nodejs npm)";

pub fn template(world: World, kv: bool) -> Vec<TemplateFile> {
    let plugin = match (world, kv) {
        (_, true) => include_str!("../../../templates/js/filter-kv.js"),
        (World::Filter, false) => include_str!("../../../templates/js/filter.js"),
        (World::Transform, false) => include_str!("../../../templates/js/transform.js"),
        (World::Route, false) => include_str!("../../../templates/js/route.js"),
    };
    vec![
        (ENTRY, plugin),
        (
            "package.json",
            include_str!("../../../templates/js/package.json"),
        ),
    ]
}

pub fn build(job: &Job) -> Result<(), BuildError> {
    let componentize = tool("componentize-js", HINT)?;
    tool("node", NODE_HINT)?;
    let entry = job.dir.join(ENTRY);
    if !entry.is_file() {
        return Err(BuildError::other(
            format!("{} is missing", entry.display()),
            "a js plugin is the ES module src/plugin.js (`sluice plugin new --lang js` writes one)",
        ));
    }
    run(
        "componentize-js",
        Command::new(componentize)
            .arg(&entry)
            .arg("--wit")
            .arg(&job.wit)
            .args(["--world-name", &job.world_name()])
            .args(["--disable", "http", "fetch-event"])
            .arg("--out")
            .arg(&job.out)
            .current_dir(&job.work),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_world_has_a_module_exporting_both_functions() {
        for (world, single, batch) in [
            (World::Filter, "filter", "filterBatch"),
            (World::Transform, "transform", "transformBatch"),
            (World::Route, "route", "routeBatch"),
        ] {
            let files = template(world, false);
            let (_, text) = files
                .iter()
                .find(|(path, _)| *path == ENTRY)
                .expect("src/plugin.js");
            assert!(
                text.contains(&format!("export function {single}("))
                    && text.contains(&format!("export function {batch}(")),
                "{world:?}"
            );
        }
    }
}
