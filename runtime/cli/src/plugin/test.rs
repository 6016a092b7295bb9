//! `sluice test PLUGIN.wasm --input FIXTURES.jsonl [--expect EXPECTED.jsonl]
//! [--params k=v ...]`: run one plugin offline, as the world it implements,
//! on each fixture message; print one result line per input and, with
//! `--expect`, compare them (exit 1 on any difference, with a readable diff).
//!
//! A fixture line is a message in the file sink's JSON envelope (so a
//! sink's output can be replayed as fixtures): `{"key": "k" | null,
//! "headers": {"name": "value"}, "payload": <JSON, or a string for raw
//! text>, "attempt": 1}`; every field is optional. A result line is one of
//! `{"kept": bool}` (filter), `{"messages": [envelope, ...]}` (transform),
//! `{"routes": ["name", ...]}` (route) or `{"error": {"class", "text"}}`.
//! A plugin that imports the `kv` capability gets an empty store in memory;
//! one that imports `wasi:http` loads, but every request it makes is refused.

use crate::exit::CliError;
use serde_json::{json, Value};
use sluice_brokers::lines::{encode, LineFormat};
use sluice_core::{HttpGrant, Kv, Limits, Message, Stage, StageError, StageFactory, StageOutput};
use sluice_state::MemoryKv;
use sluice_wasm::{Capability, Grants};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub fn test(
    plugin: &Path,
    input: &Path,
    expect: Option<&Path>,
    params: &[String],
) -> Result<(), CliError> {
    let params = parse_params(params)?;
    let messages = read_fixtures(input)?;
    let host = crate::assemble::host()?;
    let loaded = host
        .load(plugin)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let kind = loaded.kind;
    // Every capability it imports: a store that starts empty, and outbound
    // HTTP with an empty allow-list (offline: every request is refused).
    let needs = |capability| loaded.needs().any(|c| c == capability);
    let grants = Grants {
        kv: needs(Capability::Kv).then(|| Arc::new(MemoryKv::default()) as Arc<dyn Kv>),
        http: needs(Capability::Http).then(|| {
            Arc::new(HttpGrant {
                allow: Vec::new(),
                timeout: HttpGrant::DEFAULT_TIMEOUT,
                max_response: HttpGrant::DEFAULT_MAX_RESPONSE,
            })
        }),
    };
    let factory = host
        .stage(loaded, "test", kind, Limits::default(), params, grants)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let mut stage = factory.instantiate().map_err(|e| {
        CliError::Invalid(format!("{}: cannot instantiate: {e:#}", plugin.display()))
    })?;
    let results: Vec<Value> = messages.iter().map(|m| result(stage.as_mut(), m)).collect();
    for r in &results {
        println!("{r}");
    }
    let Some(expect) = expect else { return Ok(()) };
    let expected = read_json_lines(expect)?;
    let mut diffs = Vec::new();
    for i in 0..results.len().max(expected.len()) {
        match (expected.get(i), results.get(i)) {
            (Some(want), Some(got)) if want == got => {}
            (want, got) => diffs.push(format!(
                "input {} (line {}):\n  expected {}\n  got      {}",
                i + 1,
                i + 1,
                want.map_or("nothing (no such line)".to_string(), Value::to_string),
                got.map_or("nothing (no such input)".to_string(), Value::to_string)
            )),
        }
    }
    if diffs.is_empty() {
        eprintln!(
            "{}: {} of {} results as expected ({kind})",
            plugin.display(),
            results.len(),
            results.len()
        );
        return Ok(());
    }
    for d in &diffs {
        eprintln!("{d}");
    }
    Err(CliError::Invalid(format!(
        "{}: {} of {} results differ from {}",
        plugin.display(),
        diffs.len(),
        results.len().max(expected.len()),
        expect.display()
    )))
}

/// One input's result line.
fn result(stage: &mut dyn Stage, msg: &Message) -> Value {
    match stage.call(msg) {
        Ok(StageOutput::Keep(kept)) => json!({ "kept": kept }),
        Ok(StageOutput::Messages(out)) => {
            let envelopes: Vec<Value> = out
                .iter()
                .map(|m| {
                    serde_json::from_slice(&encode(m, LineFormat::Json)).unwrap_or(Value::Null)
                })
                .collect();
            json!({ "messages": envelopes })
        }
        Ok(StageOutput::Routes(routes)) => json!({ "routes": routes }),
        // Built-in stages only; a plugin cannot answer these.
        Ok(StageOutput::Claimed(_)) => json!({ "kept": true }),
        Ok(StageOutput::Duplicate) => json!({ "kept": false, "duplicate": true }),
        Err(StageError::Retryable(text)) => {
            json!({ "error": { "class": "retryable", "text": text } })
        }
        Err(StageError::Fatal(text)) => json!({ "error": { "class": "fatal", "text": text } }),
        Err(StageError::Fault(f)) => {
            json!({ "error": { "class": f.kind.class().as_str(), "text": f.detail } })
        }
    }
}

fn parse_params(params: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    params
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CliError::Invalid(format!(
                "--params `{p}`: write it as key=value, e.g. --params min=100"
            ))),
        })
        .collect()
}

fn read_json_lines(path: &Path) -> Result<Vec<Value>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Invalid(format!("{}: cannot read: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                CliError::Invalid(format!(
                    "{}:{}: not JSON: {e} (one JSON object per line)",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

/// Fixture lines as messages.
fn read_fixtures(path: &Path) -> Result<Vec<Message>, CliError> {
    let bad = |line: usize, what: &str| {
        CliError::Invalid(format!("{}:{line}: {what} (a fixture is {{\"key\", \"headers\", \"payload\", \"attempt\"}}, every field optional)", path.display()))
    };
    read_json_lines(path)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let line = i + 1;
            let Value::Object(o) = v else {
                return Err(bad(line, "not a JSON object"));
            };
            if let Some(unknown) = o.keys().find(|k| {
                ![
                    "key",
                    "headers",
                    "payload",
                    "attempt",
                    "source",
                    "timestamp_ms",
                ]
                .contains(&k.as_str())
            }) {
                return Err(bad(line, &format!("unknown field `{unknown}`")));
            }
            let mut msg = Message::new(match o.get("payload") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => s.clone().into_bytes(),
                Some(other) => other.to_string().into_bytes(),
            });
            match o.get("key") {
                None | Some(Value::Null) => {}
                Some(Value::String(k)) => msg.key = Some(k.clone().into_bytes()),
                Some(_) => return Err(bad(line, "`key` must be a string or null")),
            }
            if let Some(h) = o.get("headers") {
                let Value::Object(h) = h else {
                    return Err(bad(line, "`headers` must be an object of strings"));
                };
                for (name, value) in h {
                    let Value::String(value) = value else {
                        return Err(bad(line, &format!("header `{name}` must be a string")));
                    };
                    msg.headers.push((name.clone(), value.clone().into_bytes()));
                }
            }
            if let Some(a) = o.get("attempt") {
                msg.attempt = a
                    .as_u64()
                    .and_then(|a| u32::try_from(a).ok())
                    .filter(|a| *a >= 1)
                    .ok_or_else(|| bad(line, "`attempt` must be an integer ≥ 1"))?;
            }
            if let Some(Value::String(s)) = o.get("source") {
                msg.source = s.clone();
            }
            msg.timestamp_ms = o.get("timestamp_ms").and_then(Value::as_u64);
            Ok(msg)
        })
        .collect()
}
