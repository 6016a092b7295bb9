//! The [`Sink`] trait: where messages go.

use crate::message::Message;
use futures::future::BoxFuture;

/// Resolves once the sink has durably confirmed one message (a Kafka
/// delivery report, an AMQP publisher confirm, a file write flushed).
pub type Confirm = BoxFuture<'static, Result<(), SinkError>>;

/// A sink failure. The engine never dead-letters a message because a sink
/// failed: it retries the delivery with backoff and holds the source ack.
/// The one exception is [`SinkError::Rejected`]: a message the broker will
/// never take as it is goes to the DLQ with the sink's reason.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The broker refuses this message itself, and would refuse it on every
    /// retry (too large, content it does not allow).
    #[error("{sink}: rejected the message: {reason}")]
    Rejected { sink: String, reason: String },
    #[error("{sink}: connection failed: {reason}")]
    Connection { sink: String, reason: String },
    #[error("{sink}: publish failed: {reason}")]
    Publish { sink: String, reason: String },
    #[error("{sink}: {source}")]
    Io {
        sink: String,
        #[source]
        source: std::io::Error,
    },
}

/// A destination. Shared by all workers of a pipeline.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// A short human name, e.g. `file:out/eu.jsonl`.
    fn describe(&self) -> String;

    /// Hand one message over. Returns once the sink has taken it, in call
    /// order (so per-key order is kept); the returned [`Confirm`] resolves
    /// when the message is durably confirmed.
    ///
    /// # Errors
    /// When the sink cannot take the message now; the engine retries.
    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError>;

    /// Its connection state, for readiness, if it has a broker to lose
    /// (files and memory do not).
    fn health(&self) -> Option<crate::Health> {
        None
    }

    /// Flush and confirm everything handed over so far (called at shutdown).
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
