//! The RabbitMQ source: one consumer on one channel, manual acks.
//!
//! Acks and nacks are asynchronous in lapin; deliveries' [`Acker`]s send
//! them to a task that sends whatever is waiting together. After a lost
//! connection the source reconnects with backoff and declares its topology
//! again; the broker redelivers whatever was unacked on the old channel
//! (acks for those, arriving later, fail harmlessly).
//!
//! In a pipeline that retries through the broker, the ack task also
//! republishes retries to delay queues ([`super::retry`]) and acks the
//! original once that publish is confirmed; a delivery's `x-retry-count`
//! header sets its `attempt`.
//!
//! RabbitMQ's prefetch counts messages, and a consumer's prefetch is fixed
//! when it starts: while the pipeline's byte budget is used up the source
//! stops taking deliveries, and the broker stops at `prefetch` unacked, so
//! what waits in the client is at most `prefetch` messages beyond the
//! budget. (Restarting the consumer with a credit sized to the budget was
//! tried: RabbitMQ 3.10 crashed the channel, `function_clause` in
//! `rabbit_channel:handle_deliver0`, when a quorum queue delivered to the
//! cancelled consumer's tag.)

use super::retry::{attempt_from, Republisher, RETRY_COUNT_HEADER};
use super::{
    arguments, connect, connect_at_start, header_bytes, header_type, AmqpSourceConfig, KEY_HEADER,
};
use crate::settle::{drained, ChannelAcker, Settled};
use crate::{ConnectError, RECONNECT};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};
use sluice_core::stats::{SourceLag, LAG_EVERY};
use sluice_core::Outbox;
use sluice_core::{AckHandle, Coordinates, Delivery, Message, Source, SourceError};
use sluice_core::{Health, Shutdown};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long each step of closing may take at shutdown.
const CLOSE: Duration = Duration::from_secs(5);

pub(super) struct AmqpSource {
    config: AmqpSourceConfig,
    conn: Option<lapin::Connection>,
    tag: String,
    lag: Option<Arc<SourceLag>>,
    health: Health,
}

impl AmqpSource {
    pub(super) async fn connect(c: &AmqpSourceConfig) -> Result<Self, ConnectError> {
        let conn = connect_at_start("rabbitmq source", &c.endpoint(), c.connect_timeout.0).await?;
        let tag = format!("sluice-{}", std::process::id());
        Ok(AmqpSource {
            config: c.clone(),
            conn: Some(conn),
            tag,
            lag: None,
            health: Health::new(format!("rabbitmq:{}", c.queue)),
        })
    }

    fn name(&self) -> String {
        format!("rabbitmq:{}", self.config.queue)
    }

    /// Channel, QoS, queue, bindings, consumer.
    async fn consume(&self, conn: &lapin::Connection) -> lapin::Result<(Channel, lapin::Consumer)> {
        let c = &self.config;
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(c.prefetch, BasicQosOptions::default())
            .await?;
        let options = QueueDeclareOptions {
            passive: !c.declare,
            durable: c.durable,
            exclusive: c.exclusive,
            auto_delete: c.auto_delete,
            nowait: false,
        };
        channel
            .queue_declare(c.queue.as_str().into(), options, arguments(&c.arguments))
            .await?;
        for b in &c.bindings {
            if let Some(kind) = &b.exchange_type {
                let kind = match kind.as_str() {
                    "fanout" => ExchangeKind::Fanout,
                    "topic" => ExchangeKind::Topic,
                    "headers" => ExchangeKind::Headers,
                    _ => ExchangeKind::Direct,
                };
                let options = ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                channel
                    .exchange_declare(
                        b.exchange.as_str().into(),
                        kind,
                        options,
                        FieldTable::default(),
                    )
                    .await?;
            }
            channel
                .queue_bind(
                    c.queue.as_str().into(),
                    b.exchange.as_str().into(),
                    b.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let consumer = channel
            .basic_consume(
                c.queue.as_str().into(),
                self.tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }

    fn delivery(
        &self,
        d: lapin::message::Delivery,
        acks: &mpsc::UnboundedSender<Settled<lapin::Acker>>,
        held: &Arc<AtomicUsize>,
    ) -> Delivery {
        let message = message_of(&d.properties, d.data, &self.config.queue);
        let coordinates = Coordinates::default()
            .with("queue", &self.config.queue)
            .with("delivery-tag", d.delivery_tag)
            .with("exchange", d.exchange.as_str())
            .with("routing-key", d.routing_key.as_str())
            .with("redelivered", d.redelivered);
        held.fetch_add(1, Ordering::SeqCst);
        let acker = ChannelAcker::new(d.acker, acks);
        Delivery::new(message, coordinates, AckHandle::new(acker))
    }
}

#[async_trait::async_trait]
impl Source for AmqpSource {
    fn describe(&self) -> String {
        self.name()
    }

    fn republishes_retries(&self) -> bool {
        true
    }

    fn report_lag(&mut self, lag: Arc<SourceLag>) {
        self.lag = Some(lag);
    }

    fn health(&self) -> Option<Health> {
        Some(self.health.clone())
    }

    async fn run(mut self: Box<Self>, out: Outbox, shutdown: Shutdown) -> Result<(), SourceError> {
        let held = Arc::new(AtomicUsize::new(0));
        let (acks, settled) = mpsc::unbounded_channel();
        let republisher = Republisher::new(
            self.config.endpoint(),
            self.config.connect_timeout.0,
            &self.config.queue,
        );
        let acker = tokio::spawn(ack_task(
            self.name(),
            settled,
            held.clone(),
            self.config.requeue,
            republisher,
        ));
        let mut attempt = 0;
        let mut channel: Option<Channel> = None;
        'running: while !shutdown.is_cancelled() {
            let conn = match self.conn.take() {
                Some(conn) if conn.status().connected() => conn,
                _ => {
                    attempt += 1;
                    let delay = RECONNECT.delay(attempt);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    match connect(&self.config.endpoint(), self.config.connect_timeout.0).await {
                        Ok(conn) => conn,
                        Err(e) => {
                            tracing::warn!(source = %self.name(), error = %e, ?delay, "RabbitMQ unreachable; retrying");
                            self.health.down(&e);
                            continue;
                        }
                    }
                }
            };
            // Bounded like every channel call here (see the depth probe below).
            let setup = match tokio::time::timeout(2 * CLOSE, self.consume(&conn)).await {
                Ok(done) => done.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {:?}", 2 * CLOSE)),
            };
            let (ch, mut consumer) = match setup {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(source = %self.name(), error = %e, "cannot set up the queue and consumer; retrying");
                    self.health
                        .down(format_args!("cannot set up the queue and consumer: {e}"));
                    attempt += 1;
                    continue; // drops the connection; the next round reconnects
                }
            };
            if attempt > 0 {
                tracing::info!(source = %self.name(), "reconnected to RabbitMQ; unacked deliveries are redelivered");
            }
            attempt = 0;
            self.health.up();
            let probe = ch.clone();
            channel = Some(ch);
            self.conn = Some(conn);
            let mut lag_tick = tokio::time::interval(LAG_EVERY);
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break 'running,
                    next = consumer.next() => next,
                    _ = lag_tick.tick(), if self.lag.is_some() => {
                        // The queue's ready messages, from a passive declare.
                        // Bounded: this await holds up the consume loop, and
                        // lapin can leave a call on a dying channel pending
                        // forever; a channel that does not answer is replaced.
                        let options = QueueDeclareOptions { passive: true, ..Default::default() };
                        let declare = probe.queue_declare(self.config.queue.as_str().into(), options, FieldTable::default());
                        match tokio::time::timeout(CLOSE, declare).await {
                            Ok(Ok(q)) => if let Some(lag) = &self.lag { lag.set(u64::from(q.message_count())) },
                            Ok(Err(e)) => tracing::debug!(source = %self.name(), error = %e, "queue depth probe failed"),
                            Err(_) => {
                                tracing::warn!(source = %self.name(), "channel does not answer (queue depth probe, {CLOSE:?}); reconnecting");
                                self.health.down(format_args!("channel does not answer within {CLOSE:?}"));
                                break;
                            }
                        }
                        tracing::debug!(source = %self.name(), "lag probe answered");
                        continue;
                    }
                };
                let d = match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => {
                        tracing::warn!(source = %self.name(), error = %e, "consumer failed; reconnecting");
                        self.health.down(format_args!("consumer failed: {e}"));
                        break;
                    }
                    None => {
                        tracing::warn!(source = %self.name(), "consumer cancelled by the broker; reconnecting");
                        self.health.down("consumer cancelled by the broker");
                        break;
                    }
                };
                tracing::debug!(source = %self.name(), tag = d.delivery_tag, redelivered = d.redelivered, "delivery received");
                let delivery = self.delivery(d, &acks, &held);
                tokio::select! {
                    sent = out.send(delivery) => if sent.is_err() { break 'running },
                    _ = shutdown.cancelled() => break 'running,
                }
            }
            self.conn = None;
        }
        // Stop the flow, let the pipeline finish (bounded), then close. Every
        // step is bounded: a close lapin never finishes (seen once in the
        // benchmark) must not hang the daemon's shutdown.
        if let Some(ch) = &channel {
            let _ = tokio::time::timeout(
                CLOSE,
                ch.basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default()),
            )
            .await;
        }
        drained(shutdown.drain_deadline(), || {
            held.load(Ordering::SeqCst) > 0
        })
        .await;
        drop(acks);
        let _ = tokio::time::timeout(CLOSE, acker).await;
        if let Some(conn) = self.conn.take() {
            if tokio::time::timeout(CLOSE, conn.close(200, "sluice stopping".into()))
                .await
                .is_err()
            {
                tracing::warn!(source = %self.name(), "closing the RabbitMQ connection did not finish in {CLOSE:?}; dropping it");
            }
        }
        Ok(())
    }
}

/// The most settles the ack task takes at once.
const SETTLE_BATCH: usize = 1024;

/// Perform acks, nacks and retries. Acks and nacks that are waiting are
/// sent together: each is a frame lapin's I/O loop writes, and awaiting
/// them one by one cost a wake-up of that loop each (the relay bench's
/// RabbitMQ gap, about 0.8× a plain lapin relay at prefetch 100). Retries
/// publish to a delay queue and wait for its confirm: one at a time, after
/// the acks of their batch.
async fn ack_task(
    name: String,
    mut settled: mpsc::UnboundedReceiver<Settled<lapin::Acker>>,
    held: Arc<AtomicUsize>,
    requeue: bool,
    mut republisher: Republisher,
) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    while settled.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        let n = batch.len();
        let mut retries = Vec::new();
        let mut frames = Vec::with_capacity(n);
        for s in batch.drain(..) {
            match s {
                Settled::Done(a) => frames.push(Frame::Ack(a)),
                Settled::Released(a) => frames.push(Frame::Nack(a, requeue)),
                Settled::Later(a, later) => retries.push((a, later)),
            }
        }
        // Each wait is bounded: lapin does not always finish an ack on a
        // connection that died (seen after a broker restart), and one stuck
        // ack would hold back every later one, so that the broker, seeing
        // `prefetch` deliveries unacked, stops delivering. An ack given up
        // on is harmless: that delivery's channel is gone and the broker
        // redelivers it.
        let sent = futures::future::join_all(frames.into_iter().map(Frame::send));
        settle_within(&name, CLOSE, sent).await;
        for (a, later) in retries {
            // A retry includes a publish and its confirm (and maybe a connect).
            let retry = async {
                match republisher.republish(&later).await {
                    Ok(queue) => {
                        tracing::debug!(source = %name, %queue, attempt = later.attempt, "retry published to the delay queue");
                        vec![a.ack(BasicAckOptions::default()).await]
                    }
                    Err(e) => {
                        // Nothing lost: requeued, it comes back at once as the same attempt.
                        tracing::warn!(source = %name, error = %e, "cannot publish the retry; requeueing the delivery instead");
                        vec![Frame::Nack(a, true).send().await]
                    }
                }
            };
            settle_within(&name, CLOSE * 12, retry).await;
        }
        held.fetch_sub(n, Ordering::SeqCst);
    }
}

/// One ack or nack for the ack task to send.
enum Frame {
    Ack(lapin::Acker),
    /// With `requeue`.
    Nack(lapin::Acker, bool),
}

impl Frame {
    async fn send(self) -> lapin::Result<bool> {
        match self {
            Frame::Ack(a) => a.ack(BasicAckOptions::default()).await,
            Frame::Nack(a, requeue) => {
                a.nack(BasicNackOptions {
                    requeue,
                    ..Default::default()
                })
                .await
            }
        }
    }
}

/// Wait up to `bound` for settles to be sent; log what did not finish or
/// failed (the broker redelivers those messages).
async fn settle_within(
    name: &str,
    bound: Duration,
    settles: impl std::future::Future<Output = Vec<lapin::Result<bool>>>,
) {
    let started = std::time::Instant::now();
    match tokio::time::timeout(bound, settles).await {
        Ok(results) => {
            tracing::debug!(source = %name, took = ?started.elapsed(), settles = results.len(), "settles sent");
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                // The channel they came on is gone: the broker redelivers them.
                tracing::debug!(source = %name, error = %e, "ack on a closed channel; the broker redelivers that message");
            }
        }
        Err(_) => {
            tracing::warn!(source = %name, "acks did not finish in {bound:?} (dead channel?); the broker redelivers those messages");
        }
    }
}

/// A delivery's body and properties as a message: headers in table order
/// (the key from [`KEY_HEADER`]), the attempt from `x-retry-count`, the
/// timestamp in milliseconds.
pub(super) fn message_of(properties: &BasicProperties, data: Vec<u8>, queue: &str) -> Message {
    let mut key = None;
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let mut header_types = Vec::new();
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            if name.as_str() == KEY_HEADER && key.is_none() {
                key = Some(header_bytes(value));
            } else {
                headers.push((name.as_str().to_string(), header_bytes(value)));
                if let Some(t) = header_type(value) {
                    header_types.push((name.as_str().to_string(), t));
                }
            }
        }
    }
    let attempt = attempt_from(
        headers
            .iter()
            .find(|(n, _)| n == RETRY_COUNT_HEADER)
            .map(|(_, v)| v.as_slice()),
    );
    Message {
        key,
        payload: data,
        headers,
        source: queue.to_owned(),
        timestamp_ms: properties.timestamp().map(|secs| secs.saturating_mul(1000)),
        attempt,
        header_types,
    }
}
