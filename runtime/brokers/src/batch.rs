//! The hand-off between a sink's `publish` and its batching task (the Redis
//! pipelined writer, the SQS batcher): items queue in call order with a
//! reply each, and the reply becomes the message's [`Confirm`].

use sluice_core::{Confirm, SinkError};
use tokio::sync::{mpsc, oneshot};

/// How the batching task answers one item.
pub(crate) type Reply = oneshot::Sender<Result<(), Failed>>;

/// Why an item failed, with the reason.
#[derive(Debug, Clone)]
pub(crate) enum Failed {
    /// Worth publishing again (the broker or the link had a problem).
    Retry(String),
    /// The broker refuses this item itself; it would on every retry.
    Rejected(String),
}

/// The publishing side of a batching task.
pub(crate) struct BatchQueue<T> {
    tx: mpsc::Sender<(T, Reply)>,
    sink: String,
}

impl<T: Send + 'static> BatchQueue<T> {
    /// A queue of `capacity` items for the sink named `sink`, and the
    /// receiver its task reads.
    pub fn new(sink: String, capacity: usize) -> (Self, mpsc::Receiver<(T, Reply)>) {
        let (tx, rx) = mpsc::channel(capacity);
        (BatchQueue { tx, sink }, rx)
    }

    /// Queue an item; the confirm resolves with its reply.
    pub async fn send(&self, item: T) -> Result<Confirm, SinkError> {
        let stopped = |sink: String| SinkError::Connection {
            sink,
            reason: "batching task stopped".into(),
        };
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((item, reply))
            .await
            .map_err(|_| stopped(self.sink.clone()))?;
        let sink = self.sink.clone();
        Ok(Box::pin(async move {
            match answer.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(Failed::Retry(reason))) => Err(SinkError::Publish { sink, reason }),
                Ok(Err(Failed::Rejected(reason))) => Err(SinkError::Rejected { sink, reason }),
                Err(_) => Err(stopped(sink)),
            }
        }))
    }
}
