//! `json-filter`: a `filter` component for sluice.
//!
//! Keeps a message when the numeric JSON field named by param `field`
//! (default `amount`; dotted paths such as `totals.gross` reach into nested
//! objects, and a numeric segment indexes an array) is `>=` param `min`
//! (default `0`). Drops it otherwise.
//!
//! A payload that is not JSON, or whose field is missing or not a number, is
//! a `fatal` error: retrying would not change the answer.

use std::sync::OnceLock;

use serde_json::Value;

wit_bindgen::generate!({
    world: "filter",
    path: "../../../wit",
});

use sluice::plugin::host::{self, Level};

/// The stage params, read once per instance (they never change within it).
struct Params {
    /// The param as written, for messages.
    field: String,
    /// `field` split on `.`.
    path: Vec<String>,
    min: f64,
}

fn params() -> Result<&'static Params, Error> {
    static PARAMS: OnceLock<Result<Params, String>> = OnceLock::new();
    PARAMS
        .get_or_init(|| {
            let field = host::config("field").unwrap_or_else(|| "amount".to_string());
            if field.is_empty() || field.split('.').any(str::is_empty) {
                return Err(format!("json-filter: param `field` = {field:?} is not a valid field path"));
            }
            let min = match host::config("min") {
                None => 0.0,
                Some(raw) => match raw.trim().parse::<f64>() {
                    Ok(min) if !min.is_nan() => min,
                    _ => return Err(format!("json-filter: param `min` = {raw:?} is not a number")),
                },
            };
            let path = field.split('.').map(str::to_string).collect();
            Ok(Params { field, path, min })
        })
        .as_ref()
        .map_err(|e| Error::Fatal(e.clone()))
}

/// Follows a dotted path: object keys, or array indexes for numeric segments.
fn lookup<'v>(mut value: &'v Value, path: &[String]) -> Option<&'v Value> {
    for segment in path {
        value = match value {
            Value::Object(map) => map.get(segment.as_str())?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

struct JsonFilter;

impl Guest for JsonFilter {
    fn filter(msg: Message) -> Result<bool, Error> {
        let params = params()?;
        let doc: Value = serde_json::from_slice(&msg.payload)
            .map_err(|e| Error::Fatal(format!("payload is not valid JSON: {e}")))?;
        let value = lookup(&doc, &params.path)
            .and_then(Value::as_f64)
            .ok_or_else(|| {
                Error::Fatal(format!("field `{}` is missing or not a number", params.field))
            })?;
        let keep = value >= params.min;
        if !keep {
            host::log(
                Level::Debug,
                &format!(
                    "json-filter: dropped message from {}: {} = {} < {}",
                    msg.source, params.field, value, params.min
                ),
            );
        }
        Ok(keep)
    }

    fn filter_batch(msgs: Vec<Message>) -> Vec<Result<bool, Error>> {
        msgs.into_iter().map(Self::filter).collect()
    }
}

export!(JsonFilter);
