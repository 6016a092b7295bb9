//! [proptest] strategies for the message model, shared by the property
//! tests of every crate (feature `proptest`, for tests only).

use crate::message::Message;
use proptest::prelude::*;

/// Bytes that are now text (JSON-ish or any string), now anything.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max),
        proptest::string::string_regex(&format!("\\PC{{0,{max}}}"))
            .expect("a valid regex")
            .prop_map(String::into_bytes),
        Just(Vec::new()),
    ]
}

/// A header name: short text, sometimes odd (spaces, control characters,
/// non-ASCII, empty).
pub fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,15}",
        "\\PC{0,24}",
        any::<String>(),
        Just(String::new()),
    ]
}

/// Any message: a key or none, a payload, up to 8 headers (names may
/// repeat), a source, a timestamp or none, an attempt of 1 to 10. No
/// header types (sources that have them add them).
pub fn message() -> impl Strategy<Value = Message> {
    (
        prop::option::of(bytes(64)),
        bytes(2048),
        prop::collection::vec((header_name(), bytes(64)), 0..8),
        "\\PC{0,20}",
        prop::option::of(any::<u64>()),
        1u32..10,
    )
        .prop_map(
            |(key, payload, headers, source, timestamp_ms, attempt)| Message {
                key,
                payload,
                headers,
                source,
                timestamp_ms,
                attempt,
                header_types: Vec::new(),
            },
        )
}
