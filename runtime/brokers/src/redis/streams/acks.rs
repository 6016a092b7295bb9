//! The acks of the `redis-stream` source, batched into `XACK` by one task
//! that keeps retrying through a lost connection; a retry through Redis is
//! appended to the retry stream first ([`super::retry`]).

use super::held::Held;
use super::retry::retry_entry;
use crate::redis::{connect, StreamSourceConfig};
use crate::settle::Settled;
use crate::RECONNECT;
use tokio::sync::mpsc;

/// Most ids in one XACK.
const ACK_BATCH: usize = 1000;

/// Batch acks into XACK; keep retrying through a lost connection.
pub(super) async fn ack_task(
    name: String,
    client: redis::Client,
    config: StreamSourceConfig,
    held: Held,
    mut settled: mpsc::UnboundedReceiver<Settled<String>>,
) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut batch = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    while settled.recv_many(&mut batch, ACK_BATCH).await > 0 {
        for s in batch.drain(..) {
            match s {
                Settled::Done(id) => ids.push(id),
                Settled::Later(id, later) if config.retry_stream.is_some() => {
                    let retry_stream = config.retry_stream.as_deref().unwrap_or_default();
                    reconnect(&mut conn, &client, &config).await;
                    let added = match &mut conn {
                        Some(c) => retry_entry(&config, retry_stream, &later)
                            .query_async::<redis::Value>(c)
                            .await
                            .map_err(|e| e.to_string()),
                        None => Err("not connected".to_string()),
                    };
                    match added {
                        // Appended: the original is done.
                        Ok(_) => ids.push(id),
                        Err(e) => {
                            // It stays pending and is claimed again later.
                            tracing::warn!(source = %name, error = %e, %id, "could not append a retry to {retry_stream}; the entry stays pending");
                            conn = None;
                            held.release(&id);
                        }
                    }
                }
                Settled::Released(id) | Settled::Later(id, _) => {
                    held.release(&id);
                }
            }
        }
        let mut attempt = 0;
        while !ids.is_empty() {
            reconnect(&mut conn, &client, &config).await;
            let result = match &mut conn {
                Some(c) => {
                    redis::cmd("XACK")
                        .arg(&config.stream)
                        .arg(&config.group)
                        .arg(&ids)
                        .query_async::<u64>(c)
                        .await
                }
                None => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "not connected",
                ))),
            };
            match result {
                Ok(_) => {
                    held.acked(&ids);
                    ids.clear();
                }
                Err(e)
                    if e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_timeout()
                        || e.is_connection_refusal() =>
                {
                    conn = None;
                    attempt += 1;
                    let delay = RECONNECT.delay(attempt);
                    tracing::warn!(source = %name, error = %e, ?delay, "XACK failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    // The group or stream is gone (a server without persistence
                    // restarted): there is nothing left to acknowledge.
                    tracing::warn!(source = %name, error = %e, entries = ids.len(), "XACK refused; dropping these acks");
                    held.acked(&ids);
                    ids.clear();
                }
            }
        }
    }
}

/// Connect again if there is no connection (one try; `None` if it fails).
async fn reconnect(
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    client: &redis::Client,
    config: &StreamSourceConfig,
) {
    if conn.is_none() {
        let timeout = config.connect_timeout.0;
        *conn = connect(client, timeout, Some(timeout)).await.ok();
    }
}
