//! The Kafka sink: an idempotent `acks=all` producer. `publish` enqueues
//! the record in librdkafka (in call order, so per-partition order holds)
//! and returns its delivery report as the [`Confirm`].

use super::{log_rdkafka, reach, Connection};
use crate::ConnectError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, ClientContext};
use sluice_core::{Confirm, Health, Message, Sink, SinkError};
use std::sync::Arc;
use std::time::Duration;

/// How long `flush` waits for outstanding delivery reports.
const FLUSH: Duration = Duration::from_secs(30);

pub(super) struct KafkaSink {
    producer: Arc<FutureProducer<LogContext>>,
    topic: String,
    name: String,
    health: Health,
}

impl KafkaSink {
    pub(super) async fn connect(
        config: ClientConfig,
        brokers: &str,
        topic: String,
        timeout: Duration,
    ) -> Result<Self, ConnectError> {
        let name = format!("kafka:{topic}");
        let connection = Connection::new(&name);
        let health = connection.health();
        let connection = Arc::new(connection);
        let producer: FutureProducer<LogContext> = config
            .create_with_context(LogContext {
                name: name.clone(),
                connection: connection.clone(),
            })
            .map_err(|e| ConnectError::Invalid(format!("kafka sink `{topic}`: {e}")))?;
        let producer = Arc::new(producer);
        let probe = producer.clone();
        reach(
            &format!("kafka sink `{topic}`"),
            brokers,
            timeout,
            move || probe.client().fetch_metadata(None, timeout).map(|_| ()),
            || connection.last_error(),
        )
        .await?;
        Ok(KafkaSink {
            producer,
            topic,
            name,
            health,
        })
    }

    fn failed(&self, e: &KafkaError) -> SinkError {
        failure(self.name.clone(), e)
    }
}

/// A produce error as a [`SinkError`]: what the broker refuses for the
/// record itself (too large, invalid) is a rejection the engine
/// dead-letters; the rest are retried.
fn failure(sink: String, e: &KafkaError) -> SinkError {
    let reason = e.to_string();
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidMessageSize,
        ) => SinkError::Rejected { sink, reason },
        _ => SinkError::Publish { sink, reason },
    }
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn health(&self) -> Option<Health> {
        Some(self.health.clone())
    }

    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError> {
        let mut headers = OwnedHeaders::new_with_capacity(msg.headers.len());
        let mut tombstone = false;
        for (key, value) in &msg.headers {
            if key == super::TOMBSTONE_HEADER {
                tombstone = msg.payload.is_empty();
                continue;
            }
            headers = headers.insert(Header {
                key,
                value: Some(value.as_slice()),
            });
        }
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers.clone());
            if !tombstone {
                record = record.payload(&msg.payload);
            }
            if let Some(key) = &msg.key {
                record = record.key(key);
            }
            if let Some(ts) = msg.timestamp_ms.and_then(|t| i64::try_from(t).ok()) {
                record = record.timestamp(ts);
            }
            match self.producer.send_result(record) {
                Ok(report) => {
                    let name = self.name.clone();
                    return Ok(Box::pin(async move {
                        match report.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((e, _))) => Err(failure(name, &e)),
                            Err(_) => Err(SinkError::Publish {
                                sink: name,
                                reason: "producer shut down".into(),
                            }),
                        }
                    }));
                }
                // librdkafka's queue is full: wait for reports to drain it.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(self.failed(&e)),
            }
        }
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        match tokio::task::spawn_blocking(move || producer.flush(FLUSH)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.failed(&e)),
            Err(e) => Err(SinkError::Publish {
                sink: self.name.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Sends librdkafka's log lines to tracing; judges the connection from its
/// statistics and errors.
pub(super) struct LogContext {
    name: String,
    connection: Arc<Connection>,
}

impl ClientContext for LogContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.connection.judge(&statistics);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_rdkafka(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(sink = %self.name, error = %error, reason, "kafka client error");
        self.connection.error(&error, reason);
    }
}
