//! Redis streams: a consumer-group source and an `XADD` sink.
//!
//! The source reads with `XREADGROUP … >`, first re-reading its own pending
//! list (entries it read before a restart or a lost connection but never
//! acked). Acks go to a task that batches them into `XACK`. Every
//! `claim_idle / 2` it runs `XAUTOCLAIM` to take over entries that another
//! (crashed) consumer of the group left pending longer than `claim_idle`.
//! Entries this process already holds are never handed out twice.

use super::writer::Writer;
use super::{client, connect, connect_at_start, Start, StreamSinkConfig, StreamSourceConfig};
use crate::settle::{drained, ChannelAcker, Settled};
use crate::{ConnectError, RECONNECT};
use redis::Value;
use sluice_core::stats::{SourceLag, LAG_EVERY};
use sluice_core::{
    AckHandle, Confirm, Coordinates, Delivery, Message, Sink, SinkError, Source, SourceError,
};
use sluice_core::{Health, Shutdown};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Most ids in one XACK.
const ACK_BATCH: usize = 1000;

/// Entry ids handed to the engine and not yet acked or released.
type Held = Arc<Mutex<HashSet<String>>>;

fn lock(held: &Held) -> MutexGuard<'_, HashSet<String>> {
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One stream entry: id and fields in order.
#[derive(Debug, PartialEq)]
struct Entry {
    id: String,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(super) struct StreamSource {
    client: redis::Client,
    conn: Option<redis::aio::MultiplexedConnection>,
    config: StreamSourceConfig,
    consumer: String,
    held: Held,
    lag: Option<Arc<SourceLag>>,
    health: Health,
}

impl StreamSource {
    pub(super) async fn connect(c: &StreamSourceConfig) -> Result<Self, ConnectError> {
        let client = client("redis-stream source", &c.url)?;
        let conn = connect_at_start(
            "redis-stream source",
            &client,
            &c.url,
            c.connect_timeout.0,
            Some(read_timeout(c)),
        )
        .await?;
        let consumer = c.consumer.clone().unwrap_or_else(default_consumer);
        let mut source = StreamSource {
            client,
            conn: Some(conn),
            config: c.clone(),
            consumer,
            held: Held::default(),
            lag: None,
            health: Health::new(format!("redis-stream:{}", c.stream)),
        };
        source.ensure_group().await.map_err(|e| {
            ConnectError::Unreachable(format!(
                "redis-stream source: cannot create group `{}` on `{}`: {e}",
                c.group, c.stream
            ))
        })?;
        Ok(source)
    }

    fn name(&self) -> String {
        format!("redis-stream:{}", self.config.stream)
    }

    /// `XGROUP CREATE … MKSTREAM`; an existing group is fine.
    async fn ensure_group(&mut self) -> redis::RedisResult<()> {
        let Some(conn) = &mut self.conn else {
            return Ok(());
        };
        let start = match self.config.start {
            Start::Earliest => "0",
            Start::Latest => "$",
        };
        let created = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(start)
            .arg("MKSTREAM")
            .query_async::<()>(conn)
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// A connection, reconnecting with backoff until one works or shutdown.
    async fn reconnect(&mut self, shutdown: &Shutdown) -> bool {
        let mut attempt = 0;
        while self.conn.is_none() {
            attempt += 1;
            let delay = RECONNECT.delay(attempt);
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
            match connect(
                &self.client,
                self.config.connect_timeout.0,
                Some(read_timeout(&self.config)),
            )
            .await
            {
                Ok(conn) => {
                    self.conn = Some(conn);
                    if let Err(e) = self.ensure_group().await {
                        tracing::warn!(source = %self.name(), error = %e, "cannot recreate the consumer group");
                        self.health
                            .down(format_args!("cannot recreate the consumer group: {e}"));
                        self.conn = None;
                    } else {
                        tracing::info!(source = %self.name(), "reconnected to Redis");
                        self.health.up();
                    }
                }
                Err(e) => {
                    tracing::warn!(source = %self.name(), error = %e, ?delay, "Redis unreachable; retrying");
                    self.health.down(&e);
                }
            }
        }
        true
    }

    /// XREADGROUP from `from` (`>` for new entries, an id for our pending list).
    async fn read(&mut self, from: &str) -> redis::RedisResult<Vec<Entry>> {
        let Some(conn) = &mut self.conn else {
            return Ok(Vec::new());
        };
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.config.count)
            .arg("BLOCK")
            .arg(self.config.block.0.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.config.stream)
            .arg(from)
            .query_async(conn)
            .await?;
        Ok(read_reply(reply))
    }

    /// The group's `lag` from `XINFO GROUPS` (entries not yet read; Redis 7
    /// and later), into the lag gauge.
    async fn probe_lag(&mut self) {
        let (Some(conn), Some(lag)) = (&mut self.conn, &self.lag) else {
            return;
        };
        let groups: redis::RedisResult<Vec<std::collections::HashMap<String, Value>>> =
            redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&self.config.stream)
                .query_async(conn)
                .await;
        let Ok(groups) = groups else { return };
        let ours = groups.iter().find(|g| {
            g.get("name")
                .and_then(|n| redis::from_redis_value::<String>(n.clone()).ok())
                .as_deref()
                == Some(&self.config.group)
        });
        if let Some(n) = ours
            .and_then(|g| g.get("lag"))
            .and_then(|v| redis::from_redis_value::<u64>(v.clone()).ok())
        {
            lag.set(n);
        }
    }

    /// XAUTOCLAIM entries idle longer than `claim_idle`, a few pages at most.
    async fn claim(&mut self) -> redis::RedisResult<Vec<Entry>> {
        let Some(conn) = &mut self.conn else {
            return Ok(Vec::new());
        };
        let mut cursor = "0-0".to_string();
        let mut claimed = Vec::new();
        for _ in 0..10 {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(&self.consumer)
                .arg(self.config.claim_idle.0.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(self.config.count)
                .query_async(conn)
                .await?;
            let (next, entries) = claim_reply(reply);
            claimed.extend(entries);
            match next {
                Some(next) if next != "0-0" => cursor = next,
                _ => break,
            }
        }
        Ok(claimed)
    }

    fn delivery(&self, entry: Entry, acks: &mpsc::UnboundedSender<Settled<String>>) -> Delivery {
        let c = &self.config;
        let mut payload = None;
        let mut key = None;
        let mut headers = Vec::new();
        for (field, value) in entry.fields {
            if payload.is_none() && field == c.payload_field.as_bytes() {
                payload = Some(value);
            } else if key.is_none() && field == c.key_field.as_bytes() {
                key = Some(value);
            } else {
                headers.push((String::from_utf8_lossy(&field).into_owned(), value));
            }
        }
        let timestamp_ms = entry.id.split('-').next().and_then(|ms| ms.parse().ok());
        let decode_error = payload
            .is_none()
            .then(|| format!("stream entry has no `{}` field", c.payload_field));
        let message = Message {
            key,
            payload: payload.unwrap_or_default(),
            headers,
            source: c.stream.clone(),
            timestamp_ms,
            attempt: 1,
        };
        let coordinates = Coordinates::default()
            .with("stream", &c.stream)
            .with("id", &entry.id);
        let acker = ChannelAcker::new(entry.id, acks);
        let mut delivery = Delivery::new(message, coordinates, AckHandle::new(acker));
        delivery.decode_error = decode_error;
        delivery
    }
}

#[async_trait::async_trait]
impl Source for StreamSource {
    fn describe(&self) -> String {
        self.name()
    }

    fn report_lag(&mut self, lag: Arc<SourceLag>) {
        self.lag = Some(lag);
    }

    fn health(&self) -> Option<Health> {
        Some(self.health.clone())
    }

    async fn run(
        mut self: Box<Self>,
        out: mpsc::Sender<Delivery>,
        shutdown: Shutdown,
    ) -> Result<(), SourceError> {
        let (acks, settled) = mpsc::unbounded_channel();
        let acker = tokio::spawn(ack_task(
            self.name(),
            self.client.clone(),
            self.config.clone(),
            self.held.clone(),
            settled,
        ));
        let claim_every = (self.config.claim_idle.0 / 2).max(Duration::from_millis(100));
        let mut last_claim = Instant::now();
        let mut last_lag = Instant::now() - LAG_EVERY;
        // Start by re-reading our own pending list (ids from "0" on).
        let mut own_pending = Some("0".to_string());
        'taking: while !shutdown.is_cancelled() {
            if !self.reconnect(&shutdown).await {
                break;
            }
            if last_lag.elapsed() >= LAG_EVERY {
                last_lag = Instant::now();
                self.probe_lag().await;
            }
            let mut entries = Vec::new();
            if last_claim.elapsed() >= claim_every {
                last_claim = Instant::now();
                match self.claim().await {
                    Ok(claimed) => entries = claimed,
                    Err(e) => {
                        self.failed(e, "XAUTOCLAIM");
                        continue;
                    }
                }
            }
            let from = own_pending.clone().unwrap_or_else(|| ">".into());
            match self.read(&from).await {
                Ok(read) => {
                    if own_pending.is_some() {
                        own_pending = read.last().map(|e| e.id.clone());
                    }
                    entries.extend(read);
                }
                Err(e) => {
                    if e.code() == Some("NOGROUP") {
                        tracing::warn!(source = %self.name(), "consumer group vanished (server restarted?); recreating it");
                        let _ = self.ensure_group().await;
                    } else {
                        self.failed(e, "XREADGROUP");
                    }
                    // Whatever a lost reply held is in our pending list now.
                    own_pending = Some("0".into());
                    continue;
                }
            }
            for entry in entries {
                if !lock(&self.held).insert(entry.id.clone()) {
                    continue; // already in the pipeline
                }
                let delivery = self.delivery(entry, &acks);
                tokio::select! {
                    sent = out.send(delivery) => if sent.is_err() { break 'taking },
                    _ = shutdown.cancelled() => break 'taking,
                }
            }
        }
        // Drain: let the pipeline finish what it holds, so it gets acked.
        drained(shutdown.drain_deadline(), || !lock(&self.held).is_empty()).await;
        drop(acks);
        let _ = tokio::time::timeout(Duration::from_secs(5), acker).await;
        let unfinished = lock(&self.held).len();
        if unfinished > 0 {
            tracing::warn!(source = %self.name(), unfinished, "stopping with unacked entries; they stay pending and are claimed later");
        }
        Ok(())
    }
}

impl StreamSource {
    fn failed(&mut self, e: redis::RedisError, what: &str) {
        tracing::warn!(source = %self.name(), error = %e, "{what} failed");
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
        {
            self.conn = None;
            self.health.down(format_args!("{what} failed: {e}"));
        }
    }
}

/// Batch acks into XACK; keep retrying through a lost connection.
async fn ack_task(
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
                Settled::Released(id) | Settled::Later(id, _) => {
                    lock(&held).remove(&id);
                }
            }
        }
        let mut attempt = 0;
        while !ids.is_empty() {
            if conn.is_none() {
                conn = connect(
                    &client,
                    config.connect_timeout.0,
                    Some(config.connect_timeout.0),
                )
                .await
                .ok();
            }
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
                    let mut held = lock(&held);
                    for id in ids.drain(..) {
                        held.remove(&id);
                    }
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
                    let mut held = lock(&held);
                    for id in ids.drain(..) {
                        held.remove(&id);
                    }
                }
            }
        }
    }
}

/// A blocking read answers within BLOCK; allow the connect timeout on top
/// before calling the connection dead.
fn read_timeout(c: &StreamSourceConfig) -> Duration {
    c.block.0 + c.connect_timeout.0
}

/// The consumer name when none is configured: `HOST-PID`.
fn default_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "sluice".into());
    format!("{host}-{}", std::process::id())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn bytes(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(n) => n.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

/// Entries from `[[id, [field, value, …]], …]`; entries whose fields are
/// nil (deleted while pending) are skipped.
fn entries(v: Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut pair) = item else {
                return None;
            };
            if pair.len() != 2 {
                return None;
            }
            let fields = pair.pop()?;
            let id = text(&pair[0])?;
            let Value::Array(flat) = fields else {
                return None;
            };
            let mut flat = flat.into_iter();
            let mut fields = Vec::new();
            while let (Some(f), Some(v)) = (flat.next(), flat.next()) {
                fields.push((bytes(f), bytes(v)));
            }
            Some(Entry { id, fields })
        })
        .collect()
}

/// XREADGROUP's reply: nil, or `[[stream, entries]]` (RESP2) / a map (RESP3).
fn read_reply(v: Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => {
                    entries(pair.pop().unwrap_or(Value::Nil))
                }
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, e)| entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// XAUTOCLAIM's reply: `[next-cursor, entries, deleted-ids]`.
fn claim_reply(v: Value) -> (Option<String>, Vec<Entry>) {
    let Value::Array(mut parts) = v else {
        return (None, Vec::new());
    };
    if parts.len() < 2 {
        return (None, Vec::new());
    }
    let claimed = parts.swap_remove(1);
    (text(&parts[0]), entries(claimed))
}

/// `XADD stream [MAXLEN ~ n] * payload P [key K] [header value]…`
pub(super) struct StreamSink {
    writer: Writer,
    stream: String,
    config: StreamSinkConfig,
}

impl StreamSink {
    pub(super) async fn connect(c: &StreamSinkConfig, name: &str) -> Result<Self, ConnectError> {
        let stream = c.stream.clone().unwrap_or_else(|| name.to_string());
        let what = format!("redis-stream sink `{stream}`");
        let client = client(&what, &c.url)?;
        let timeout = c.connect_timeout.0;
        let conn = connect_at_start(&what, &client, &c.url, timeout, Some(timeout)).await?;
        let writer = Writer::start(format!("redis-stream:{stream}"), client, conn, timeout);
        Ok(StreamSink {
            writer,
            stream,
            config: c.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Sink for StreamSink {
    fn describe(&self) -> String {
        format!("redis-stream:{}", self.stream)
    }

    fn health(&self) -> Option<Health> {
        Some(self.writer.health())
    }

    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream);
        if let Some(n) = self.config.maxlen {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*")
            .arg(&self.config.payload_field)
            .arg(&msg.payload);
        if let Some(key) = &msg.key {
            cmd.arg(&self.config.key_field).arg(key);
        }
        for (name, value) in &msg.headers {
            cmd.arg(name).arg(value);
        }
        self.writer.send(cmd).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.writer.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_a_read_reply_keeping_field_order_and_repeats() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("orders"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![
                        bulk("payload"),
                        bulk("{}"),
                        bulk("h"),
                        bulk("1"),
                        bulk("h"),
                        bulk("2"),
                    ]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let got = read_reply(reply);
        assert_eq!(got.len(), 1, "a deleted entry is skipped");
        assert_eq!(got[0].id, "1-0");
        assert_eq!(got[0].fields.len(), 3);
        assert_eq!(got[0].fields[2], (b"h".to_vec(), b"2".to_vec()));
        assert!(read_reply(Value::Nil).is_empty());
    }

    #[test]
    fn parses_a_claim_reply() {
        let reply = Value::Array(vec![
            bulk("5-0"),
            Value::Array(vec![Value::Array(vec![
                bulk("3-0"),
                Value::Array(vec![bulk("payload"), bulk("x")]),
            ])]),
            Value::Array(vec![]),
        ]);
        let (next, got) = claim_reply(reply);
        assert_eq!(next.as_deref(), Some("5-0"));
        assert_eq!(
            got,
            vec![Entry {
                id: "3-0".into(),
                fields: vec![(b"payload".to_vec(), b"x".to_vec())]
            }]
        );
    }
}
