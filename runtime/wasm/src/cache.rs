//! Precompiled-artifact cache: a component compiled once is stored as a
//! `.cwasm` file named by the sha256 of its bytes and a hash of the engine's
//! compatibility settings, so a restart (or a reload of an unchanged plugin)
//! deserializes it in well under a millisecond instead of recompiling.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// A directory of precompiled components. `None` disables caching.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

impl ArtifactCache {
    /// The default location: `$SLUICE_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/sluice`, else `~/.cache/sluice`, else no cache.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("SLUICE_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("sluice")))
            .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/sluice")));
        ArtifactCache { dir }
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        ArtifactCache {
            dir: Some(dir.into()),
        }
    }

    pub fn disabled() -> Self {
        ArtifactCache { dir: None }
    }

    /// Load the compiled form of `bytes` (whose sha256 is `sha256`) from the
    /// cache, or compile it and store it. A cache that cannot be read or
    /// written only costs time: it is logged and compilation proceeds.
    ///
    /// # Errors
    /// When the bytes are not a valid component.
    // The one use of `unsafe` in sluice: wasmtime's deserialize trusts its
    // input, see the SAFETY notes.
    #[allow(unsafe_code)]
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let Some(path) = self.entry(engine, sha256) else {
            return Component::new(engine, bytes);
        };
        if path.exists() {
            // SAFETY: the file was written by `Engine::precompile_component`
            // of an engine with the same compatibility hash (it is in the
            // file name) into a directory only sluice writes.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    tracing::debug!(path = %path.display(), "plugin loaded from the artifact cache");
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached artifact")
                }
            }
        }
        let started = std::time::Instant::now();
        let compiled = engine.precompile_component(bytes)?;
        tracing::debug!(bytes = bytes.len(), elapsed = ?started.elapsed(), cached_at = %path.display(), "plugin compiled");
        if let Err(e) = write_atomically(&path, &compiled) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write artifact cache");
        }
        // SAFETY: `compiled` was produced just above by this engine.
        unsafe { Component::deserialize(engine, &compiled) }
    }

    fn entry(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish())))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
