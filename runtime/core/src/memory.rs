//! In-memory source and sink: for engine tests, benchmarks, and embedding
//! sluice in another program. Not a stand-in for a broker in broker tests.

use crate::ack::{AckHandle, FnAcker};
use crate::budget::Outbox;
use crate::message::{Coordinates, Delivery, Message};
use crate::shutdown::Shutdown;
use crate::sink::{Confirm, Sink, SinkError};
use crate::source::{Source, SourceError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Which deliveries (by their index in the input) were acked or nacked.
#[derive(Debug, Default)]
pub struct AckLog {
    pub acked: Mutex<Vec<u64>>,
    pub nacked: Mutex<Vec<u64>>,
}

/// Yields a fixed list of messages, then ends. Coordinates are `index=N`.
pub struct MemorySource {
    name: String,
    messages: Vec<Message>,
    lanes: Vec<Option<u64>>,
    acks: Arc<AckLog>,
}

impl MemorySource {
    pub fn new(name: impl Into<String>, messages: Vec<Message>) -> (Self, Arc<AckLog>) {
        let acks = Arc::new(AckLog::default());
        (
            MemorySource {
                name: name.into(),
                messages,
                lanes: Vec::new(),
                acks: acks.clone(),
            },
            acks,
        )
    }

    /// Give message `i` the ordering lane `lanes[i]` (see
    /// [`Delivery::lane`]), as a partitioned broker would.
    pub fn with_lanes(mut self, lanes: Vec<Option<u64>>) -> Self {
        self.lanes = lanes;
        self
    }
}

#[async_trait::async_trait]
impl Source for MemorySource {
    fn describe(&self) -> String {
        format!("memory:{}", self.name)
    }

    async fn run(self: Box<Self>, out: Outbox, shutdown: Shutdown) -> Result<(), SourceError> {
        for (index, mut message) in self.messages.into_iter().enumerate() {
            if message.source.is_empty() {
                message.source = self.name.clone();
            }
            let acks = self.acks.clone();
            let index = index as u64;
            let ack = AckHandle::new(FnAcker(move |acked: bool| {
                let log = if acked { &acks.acked } else { &acks.nacked };
                log.lock().expect("ack log poisoned").push(index);
            }));
            let mut delivery =
                Delivery::new(message, Coordinates::default().with("index", index), ack);
            delivery.lane = self.lanes.get(index as usize).copied().flatten();
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                sent = out.send(delivery) => if sent.is_err() { return Ok(()) },
            }
        }
        Ok(())
    }
}

/// Collects every message it is given. Can be told to refuse the next N
/// publishes, to exercise the engine's sink retry, and to reject payloads
/// over a size, like a broker's message size limit.
#[derive(Default)]
pub struct MemorySink {
    name: String,
    messages: Mutex<Vec<Message>>,
    refuse: AtomicU64,
    /// Payloads longer than this are rejected for good (0: no limit).
    max_payload: AtomicU64,
}

impl MemorySink {
    pub fn new(name: impl Into<String>) -> Arc<Self> {
        Arc::new(MemorySink {
            name: name.into(),
            ..Default::default()
        })
    }

    /// Fail the next `n` publishes with a connection error.
    pub fn refuse_next(&self, n: u64) {
        self.refuse.store(n, Ordering::SeqCst);
    }

    /// Reject (for good: [`SinkError::Rejected`]) every payload longer than
    /// `bytes`.
    pub fn reject_larger_than(&self, bytes: u64) {
        self.max_payload.store(bytes, Ordering::SeqCst);
    }

    /// Everything published so far, in publish order.
    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().expect("sink poisoned").clone()
    }

    pub fn len(&self) -> usize {
        self.messages.lock().expect("sink poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl Sink for MemorySink {
    fn describe(&self) -> String {
        format!("memory:{}", self.name)
    }

    async fn publish(&self, msg: &Message) -> Result<Confirm, SinkError> {
        let refused = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(SinkError::Connection {
                sink: self.describe(),
                reason: "refused (test)".into(),
            });
        }
        let max = self.max_payload.load(Ordering::SeqCst);
        if max > 0 && msg.payload.len() as u64 > max {
            return Err(SinkError::Rejected {
                sink: self.describe(),
                reason: format!(
                    "payload of {} bytes is over the {max}-byte limit",
                    msg.payload.len()
                ),
            });
        }
        self.messages
            .lock()
            .expect("sink poisoned")
            .push(msg.clone());
        Ok(Box::pin(async { Ok(()) }))
    }
}
