//! The key-value store a plugin sees through the `kv` capability
//! (`sluice:plugin/kv@0.2.0`): one namespace (its pipeline and stage) of a
//! store of sluice-state. The Wasm host drives each operation under the
//! plugin call's deadline; the stores implement it.

use futures::future::BoxFuture;
use std::time::Duration;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Why an operation did not happen; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// A key or value too large, or `increment` on a value that is not a
    /// decimal integer.
    #[error("{0}")]
    Invalid(String),
    /// The store failed or could not be reached.
    #[error("{0}")]
    Unavailable(String),
}

/// The answer of one operation.
pub type KvResult<T> = BoxFuture<'static, Result<T, KvError>>;

/// One stage's namespace of a store. Keys of other namespaces are out of
/// reach. A `ttl` makes the key expire that long after the call.
pub trait Kv: Send + Sync + 'static {
    fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>>;
    fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> KvResult<()>;
    /// Whether the key was there.
    fn delete(&self, key: &str) -> KvResult<bool>;
    /// Add `delta` to the decimal integer at `key` (absent: 0) and return
    /// the sum; `ttl` applies only when the call creates the key.
    fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> KvResult<i64>;
    /// Set `key` to `value` if it holds `expected` (`None`: is absent);
    /// whether it was set.
    fn compare_and_set(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> KvResult<bool>;
}

/// The checks every store makes before an operation.
///
/// # Errors
/// [`KvError::Invalid`] naming the limit.
pub fn check(key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::Invalid(format!(
            "key of {} bytes is over the {MAX_KEY_BYTES}-byte limit",
            key.len()
        )));
    }
    if let Some(value) = value.filter(|v| v.len() > MAX_VALUE_BYTES) {
        return Err(KvError::Invalid(format!(
            "value of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
            value.len()
        )));
    }
    Ok(())
}

/// The integer an `increment` reads from a stored value.
///
/// # Errors
/// [`KvError::Invalid`] when it is not decimal text of an `i64`.
pub fn parse_counter(key: &str, value: &[u8]) -> Result<i64, KvError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            KvError::Invalid(format!(
                "increment: the value of `{key}` is not a decimal integer"
            ))
        })
}
