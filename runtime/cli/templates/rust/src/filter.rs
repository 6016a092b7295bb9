//! `{{name}}`: a sluice filter. Keeps a message whose payload has at least
//! param `min-bytes` bytes (default 1) and drops the others.

use std::sync::OnceLock;

wit_bindgen::generate!({ world: "filter", path: "wit" });

use sluice::plugin::host::{self, Level};

/// Params are read from the host once per instance.
fn min_bytes() -> Result<usize, Error> {
    static MIN: OnceLock<Result<usize, String>> = OnceLock::new();
    let min = MIN.get_or_init(|| match host::config("min-bytes") {
        None => Ok(1),
        Some(text) => text.parse().map_err(|_| format!("param `min-bytes` must be a whole number, got `{text}`")),
    });
    min.clone().map_err(Error::Fatal)
}

struct Plugin;

impl Guest for Plugin {
    fn filter(msg: Message) -> Result<bool, Error> {
        let keep = msg.payload.len() >= min_bytes()?;
        if !keep {
            host::log(Level::Debug, &format!("dropped a {}-byte message", msg.payload.len()));
        }
        Ok(keep)
    }

    fn filter_batch(msgs: Vec<Message>) -> Vec<Result<bool, Error>> {
        msgs.into_iter().map(Self::filter).collect()
    }
}

export!(Plugin);
