//! `kv-tally`: a `transform` component built against `sluice:plugin@0.2.0`
//! that keeps state in its stage's key-value store (capability `kv`).
//!
//! For each message, with `ID` its key as text (`-` when it has none):
//! - `seen:ID` is incremented (`increment`), so the output counts every
//!   message of that key this stage ever took, across instances and
//!   daemon restarts;
//! - `first:ID` is set to the payload if it is absent (`compare-and-set`),
//!   then read (`get`): the first payload seen for the key.
//!
//! The output replaces the payload with
//! `{"id": ID, "seen": N, "first": FIRST}` and keeps the key and headers.
//! A payload containing `trap` traps after the increment (the host replaces
//! the instance; the count stays). Param `extra_gets` makes that many more
//! `get`s per message (to hit the stage's `kv_ops`). A store error becomes
//! a `retryable` error (`unavailable`) or a `fatal` one (the rest), with
//! the store's reason.

wit_bindgen::generate!({
    world: "transform-kv",
    path: "../../../wit/0.2.0",
});

use sluice::plugin::{host, kv};

fn failed(e: kv::KvError) -> Error {
    match e {
        kv::KvError::Unavailable(text) => Error::Retryable(format!("kv-tally: {text}")),
        kv::KvError::Limit(text) => Error::Fatal(format!("kv-tally: limit: {text}")),
        kv::KvError::Invalid(text) => Error::Fatal(format!("kv-tally: invalid: {text}")),
    }
}

fn extra_gets() -> u32 {
    host::config("extra_gets")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn tally(msg: Message) -> Result<Vec<Message>, Error> {
    let id = msg
        .key
        .as_deref()
        .map_or_else(|| "-".to_owned(), |k| String::from_utf8_lossy(k).into_owned());
    let seen = kv::increment(&format!("seen:{id}"), 1, None).map_err(failed)?;
    if contains(&msg.payload, b"trap") {
        panic!("kv-tally: trap requested (seen:{id} = {seen})");
    }
    let first_key = format!("first:{id}");
    kv::compare_and_set(&first_key, None, &msg.payload, None).map_err(failed)?;
    let first = kv::get(&first_key).map_err(failed)?.unwrap_or_default();
    for _ in 0..extra_gets() {
        kv::get(&first_key).map_err(failed)?;
    }
    let out = serde_json::json!({
        "id": id,
        "seen": seen,
        "first": String::from_utf8_lossy(&first),
    });
    Ok(vec![Message {
        payload: out.to_string().into_bytes(),
        ..msg
    }])
}

struct KvTally;

impl Guest for KvTally {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        tally(msg)
    }

    fn transform_batch(msgs: Vec<Message>) -> Vec<Result<Vec<Message>, Error>> {
        msgs.into_iter().map(tally).collect()
    }
}

export!(KvTally);
