//! Test-side RabbitMQ access with plain `lapin`: the server address,
//! declaring queues, publishing inputs and draining outputs.

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// The RabbitMQ the test command made sure runs (guest/guest on 5672).
pub fn amqp_url() -> String {
    std::env::var("SLUICE_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// One message as a test sees it: a header that is not a string as the
/// debug form of its AMQP value (`LongLongInt(5)`).
#[derive(Debug, Clone)]
pub struct Got {
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach RabbitMQ at {url} (run tests/run.sh, which starts it): {e}")
        })
}

/// Declare durable queues.
pub fn declare(url: &str, queues: &[&str]) {
    declare_with(url, queues, FieldTable::default());
}

/// Declare durable queues with `arguments` (`x-max-length`, ...).
pub fn declare_with(url: &str, queues: &[&str], arguments: FieldTable) {
    runtime().block_on(async {
        let conn = connect(url).await;
        let ch = conn.create_channel().await.unwrap();
        for q in queues {
            ch.queue_declare(
                (*q).into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments.clone(),
            )
            .await
            .unwrap();
        }
        let _ = conn.close(200, "done".into()).await;
    });
}

/// Delete queues (cleanup).
pub fn delete(url: &str, queues: &[&str]) {
    runtime().block_on(async {
        let conn = connect(url).await;
        let ch = conn.create_channel().await.unwrap();
        for q in queues {
            let _ = ch
                .queue_delete((*q).into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = conn.close(200, "done".into()).await;
    });
}

/// Publish `(payload, headers)` to `queue` through the default exchange,
/// persistent, waiting for every confirm.
pub fn publish(url: &str, queue: &str, messages: &[(Vec<u8>, Vec<(String, String)>)]) {
    let tables: Vec<(Vec<u8>, FieldTable)> = messages
        .iter()
        .map(|(payload, headers)| {
            let mut table = FieldTable::default();
            for (n, v) in headers {
                table.insert(
                    ShortString::from(n.as_str()),
                    AMQPValue::LongString(LongString::from(v.as_bytes())),
                );
            }
            (payload.clone(), table)
        })
        .collect();
    publish_tables(url, queue, &tables);
}

/// [`publish`] with any AMQP header values (integers, booleans, ...).
pub fn publish_tables(url: &str, queue: &str, messages: &[(Vec<u8>, FieldTable)]) {
    runtime().block_on(async {
        let conn = connect(url).await;
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut confirms = Vec::with_capacity(messages.len());
        for (payload, table) in messages {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(table.clone());
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    payload,
                    props,
                )
                .await
                .unwrap(),
            );
        }
        for c in confirms {
            assert!(c.await.unwrap().is_ack(), "test publish confirmed");
        }
        let _ = conn.close(200, "done".into()).await;
    });
}

/// Messages ready in `queue` now.
pub fn depth(url: &str, queue: &str) -> u32 {
    runtime().block_on(async {
        let conn = connect(url).await;
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = conn.close(200, "done".into()).await;
        q.message_count()
    })
}

/// Consumers subscribed to `queue` now.
pub fn consumers(url: &str, queue: &str) -> u32 {
    runtime().block_on(async {
        let conn = connect(url).await;
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = conn.close(200, "done".into()).await;
        q.consumer_count()
    })
}

/// Take every message out of `queue` (basic_get with auto-ack).
pub fn drain(url: &str, queue: &str) -> Vec<Got> {
    runtime().block_on(async {
        let conn = connect(url).await;
        let ch = conn.create_channel().await.unwrap();
        let mut got = Vec::new();
        while let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let headers = m
                .delivery
                .properties
                .headers()
                .as_ref()
                .map(|t| {
                    t.inner()
                        .iter()
                        .map(|(k, v)| {
                            let text = match v {
                                AMQPValue::LongString(s) => {
                                    String::from_utf8_lossy(s.as_bytes()).into_owned()
                                }
                                other => format!("{other:?}"),
                            };
                            (k.as_str().to_string(), text)
                        })
                        .collect()
                })
                .unwrap_or_default();
            got.push(Got {
                payload: m.delivery.data.clone(),
                headers,
            });
        }
        let _ = conn.close(200, "done".into()).await;
        got
    })
}

/// Does `queue` exist?
pub fn exists(url: &str, queue: &str) -> bool {
    runtime().block_on(async {
        let conn = connect(url).await;
        let ch = conn.create_channel().await.unwrap();
        let found = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok();
        let _ = conn.close(200, "done".into()).await;
        found
    })
}
