//! Redis streams: a consumer-group source and an `XADD` sink.
//!
//! The source reads with `XREADGROUP … >`, first re-reading its own pending
//! list (entries it read before a restart or a lost connection but never
//! acked). Acks go to a task that batches them into `XACK`. Every
//! `claim_idle / 2` it runs `XAUTOCLAIM` to take over entries that another
//! (crashed) consumer of the group left pending longer than `claim_idle`.
//! Entries this process already holds are never handed out twice
//! ([`held`]).
//!
//! - [`source`]: the consumer-group reader and its take-over of idle entries;
//! - [`acks`]: the task that batches acks into `XACK`;
//! - [`retry`]: retries through a retry stream (`retry.republish`);
//! - [`sink`]: one `XADD` per message;
//! - [`reply`]: the parsing of `XREADGROUP`, `XAUTOCLAIM` and `XRANGE` replies;
//! - [`read_back`]: a stream's entries without consuming them (`sluice dlq`).

mod acks;
mod held;
mod read_back;
mod reply;
mod retry;
mod sink;
mod source;

pub(crate) use read_back::open_dlq;
pub(super) use sink::StreamSink;
pub(super) use source::StreamSource;
