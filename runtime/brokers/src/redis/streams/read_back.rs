//! A stream's entries read without consuming them (`XRANGE`, no group), for
//! `sluice dlq` on a `redis-stream` DLQ.

use super::reply::entries;
use crate::redis::{client, connect_at_start, StreamSinkConfig};
use crate::ConnectError;
use sluice_core::Message;

/// Entries fetched per `XRANGE`.
const PAGE: usize = 500;

/// Up to `limit` entries of the stream a sink `name` with config `c` writes
/// to, oldest first, each with where it is (`stream=S id=I`).
///
/// # Errors
/// Redis cannot be reached, or the reply is an error.
pub(crate) async fn read_back(
    c: &StreamSinkConfig,
    name: &str,
    limit: usize,
) -> Result<Vec<(String, Message)>, ConnectError> {
    let stream = c.stream.clone().unwrap_or_else(|| name.to_string());
    let what = format!("redis-stream `{stream}`");
    let client = client(&what, &c.url)?;
    let timeout = c.connect_timeout.0;
    let mut conn = connect_at_start(&what, &client, &c.url, timeout, Some(timeout)).await?;
    let mut read = Vec::new();
    let mut from = "-".to_string();
    while read.len() < limit {
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE.min(limit - read.len()))
            .query_async(&mut conn)
            .await
            .map_err(|e| ConnectError::Unreachable(format!("{what}: XRANGE failed: {e}")))?;
        let page = entries(reply);
        let Some(last) = page.last() else { break };
        from = format!("({}", last.id);
        for entry in page {
            let at = format!("stream={stream} id={}", entry.id);
            let (message, _) = entry.into_message(&c.payload_field, &c.key_field, &stream);
            read.push((at, message));
        }
    }
    Ok(read)
}
