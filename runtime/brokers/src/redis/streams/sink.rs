//! The `redis-stream` sink: one `XADD` per message, through the pipelined
//! [`Writer`].

use crate::redis::writer::Writer;
use crate::redis::{client, connect_at_start, StreamSinkConfig};
use crate::ConnectError;
use sluice_core::{Confirm, Health, Message, Sink, SinkError};

/// `XADD stream [MAXLEN ~ n] * payload P [key K] [header value]…`
pub(crate) struct StreamSink {
    writer: Writer,
    stream: String,
    config: StreamSinkConfig,
}

impl StreamSink {
    pub(crate) async fn connect(c: &StreamSinkConfig, name: &str) -> Result<Self, ConnectError> {
        let stream = c.stream.clone().unwrap_or_else(|| name.to_string());
        let what = format!("redis-stream sink `{stream}`");
        let client = client(&what, &c.endpoint())?;
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
