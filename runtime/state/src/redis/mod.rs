//! The Redis store: state shared by every daemon that names the server.
//!
//! A dedupe id is one key, `sluice:dedupe:NS:ID`. A claim sets it to
//! `c:TOKEN` only if it is absent (`SET NX PX`, inside a script that also
//! tells a delivered id from one in flight); a completed id is set to `d`
//! with the window as its time-to-live; a release deletes the key only if
//! the caller's token still holds it. Keys expire by themselves, so a claim
//! left by a crashed daemon ends after its hold time. Plugin key-value
//! state is in [`kv`].

mod kv;

use crate::{ClaimState, Store, StoreError};
use futures::future::BoxFuture;
use sluice_core::Kv;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Answers within this or the call fails (the store is then unreachable).
const RESPONSE: Duration = Duration::from_secs(5);

/// `KEYS[1]` the id's key, `ARGV[1]` the claim value, `ARGV[2]` the hold
/// in ms. 0 claimed (or already ours), 1 delivered, 2 held by another.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
elseif v == 'd' then
  return 1
elseif v == ARGV[1] then
  return 0
end
return 2
";

/// Delete `KEYS[1]` if it still holds `ARGV[1]`.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Cheap to clone: the futures it returns own a clone.
#[derive(Clone)]
pub(crate) struct RedisStore(Arc<Inner>);

struct Inner {
    client: redis::Client,
    url: String,
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
    runtime: tokio::runtime::Handle,
}

fn key(ns: &str, id: &[u8]) -> Vec<u8> {
    let mut k = format!("sluice:dedupe:{ns}:").into_bytes();
    k.extend_from_slice(id);
    k
}

fn claim_value(token: u64) -> String {
    format!("c:{token:016x}")
}

impl RedisStore {
    /// Connect to `url` (exit 2 at start-up when it cannot be reached).
    pub(crate) async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        let shown = sluice_brokers::redact_text(url);
        let client = redis::Client::open(url).map_err(|e| {
            StoreError::Unreachable(format!("redis store: cannot use `{shown}`: {e}"))
        })?;
        let store = RedisStore(Arc::new(Inner {
            client,
            url: shown,
            conn: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
        }));
        store.0.connection().await?;
        Ok(store)
    }
}

impl Inner {
    /// The shared connection, made again after one failed.
    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        if let Some(conn) = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(conn);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(RESPONSE))
            .set_response_timeout(Some(RESPONSE));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| {
                StoreError::Unreachable(format!(
                    "redis store: cannot reach Redis at {}: {e}",
                    self.url
                ))
            })?;
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    /// A failed call: forget a connection that broke, say what failed.
    fn failed(&self, e: &redis::RedisError) -> StoreError {
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
            *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = None;
            StoreError::Unreachable(format!("redis store {}: {e}", self.url))
        } else {
            StoreError::Failed(format!("redis store {}: {e}", self.url))
        }
    }
}

impl Store for RedisStore {
    fn describe(&self) -> String {
        format!("redis store {}", self.0.url)
    }

    fn claim(
        &self,
        ns: &str,
        ids: &[&[u8]],
        tokens: &[u64],
        hold: Duration,
    ) -> Result<Vec<ClaimState>, StoreError> {
        let mut pipe = redis::pipe();
        for (id, token) in ids.iter().zip(tokens) {
            pipe.cmd("EVAL")
                .arg(CLAIM)
                .arg(1)
                .arg(key(ns, id))
                .arg(claim_value(*token))
                .arg(hold.as_millis().max(1) as u64);
        }
        let this = &self.0;
        let answers: Vec<i64> = this.runtime.block_on(async {
            let mut conn = this.connection().await?;
            pipe.query_async(&mut conn)
                .await
                .map_err(|e| this.failed(&e))
        })?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                0 => ClaimState::Claimed,
                1 => ClaimState::Delivered,
                _ => ClaimState::InFlight,
            })
            .collect())
    }

    fn complete(
        &self,
        ns: &str,
        id: &[u8],
        window: Duration,
        _capacity: u64,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let key = key(ns, id);
        let ms = window.as_millis().max(1) as u64;
        let this = self.0.clone();
        Box::pin(async move {
            let mut conn = this.connection().await?;
            redis::cmd("SET")
                .arg(key)
                .arg("d")
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| this.failed(&e))
        })
    }

    fn release(&self, ns: &str, id: &[u8], token: u64) {
        let this = self.0.clone();
        let key = key(ns, id);
        self.0.runtime.spawn(async move {
            let Ok(mut conn) = this.connection().await else {
                return; // the claim ends at its hold time
            };
            let released = redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(key)
                .arg(claim_value(token))
                .query_async::<i64>(&mut conn)
                .await;
            if let Err(e) = released {
                let _ = this.failed(&e);
            }
        });
    }

    fn kv(self: Arc<Self>, ns: &str) -> Arc<dyn Kv> {
        Arc::new(kv::RedisKv {
            store: (*self).clone(),
            prefix: format!("sluice:kv:{ns}:"),
        })
    }
}
