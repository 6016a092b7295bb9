//! `panicker`: a misbehaving `filter` component for the host's tests.
//!
//! Keeps every message and prints `panicker saw N bytes` to stdout for each
//! (so the host can test that guest stdout is captured), except that a
//! payload containing `panic` makes it panic with "panicker: asked to panic".
//! The plugins are built with `panic = "abort"`, so the panic message goes to
//! the guest's stderr and the call traps. The next message (in a fresh
//! instance) is handled normally.

use std::io::Write;

wit_bindgen::generate!({
    world: "filter",
    path: "../../../wit",
});

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn filter(msg: Message) -> Result<bool, Error> {
    // Like println!, but a host without stdout must not turn this into a panic.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "panicker saw {} bytes", msg.payload.len());
    let _ = stdout.flush();
    drop(stdout);
    if contains(&msg.payload, b"panic") {
        panic!("panicker: asked to panic");
    }
    Ok(true)
}

struct Panicker;

impl Guest for Panicker {
    fn filter(msg: Message) -> Result<bool, Error> {
        filter(msg)
    }

    fn filter_batch(msgs: Vec<Message>) -> Vec<Result<bool, Error>> {
        msgs.into_iter().map(filter).collect()
    }
}

export!(Panicker);
