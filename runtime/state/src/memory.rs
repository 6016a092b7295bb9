//! A key-value namespace in memory, for `sluice test` (each run starts
//! empty and leaves nothing behind) and for tests of plugins. Same
//! semantics as the stores: TTLs, decimal counters, compare-and-set.

use sluice_core::kv::{check, parse_counter, Kv, KvError, KvResult};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Values with their expiry.
#[derive(Default)]
pub struct MemoryKv(Mutex<HashMap<String, (Option<Instant>, Vec<u8>)>>);

fn ready<T: Send + 'static>(answer: Result<T, KvError>) -> KvResult<T> {
    Box::pin(std::future::ready(answer))
}

impl MemoryKv {
    /// Run `op` on the map once an expired `key` is gone.
    fn with<T>(
        &self,
        key: &str,
        op: impl FnOnce(&mut HashMap<String, (Option<Instant>, Vec<u8>)>) -> Result<T, KvError>,
    ) -> KvResult<T>
    where
        T: Send + 'static,
    {
        ready(check(key, None).and_then(|()| {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if map
                .get(key)
                .is_some_and(|(until, _)| until.is_some_and(|u| u <= now))
            {
                map.remove(key);
            }
            op(&mut map)
        }))
    }
}

fn until(ttl: Option<Duration>) -> Option<Instant> {
    ttl.map(|t| Instant::now() + t)
}

impl Kv for MemoryKv {
    fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.with(key, |map| Ok(map.get(key).map(|(_, v)| v.clone())))
    }

    fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> KvResult<()> {
        if let Err(e) = check(key, Some(&value)) {
            return ready(Err(e));
        }
        self.with(key, |map| {
            map.insert(key.to_owned(), (until(ttl), value));
            Ok(())
        })
    }

    fn delete(&self, key: &str) -> KvResult<bool> {
        self.with(key, |map| Ok(map.remove(key).is_some()))
    }

    fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> KvResult<i64> {
        self.with(key, |map| {
            let (expires, now) = match map.get(key) {
                Some((expires, value)) => (*expires, parse_counter(key, value)?),
                None => (until(ttl), 0),
            };
            let sum = now.checked_add(delta).ok_or_else(|| {
                KvError::Invalid(format!("increment: `{key}` would overflow an i64"))
            })?;
            map.insert(key.to_owned(), (expires, sum.to_string().into_bytes()));
            Ok(sum)
        })
    }

    fn compare_and_set(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> KvResult<bool> {
        if let Err(e) = check(key, Some(&value)) {
            return ready(Err(e));
        }
        self.with(key, |map| {
            if map.get(key).map(|(_, v)| v.as_slice()) != expected.as_deref() {
                return Ok(false);
            }
            map.insert(key.to_owned(), (until(ttl), value));
            Ok(true)
        })
    }
}
