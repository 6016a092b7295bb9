//! Capability `kv`: `sluice:plugin/kv@0.2.0`, served by the stage's
//! namespace of its store ([`sluice_core::Kv`]). Each operation counts
//! against the call's operation budget (`kv_ops` per message; past it the
//! operation fails with `limit`, which the plugin sees as an error) and
//! waits for the store under the call's deadline (past it the call traps
//! as a timeout, as a WASI wait would).

use crate::bindings::kv::{self, KvError as WitKvError};
use crate::deadline;
use crate::state::PluginState;
use sluice_core::kv::{KvError, KvResult};
use sluice_core::Kv;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};

pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    kv::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)
}

/// A stage's key-value access, in each of its instances' stores.
pub(crate) struct KvAccess {
    pub kv: Arc<dyn Kv>,
    /// Operations per message (`kv_ops`).
    pub per_message: u32,
    /// Operations the current call has left.
    pub left: u32,
}

type Answer<T> = wasmtime::Result<Result<T, WitKvError>>;

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

impl PluginState {
    /// Run one operation: count it, wait for it under the deadline.
    fn kv_op<T>(&mut self, op: impl FnOnce(&dyn Kv) -> KvResult<T>) -> Answer<T> {
        let deadline = self.deadline_instant();
        let Some(access) = self.kv.as_mut() else {
            // Not linked without the grant: unreachable from a plugin.
            return Err(wasmtime::Error::msg(
                "the kv capability is not granted to this stage",
            ));
        };
        if access.left == 0 {
            return Ok(Err(WitKvError::Limit(format!(
                "this call used all its key-value operations ({} per message; raise the stage's `kv_ops`)",
                access.per_message
            ))));
        }
        access.left -= 1;
        let wait = op(&*access.kv);
        let answer = deadline::wait(deadline, async { Ok(wait.await) })?;
        Ok(answer.map_err(|e| match e {
            KvError::Invalid(text) => WitKvError::Invalid(text),
            KvError::Unavailable(text) => WitKvError::Unavailable(text),
        }))
    }
}

impl kv::Host for PluginState {
    fn get(&mut self, key: String) -> Answer<Option<Vec<u8>>> {
        self.kv_op(|kv| kv.get(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Answer<()> {
        self.kv_op(|kv| kv.set(&key, value, ttl(ttl_ms)))
    }

    fn delete(&mut self, key: String) -> Answer<bool> {
        self.kv_op(|kv| kv.delete(&key))
    }

    fn increment(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> Answer<i64> {
        self.kv_op(|kv| kv.increment(&key, delta, ttl(ttl_ms)))
    }

    fn compare_and_set(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Answer<bool> {
        self.kv_op(|kv| kv.compare_and_set(&key, expected, value, ttl(ttl_ms)))
    }
}
