//! The deadline of a plugin call. Two mechanisms, one limit:
//!
//! - Wasm code is interrupted by the engine's epoch (a ticker thread bumps it
//!   every [`EPOCH_TICK`](crate::EPOCH_TICK); the store's deadline is set in
//!   ticks before each call): a loop traps with `Trap::Interrupt`.
//! - Time spent waiting inside a host call (a WASI `poll`, a sleep, a
//!   pollable's `block`) is not Wasm code, so the epoch cannot end it. Calls
//!   are therefore async (wasmtime runs the guest on a fiber) and [`run`]
//!   drives them under a tokio timer: when the deadline passes while the
//!   guest waits, the call's future is dropped, which cancels the wait.
//!
//! A call that needs no waiting finishes on its first poll and never touches
//! the timer. What the async call costs against a sync one is measured in
//! BENCHMARKS.md (the cost of the call deadline: close to the goal in the
//! batch form, over it for a single call, still open). The timers live on
//! one small runtime of this crate's own, so a worker thread may call
//! plugins with or without a tokio context.

use futures::FutureExt;
use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

/// The runtime whose time driver ends waits at their deadline, and whose
/// context WASI's host calls (clocks, poll) run in.
static TIMERS: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sluice-wasm-timers")
        .enable_all()
        .build()
        .expect("cannot start the plugin timer runtime")
});

/// Drive `call` to its end on this thread, or give up `limit` after now.
/// `None` when the deadline passed while the call was waiting in the host.
pub(crate) fn run<F: Future>(limit: Duration, call: F) -> Option<F::Output> {
    let _context = TIMERS.enter();
    let deadline = tokio::time::Instant::now() + limit;
    let mut call = std::pin::pin!(call);
    if let Some(done) = call.as_mut().now_or_never() {
        return Some(done);
    }
    futures::executor::block_on(tokio::time::timeout_at(deadline, call)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_ready_call_returns_its_output() {
        assert_eq!(run(Duration::from_millis(1), async { 7 }), Some(7));
    }

    #[test]
    fn a_wait_past_the_deadline_is_cut_off() {
        let started = Instant::now();
        let out = run(Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        assert_eq!(out, None);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_wait_within_the_deadline_finishes() {
        let out = run(Duration::from_secs(10), async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            1
        });
        assert_eq!(out, Some(1));
    }
}
