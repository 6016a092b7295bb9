//! The config loader against random and mutated TOML: it never panics, and
//! every error it gives is located (a line or a key) and says how to fix it.
//!
//! The seeds are every example config and every invalid-config case of the
//! repository; each case mutates one of them a few times (cuts, inserted
//! tokens, swapped values, duplicated lines). `PROPTEST_CASES` runs more
//! (the test command runs the default below, a few seconds).

use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.toml` of `examples/` and `tests/ui/invalid/`, with its path.
fn seeds() -> Vec<(PathBuf, String)> {
    let mut seeds = Vec::new();
    for dir in ["examples", "tests/ui/invalid"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
            .expect("the seed folder")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap();
            seeds.push((path, text));
        }
    }
    assert!(seeds.len() >= 30, "the seeds are there");
    seeds
}

/// Pieces of TOML and of sluice's keys and values, to insert anywhere.
const TOKENS: &[&str] = &[
    "=",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "\n",
    "#",
    "[[",
    "]]",
    "\"\"\"",
    "0",
    "-1",
    "1e400",
    "65537",
    "18446744073709551616",
    "true",
    "nan",
    "inf",
    "1979-05-27T07:32:00Z",
    "\"64MiB\"",
    "\"-5s\"",
    "\"1 parsec\"",
    "\"\\u0000\"",
    "\"\u{1F600}\"",
    "type",
    "kafka",
    "rabbitmq",
    "redis-stream",
    "redis-pubsub",
    "sqs",
    "file",
    "stdin",
    "stdout",
    "source",
    "sinks",
    "dlq",
    "stages",
    "plugin",
    "kind",
    "route",
    "filter",
    "transform",
    "retry",
    "republish",
    "max_in_flight_bytes",
    "max_message_bytes",
    "too_large_keep",
    "params",
    "password_env",
    "tls",
    "ca_file",
    "url",
    "\"rediss://u:p@127.0.0.1:1\"",
    "\"amqps://x\"",
    "\u{FEFF}",
    "\r",
    "\t",
    "\\",
    "concurrency",
    "batch",
    "pipelines",
    "[pipelines.x]",
    "[[pipelines.x.stages]]",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Remove `len` bytes at a position (per mille of the length).
    Cut { at: u16, len: u8 },
    /// Insert a token at a position.
    Insert { at: u16, token: usize },
    /// Repeat the line at a position.
    DuplicateLine { at: u16 },
    /// Replace the value after the `=` of the line at a position.
    Value { at: u16, token: usize },
    /// Insert random bytes (as lossy UTF-8) at a position.
    Noise { at: u16, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0u16..1000;
    let token = 0..TOKENS.len();
    prop_oneof![
        (at.clone(), 1u8..40).prop_map(|(at, len)| Mutation::Cut { at, len }),
        (at.clone(), token.clone()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        at.clone().prop_map(|at| Mutation::DuplicateLine { at }),
        (at.clone(), token).prop_map(|(at, token)| Mutation::Value { at, token }),
        (at, prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(at, bytes)| Mutation::Noise { at, bytes }),
    ]
}

/// The char boundary nearest below `per_mille` of `text`.
fn position(text: &str, per_mille: u16) -> usize {
    let mut i = text.len() * per_mille as usize / 1000;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &mut String, m: &Mutation) {
    match m {
        Mutation::Cut { at, len } => {
            let start = position(text, *at);
            let mut end = (start + *len as usize).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(start..end, "");
        }
        Mutation::Insert { at, token } => {
            let i = position(text, *at);
            text.insert_str(i, TOKENS[*token]);
        }
        Mutation::DuplicateLine { at } => {
            let i = position(text, *at);
            let start = text[..i].rfind('\n').map_or(0, |n| n + 1);
            let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
            let line = format!("{}\n", &text[start..end]);
            text.insert_str(start, &line);
        }
        Mutation::Value { at, token } => {
            let i = position(text, *at);
            let start = text[..i].rfind('\n').map_or(0, |n| n + 1);
            let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
            if let Some(eq) = text[start..end].find('=') {
                text.replace_range(start + eq + 1..end, &format!(" {}", TOKENS[*token]));
            }
        }
        Mutation::Noise { at, bytes } => {
            let i = position(text, *at);
            text.insert_str(i, &String::from_utf8_lossy(bytes));
        }
    }
}

/// Parse `text` as if it were the file at `path`: no panic; an error is
/// located and has a fix.
fn parses_or_says_where(text: &str, path: &Path) -> Result<(), TestCaseError> {
    let parsed = std::panic::catch_unwind(|| sluice_config::parse(text, path));
    let Ok(result) = parsed else {
        return Err(TestCaseError::fail(format!(
            "the loader panicked on:\n{text}"
        )));
    };
    if let Err(e) = result {
        prop_assert!(
            !e.message.trim().is_empty(),
            "an empty message for:\n{text}"
        );
        prop_assert!(
            e.line.is_some() || e.key.is_some(),
            "not located: {e}\nfor:\n{text}"
        );
        prop_assert!(e.help.is_some(), "no fix given: {e}\nfor:\n{text}");
        prop_assert_eq!(&e.file, path);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_configs_fail_with_a_located_message_or_load(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = SEEDS.with(|s| s.clone());
        let (path, text) = &seeds[seed.index(seeds.len())];
        let mut text = text.clone();
        for m in &mutations {
            apply(&mut text, m);
        }
        parses_or_says_where(&text, path)?;
    }

    #[test]
    fn random_text_fails_with_a_located_message(text in "\\PC{0,200}") {
        parses_or_says_where(&text, &repo().join("examples/random.toml"))?;
    }
}

thread_local! {
    static SEEDS: std::rc::Rc<Vec<(PathBuf, String)>> = std::rc::Rc::new(seeds());
}
