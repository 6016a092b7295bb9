//! `{{name}}`: a sluice filter with the `kv` capability: a rate limit per
//! key. Keeps at most param `limit` (default 1) messages of each key within
//! param `window-ms` (default 60000) and drops the rest; a message without
//! a key is kept. The counts are in the stage's key-value store, so every
//! instance of the stage (and every daemon sharing a Redis store) counts
//! together, and they outlive a restart. The stage must grant the
//! capability: `capabilities = ["kv"]`.

use std::sync::OnceLock;

wit_bindgen::generate!({ world: "filter-kv", path: "wit" });

use sluice::plugin::host::{self, Level};
use sluice::plugin::kv;

struct Params {
    limit: i64,
    window_ms: u64,
}

/// Params are read from the host once per instance.
fn params() -> Result<&'static Params, Error> {
    static PARAMS: OnceLock<Result<Params, String>> = OnceLock::new();
    let read = || {
        let number = |key: &str, default: u64| match host::config(key) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("param `{key}` must be a whole number, got `{text}`")),
        };
        Ok(Params {
            limit: i64::try_from(number("limit", 1)?).unwrap_or(i64::MAX),
            window_ms: number("window-ms", 60_000)?.max(1),
        })
    };
    PARAMS
        .get_or_init(read)
        .as_ref()
        .map_err(|e| Error::Fatal(e.clone()))
}

/// A store that cannot answer is worth a retry; the rest will not pass.
fn store_error(e: kv::KvError) -> Error {
    match e {
        kv::KvError::Unavailable(why) => Error::Retryable(format!("kv: {why}")),
        kv::KvError::Limit(why) | kv::KvError::Invalid(why) => Error::Fatal(format!("kv: {why}")),
    }
}

struct Plugin;

impl Guest for Plugin {
    fn filter(msg: Message) -> Result<bool, Error> {
        let params = params()?;
        let Some(key) = msg.key else {
            return Ok(true);
        };
        let counter = format!("count:{}", String::from_utf8_lossy(&key));
        // The count expires with the window that its first message opened.
        let seen = kv::increment(&counter, 1, Some(params.window_ms)).map_err(store_error)?;
        let keep = seen <= params.limit;
        if !keep {
            host::log(Level::Debug, &format!("dropped: message {seen} of `{counter}` in its window"));
        }
        Ok(keep)
    }

    fn filter_batch(msgs: Vec<Message>) -> Vec<Result<bool, Error>> {
        msgs.into_iter().map(Self::filter).collect()
    }
}

export!(Plugin);
