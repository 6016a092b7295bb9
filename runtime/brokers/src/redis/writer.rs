//! An ordered, pipelining command writer shared by the Redis sinks.
//!
//! `send` queues one command and returns at once; a task takes whatever is
//! queued (up to [`BATCH`]), sends it as one pipeline, and answers each
//! command's confirm. Commands reach Redis in the order they were queued,
//! so per-key order survives, and one round trip serves many messages.
//! A failed pipeline fails every command in it (the engine publishes them
//! again) and the next one reconnects.

use super::connect;
use sluice_core::{Confirm, SinkError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most commands in one pipeline.
const BATCH: usize = 512;

type Reply = oneshot::Sender<Result<(), String>>;

pub(super) struct Writer {
    queue: mpsc::Sender<(redis::Cmd, Reply)>,
    name: String,
}

impl Writer {
    /// Start the writer task on an open connection.
    pub fn start(name: String, client: redis::Client, conn: redis::aio::MultiplexedConnection, timeout: Duration) -> Self {
        let (queue, rx) = mpsc::channel(BATCH * 4);
        tokio::spawn(run(name.clone(), client, conn, timeout, rx));
        Writer { queue, name }
    }

    /// Queue a command; the confirm resolves with its reply.
    pub async fn send(&self, cmd: redis::Cmd) -> Result<Confirm, SinkError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((cmd, reply))
            .await
            .map_err(|_| SinkError::Connection { sink: self.name.clone(), reason: "writer stopped".into() })?;
        let sink = self.name.clone();
        Ok(Box::pin(async move {
            match answer.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(SinkError::Publish { sink, reason }),
                Err(_) => Err(SinkError::Connection { sink, reason: "writer stopped".into() }),
            }
        }))
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
) {
    let mut conn = Some(conn);
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let result = match &mut conn {
            Some(c) => pipeline(c, &batch).await,
            None => match connect(&client, timeout, Some(timeout)).await {
                Ok(mut c) => {
                    tracing::info!(sink = %name, "reconnected to Redis");
                    let r = pipeline(&mut c, &batch).await;
                    conn = Some(c);
                    r
                }
                Err(e) => Err(e),
            },
        };
        let outcome = match result {
            Ok(()) => Ok(()),
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
                    conn = None;
                }
                Err(e.to_string())
            }
        };
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(outcome.clone());
        }
    }
}

async fn pipeline(conn: &mut redis::aio::MultiplexedConnection, batch: &[(redis::Cmd, Reply)]) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    for (cmd, _) in batch {
        pipe.add_command(cmd.clone());
    }
    pipe.query_async::<()>(conn).await
}
