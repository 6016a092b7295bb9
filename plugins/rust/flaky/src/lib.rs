//! `flaky`: a misbehaving `filter` component for the host's tests.
//!
//! Fails with a `retryable` error while the message's `attempt` is at most
//! param `fail_attempts` (default 2), then keeps it: the host's retries with
//! backoff should get it through. A payload containing `fatal` gets a
//! `fatal` error instead, which the host must dead-letter without retrying.

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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn filter(msg: Message) -> Result<bool, Error> {
    let fail_attempts = fail_attempts()?;
    if contains(&msg.payload, b"fatal") {
        return Err(Error::Fatal("flaky: fatal requested".to_string()));
    }
    if msg.attempt <= fail_attempts {
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
