//! `country-router`: a `route` component for sluice.
//!
//! Reads the JSON field named by param `field` (default `country`; dotted
//! paths reach into nested objects) and maps its value to a sink name through
//! the params `route.<VALUE>` (for example `route.DE = "europe"`). A value
//! with no mapping goes to param `default` when it is set, and otherwise to a
//! sink named like the value itself: the host dead-letters a message routed
//! to a sink the pipeline does not have, which is intended. Param `also`
//! (optional, comma-separated) names sinks every message goes to as well.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

wit_bindgen::generate!({
    world: "route",
    path: "../../../wit",
});

use sluice::plugin::host::{self, Level};

/// At most this many distinct field values have their `route.<VALUE>`
/// lookups cached; past it, lookups go to the host every time (payload
/// values are untrusted and must not grow the cache without bound).
const CACHE_LIMIT: usize = 1024;

/// The stage params, read once per instance (they never change within it).
struct Params {
    /// The param as written, for messages.
    field: String,
    /// `field` split on `.`.
    path: Vec<String>,
    default: Option<String>,
    also: Vec<String>,
}

fn params() -> Result<&'static Params, Error> {
    static PARAMS: OnceLock<Result<Params, String>> = OnceLock::new();
    PARAMS
        .get_or_init(|| {
            let field = host::config("field").unwrap_or_else(|| "country".to_string());
            if field.is_empty() || field.split('.').any(str::is_empty) {
                return Err(format!(
                    "country-router: param `field` = {field:?} is not a valid field path"
                ));
            }
            let path = field.split('.').map(str::to_string).collect();
            let default = host::config("default").filter(|d| !d.is_empty());
            let also = host::config("also")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            Ok(Params { field, path, default, also })
        })
        .as_ref()
        .map_err(|e| Error::Fatal(e.clone()))
}

thread_local! {
    /// `route.<VALUE>` lookups already made: value -> mapped sink, if any.
    static ROUTES: RefCell<BTreeMap<String, Option<String>>> = RefCell::new(BTreeMap::new());
}

/// The sink that `route.<value>` maps `value` to, if any.
fn mapped(value: &str) -> Option<String> {
    ROUTES.with(|routes| {
        if let Some(hit) = routes.borrow().get(value) {
            return hit.clone();
        }
        let sink = host::config(&format!("route.{value}"));
        let mut routes = routes.borrow_mut();
        if routes.len() < CACHE_LIMIT {
            routes.insert(value.to_string(), sink.clone());
        }
        sink
    })
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

fn route(msg: Message) -> Result<Vec<String>, Error> {
    let params = params()?;
    let doc: Value = serde_json::from_slice(&msg.payload)
        .map_err(|e| Error::Fatal(format!("payload is not valid JSON: {e}")))?;
    let value = match lookup(&doc, &params.path) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
        None | Some(Value::Null) => None,
        Some(_) => {
            return Err(Error::Fatal(format!(
                "field `{}` is not a string, number or boolean",
                params.field
            )))
        }
    };
    let primary = match value {
        Some(value) => match mapped(&value).or_else(|| params.default.clone()) {
            Some(sink) => sink,
            None => {
                host::log(
                    Level::Debug,
                    &format!(
                        "country-router: no `route.{value}` and no `default`: routing to sink `{value}`"
                    ),
                );
                value
            }
        },
        None => params.default.clone().ok_or_else(|| {
            Error::Fatal(format!(
                "field `{}` is missing and param `default` is not set",
                params.field
            ))
        })?,
    };
    let mut sinks = Vec::with_capacity(1 + params.also.len());
    sinks.push(primary);
    for extra in &params.also {
        if !sinks.contains(extra) {
            sinks.push(extra.clone());
        }
    }
    Ok(sinks)
}

struct CountryRouter;

impl Guest for CountryRouter {
    fn route(msg: Message) -> Result<Vec<String>, Error> {
        route(msg)
    }

    fn route_batch(msgs: Vec<Message>) -> Vec<Result<Vec<String>, Error>> {
        msgs.into_iter().map(route).collect()
    }
}

export!(CountryRouter);
