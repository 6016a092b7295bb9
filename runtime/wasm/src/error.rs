//! Errors of loading a plugin. Each names the plugin file.

use crate::capabilities::Capability;
use sluice_core::StageKind;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin {path:?}: cannot read file: {source}\n  help: check the `plugin` path (relative to the config file), or build the plugins with `bash plugins/build.sh`")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {path:?}: not a valid WebAssembly component: {reason}\n  help: build it as a component (target wasm32-wasip2, or `wasm-tools component new` for a core module)")]
    Compile { path: PathBuf, reason: String },
    #[error(
        "plugin {path:?}: implements none of the sluice worlds (filter, transform, route); \
         it exports [{exports}]. Build it against wit/plugin.wit (sluice:plugin@0.1.0)"
    )]
    NoWorld { path: PathBuf, exports: String },
    #[error("plugin {path:?}: needs imports this host does not provide: {reason}\n  help: plugins may import only `sluice:plugin/host` (0.1.0 or 0.2.0), the capabilities their stage grants (`sluice:plugin/kv@0.2.0`, `wasi:http` 0.2), and WASI 0.2 (no sockets)")]
    Link { path: PathBuf, reason: String },
    #[error("plugin {path:?} imports `{import}`, which this stage does not grant\n  help: grant `{capability}` in this stage: {}", capability.grant_hint())]
    NotGranted {
        path: PathBuf,
        import: String,
        capability: Capability,
    },
    #[error("plugin {path:?} implements the `{found}` world but the stage says kind = \"{expected}\"; set kind = \"{found}\" or use a {expected} plugin")]
    KindMismatch {
        path: PathBuf,
        expected: StageKind,
        found: StageKind,
    },
}
