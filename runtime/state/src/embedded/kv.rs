//! Plugin key-value state in the embedded store.
//!
//! Per namespace two tables: `kv:NS` maps a key to its expiry (ms since
//! the epoch, 0: never) and value, `kv-expiry:NS` orders the keys that
//! expire by that time, so the writer thread sweeps expired keys oldest
//! first ([`sweep`]). Each operation is its own write transaction, atomic
//! and at once visible to every instance, committed without an fsync
//! (`Durability::None`); the writer thread makes them durable within
//! [`FLUSH`](super::FLUSH), and at once when the store closes. A kill
//! (SIGKILL, power loss) can lose that last fraction of a second of writes.

use super::failed;
use crate::now_ms;
use redb::{
    Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction,
};
use sluice_core::kv::{check, parse_counter, Kv, KvError, KvResult};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Values<'a> = TableDefinition<'a, &'static str, (u64, &'static [u8])>;
type Expiries<'a> = TableDefinition<'a, (u64, &'static str), ()>;

/// Table-name prefix of the expiry index, for the sweep.
pub(super) const EXPIRY_PREFIX: &str = "kv-expiry:";

/// One namespace of an embedded store.
pub(super) struct EmbeddedKv {
    pub db: Arc<redb::Database>,
    pub path: PathBuf,
    /// Set after a commit without fsync; the writer thread flushes it.
    pub dirty: Arc<AtomicBool>,
    pub values: String,
    pub expiries: String,
}

impl EmbeddedKv {
    pub fn new(db: Arc<redb::Database>, path: PathBuf, dirty: Arc<AtomicBool>, ns: &str) -> Self {
        EmbeddedKv {
            db,
            path,
            dirty,
            values: format!("kv:{ns}"),
            expiries: format!("{EXPIRY_PREFIX}{ns}"),
        }
    }

    fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> KvError {
        KvError::Unavailable(failed(what, &self.path, e).to_string())
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let fail = |e: &dyn std::fmt::Display| self.unavailable("read", e);
        let txn = self.db.begin_read().map_err(|e| fail(&e))?;
        let table = match txn.open_table(Values::new(&self.values)) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(fail(&e)),
        };
        let got = table.get(key).map_err(|e| fail(&e))?;
        Ok(got.and_then(|v| {
            let (expires, value) = v.value();
            live(expires, now_ms()).then(|| value.to_vec())
        }))
    }

    /// Run `op` on the namespace's entry for `key` in one write transaction
    /// committed without fsync. `op` gets the live value and its expiry and
    /// returns what to write (`Some((expires, value))`, or `None` to
    /// delete; `Keep` leaves it) and the answer.
    fn update<T>(
        &self,
        key: &str,
        op: impl FnOnce(Option<(u64, &[u8])>) -> Result<(Change, T), KvError>,
    ) -> Result<T, KvError> {
        let fail = |e: &dyn std::fmt::Display| self.unavailable("write", e);
        let mut txn = self.db.begin_write().map_err(|e| fail(&e))?;
        txn.set_durability(Durability::None).map_err(|e| fail(&e))?;
        let answer = self.apply(&txn, key, op).map_err(|e| match e {
            Applied::Kv(e) => e,
            Applied::Db(e) => fail(&e),
        })?;
        txn.commit().map_err(|e| fail(&e))?;
        self.dirty.store(true, Ordering::Release);
        Ok(answer)
    }

    fn apply<T>(
        &self,
        txn: &WriteTransaction,
        key: &str,
        op: impl FnOnce(Option<(u64, &[u8])>) -> Result<(Change, T), KvError>,
    ) -> Result<T, Applied> {
        let mut values = txn.open_table(Values::new(&self.values))?;
        let mut expiries = txn.open_table(Expiries::new(&self.expiries))?;
        let old = values.get(key)?.map(|v| {
            let (expires, value) = v.value();
            (expires, value.to_vec())
        });
        let now = now_ms();
        let current = old
            .as_ref()
            .filter(|(expires, _)| live(*expires, now))
            .map(|(expires, value)| (*expires, value.as_slice()));
        let (change, answer) = op(current).map_err(Applied::Kv)?;
        if matches!(change, Change::Keep) {
            return Ok(answer);
        }
        if let Some((expires, _)) = old.as_ref().filter(|(expires, _)| *expires != 0) {
            expiries.remove((*expires, key))?;
        }
        match change {
            Change::Keep => {}
            Change::Delete => {
                values.remove(key)?;
            }
            Change::Write(expires, value) => {
                values.insert(key, (expires, value.as_slice()))?;
                if expires != 0 {
                    expiries.insert((expires, key), ())?;
                }
            }
        }
        Ok(answer)
    }
}

/// What an operation does to its key.
enum Change {
    Keep,
    Delete,
    /// Expiry (0: never) and value.
    Write(u64, Vec<u8>),
}

enum Applied {
    Kv(KvError),
    Db(redb::Error),
}

impl From<redb::TableError> for Applied {
    fn from(e: redb::TableError) -> Self {
        Applied::Db(e.into())
    }
}

impl From<redb::StorageError> for Applied {
    fn from(e: redb::StorageError) -> Self {
        Applied::Db(e.into())
    }
}

fn live(expires: u64, now: u64) -> bool {
    expires == 0 || expires > now
}

/// When a key set now with `ttl` expires (0: never).
fn expiry(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |t| now_ms().saturating_add(t.as_millis().max(1) as u64))
}

fn ready<T: Send + 'static>(answer: Result<T, KvError>) -> KvResult<T> {
    Box::pin(std::future::ready(answer))
}

impl Kv for EmbeddedKv {
    fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        ready(check(key, None).and_then(|()| self.read(key)))
    }

    fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> KvResult<()> {
        ready(
            check(key, Some(&value))
                .and_then(|()| self.update(key, |_| Ok((Change::Write(expiry(ttl), value), ())))),
        )
    }

    fn delete(&self, key: &str) -> KvResult<bool> {
        ready(check(key, None).and_then(|()| {
            self.update(key, |current| match current {
                Some(_) => Ok((Change::Delete, true)),
                None => Ok((Change::Keep, false)),
            })
        }))
    }

    fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> KvResult<i64> {
        ready(check(key, None).and_then(|()| {
            self.update(key, |current| {
                let (expires, now) = match current {
                    Some((expires, value)) => (expires, parse_counter(key, value)?),
                    None => (expiry(ttl), 0),
                };
                let sum = now.checked_add(delta).ok_or_else(|| {
                    KvError::Invalid(format!("increment: `{key}` would overflow an i64"))
                })?;
                Ok((Change::Write(expires, sum.to_string().into_bytes()), sum))
            })
        }))
    }

    fn compare_and_set(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> KvResult<bool> {
        ready(check(key, Some(&value)).and_then(|()| {
            self.update(key, |current| {
                if current.map(|(_, v)| v) == expected.as_deref() {
                    Ok((Change::Write(expiry(ttl), value), true))
                } else {
                    Ok((Change::Keep, false))
                }
            })
        }))
    }
}

/// Remove the expired keys of every namespace, oldest first, within `txn`.
pub(super) fn sweep(txn: &WriteTransaction) -> Result<(), redb::Error> {
    let now = now_ms();
    let names: Vec<String> = txn
        .list_tables()?
        .map(|t| t.name().to_owned())
        .filter(|name| name.starts_with(EXPIRY_PREFIX))
        .collect();
    for name in names {
        let ns = &name[EXPIRY_PREFIX.len()..];
        let values_name = format!("kv:{ns}");
        let mut expiries = txn.open_table(Expiries::new(&name))?;
        let mut values = txn.open_table(Values::new(&values_name))?;
        loop {
            let due = match expiries.first()? {
                Some((entry, _)) => {
                    let (at, key) = entry.value();
                    (at <= now).then(|| (at, key.to_owned()))
                }
                None => None,
            };
            let Some((at, key)) = due else { break };
            expiries.remove((at, key.as_str()))?;
            values.remove(key.as_str())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Embedded;
    use crate::Store;
    use futures::executor::block_on;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn operations_are_namespaced_atomic_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store: Arc<dyn Store> = Arc::new(Embedded::open(dir.path()).unwrap());
            let a = store.clone().kv("p/a");
            let b = store.clone().kv("p/b");
            assert_eq!(block_on(a.get("k")).unwrap(), None);
            block_on(a.set("k", b"v".to_vec(), None)).unwrap();
            assert_eq!(block_on(a.get("k")).unwrap().as_deref(), Some(&b"v"[..]));
            assert_eq!(block_on(b.get("k")).unwrap(), None, "namespaces are apart");
            assert_eq!(block_on(a.increment("n", 2, None)).unwrap(), 2);
            assert_eq!(block_on(a.increment("n", 3, None)).unwrap(), 5);
            assert!(block_on(a.increment("k", 1, None)).is_err(), "not a number");
            assert!(!block_on(a.compare_and_set("k", None, b"w".to_vec(), None)).unwrap());
            assert!(
                block_on(a.compare_and_set("k", Some(b"v".to_vec()), b"w".to_vec(), None)).unwrap()
            );
            assert!(block_on(a.compare_and_set("new", None, b"x".to_vec(), None)).unwrap());
            assert!(block_on(a.delete("new")).unwrap());
            assert!(!block_on(a.delete("new")).unwrap());
            block_on(a.set("gone", b"x".to_vec(), Some(Duration::from_millis(1)))).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            assert_eq!(block_on(a.get("gone")).unwrap(), None, "expired");
            assert_eq!(
                block_on(a.increment("gone", 1, Some(Duration::from_secs(60)))).unwrap(),
                1,
                "an expired counter starts again"
            );
            assert!(block_on(a.get(&"x".repeat(600))).is_err(), "key too long");
            block_on(store.flush()).unwrap();
        }
        let store: Arc<dyn Store> = Arc::new(
            (0..50)
                .find_map(|_| {
                    Embedded::open(dir.path())
                        .inspect_err(|_| std::thread::sleep(Duration::from_millis(20)))
                        .ok()
                })
                .expect("reopens"),
        );
        let a = store.kv("p/a");
        assert_eq!(block_on(a.get("k")).unwrap().as_deref(), Some(&b"w"[..]));
        assert_eq!(block_on(a.get("n")).unwrap().as_deref(), Some(&b"5"[..]));
    }
}
