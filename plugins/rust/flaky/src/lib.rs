//! `flaky`: a misbehaving `filter` component for the host's tests.
//!
//! Fails with a `retryable` error while the message's `attempt` is at most
//! param `fail_attempts` (default 2), then keeps it: the host's retries with
//! backoff should get it through. With param `fail_matching`, only payloads
//! that contain that text fail; the rest pass at once. A payload containing
//! `fatal` gets a `fatal` error instead, which the host must dead-letter
//! without retrying.

use std::sync::OnceLock;

wit_bindgen::generate!({
    world: "filter",
    path: "../../../wit",
});

use sluice::plugin::host;

/// Param `fail_attempts`, read once per instance.
fn fail_attempts() -> Result<u32, Error> {
    static FAIL_ATTEMPTS: OnceLock<Result<u32, String>> = OnceLock::new();
    FAIL_ATTEMPTS
        .get_or_init(|| match host::config("fail_attempts") {
            None => Ok(2),
            Some(raw) => raw.trim().parse::<u32>().map_err(|_| {
                format!("flaky: param `fail_attempts` = {raw:?} is not a non-negative integer")
            }),
        })
        .clone()
        .map_err(Error::Fatal)
}

/// Param `fail_matching`, read once per instance.
fn fail_matching() -> Option<&'static str> {
    static FAIL_MATCHING: OnceLock<Option<String>> = OnceLock::new();
    FAIL_MATCHING
        .get_or_init(|| host::config("fail_matching"))
        .as_deref()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn filter(msg: Message) -> Result<bool, Error> {
    let fail_attempts = fail_attempts()?;
    if contains(&msg.payload, b"fatal") {
        return Err(Error::Fatal("flaky: fatal requested".to_string()));
    }
    let chosen = fail_matching().is_none_or(|m| contains(&msg.payload, m.as_bytes()));
    if chosen && msg.attempt <= fail_attempts {
        return Err(Error::Retryable(format!(
            "flaky: attempt {} of {} fails",
            msg.attempt, fail_attempts
        )));
    }
    Ok(true)
}

struct Flaky;

impl Guest for Flaky {
    fn filter(msg: Message) -> Result<bool, Error> {
        filter(msg)
    }

    fn filter_batch(msgs: Vec<Message>) -> Vec<Result<bool, Error>> {
        msgs.into_iter().map(filter).collect()
    }
}

export!(Flaky);
