//! The `redis-stream` source: `XREADGROUP` in a consumer group, first its
//! own pending list, then new entries; `XAUTOCLAIM` of entries another
//! consumer left idle; acks handed to [`super::acks`].

use super::acks::ack_task;
use super::held::Held;
use super::reply::{claim_reply, read_reply, Entry};
use super::retry;
use crate::redis::{client, connect, connect_at_start, Start, StreamSourceConfig};
use crate::settle::{drained, ChannelAcker, Settled};
use crate::{ConnectError, RECONNECT};
use redis::Value;
use sluice_core::stats::{SourceLag, LAG_EVERY};
use sluice_core::{AckHandle, Coordinates, Delivery, Refusal, Source, SourceError};
use sluice_core::{Health, Shutdown};
use sluice_core::{Outbox, ReadAhead};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub(crate) struct StreamSource {
    client: redis::Client,
    conn: Option<redis::aio::MultiplexedConnection>,
    config: StreamSourceConfig,
    consumer: String,
    held: Held,
    lag: Option<Arc<SourceLag>>,
    health: Health,
    /// The reader of the retry stream, when retries go through Redis.
    retries: Option<Box<StreamSource>>,
    /// How many entries a read asks for (`COUNT`), by the budget's room.
    ahead: ReadAhead,
}

impl StreamSource {
    pub(crate) async fn connect(c: &StreamSourceConfig) -> Result<Self, ConnectError> {
        Self::open(c, true).await
    }

    /// Connect; with `read_retries`, also a reader of `c.retry_stream` (a
    /// source on it that appends its own failed retries to it again).
    async fn open(c: &StreamSourceConfig, read_retries: bool) -> Result<Self, ConnectError> {
        let client = client("redis-stream source", &c.endpoint())?;
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
            ahead: ReadAhead::new(c.count),
            retries: None,
        };
        source.ensure_group().await.map_err(|e| {
            ConnectError::Unreachable(format!(
                "redis-stream source: cannot create group `{}` on `{}`: {e}",
                c.group, c.stream
            ))
        })?;
        if let Some(retry_stream) = c.retry_stream.as_ref().filter(|_| read_retries) {
            let on_retries = StreamSourceConfig {
                stream: retry_stream.clone(),
                ..c.clone()
            };
            let reader = Box::pin(StreamSource::open(&on_retries, false)).await?;
            source.retries = Some(Box::new(reader));
        }
        Ok(source)
    }

    /// Entries one read takes at most.
    pub(super) fn batch(&self) -> usize {
        self.config.count.max(1)
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
    async fn read(&mut self, from: &str, count: usize) -> redis::RedisResult<Vec<Entry>> {
        let Some(conn) = &mut self.conn else {
            return Ok(Vec::new());
        };
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
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

    /// XAUTOCLAIM entries idle longer than `claim_idle`: pages of `count`
    /// until `count` are claimed, ten pages at most.
    async fn claim(&mut self, count: usize) -> redis::RedisResult<Vec<Entry>> {
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
                .arg(count - claimed.len())
                .query_async(conn)
                .await?;
            let (next, entries) = claim_reply(reply);
            claimed.extend(entries);
            match next {
                Some(next) if next != "0-0" && claimed.len() < count => cursor = next,
                _ => break,
            }
        }
        Ok(claimed)
    }

    fn delivery(&self, entry: Entry, acks: &mpsc::UnboundedSender<Settled<String>>) -> Delivery {
        let c = &self.config;
        let id = entry.id.clone();
        let (message, has_payload) = entry.into_message(&c.payload_field, &c.key_field, &c.stream);
        let decode_error =
            (!has_payload).then(|| format!("stream entry has no `{}` field", c.payload_field));
        let coordinates = Coordinates::default()
            .with("stream", &c.stream)
            .with("id", &id);
        let acker = ChannelAcker::new(id, acks);
        let mut delivery = Delivery::new(message, coordinates, AckHandle::new(acker));
        delivery.refused = decode_error.map(Refusal::decode);
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

    fn republishes_retries(&self) -> bool {
        self.config.retry_stream.is_some()
    }

    async fn run(mut self: Box<Self>, out: Outbox, shutdown: Shutdown) -> Result<(), SourceError> {
        let retrying = self
            .retries
            .take()
            .map(|reader| tokio::spawn(retry::run(*reader, out.clone(), shutdown.clone())));
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
            self.held.begin_read();
            let mut entries = Vec::new();
            if last_claim.elapsed() >= claim_every {
                last_claim = Instant::now();
                match self.claim(self.ahead.count(out.room())).await {
                    Ok(claimed) => entries = claimed,
                    Err(e) => {
                        self.held.end_read();
                        self.failed(e, "XAUTOCLAIM");
                        continue;
                    }
                }
            }
            let from = own_pending.clone().unwrap_or_else(|| ">".into());
            match self.read(&from, self.ahead.count(out.room())).await {
                Ok(read) => {
                    if own_pending.is_some() {
                        own_pending = read.last().map(|e| e.id.clone());
                    }
                    entries.extend(read);
                }
                Err(e) => {
                    self.held.end_read();
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
            // Skips what is in the pipeline already (or was acked meanwhile).
            let mut taken = self.held.take(entries, |e| e.id.as_str()).into_iter();
            while let Some(entry) = taken.next() {
                let delivery = self.delivery(entry, &acks);
                self.ahead.seen(delivery.message.size());
                // A delivery left unsent releases itself when dropped.
                let sent = tokio::select! {
                    sent = out.send(delivery) => sent.is_ok(),
                    _ = shutdown.cancelled() => false,
                };
                if !sent {
                    for entry in taken {
                        self.held.release(&entry.id);
                    }
                    break 'taking;
                }
            }
        }
        // Drain: let the pipeline finish what it holds, so it gets acked.
        drained(shutdown.drain_deadline(), || self.held.len() > 0).await;
        drop(acks);
        let _ = tokio::time::timeout(Duration::from_secs(5), acker).await;
        let unfinished = self.held.len();
        if unfinished > 0 {
            tracing::warn!(source = %self.name(), unfinished, "stopping with unacked entries; they stay pending and are claimed later");
        }
        match retrying {
            Some(task) => match task.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Ok(()),
            },
            None => Ok(()),
        }
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
