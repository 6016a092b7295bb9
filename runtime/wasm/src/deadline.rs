//! The deadline of a plugin call. Two mechanisms, one limit:
//!
//! - Wasm code is interrupted by the engine's epoch (a ticker thread bumps it
//!   every [`EPOCH_TICK`](crate::EPOCH_TICK); the store's deadline is set in
//!   ticks before each call): a loop traps with `Trap::Interrupt`.
//! - Time spent waiting inside a host call is not Wasm code, so the epoch
//!   cannot end it. The only WASI calls that wait are `wasi:io/poll`'s `poll`
//!   and `pollable.block` (sleeps, clock subscriptions and every stream
//!   readiness go through them). This module serves both in place of
//!   wasmtime-wasi's own: the wait is driven under a tokio timer that ends at
//!   the call's deadline, and past it the call traps with
//!   [`WaitPastDeadline`], which the stage reports as a timeout. The deadline
//!   is kept as the epoch tick the engine's own deadline falls on (the
//!   ticker counts its ticks), so arming a call reads no clock and a wait
//!   ends when Wasm code would.
//!
//! Calls are synchronous: an async call (a fiber per call, under a timeout)
//! would cover any host wait without this module, but it cost ~160 ns per
//! single call on a ~600 ns identity call (BENCHMARKS.md, per-call cost),
//! and only `poll` and `block` can wait. A future host import that waits
//! (outbound HTTP, a KV store) ends its wait at the same deadline with
//! [`wait`].

use futures::FutureExt;
use std::future::Future;
use std::sync::LazyLock;
use std::time::Instant;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::p2::DynPollable;

/// The runtime whose time driver ends waits at their deadline, and in
/// whose context WASI's pollables (clock sleeps) run.
static TIMERS: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sluice-wasm-timers")
        .enable_all()
        .build()
        .expect("cannot start the plugin timer runtime")
});

/// A host wait reached the call's deadline (raised as a trap).
#[derive(Debug, thiserror::Error)]
#[error("the call's deadline passed while it waited in a host call")]
pub struct WaitPastDeadline;

/// Drive `wait` on this thread until it ends or `deadline` passes (then
/// [`WaitPastDeadline`]). A wait that is ready at once never touches the
/// timer.
pub(crate) fn wait<T>(
    deadline: Instant,
    wait: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let _context = TIMERS.enter();
    let mut wait = std::pin::pin!(wait);
    if let Some(done) = wait.as_mut().now_or_never() {
        return done;
    }
    let deadline = tokio::time::Instant::from_std(deadline);
    futures::executor::block_on(tokio::time::timeout_at(deadline, wait))
        .unwrap_or_else(|_| Err(wasmtime::Error::new(WaitPastDeadline)))
}

/// `wasi:io/poll` with the call's deadline: what the linker serves for
/// `poll` and `pollable.{ready,block,drop}` instead of wasmtime-wasi's.
pub(crate) struct DeadlinePoll<'a> {
    pub table: &'a mut ResourceTable,
    pub deadline: Instant,
}

/// The [`HasData`] that selects [`DeadlinePoll`] in the linker.
pub(crate) struct Deadlined;

impl HasData for Deadlined {
    type Data<'a> = DeadlinePoll<'a>;
}

impl sync_poll::Host for DeadlinePoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        wait(
            self.deadline,
            async_poll::Host::poll(&mut *self.table, pollables),
        )
    }
}

impl sync_poll::HostPollable for DeadlinePoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        wait(
            self.deadline,
            async_poll::HostPollable::ready(&mut *self.table, pollable),
        )
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        wait(
            self.deadline,
            async_poll::HostPollable::block(&mut *self.table, pollable),
        )
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(&mut *self.table, pollable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_ready_wait_returns_its_output() {
        let out = wait(Instant::now(), async { Ok(7) });
        assert_eq!(out.unwrap(), 7);
    }

    #[test]
    fn a_wait_past_the_deadline_is_cut_off() {
        let started = Instant::now();
        let out = wait(started + Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        });
        assert!(out
            .unwrap_err()
            .downcast_ref::<WaitPastDeadline>()
            .is_some());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_wait_within_the_deadline_finishes() {
        let out = wait(Instant::now() + Duration::from_secs(10), async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(1)
        });
        assert_eq!(out.unwrap(), 1);
    }
}
