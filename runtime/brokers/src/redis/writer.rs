//! An ordered, pipelining command writer shared by the Redis sinks.
//!
//! `send` queues one command and returns at once; a task takes whatever is
//! queued (up to [`BATCH`]), sends it as one pipeline, and answers each
//! command's confirm. Commands reach Redis in the order they were queued,
//! so per-key order survives, and one round trip serves many messages.
//! A failed pipeline fails every command in it (the engine publishes them
//! again) and the next one reconnects.

use super::connect;
use crate::batch::{BatchQueue, Failed, Reply};
use sluice_core::{Confirm, Health, SinkError};
use std::time::Duration;
use tokio::sync::mpsc;

/// Most commands in one pipeline.
const BATCH: usize = 512;

pub(super) struct Writer {
    queue: BatchQueue<redis::Cmd>,
    health: Health,
}

impl Writer {
    /// Start the writer task on an open connection.
    pub fn start(
        name: String,
        client: redis::Client,
        conn: redis::aio::MultiplexedConnection,
        timeout: Duration,
    ) -> Self {
        let (queue, rx) = BatchQueue::new(name.clone(), BATCH * 4);
        let health = Health::new(name.clone());
        tokio::spawn(run(name, client, conn, timeout, rx, health.clone()));
        Writer { queue, health }
    }

    /// Down from a write that lost the connection until one gets through:
    /// a sink with nothing to write does not notice an outage.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Queue a command; the confirm resolves with its reply.
    pub async fn send(&self, cmd: redis::Cmd) -> Result<Confirm, SinkError> {
        self.queue.send(cmd).await
    }

    /// Wait until everything queued so far has been answered.
    pub async fn flush(&self) -> Result<(), SinkError> {
        self.send(redis::cmd("PING")).await?.await
    }
}

async fn run(
    name: String,
    client: redis::Client,
    conn: redis::aio::MultiplexedConnection,
    timeout: Duration,
    mut rx: mpsc::Receiver<(redis::Cmd, Reply)>,
    health: Health,
) {
    let mut conn = Some(conn);
    let mut batch = Vec::with_capacity(BATCH);
    let mut replies = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // The commands move into the pipeline (their payloads are not copied).
        let mut pipe = redis::pipe();
        for (cmd, reply) in batch.drain(..) {
            pipe.add_command(cmd);
            replies.push(reply);
        }
        let result = match &mut conn {
            Some(c) => pipe.query_async::<()>(c).await,
            None => match connect(&client, timeout, Some(timeout)).await {
                Ok(mut c) => {
                    tracing::info!(sink = %name, "reconnected to Redis");
                    let r = pipe.query_async::<()>(&mut c).await;
                    conn = Some(c);
                    r
                }
                Err(e) => Err(e),
            },
        };
        let outcome = match result {
            Ok(()) => {
                health.up();
                Ok(())
            }
            Err(e) => {
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_connection_refusal()
                {
                    conn = None;
                    health.down(&e);
                }
                Err(Failed::Retry(e.to_string()))
            }
        };
        for reply in replies.drain(..) {
            let _ = reply.send(outcome.clone());
        }
    }
}
