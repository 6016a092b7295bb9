//! Errors of loading a plugin. Each names the plugin file.

use sluice_core::StageKind;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin {path:?}: cannot read file: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("plugin {path:?}: not a valid WebAssembly component: {reason}")]
    Compile { path: PathBuf, reason: String },
    #[error(
        "plugin {path:?}: implements none of the sluice worlds (filter, transform, route); \
         it exports [{exports}]. Build it against wit/plugin.wit (sluice:plugin@0.1.0)"
    )]
    NoWorld { path: PathBuf, exports: String },
    #[error("plugin {path:?}: needs imports this host does not provide: {reason}")]
    Link { path: PathBuf, reason: String },
    #[error("plugin {path:?} implements the `{found}` world but the stage says kind = \"{expected}\"; set kind = \"{found}\" or use a {expected} plugin")]
    KindMismatch { path: PathBuf, expected: StageKind, found: StageKind },
}
