//! Odd but legal messages through a broker and back: empty and large
//! payloads, a hundred headers, binary keys and header values, repeated
//! header names, no key. Each goes out through the connector's sink and
//! comes back through its source (the library connectors, in process,
//! against the real broker), and what the broker kept is compared with
//! what the broker's test file says it keeps ([`Broker::odd`]); the table
//! is printed, and the connector docs hold the same rows. Connectors with
//! no [`Broker`] of their own (Redis Pub/Sub) call [`odd_through`].

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
    /// Only the payload comes back: no key, no headers (Redis Pub/Sub).
    PayloadOnly,
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
    if got.payload == sent.payload && got.key.is_none() && got.headers.is_empty() {
        return Odd::PayloadOnly;
    }
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
    // The broker's own client runs its own runtime: before this one's.
    let native = broker.produce_native_odd(&t.input);
    let route = OddRoute {
        name: B::NAME,
        sink: broker.sink(&t.input),
        source: broker.source(&t, Role::Alone),
        odd: B::odd,
        live: false,
    };
    odd_through(dir.path(), &route, native);
}

/// Where [`odd_through`] sends the cases, and what it expects back.
pub struct OddRoute {
    /// The connector, for the table and the messages.
    pub name: &'static str,
    /// The sink's table and the source's (`{ type = ..., ... }`), the
    /// source reading what the sink writes.
    pub sink: String,
    pub source: String,
    /// What the connector does with each case.
    pub odd: fn(&str) -> Odd,
    /// The source only sees what is sent while it listens (Pub/Sub): it
    /// starts first.
    pub live: bool,
}

/// Open `source` and run it into `out` (given once) until `shutdown`.
async fn listen(
    source: &SourceConfig,
    dir: &std::path::Path,
    out: Option<Outbox>,
    shutdown: &Shutdown,
) -> tokio::task::JoinHandle<Result<(), sluice_core::SourceError>> {
    let source = source.open(dir).await.expect("the source connects");
    tokio::spawn(source.run(out.expect("one source"), shutdown.clone()))
}

/// Send every case through `route`'s sink and read them back through its
/// source, `native` (cases already sent, with what must come back) first;
/// check each against `route.odd`. A message comes back matched by its
/// [`CASE`] header, or, where the connector keeps no header, by its place
/// in the order sent. Prints the table.
pub fn odd_through(dir: &std::path::Path, route: &OddRoute, native: Vec<(&'static str, Message)>) {
    let name = route.name;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cases = cases();
    let mut expected_back: Vec<_> = native
        .into_iter()
        .map(|(case, expect)| (case, expect, Odd::Same))
        .collect();
    let mut rows = Vec::new();
    let mut wrong = Vec::new();
    runtime.block_on(async {
        let source: SourceConfig = table(&route.source);
        let limits = ByteLimits {
            max_in_flight_bytes: 256 << 20,
            max_message_bytes: 64 << 20,
            too_large_keep: 0,
        };
        let (out, mut rx) = Outbox::channel(64, limits);
        let shutdown = Shutdown::new(std::time::Duration::from_secs(5));
        let mut out = Some(out);
        let mut running = None;
        if route.live {
            running = Some(listen(&source, dir, out.take(), &shutdown).await);
        }
        let sink: SinkConfig = table(&route.sink);
        let sink = sink.open(dir, "odd").await.expect("the sink connects");
        for (case, msg) in &cases {
            let confirmed = match sink.publish(msg).await {
                Ok(confirm) => confirm.await,
                Err(e) => Err(e),
            };
            match (confirmed, (route.odd)(case)) {
                (Ok(()), Odd::Refused(why)) => {
                    panic!("{name}: {case} was taken, but should be refused ({why})")
                }
                (Ok(()), expect) => expected_back.push((*case, msg.clone(), expect)),
                (Err(SinkError::Rejected { reason, .. }), Odd::Refused(why)) => {
                    assert!(
                        reason.contains(why),
                        "{name}: {case} refused for {reason:?}, not {why:?}"
                    );
                    rows.push(format!("| {case} | refused: {reason} |"));
                }
                (Err(e), expect) => {
                    panic!("{name}: {case}: the sink said {e} (expected {expect:?})")
                }
            }
        }
        sink.flush().await.expect("the sink flushes");
        let running = match running {
            Some(running) => running,
            None => listen(&source, dir, out.take(), &shutdown).await,
        };
        let mut back = Vec::new();
        while back.len() < expected_back.len() {
            let Ok(Some(d)) = tokio::time::timeout(LONG, rx.recv()).await else {
                panic!(
                    "{name}: {} of {} odd messages came back",
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
        for (i, (case, sent, expect)) in expected_back.iter().enumerate() {
            let got = back
                .iter()
                .find(|m| m.header(CASE) == Some(case.as_bytes()))
                .or_else(|| {
                    back.iter()
                        .all(|m| m.header(CASE).is_none())
                        .then(|| &back[i])
                })
                .unwrap_or_else(|| {
                    panic!("{name}: {case} did not come back (its `{CASE}` header?)")
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
    println!("odd messages through {name}:\n{}", rows.join("\n"));
    assert!(
        wrong.is_empty(),
        "{name}: not as expected:\n{}",
        wrong.join("\n")
    );
}
