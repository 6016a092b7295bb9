//! Plugin key-value state in Redis: key `sluice:kv:NS:KEY`, so every
//! daemon that names the server shares a stage's keys. `get`, `set`
//! (`PX` for a TTL) and `delete` are single commands; `increment` and
//! `compare-and-set` are scripts, atomic on the server. Each operation runs
//! on the daemon's runtime; the Wasm host waits for it under the call's
//! deadline.

use super::RedisStore;
use sluice_core::kv::{check, Kv, KvError, KvResult};
use std::time::Duration;

/// `KEYS[1]` the key, `ARGV[1]` the delta, `ARGV[2]` the TTL in ms (0:
/// none), applied only when the key is new.
const INCREMENT: &str = r"
local existed = redis.call('EXISTS', KEYS[1])
local sum = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return sum
";

/// `KEYS[1]` the key, `ARGV[1]` 1 if a value is expected (0: absence),
/// `ARGV[2]` the expected value, `ARGV[3]` the new value, `ARGV[4]` the TTL
/// in ms (0: none). 1 when set.
const COMPARE_AND_SET: &str = r"
local now = redis.call('GET', KEYS[1])
local matches
if ARGV[1] == '1' then matches = (now == ARGV[2]) else matches = (now == false) end
if not matches then return 0 end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
";

/// One namespace of a Redis store.
pub(super) struct RedisKv {
    pub store: RedisStore,
    pub prefix: String,
}

fn ttl_ms(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |t| t.as_millis().max(1) as u64)
}

impl RedisKv {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Run `cmd` on the daemon's runtime and read its answer as `T`.
    fn run<T>(&self, checked: Result<(), KvError>, cmd: redis::Cmd) -> KvResult<T>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        let this = self.store.0.clone();
        let task = self.store.0.runtime.spawn(async move {
            checked?;
            let mut conn = this
                .connection()
                .await
                .map_err(|e| KvError::Unavailable(e.to_string()))?;
            cmd.query_async::<T>(&mut conn).await.map_err(|e| {
                if e.to_string().contains("not an integer") {
                    KvError::Invalid("increment: the value is not a decimal integer".into())
                } else {
                    KvError::Unavailable(this.failed(&e).to_string())
                }
            })
        });
        Box::pin(async move {
            task.await
                .map_err(|e| KvError::Unavailable(format!("redis store: {e}")))?
        })
    }
}

impl Kv for RedisKv {
    fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        self.run(check(key, None), cmd)
    }

    fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> KvResult<()> {
        let checked = check(key, Some(&value));
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value);
        if ttl.is_some() {
            cmd.arg("PX").arg(ttl_ms(ttl));
        }
        self.run(checked, cmd)
    }

    fn delete(&self, key: &str) -> KvResult<bool> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(key));
        self.run(check(key, None), cmd)
    }

    fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> KvResult<i64> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(INCREMENT)
            .arg(1)
            .arg(self.key(key))
            .arg(delta)
            .arg(ttl_ms(ttl));
        self.run(check(key, None), cmd)
    }

    fn compare_and_set(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> KvResult<bool> {
        let checked = check(key, Some(&value));
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(COMPARE_AND_SET)
            .arg(1)
            .arg(self.key(key))
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(value)
            .arg(ttl_ms(ttl));
        self.run(checked, cmd)
    }
}
