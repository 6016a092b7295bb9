//! The embedded store: one redb database file, `PATH/sluice.redb`, used by
//! one daemon at a time (redb locks the file).
//!
//! Delivered ids live in two tables per namespace: `dedupe:NS` maps an id
//! to the time its record expires, `dedupe-expiry:NS` orders the same
//! records by that time, so expired records and those over `capacity` go
//! oldest first. Records are written by one thread that commits whatever
//! is waiting in one durable transaction (group commit: one fsync for many
//! messages). Claims are in memory: they only need to outlive the copy in
//! flight, and no other process opens the file. Plugin key-value state is
//! in [`kv`].

mod kv;

use crate::{now_ms, ClaimState, Store, StoreError};
use futures::future::BoxFuture;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use sluice_core::Kv;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most records one transaction writes.
const GROUP: usize = 4096;

/// Key-value writes are made durable at least this often.
const FLUSH: Duration = Duration::from_millis(100);

pub(crate) struct Embedded {
    db: Arc<redb::Database>,
    path: PathBuf,
    claims: Arc<Claims>,
    writes: Mutex<mpsc::Sender<Write>>,
    /// Key-value writes committed without fsync since the last durable commit.
    dirty: Arc<AtomicBool>,
}

/// Claims held in memory, by namespace and id: the token and until when.
type Claims = Mutex<HashMap<(String, Vec<u8>), (u64, Instant)>>;

struct Write {
    ns: String,
    id: Vec<u8>,
    expires_ms: u64,
    capacity: u64,
    done: oneshot::Sender<Result<(), StoreError>>,
}

fn ids(ns: &str) -> String {
    format!("dedupe:{ns}")
}

fn expiry(ns: &str) -> String {
    format!("dedupe-expiry:{ns}")
}

fn failed(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("embedded store {}: {what}: {e}", path.display()))
}

impl Embedded {
    /// Open (or create) the database in directory `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Embedded, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unreachable(format!(
                "embedded store: cannot create the directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join("sluice.redb");
        let db = redb::Database::create(&path).map_err(|e| {
            let hint = if matches!(e, redb::DatabaseError::DatabaseAlreadyOpen) {
                " (another sluice process uses it: give each daemon its own `path`, or share state through a Redis store)"
            } else {
                ""
            };
            StoreError::Unreachable(format!(
                "embedded store: cannot open {}: {e}{hint}",
                path.display()
            ))
        })?;
        let db = Arc::new(db);
        let claims: Arc<Claims> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let dirty = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            db: db.clone(),
            claims: claims.clone(),
            path: path.clone(),
            dirty: dirty.clone(),
        };
        std::thread::Builder::new()
            .name("sluice-state".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| StoreError::Unreachable(format!("embedded store: no thread: {e}")))?;
        Ok(Embedded {
            db,
            path,
            claims,
            writes: Mutex::new(tx),
            dirty,
        })
    }

    /// When each id's delivered record in `ns` expires, if it has one: one
    /// read transaction for them all.
    fn delivered_until(&self, ns: &str, ids_: &[&[u8]]) -> Result<Vec<Option<u64>>, StoreError> {
        let read = |e: &dyn std::fmt::Display| failed("read", &self.path, e);
        let txn = self.db.begin_read().map_err(|e| read(&e))?;
        let name = ids(ns);
        let table = match txn.open_table(TableDefinition::<&[u8], u64>::new(&name)) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; ids_.len()]),
            Err(e) => return Err(read(&e)),
        };
        ids_.iter()
            .map(|id| {
                let got = table.get(*id).map_err(|e| read(&e))?;
                Ok(got.map(|v| v.value()))
            })
            .collect()
    }
}

impl Store for Embedded {
    fn describe(&self) -> String {
        format!("embedded store {}", self.path.display())
    }

    fn claim(
        &self,
        ns: &str,
        ids: &[&[u8]],
        tokens: &[u64],
        hold: Duration,
    ) -> Result<Vec<ClaimState>, StoreError> {
        let now = Instant::now();
        let now_ms = now_ms();
        // Held across the read, so a record committed and its claim removed
        // (in that order, by the writer) is seen as one or the other.
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        let mut states = Vec::with_capacity(ids.len());
        let delivered = self.delivered_until(ns, ids)?;
        for ((id, token), until) in ids.iter().zip(tokens).zip(delivered) {
            if until.is_some_and(|t| t > now_ms) {
                states.push(ClaimState::Delivered);
                continue;
            }
            let key = (ns.to_owned(), id.to_vec());
            match claims.get(&key) {
                Some((holder, until)) if holder != token && *until > now => {
                    states.push(ClaimState::InFlight);
                }
                _ => {
                    claims.insert(key, (*token, now + hold));
                    states.push(ClaimState::Claimed);
                }
            }
        }
        Ok(states)
    }

    fn complete(
        &self,
        ns: &str,
        id: &[u8],
        window: Duration,
        capacity: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (done, answer) = oneshot::channel();
        let write = Write {
            ns: ns.to_owned(),
            id: id.to_vec(),
            expires_ms: now_ms().saturating_add(window.as_millis() as u64),
            capacity,
            done,
        };
        let sent = self
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(write);
        let path = self.path.clone();
        Box::pin(async move {
            sent.map_err(|_| failed("write", &path, "the writer thread ended"))?;
            answer
                .await
                .map_err(|_| failed("write", &path, "the writer thread ended"))?
        })
    }

    fn release(&self, ns: &str, id: &[u8], token: u64) {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (ns.to_owned(), id.to_vec());
        if claims.get(&key).is_some_and(|(holder, _)| *holder == token) {
            claims.remove(&key);
        }
    }

    fn kv(self: Arc<Self>, ns: &str) -> Arc<dyn Kv> {
        Arc::new(kv::EmbeddedKv::new(
            self.db.clone(),
            self.path.clone(),
            self.dirty.clone(),
            ns,
        ))
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let (db, path, dirty) = (self.db.clone(), self.path.clone(), self.dirty.clone());
        // A thread of its own (an fsync blocks), so no runtime is needed.
        let (done, answer) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("sluice-state-flush".into())
            .spawn(move || drop(done.send(flush(&db, &dirty))));
        Box::pin(async move {
            spawned.map_err(|e| failed("flush", &path, e))?;
            answer
                .await
                .map_err(|e| failed("flush", &path, e))?
                .map_err(|e| failed("flush", &path, e))
        })
    }
}

/// What the writer thread holds.
struct Writer {
    db: Arc<redb::Database>,
    claims: Arc<Claims>,
    path: PathBuf,
    dirty: Arc<AtomicBool>,
}

impl Writer {
    /// Commit what waits, in groups, and make key-value writes durable
    /// within [`FLUSH`], until the store drops (then flush once more).
    fn run(&self, rx: &mpsc::Receiver<Write>) {
        loop {
            let first = match rx.recv_timeout(FLUSH) {
                Ok(w) => w,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.flush();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            };
            let mut group = vec![first];
            while group.len() < GROUP {
                match rx.try_recv() {
                    Ok(w) => group.push(w),
                    Err(_) => break,
                }
            }
            // A durable commit makes earlier key-value writes durable too.
            self.dirty.store(false, Ordering::Release);
            let result = commit(&self.db, &group).map_err(|e| failed("write", &self.path, e));
            if result.is_ok() {
                let mut held = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
                for w in &group {
                    held.remove(&(w.ns.clone(), w.id.clone()));
                }
            } else {
                self.dirty.store(true, Ordering::Release);
            }
            for w in group {
                let _ = w.done.send(result.clone());
            }
        }
    }

    fn flush(&self) {
        if let Err(e) = flush(&self.db, &self.dirty) {
            tracing::warn!(error = %failed("flush", &self.path, e), "key-value writes not yet durable; retrying");
        }
    }
}

/// When key-value writes were committed without fsync since the last
/// durable commit: sweep expired keys and commit durably.
fn flush(db: &redb::Database, dirty: &AtomicBool) -> Result<(), redb::Error> {
    if !dirty.swap(false, Ordering::AcqRel) {
        return Ok(());
    }
    let done = (|| -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        kv::sweep(&txn)?;
        txn.commit()?;
        Ok(())
    })();
    if done.is_err() {
        dirty.store(true, Ordering::Release);
    }
    done
}

/// Write a group of delivered records in one durable transaction, then
/// drop the expired ones and those over each namespace's capacity.
fn commit(db: &redb::Database, group: &[Write]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    let now = now_ms();
    let mut namespaces: HashMap<&str, u64> = HashMap::new();
    for w in group {
        let (ids_name, expiry_name) = (ids(&w.ns), expiry(&w.ns));
        let mut by_id = txn.open_table(TableDefinition::<&[u8], u64>::new(&ids_name))?;
        let mut by_time = txn.open_table(TableDefinition::<(u64, &[u8]), ()>::new(&expiry_name))?;
        if let Some(old) = by_id.insert(w.id.as_slice(), w.expires_ms)? {
            let old = old.value();
            by_time.remove((old, w.id.as_slice()))?;
        }
        by_time.insert((w.expires_ms, w.id.as_slice()), ())?;
        namespaces.insert(&w.ns, w.capacity);
    }
    for (ns, capacity) in namespaces {
        let (ids_name, expiry_name) = (ids(ns), expiry(ns));
        let mut by_id = txn.open_table(TableDefinition::<&[u8], u64>::new(&ids_name))?;
        let mut by_time = txn.open_table(TableDefinition::<(u64, &[u8]), ()>::new(&expiry_name))?;
        loop {
            let over = by_id.len()? > capacity;
            let oldest = match by_time.first()? {
                Some((key, _)) => {
                    let (at, id) = key.value();
                    (over || at <= now).then(|| (at, id.to_vec()))
                }
                None => None,
            };
            let Some((at, id)) = oldest else { break };
            by_time.remove((at, id.as_slice()))?;
            by_id.remove(id.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: BoxFuture<'static, T>) -> T {
        futures::executor::block_on(f)
    }

    #[test]
    fn a_delivered_id_is_a_duplicate_until_its_window_ends_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Embedded::open(dir.path()).unwrap();
            let hold = Duration::from_secs(30);
            assert_eq!(
                store.claim("p/d", &[b"a"], &[1], hold).unwrap(),
                [ClaimState::Claimed]
            );
            assert_eq!(
                store.claim("p/d", &[b"a"], &[2], hold).unwrap(),
                [ClaimState::InFlight],
                "another token while the first holds it"
            );
            assert_eq!(
                store.claim("other/d", &[b"a"], &[2], hold).unwrap(),
                [ClaimState::Claimed],
                "namespaces are apart"
            );
            block(store.complete("p/d", b"a", Duration::from_secs(60), 100)).unwrap();
            assert_eq!(
                store.claim("p/d", &[b"a"], &[3], hold).unwrap(),
                [ClaimState::Delivered]
            );
            // A released claim lets the next copy go.
            store.claim("p/d", &[b"b"], &[4], hold).unwrap();
            store.release("p/d", b"b", 4);
            assert_eq!(
                store.claim("p/d", &[b"b"], &[5], hold).unwrap(),
                [ClaimState::Claimed]
            );
            // A record whose window ended is gone.
            block(store.complete("p/d", b"c", Duration::ZERO, 100)).unwrap();
            assert_eq!(
                store.claim("p/d", &[b"c"], &[6], hold).unwrap(),
                [ClaimState::Claimed]
            );
            drop(store);
        }
        // The writer thread lets go of the file when its store drops.
        let reopened = (0..50)
            .find_map(|_| {
                Embedded::open(dir.path())
                    .inspect_err(|_| std::thread::sleep(Duration::from_millis(20)))
                    .ok()
            })
            .expect("reopens");
        assert_eq!(
            reopened
                .claim("p/d", &[b"a"], &[7], Duration::from_secs(1))
                .unwrap(),
            [ClaimState::Delivered]
        );
    }

    #[test]
    fn capacity_keeps_the_newest_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(dir.path()).unwrap();
        for i in 0..10u8 {
            block(store.complete("p/d", &[i], Duration::from_secs(60 + u64::from(i)), 4)).unwrap();
        }
        let hold = Duration::from_secs(1);
        let states: Vec<ClaimState> = (0..10u8)
            .map(|i| store.claim("p/d", &[&[i]], &[99], hold).unwrap()[0])
            .collect();
        let delivered = states
            .iter()
            .filter(|s| **s == ClaimState::Delivered)
            .count();
        assert_eq!(delivered, 4, "{states:?}");
        assert_eq!(states[9], ClaimState::Delivered);
        assert_eq!(states[0], ClaimState::Claimed);
    }
}
