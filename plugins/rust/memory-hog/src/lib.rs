//! `memory-hog`: a misbehaving `transform` component for the host's tests.
//!
//! Returns every message unchanged, except that a payload containing `hog`
//! makes it allocate memory in 1 MiB chunks forever, writing to every page of
//! each chunk and keeping all of them alive, so the host's memory cap must
//! stop it (the allocation fails and the guest aborts, or the host traps the
//! `memory.grow`). The next message (in a fresh instance) is handled normally.

wit_bindgen::generate!({
    world: "transform",
    path: "../../../wit",
});

const CHUNK: usize = 1 << 20;
const PAGE: usize = 64 * 1024;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Never returns: allocates until the allocator aborts or the host traps.
fn hog() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut round: u8 = 0;
    loop {
        round = round.wrapping_add(1);
        let mut chunk = vec![0u8; CHUNK];
        // Touch every wasm page (and the last byte) so the memory is really used.
        for offset in (0..CHUNK).step_by(PAGE) {
            chunk[offset] = round;
        }
        chunk[CHUNK - 1] = round;
        chunks.push(std::hint::black_box(chunk));
    }
}

fn transform(msg: Message) -> Result<Vec<Message>, Error> {
    if contains(&msg.payload, b"hog") {
        hog();
    }
    Ok(vec![msg])
}

struct MemoryHog;

impl Guest for MemoryHog {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        transform(msg)
    }

    fn transform_batch(msgs: Vec<Message>) -> Vec<Result<Vec<Message>, Error>> {
        msgs.into_iter().map(transform).collect()
    }
}

export!(MemoryHog);
