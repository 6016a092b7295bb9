//! A DLQ opened to take its dead letters back out (`sluice dlq`): what it
//! holds now, each message held (where the broker can hold one) until
//! [`DeadLetterQueue::finish`] removes the chosen ones and gives the rest
//! back. `stats` and `show` remove nothing; `replay` removes what it
//! replayed once the replay settled it.
//!
//! | DLQ | take | remove | the rest |
//! |---|---|---|---|
//! | file | read every line | the file is rewritten in place without them | untouched |
//! | Redis stream | `XRANGE` | `XDEL` | untouched |
//! | RabbitMQ | `basic.get`, unacked | `basic.ack` | requeued in their place when the channel closes |
//! | SQS | received, hidden 15 min | `DeleteMessageBatch` | visible again at once |
//! | Kafka | from the offsets of the group `sluice-dlq.TOPIC` to the end | that group's offset moves past them | records before a removed one are produced again at the end |

use crate::ConnectError;
use sluice_core::Message;

/// One DLQ, taken back; see the module docs for what each broker does.
#[async_trait::async_trait]
pub trait DeadLetterQueue: Send {
    /// Up to `limit` messages it holds now, oldest first, each with where
    /// it is (`line=N`, `stream=S id=I`, `topic=T partition=P offset=O`…).
    ///
    /// # Errors
    /// The DLQ cannot be reached or read.
    async fn take(&mut self, limit: usize) -> Result<Vec<(String, Message)>, ConnectError>;

    /// Remove the taken messages at these indices (of what `take` gave);
    /// give every other one back.
    ///
    /// # Errors
    /// The DLQ cannot be reached or written; what was not removed stays.
    async fn finish(self: Box<Self>, remove: &[usize]) -> Result<(), ConnectError>;
}
