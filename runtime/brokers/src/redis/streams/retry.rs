//! Retries through Redis (a pipeline's `retry.republish`): the spec's
//! dead-letter pattern on a stream.
//!
//! A delivery whose stage failed with a retryable error is appended to the
//! retry stream (`retry_stream`, default `STREAM.retry`) with its failed
//! attempts in the field `x-retry-count` and the time it is due in
//! `sluice-retry-due` (Unix milliseconds, [`crate::settle::Later::republished`]); once Redis has answered that
//! `XADD`, the original entry is acked. The same source reads the retry
//! stream with the same group and hands each entry to the pipeline when it
//! is due (a timer per entry, no polling), as attempt `x-retry-count + 1`,
//! so the stage's `retry.attempts` budget spans the round trips and the
//! last attempt dead-letters to the pipeline's DLQ. Acking it acks the retry
//! entry.
//!
//! Entries are taken in the order they were appended, each waited for in
//! turn: with a backoff that grows, an entry may wait behind one appended
//! earlier that is due later, by at most the difference of their delays.
//! A kill at any point leaves the original or the retry entry pending (one
//! of them is claimed again), so nothing is lost; a retry may run twice.

use super::source::StreamSource;
use crate::redis::StreamSourceConfig;
use crate::settle::{returned_retry, Later};
use sluice_core::Outbox;
use sluice_core::{Shutdown, Source, SourceError};
use std::time::SystemTime;

/// The `XADD` that appends the retry of `later` to `retry_stream`, fields
/// named as the source reads them.
pub(super) fn retry_entry(c: &StreamSourceConfig, retry_stream: &str, later: &Later) -> redis::Cmd {
    let msg = later.republished();
    let mut cmd = redis::cmd("XADD");
    cmd.arg(retry_stream)
        .arg("*")
        .arg(&c.payload_field)
        .arg(&msg.payload);
    if let Some(key) = &msg.key {
        cmd.arg(&c.key_field).arg(key);
    }
    for (name, value) in &msg.headers {
        cmd.arg(name).arg(value);
    }
    cmd
}

/// Read the retry stream with `reader` (a source on it) and pass each
/// entry on to `out` once it is due.
pub(super) async fn run(
    reader: StreamSource,
    out: Outbox,
    shutdown: Shutdown,
) -> Result<(), SourceError> {
    // What waits here for its due time has a budget of its own (its
    // reservation is replaced by the pipeline's when it is passed on).
    let (tx, mut due) = Outbox::channel(reader.batch(), out.limits());
    let reading = tokio::spawn(Box::new(reader).run(tx, shutdown.clone()));
    while let Some(mut delivery) = due.recv().await {
        let at = returned_retry(&mut delivery.message);
        if let Some(wait) = at.and_then(|at| at.duration_since(SystemTime::now()).ok()) {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // Unsent, it stays pending in the retry stream.
                _ = shutdown.cancelled() => break,
            }
        }
        if out.send(delivery).await.is_err() {
            break;
        }
    }
    drop(due);
    match reading.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Ok(()),
    }
}
