//! `tier-router`: a `route` component built against `sluice:plugin@0.2.0`
//! that enriches as it routes, with two capabilities: `http` and `kv`.
//!
//! For each JSON message it reads the customer id at param `field`
//! (default `customer_id`), and finds the customer's tier:
//! 1. in the stage's key-value store (`tier:ID`), where earlier lookups
//!    are cached for param `cache_ms` (default 60000);
//! 2. else with `GET {param service}/tier/ID` (e.g.
//!    `http://127.0.0.1:8787`), whose body is the tier (`gold`, `silver`,
//!    ...); the answer is cached.
//!
//! The message goes to the sink named after the tier if param `tiers`
//! (default `gold,silver,bronze`) lists it, else to param `fallback`
//! (default `standard`). A message with no customer id is dead-lettered
//! (`fatal`); a tier service that cannot be reached or answers an error is
//! a `retryable` error, so the host retries the message later.

wit_bindgen::generate!({
    world: "route-kv",
    path: "../../../wit/0.2.0",
});

#[path = "../../shared/http_get.rs"]
mod http_get;

use sluice::plugin::{host, kv};

fn param(key: &str, default: &str) -> String {
    host::config(key).unwrap_or_else(|| default.to_owned())
}

fn store_error(e: kv::KvError) -> Error {
    match e {
        kv::KvError::Unavailable(why) => Error::Retryable(format!("tier-router: kv: {why}")),
        kv::KvError::Limit(why) | kv::KvError::Invalid(why) => {
            Error::Fatal(format!("tier-router: kv: {why}"))
        }
    }
}

/// The customer's tier: cached, or looked up and cached.
fn tier(customer: &str) -> Result<String, Error> {
    let cached = format!("tier:{customer}");
    if let Some(tier) = kv::get(&cached).map_err(store_error)? {
        return Ok(String::from_utf8_lossy(&tier).into_owned());
    }
    let url = format!(
        "{}/tier/{customer}",
        param("service", "http://127.0.0.1:8787").trim_end_matches('/')
    );
    let (status, body) =
        http_get::get(&url).map_err(|e| Error::Retryable(format!("tier-router: GET {url}: {e}")))?;
    if status != 200 {
        return Err(Error::Retryable(format!(
            "tier-router: GET {url}: status {status}"
        )));
    }
    let tier = String::from_utf8_lossy(&body).trim().to_owned();
    let ttl = param("cache_ms", "60000").trim().parse().unwrap_or(60_000);
    kv::set(&cached, tier.as_bytes(), Some(ttl)).map_err(store_error)?;
    Ok(tier)
}

fn route(msg: Message) -> Result<Vec<String>, Error> {
    let field = param("field", "customer_id");
    let doc: serde_json::Value = serde_json::from_slice(&msg.payload)
        .map_err(|e| Error::Fatal(format!("tier-router: payload is not JSON: {e}")))?;
    let customer = match &doc[field.as_str()] {
        serde_json::Value::String(s) if !s.is_empty() => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => {
            return Err(Error::Fatal(format!(
                "tier-router: no customer id at `{field}`"
            )))
        }
    };
    let tier = tier(&customer)?;
    let tiers = param("tiers", "gold,silver,bronze");
    if tiers.split(',').any(|t| t.trim() == tier) {
        Ok(vec![tier])
    } else {
        Ok(vec![param("fallback", "standard")])
    }
}

struct TierRouter;

impl Guest for TierRouter {
    fn route(msg: Message) -> Result<Vec<String>, Error> {
        route(msg)
    }

    fn route_batch(msgs: Vec<Message>) -> Vec<Result<Vec<String>, Error>> {
        msgs.into_iter().map(route).collect()
    }
}

export!(TierRouter);
