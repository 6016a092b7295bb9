//! `spin-loop`: a misbehaving `filter` component for the host's tests.
//!
//! Keeps every message, except that a payload containing `loop` makes it spin
//! forever, so the host's fuel / deadline limits must stop it. The next
//! message (in a fresh instance) is handled normally.

wit_bindgen::generate!({
    world: "filter",
    path: "../../../wit",
});

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Never returns. `black_box` keeps the optimiser from proving the loop has
/// no effect (and so from removing it or turning it into a trap).
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn filter(msg: Message) -> Result<bool, Error> {
    if contains(&msg.payload, b"loop") {
        spin();
    }
    Ok(true)
}

struct SpinLoop;

impl Guest for SpinLoop {
    fn filter(msg: Message) -> Result<bool, Error> {
        filter(msg)
    }

    fn filter_batch(msgs: Vec<Message>) -> Vec<Result<bool, Error>> {
        msgs.into_iter().map(filter).collect()
    }
}

export!(SpinLoop);
