//! Host bindings for the three plugin worlds, generated from `wit/` by
//! wasmtime's `bindgen!`, and conversions between the WIT message record and
//! [`sluice_core::Message`]. The `types` and `host` interfaces are generated
//! once (with the filter world) and shared by the other two. Calls are
//! synchronous; a call's deadline covers host waits through
//! [`crate::deadline`].

pub mod filter {
    wasmtime::component::bindgen!({
        world: "filter",
        path: "../../wit",
    });
}

pub mod transform {
    wasmtime::component::bindgen!({
        world: "transform",
        path: "../../wit",
        with: {
            "sluice:plugin/types": super::filter::sluice::plugin::types,
            "sluice:plugin/host": super::filter::sluice::plugin::host,
        },
    });
}

pub mod route {
    wasmtime::component::bindgen!({
        world: "route",
        path: "../../wit",
        with: {
            "sluice:plugin/types": super::filter::sluice::plugin::types,
            "sluice:plugin/host": super::filter::sluice::plugin::host,
        },
    });
}

pub use filter::sluice::plugin::host;
pub use filter::sluice::plugin::types::{Error as WitError, Message as WitMessage};

use sluice_core::{Message, StageError};

/// Core message → WIT record (one copy of the byte buffers).
pub fn to_wit(msg: &Message) -> WitMessage {
    WitMessage {
        key: msg.key.clone(),
        payload: msg.payload.clone(),
        headers: msg.headers.clone(),
        source: msg.source.clone(),
        timestamp_ms: msg.timestamp_ms,
        attempt: msg.attempt,
    }
}

/// WIT record → core message (moves the buffers).
pub fn from_wit(msg: WitMessage) -> Message {
    Message {
        key: msg.key,
        payload: msg.payload,
        headers: msg.headers,
        source: msg.source,
        timestamp_ms: msg.timestamp_ms,
        attempt: msg.attempt,
        header_types: Vec::new(),
    }
}

/// The guest's own error answer.
pub fn guest_error(e: WitError) -> StageError {
    match e {
        WitError::Retryable(text) => StageError::Retryable(text),
        WitError::Fatal(text) => StageError::Fatal(text),
    }
}
