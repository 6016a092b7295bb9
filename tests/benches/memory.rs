//! Memory bench: the daemon's RSS before, during and after a burst of large
//! messages through a real broker (`sluice_tests::burst`), in a release
//! build, with a byte budget that binds and one that does not.
//!
//! ```sh
//! cargo build --release -p sluice-cli && bash plugins/build.sh \
//!   && cargo bench -p sluice-tests --bench memory
//! ```
//!
//! Environment:
//! - `SLUICE_BENCH_N`        messages of 4 MB per burst (default 200; RabbitMQ half)
//! - `SLUICE_BENCH_BROKERS`  `redis`, `rabbitmq` or both (default both)
//! - `SLUICE_BENCH_RATE`     steady messages per second of the goal-6 run (default 2000)
//! - `SLUICE_BENCH_MD`       also write the table as markdown to this file
//!
//! With Redis it also measures goal 6 of issue 16: the idle RSS, and the
//! RSS through a burst of ten times a steady rate of 1 KiB messages.
//!
//! Printed per broker and budget: RSS before the burst (idle), the peak
//! during it, after it, their growth, and the growth as a multiple of the
//! budget; the 1 GiB row is the baseline of the same run (a budget that
//! never binds, as before the budget existed). Each burst is checked first:
//! every message acked, the two over `max_message_bytes` dead-lettered as
//! `too-large` with 1 KiB kept.

use sluice_tests::burst::{self, Burst, MIB};
use sluice_tests::goals::{self, Goal};

/// Goal 6 of issue 16: idle RSS, and RSS through a burst of ten times the
/// steady input rate (1 KiB messages through Redis streams).
fn rates_goals() -> String {
    let rate: usize = std::env::var("SLUICE_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let r = burst::redis_rates(rate, 4);
    let mib = |x: u64| x as f64 / MIB as f64;
    println!(
        "rates: {} messages of 1 KiB, {rate}/s for 4 s then {}/s for 4 s: RSS idle {:.1} MiB, steady {:.1} MiB, peak through the burst {:.1} MiB",
        r.messages,
        rate * 10,
        mib(r.idle),
        mib(r.steady),
        mib(r.peak_burst)
    );
    let burst_ratio = r.peak_burst as f64 / r.steady as f64;
    goals::report(&[
        Goal {
            goal: "6 idle RSS (release)",
            figure: format!("{:.1} MiB", mib(r.idle)),
            baseline: "30 MiB (the goal itself)".into(),
            ratio: r.idle as f64 / (30 * MIB) as f64,
            target: "≤ 30 MiB",
            met: r.idle <= 30 * MIB,
        },
        Goal {
            goal: "6 RSS through a 10× burst",
            figure: format!("peak {:.1} MiB", mib(r.peak_burst)),
            baseline: format!("steady {:.1} MiB at {rate} msg/s", mib(r.steady)),
            ratio: burst_ratio,
            target: "≤ 1.10× the steady RSS",
            met: burst_ratio <= 1.10,
        },
    ])
}

fn main() {
    let n: usize = std::env::var("SLUICE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let brokers = std::env::var("SLUICE_BENCH_BROKERS").unwrap_or_else(|_| "redis,rabbitmq".into());
    let budgets = [32 * MIB, 1 << 30];
    let mut rows: Vec<Burst> = Vec::new();
    for broker in brokers.split(',') {
        for budget in budgets {
            let b = match broker {
                "redis" => burst::redis(n, budget),
                "rabbitmq" => burst::rabbitmq(n / 2, budget, 20),
                other => panic!("SLUICE_BENCH_BROKERS: unknown broker {other}"),
            };
            assert_eq!(
                b.dead.len(),
                2,
                "{}: the two too-large dead letters",
                b.broker
            );
            assert!(
                b.dead
                    .iter()
                    .all(|d| d.class.as_deref() == Some("too-large") && d.payload_len == 1024),
                "{}: dead-lettered as too-large with 1 KiB kept",
                b.broker
            );
            println!("{}", b.show());
            rows.push(b);
        }
    }
    let mib = |x: u64| x / MIB;
    let mut md = String::from(
        "| broker | messages | budget | held at most | RSS before | peak during | after | growth | growth / budget | growth / unbound growth |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for b in &rows {
        let unbound = rows
            .iter()
            .find(|u| u.broker == b.broker && u.budget == 1 << 30)
            .map(|u| u.growth())
            .unwrap_or(0);
        md += &format!(
            "| {} | {} | {} MiB | {} MiB | {} MiB | {} MiB | {} MiB | +{} MiB | {:.1}× | {:.2} |\n",
            b.broker,
            b.messages,
            mib(b.budget),
            mib(b.rss.peak_held),
            mib(b.rss.idle),
            mib(b.rss.peak_during),
            mib(b.rss.after),
            mib(b.growth()),
            b.growth() as f64 / b.budget as f64,
            b.growth() as f64 / unbound.max(1) as f64,
        );
    }
    println!("\n{md}");
    if brokers.split(',').any(|b| b == "redis") {
        md.push('\n');
        md += &rates_goals();
    }
    if let Some(path) = std::env::var_os("SLUICE_BENCH_MD") {
        std::fs::write(&path, &md).expect("SLUICE_BENCH_MD is writable");
    }
}
