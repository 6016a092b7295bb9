//! State that outlives one message: the stores and what uses them.
//!
//! A [`Store`] keeps small records by namespace and key: an embedded
//! database file (redb) by default, or Redis for state shared by several
//! daemons. The built-in [`dedupe`] stage records there which message ids
//! were delivered, and claims an id while a copy of its message is in
//! flight; plugins granted the `kv` capability keep their state there, one
//! namespace per pipeline and stage ([`Store::kv`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_state::StoreError> {
//! use sluice_state::{StoreConfig, Stores};
//! let config = StoreConfig::Embedded { path: "state".into() };
//! let store = Stores::default().open(&config).await?;
//! println!("{}", store.describe());
//! # Ok(())
//! # }
//! ```

pub mod dedupe;
mod embedded;
mod memory;
mod redis;

use futures::future::BoxFuture;
use serde::Deserialize;
use sluice_core::kv::{Kv, KvError, KvResult};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use memory::MemoryKv;

/// Where a pipeline's or a stage's state lives (`store = { type = … }`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// A database file in the directory `path` (relative to the config
    /// file), kept across restarts. One daemon at a time uses it.
    Embedded { path: PathBuf },
    /// A Redis server, shared by every daemon that names it.
    Redis { url: String },
}

impl StoreConfig {
    /// The store used when none is configured.
    pub fn default_embedded() -> Self {
        StoreConfig::Embedded {
            path: PathBuf::from("state"),
        }
    }

    /// Make an embedded store's path relative to `base` (the config file's
    /// directory).
    pub fn resolve(&mut self, base: &Path) {
        if let StoreConfig::Embedded { path } = self {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// For messages: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Embedded { path } => format!("embedded store {}", path.display()),
            StoreConfig::Redis { url } => {
                format!("redis store {}", sluice_brokers::redact_text(url))
            }
        }
    }
}

/// Why a store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened or reached (exit 2 at start-up).
    #[error("{0}")]
    Unreachable(String),
    /// The store answered with an error.
    #[error("{0}")]
    Failed(String),
}

/// What a claim on an id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    /// The id is now claimed by the caller's token.
    Claimed,
    /// The id was delivered within the window: a duplicate.
    Delivered,
    /// Another copy holds a claim on the id.
    InFlight,
}

/// A store of small records. Synchronous calls come from worker threads
/// (the chain is synchronous); they must end within the store's response
/// timeout.
pub trait Store: Send + Sync + 'static {
    /// For messages: which store this is, without credentials.
    fn describe(&self) -> String;

    /// Claim each id of `ids` in `ns` for `hold`, unless it was delivered
    /// or another token holds it: one answer per id.
    ///
    /// # Errors
    /// The store could not be reached or answered with an error.
    fn claim(
        &self,
        ns: &str,
        ids: &[&[u8]],
        tokens: &[u64],
        hold: Duration,
    ) -> Result<Vec<ClaimState>, StoreError>;

    /// Record `id` in `ns` as delivered for `window`, ending any claim on
    /// it. `capacity` bounds the ids an embedded store keeps per namespace
    /// (the oldest go first).
    fn complete(
        &self,
        ns: &str,
        id: &[u8],
        window: Duration,
        capacity: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// End the claim `token` holds on `id` without recording it; nothing if
    /// another token holds it. Must not block.
    fn release(&self, ns: &str, id: &[u8], token: u64);

    /// Namespace `ns` of the store's key-value state (a plugin's `kv`).
    fn kv(self: Arc<Self>, ns: &str) -> Arc<dyn Kv>;

    /// Make every write so far durable (at shutdown).
    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Opens stores, one per configuration for the life of the process: an
/// embedded database file can be open only once, and every stage and
/// pipeline that names it (across reloads) shares it.
#[derive(Clone, Default)]
pub struct Stores {
    open: Arc<Mutex<HashMap<StoreConfig, Arc<dyn Store>>>>,
}

impl Stores {
    /// Make every open store's writes durable (at shutdown).
    pub async fn flush(&self) {
        let open: Vec<Arc<dyn Store>> = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for store in open {
            if let Err(e) = store.flush().await {
                tracing::warn!(error = %e, "store not flushed at shutdown");
            }
        }
    }

    /// The store for `config`, opened (and for Redis, reached) on first use.
    ///
    /// # Errors
    /// [`StoreError::Unreachable`] when it cannot be opened or reached.
    pub async fn open(&self, config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
        if let Some(store) = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(config)
        {
            return Ok(store.clone());
        }
        let store: Arc<dyn Store> = match config {
            StoreConfig::Embedded { path } => {
                let path = path.clone();
                let opened = tokio::task::spawn_blocking(move || embedded::Embedded::open(&path))
                    .await
                    .map_err(|e| StoreError::Unreachable(e.to_string()))??;
                Arc::new(opened)
            }
            StoreConfig::Redis { url } => Arc::new(redis::RedisStore::connect(url).await?),
        };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(open.entry(config.clone()).or_insert(store).clone())
    }
}

/// A stand-in for a store that was not opened (`sluice check` connects to
/// nothing): every call fails, saying so.
pub fn unopened(config: &StoreConfig) -> Arc<dyn Store> {
    Arc::new(Unopened(config.describe()))
}

struct Unopened(String);

impl Unopened {
    fn error(&self) -> StoreError {
        StoreError::Unreachable(format!("{} is not open", self.0))
    }

    fn kv_error<T: Send + 'static>(&self) -> KvResult<T> {
        let e = KvError::Unavailable(self.error().to_string());
        Box::pin(async move { Err(e) })
    }
}

impl Store for Unopened {
    fn describe(&self) -> String {
        self.0.clone()
    }
    fn claim(
        &self,
        _: &str,
        _: &[&[u8]],
        _: &[u64],
        _: Duration,
    ) -> Result<Vec<ClaimState>, StoreError> {
        Err(self.error())
    }
    fn complete(
        &self,
        _: &str,
        _: &[u8],
        _: Duration,
        _: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let e = self.error();
        Box::pin(async move { Err(e) })
    }
    fn release(&self, _: &str, _: &[u8], _: u64) {}
    fn kv(self: Arc<Self>, _: &str) -> Arc<dyn Kv> {
        self
    }
}

impl Kv for Unopened {
    fn get(&self, _: &str) -> KvResult<Option<Vec<u8>>> {
        self.kv_error()
    }
    fn set(&self, _: &str, _: Vec<u8>, _: Option<Duration>) -> KvResult<()> {
        self.kv_error()
    }
    fn delete(&self, _: &str) -> KvResult<bool> {
        self.kv_error()
    }
    fn increment(&self, _: &str, _: i64, _: Option<Duration>) -> KvResult<i64> {
        self.kv_error()
    }
    fn compare_and_set(
        &self,
        _: &str,
        _: Option<Vec<u8>>,
        _: Vec<u8>,
        _: Option<Duration>,
    ) -> KvResult<bool> {
        self.kv_error()
    }
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
