//! `misbehave`: a `transform` component that misbehaves through its imports,
//! for the host's containment tests and the poison benchmark. Every payload
//! passes through unchanged, except one that starts with a command word:
//!
//! - `sleep`: `std::thread::sleep` for an hour (a blocking WASI clock wait);
//! - `poll`: `wasi:io/poll.poll` on a pollable due in an hour;
//! - `log`: `host.log` in a loop, forever;
//! - `stdout`: writes to stdout without a newline, forever;
//! - `fanout N`: returns N copies of the message (N a decimal number).
//!
//! Only the host's limits (`timeout`, `fuel`, the log rate, `max_outputs`)
//! end the first four; the fifth tests the output cap and fan-out cost.

wit_bindgen::generate!({
    world: "transform",
    path: "../../../wit",
});

use sluice::plugin::host::{log, Level};
use std::io::Write;

const HOUR_NS: u64 = 3_600_000_000_000;

fn transform(msg: Message) -> Result<Vec<Message>, Error> {
    let text = String::from_utf8_lossy(&msg.payload).into_owned();
    let mut words = text.split_whitespace();
    match words.next() {
        Some("sleep") => std::thread::sleep(std::time::Duration::from_nanos(HOUR_NS)),
        Some("poll") => {
            let due = wasip2::clocks::monotonic_clock::now() + HOUR_NS;
            let pollable = wasip2::clocks::monotonic_clock::subscribe_instant(due);
            wasip2::io::poll::poll(&[&pollable]);
        }
        Some("log") => {
            let mut n: u64 = 0;
            loop {
                n = n.wrapping_add(1);
                log(Level::Info, &format!("log flood line {n}"));
            }
        }
        Some("stdout") => {
            let chunk = [b'x'; 4096];
            let mut out = std::io::stdout();
            loop {
                let _ = out.write_all(&chunk);
            }
        }
        Some("fanout") => {
            let n: usize = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| Error::Fatal("`fanout` needs a count".into()))?;
            return Ok(vec![msg; n]);
        }
        _ => {}
    }
    Ok(vec![msg])
}

struct Misbehave;

impl Guest for Misbehave {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        transform(msg)
    }

    fn transform_batch(msgs: Vec<Message>) -> Vec<Result<Vec<Message>, Error>> {
        msgs.into_iter().map(transform).collect()
    }
}

export!(Misbehave);
