//! Memory bounded in bytes, through the `sluice` binary and a real broker
//! (`sluice_tests::burst`): a burst of 4 MB messages through a Redis-stream
//! pipeline and a RabbitMQ one, each with one identity Wasm stage, keeps
//! the daemon's RSS under its `max_in_flight_bytes` plus a stated overhead,
//! and a message over `max_message_bytes` is dead-lettered as `too-large`
//! with its payload cut to `too_large_keep`, while the pipeline goes on.
//!
//! The overhead above the budget is what the bytes in flight cost besides
//! themselves: the client's read buffer and the reply parsed from it, the
//! copy into the plugin's linear memory and its output (Wasm memory only
//! grows), the sink's command and its encoding, and what the allocator
//! keeps of all that. Measured here (2026-12-07, debug build) it was about
//! 4.4 times the budget on top of the idle RSS (+140 MiB for 32 MiB); the
//! same burst with a budget large enough not to bind (1 GiB, as before the
//! budget existed) took +754 MiB. RabbitMQ pushes up to `prefetch`
//! deliveries whatever the budget (the source stops taking them, the broker
//! does not stop sending), so its bound adds `prefetch` messages. The tests
//! print their figures; `cargo bench --bench memory` prints the same for a
//! release build (BENCHMARKS.md).

use sluice_tests::burst::{self, Burst, MESSAGE_BYTES, MIB};

const BUDGET: u64 = 32 * MIB;

/// What the daemon may use above its idle RSS: six times the budget (the
/// copies listed above), what the broker may push beyond it, and 64 MiB.
fn allowed(budget: u64, pushed: u64) -> u64 {
    6 * budget + pushed + 64 * MIB
}

/// The bounds every broker's burst keeps.
fn check(b: &Burst, pushed: u64) {
    println!(
        "{}; allowed +{} MiB",
        b.show(),
        allowed(b.budget, pushed) / MIB
    );
    assert!(
        b.rss.peak_held <= b.budget,
        "{}: the budget held {} bytes, over its {}",
        b.broker,
        b.rss.peak_held,
        b.budget
    );
    assert!(
        b.growth() <= allowed(b.budget, pushed),
        "{}: RSS grew by {} MiB, over the {} MiB allowed",
        b.broker,
        b.growth() / MIB,
        allowed(b.budget, pushed) / MIB
    );
    assert_eq!(
        b.dead.len(),
        2,
        "{}: the two messages over 8 MiB are dead-lettered",
        b.broker
    );
    for d in &b.dead {
        assert_eq!(d.class.as_deref(), Some("too-large"), "{}", b.broker);
        assert_eq!(
            d.payload_len, 1024,
            "{}: the payload is cut to too_large_keep",
            b.broker
        );
        assert!(
            d.coordinates,
            "{}: with its coordinates and its other headers",
            b.broker
        );
        assert!(
            d.text
                .contains("larger than max_message_bytes (8388608 bytes)"),
            "{}: {}",
            b.broker,
            d.text
        );
    }
}

#[test]
fn a_burst_of_large_messages_through_redis_stays_within_the_byte_budget() {
    let bounded = burst::redis(200, BUDGET);
    check(&bounded, 0);
    let unbound = burst::redis(200, 1 << 30);
    println!("{} (not binding)", unbound.show());
    assert!(
        bounded.growth() < unbound.growth() / 2,
        "the budget made no difference: +{} MiB with it, +{} MiB without",
        bounded.growth() / MIB,
        unbound.growth() / MIB
    );
}

#[test]
fn a_burst_of_large_messages_through_rabbitmq_stays_within_the_budget_and_prefetch() {
    // A prefetch of 20 lets RabbitMQ push 80 MB: more than the budget, so
    // the budget is what binds (the source stops taking deliveries), and
    // what the broker pushed meanwhile waits in the client.
    const PREFETCH: u16 = 20;
    let bounded = burst::rabbitmq(100, BUDGET, PREFETCH);
    check(&bounded, u64::from(PREFETCH) * MESSAGE_BYTES as u64);
    assert!(
        bounded.rss.peak_held > bounded.budget / 2,
        "the burst reached the budget (held at most {} MiB)",
        bounded.rss.peak_held / MIB
    );
}
