//! Host bindings for the three plugin worlds, generated from `wit/` by
//! wasmtime's `bindgen!`, and conversions between the WIT message record and
//! [`sluice_core::Message`]. The `types` and `host` interfaces are generated
//! once (with the filter world) and shared by the other two. Calls are
//! synchronous; a call's deadline covers host waits through
//! [`crate::deadline`].
//!
//! `sluice:plugin@0.2.0` ([`v0_2`]) adds imports only: its worlds export
//! the same functions with structurally the same types, so one set of
//! export bindings (0.1.0's) calls plugins of either version; the linker
//! serves both versions' `host`, and 0.2.0's capabilities where granted.

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

/// The imports of `sluice:plugin@0.2.0`: `host` and the capabilities.
/// Every import may trap (a wait past the call's deadline).
pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "filter-kv",
        path: "../../wit/0.2.0",
        imports: { default: trappable },
    });
}

pub use filter::sluice::plugin::host;
pub use filter::sluice::plugin::types::{Error as WitError, Message as WitMessage};
pub use v0_2::sluice::plugin::{host as host_v0_2, kv};

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
