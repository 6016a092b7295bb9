//! Odd but legal messages through a broker and back: empty and large
//! payloads, a hundred headers, binary keys and header values, repeated
//! header names, no key. Each goes out through the connector's sink and
//! comes back through its source (the library connectors, in process,
//! against the real broker), and what the broker kept is compared with
//! what the broker's test file says it keeps ([`Broker::odd`]); the table
//! is printed, and the connector docs hold the same rows.

use super::{names, Broker, Role, LONG};
use sluice_brokers::{SinkConfig, SourceConfig};
use sluice_core::{ByteLimits, Message, Outbox, Shutdown, SinkError};

/// The header every odd message carries first, naming its case.
pub const CASE: &str = "odd-case";

/// What a broker does with one odd message.
#[derive(Debug, Clone, PartialEq)]
pub enum Odd {
    /// It comes back as it went: key, payload, headers in order.
    Same,
    /// The same key and payload, the same headers in another order.
    Reordered,
    /// The sink refuses it for good (`SinkError::Rejected`: the message
    /// is dead-lettered as `sink-rejected` in a pipeline); the text is a
    /// part of the reason.
    Refused(&'static str),
    /// It comes back changed, as the broker's docs say: what it is then.
    Changed(Message),
}

/// Every case: its name and its message.
pub fn cases() -> Vec<(&'static str, Message)> {
    let base = |case: &str| Message::new(format!(r#"{{"case":"{case}"}}"#)).with_header(CASE, case);
    let mut hundred = base("100-headers").with_key("k");
    for i in 1..100 {
        hundred = hundred.with_header(format!("h{i}"), format!("v{i}"));
    }
    let sized = |case: &str, bytes: usize| {
        let mut m = base(case).with_key(case);
        m.payload = (0..bytes).map(|i| (i % 251) as u8).collect();
        m
    };
    vec![
        ("empty-payload", {
            let mut m = base("empty-payload").with_key("k");
            m.payload = Vec::new();
            m
        }),
        ("no-key", base("no-key")),
        (
            "binary-key",
            base("binary-key").with_key(vec![0xff, 0x00, 0xfe, b'k']),
        ),
        (
            "binary-header-value",
            base("binary-header-value")
                .with_key("k")
                .with_header("bin", vec![0xff, 0x00, 0xc3]),
        ),
        (
            "repeated-header",
            base("repeated-header")
                .with_key("k")
                .with_header("dup", "1")
                .with_header("dup", "2"),
        ),
        ("100-headers", hundred),
        ("1MiB", sized("1MiB", 1 << 20)),
        ("16MiB", sized("16MiB", 16 << 20)),
    ]
}

/// The message of case `name`.
pub fn case(name: &str) -> Message {
    cases()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no odd case {name}"))
        .1
}

/// A broker's table (`{ type = ..., ... }`) as the config type it is.
fn table<T: serde::de::DeserializeOwned>(inline: &str) -> T {
    #[derive(serde::Deserialize)]
    struct One<T> {
        t: T,
    }
    toml::from_str::<One<T>>(&format!("t = {inline}"))
        .unwrap_or_else(|e| panic!("{inline}: {e}"))
        .t
}

/// What came back, compared with what went out.
fn outcome(sent: &Message, got: &Message) -> Odd {
    if got.key == sent.key && got.payload == sent.payload {
        if got.headers == sent.headers {
            return Odd::Same;
        }
        let (mut a, mut b) = (got.headers.clone(), sent.headers.clone());
        a.sort();
        b.sort();
        if a == b {
            return Odd::Reordered;
        }
    }
    let mut changed = Message::new(got.payload.clone());
    changed.key = got.key.clone();
    changed.headers = got.headers.clone();
    Odd::Changed(changed)
}

/// Send every case through `B`'s sink, read them back through its source,
/// and check each against [`Broker::odd`]. Prints the table.
pub fn odd_messages<B: Broker>() {
    let dir = tempfile::tempdir().unwrap();
    let broker = B::new(dir.path());
    let t = names(&broker, "odd");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cases = cases();
    let mut expected_back = Vec::new();
    let mut rows = Vec::new();
    let mut wrong = Vec::new();
    // The broker's own client runs its own runtime: before this one's.
    for (case, expect) in broker.produce_native_odd(&t.input) {
        expected_back.push((case, expect, Odd::Same));
    }
    runtime.block_on(async {
        let sink: SinkConfig = table(&broker.sink(&t.input));
        let sink = sink
            .open(dir.path(), "odd")
            .await
            .expect("the sink connects");
        for (case, msg) in &cases {
            let confirmed = match sink.publish(msg).await {
                Ok(confirm) => confirm.await,
                Err(e) => Err(e),
            };
            match (confirmed, B::odd(case)) {
                (Ok(()), Odd::Refused(why)) => panic!(
                    "{}: {case} was taken, but should be refused ({why})",
                    B::NAME
                ),
                (Ok(()), expect) => expected_back.push((*case, msg.clone(), expect)),
                (Err(SinkError::Rejected { reason, .. }), Odd::Refused(why)) => {
                    assert!(
                        reason.contains(why),
                        "{}: {case} refused for {reason:?}, not {why:?}",
                        B::NAME
                    );
                    rows.push(format!("| {case} | refused: {reason} |"));
                }
                (Err(e), expect) => panic!(
                    "{}: {case}: the sink said {e} (expected {expect:?})",
                    B::NAME
                ),
            }
        }
        sink.flush().await.expect("the sink flushes");
        let source: SourceConfig = table(&broker.source(&t, Role::Alone));
        let source = source.open(dir.path()).await.expect("the source connects");
        let limits = ByteLimits {
            max_in_flight_bytes: 256 << 20,
            max_message_bytes: 64 << 20,
            too_large_keep: 0,
        };
        let (out, mut rx) = Outbox::channel(64, limits);
        let shutdown = Shutdown::new(std::time::Duration::from_secs(5));
        let running = tokio::spawn(source.run(out, shutdown.clone()));
        let mut back = Vec::new();
        while back.len() < expected_back.len() {
            let Ok(Some(d)) = tokio::time::timeout(LONG, rx.recv()).await else {
                panic!(
                    "{}: {} of {} odd messages came back",
                    B::NAME,
                    back.len(),
                    expected_back.len()
                );
            };
            back.push(d.message.clone());
            d.ack.ack();
        }
        shutdown.cancel();
        drop(rx);
        let _ = tokio::time::timeout(LONG, running).await;
        for (case, sent, expect) in &expected_back {
            let got = back
                .iter()
                .find(|m| m.header(CASE) == Some(case.as_bytes()))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: {case} did not come back (its `{CASE}` header?)",
                        B::NAME
                    )
                });
            let seen = outcome(sent, got);
            let shown = match &seen {
                Odd::Changed(m) => format!(
                    "changed: key {:?}, {} payload bytes, headers {:?}",
                    m.key,
                    m.payload.len(),
                    m.headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v)))
                        .take(6)
                        .collect::<Vec<_>>()
                ),
                other => format!("{other:?}"),
            };
            if &seen != expect {
                wrong.push(format!("{case}: expected {expect:?}"));
            }
            rows.push(format!("| {case} | {shown} |"));
        }
    });
    println!("odd messages through {}:\n{}", B::NAME, rows.join("\n"));
    assert!(
        wrong.is_empty(),
        "{}: not as expected:\n{}",
        B::NAME,
        wrong.join("\n")
    );
}
