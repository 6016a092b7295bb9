//! What makes `sluice run` reload: SIGHUP, or a change to the config file
//! or a plugin file it names (the `notify` crate, watching their folders).
//!
//! Editors and deploy tools write in several steps (truncate and write,
//! write a temporary file and rename it). File events are debounced: a
//! reload starts only once no event came for [`QUIET`] and the watched
//! files' sizes and modification times stayed the same over it, so a
//! half-written `.wasm` or `.toml` is not what gets loaded.

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// How long the watched files must be left alone before a reload.
pub const QUIET: Duration = Duration::from_millis(400);

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    Files,
}

pub struct Triggers {
    /// Debounced triggers, from the task that watches the raw ones.
    rx: mpsc::UnboundedReceiver<Trigger>,
    watcher: Option<RecommendedWatcher>,
    dirs: BTreeSet<PathBuf>,
    /// The watched files, as (canonical folder)/(file name).
    files: std::sync::Arc<std::sync::Mutex<BTreeSet<PathBuf>>>,
}

/// `path` as (canonical folder)/(file name), which is how file events name it.
fn watch_name(path: &Path) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
}

impl Triggers {
    /// Listen for SIGHUP; with `watch_files`, also for file changes (see
    /// [`Triggers::watch`]).
    pub fn new(watch_files: bool) -> Self {
        let (tx, raw) = mpsc::unbounded_channel();
        let hup = tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut s) = signal(SignalKind::hangup()) else {
                return;
            };
            while s.recv().await.is_some() {
                if hup.send(Trigger::Signal).is_err() {
                    return;
                }
            }
        });
        let files = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::<PathBuf>::new()));
        let watcher = if watch_files {
            let (events, watched) = (tx.clone(), files.clone());
            let handler = move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                let watched = watched
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // Kubernetes updates a mounted ConfigMap by swapping the
                // folder's `..data` symlink; the files themselves do not change.
                let configmap = |p: &PathBuf| {
                    p.file_name().is_some_and(|n| n == "..data")
                        && p.parent()
                            .is_some_and(|d| watched.iter().any(|w| w.parent() == Some(d)))
                };
                if event
                    .paths
                    .iter()
                    .any(|p| watched.contains(p) || configmap(p))
                {
                    let _ = events.send(Trigger::Files);
                }
            };
            match notify::recommended_watcher(handler) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP");
                    None
                }
            }
        } else {
            None
        };
        let (debounced, rx) = mpsc::unbounded_channel();
        tokio::spawn(debounce(raw, debounced, files.clone(), tx));
        Triggers {
            rx,
            watcher,
            dirs: BTreeSet::new(),
            files,
        }
    }

    /// Watch exactly these files (the config and its plugins) from now on.
    pub fn watch(&mut self, files: &[PathBuf]) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let names: BTreeSet<PathBuf> = files.iter().filter_map(|f| watch_name(f)).collect();
        let dirs: BTreeSet<PathBuf> = names
            .iter()
            .filter_map(|n| n.parent().map(Path::to_path_buf))
            .collect();
        for gone in self.dirs.difference(&dirs) {
            let _ = watcher.unwatch(gone);
        }
        for dir in dirs.difference(&self.dirs) {
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(folder = %dir.display(), error = %e, "cannot watch folder; reload with SIGHUP");
            }
        }
        self.dirs = dirs;
        *self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = names;
    }

    /// Wait for the next reload request: a signal at once, file changes
    /// once they have settled. Cancel-safe.
    pub async fn next(&mut self) -> Trigger {
        match self.rx.recv().await {
            Some(t) => t,
            None => std::future::pending().await,
        }
    }
}

type Files = std::sync::Arc<std::sync::Mutex<BTreeSet<PathBuf>>>;

/// Pass signals on at once; pass file events on once no further event came
/// for [`QUIET`] and the files' sizes and times stayed put over it.
/// `_keep` keeps the raw channel open when nothing else sends.
async fn debounce(
    mut raw: mpsc::UnboundedReceiver<Trigger>,
    out: mpsc::UnboundedSender<Trigger>,
    files: Files,
    _keep: mpsc::UnboundedSender<Trigger>,
) {
    while let Some(trigger) = raw.recv().await {
        if trigger == Trigger::Files {
            loop {
                let before = stamps(&files);
                match tokio::time::timeout(QUIET, raw.recv()).await {
                    Ok(Some(Trigger::Signal)) => break, // the signal reloads anyway
                    Ok(Some(Trigger::Files)) => continue,
                    Ok(None) => return,
                    Err(_) if stamps(&files) == before => break,
                    Err(_) => continue,
                }
            }
        }
        if out.send(trigger).is_err() {
            return;
        }
    }
}

fn stamps(files: &Files) -> BTreeMap<PathBuf, Option<(u64, SystemTime)>> {
    let files = files
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    files
        .into_iter()
        .map(|f| {
            let stamp = std::fs::metadata(&f)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)));
            (f, stamp)
        })
        .collect()
}
