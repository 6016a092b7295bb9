//! A stream's entries taken back for `sluice dlq` on a `redis-stream` DLQ:
//! read with `XRANGE` (no group, nothing consumed); the ones to remove are
//! deleted with `XDEL`.

use super::reply::entries;
use crate::dlq::DeadLetterQueue;
use crate::redis::{client, connect_at_start, StreamSinkConfig};
use crate::ConnectError;
use sluice_core::Message;

/// Entries fetched per `XRANGE`, and ids per `XDEL`.
const PAGE: usize = 500;

/// The stream a sink `name` with config `c` writes to, opened.
///
/// # Errors
/// Redis cannot be reached.
pub(crate) async fn open_dlq(
    c: &StreamSinkConfig,
    name: &str,
) -> Result<Box<dyn DeadLetterQueue>, ConnectError> {
    let stream = c.stream.clone().unwrap_or_else(|| name.to_string());
    let what = format!("redis-stream `{stream}`");
    let client = client(&what, &c.endpoint())?;
    let timeout = c.connect_timeout.0;
    let conn = connect_at_start(&what, &client, &c.url, timeout, Some(timeout)).await?;
    Ok(Box::new(StreamDlq {
        what,
        stream,
        config: c.clone(),
        conn,
        ids: Vec::new(),
    }))
}

struct StreamDlq {
    what: String,
    stream: String,
    config: StreamSinkConfig,
    conn: redis::aio::MultiplexedConnection,
    /// The id of each entry taken.
    ids: Vec<String>,
}

#[async_trait::async_trait]
impl DeadLetterQueue for StreamDlq {
    async fn take(&mut self, limit: usize) -> Result<Vec<(String, Message)>, ConnectError> {
        let mut read = Vec::new();
        let mut from = "-".to_string();
        while read.len() < limit {
            let reply: redis::Value = redis::cmd("XRANGE")
                .arg(&self.stream)
                .arg(&from)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE.min(limit - read.len()))
                .query_async(&mut self.conn)
                .await
                .map_err(|e| {
                    ConnectError::Unreachable(format!("{}: XRANGE failed: {e}", self.what))
                })?;
            let page = entries(reply);
            let Some(last) = page.last() else { break };
            from = format!("({}", last.id);
            for entry in page {
                let at = format!("stream={} id={}", self.stream, entry.id);
                self.ids.push(entry.id.clone());
                let c = &self.config;
                let (message, _) = entry.into_message(&c.payload_field, &c.key_field, &self.stream);
                read.push((at, message));
            }
        }
        Ok(read)
    }

    async fn finish(mut self: Box<Self>, remove: &[usize]) -> Result<(), ConnectError> {
        let ids: Vec<&String> = remove.iter().filter_map(|i| self.ids.get(*i)).collect();
        for chunk in ids.chunks(PAGE) {
            redis::cmd("XDEL")
                .arg(&self.stream)
                .arg(chunk)
                .query_async::<u64>(&mut self.conn)
                .await
                .map_err(|e| {
                    ConnectError::Unreachable(format!(
                        "{}: cannot remove replayed entries (XDEL): {e}",
                        self.what
                    ))
                })?;
        }
        Ok(())
    }
}
