//! The [`Source`] trait: where deliveries come from.

use crate::budget::Outbox;
use crate::shutdown::Shutdown;

/// A source failure once running. Connectors reconnect with backoff on
/// their own; an error returned from [`Source::run`] ends the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name}: connection lost: {reason}")]
    Connection { source_name: String, reason: String },
    #[error("{source_name}: {source}")]
    Io {
        source_name: String,
        #[source]
        source: std::io::Error,
    },
}

/// A connected source, run as its own tokio task. Connecting happens in the
/// connector's constructor, so an unreachable broker is reported before any
/// pipeline starts (exit code 2).
#[async_trait::async_trait]
pub trait Source: Send {
    /// A short human name, e.g. `file:orders.jsonl`.
    fn describe(&self) -> String;

    /// Can this source retry a message through its broker
    /// ([`Acker::retry_later`](crate::Acker::retry_later))? The engine
    /// refuses `republish` retries for a source that cannot.
    fn republishes_retries(&self) -> bool {
        false
    }

    /// Where to report how many messages wait in the broker (every
    /// [`LAG_EVERY`](crate::stats::LAG_EVERY) or so, while running). Called
    /// once before [`Source::run`]; sources that cannot tell ignore it.
    fn report_lag(&mut self, lag: std::sync::Arc<crate::stats::SourceLag>) {
        let _ = lag;
    }

    /// How far it has read, for a source with an end it knows (a file).
    fn progress(&self) -> Option<std::sync::Arc<crate::stats::ReadProgress>> {
        None
    }

    /// Its connection state, for readiness, if it has a broker to lose
    /// (files and memory do not).
    fn health(&self) -> Option<crate::Health> {
        None
    }

    /// Send deliveries into `out` until the source ends (`Ok`) or `shutdown`
    /// is cancelled (`Ok` after it stopped taking new messages). `out` is
    /// bounded in count and in bytes: a slow pipeline slows the source
    /// down, and a source that reads ahead sizes its reads by
    /// [`Outbox::room`]. A source that waits
    /// for what it handed out to be settled waits at most until
    /// [`Shutdown::drain_deadline`].
    ///
    /// # Errors
    /// When the source fails for good.
    async fn run(self: Box<Self>, out: Outbox, shutdown: Shutdown) -> Result<(), SourceError>;
}
