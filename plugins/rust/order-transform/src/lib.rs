//! `order-transform`: a `transform` component for sluice.
//!
//! Reshapes a JSON order
//! (`{"id","customer_id","country","currency","amount","card","items":[...]}`)
//! into
//! `{"order_id","customer_id","country","total_cents","currency","card","item_count"}`
//! where `total_cents` is `amount * 100` rounded to an integer, `item_count`
//! is the number of entries of `items`, and the output fields named by param
//! `redact` (default `card`) are masked down to their last 4 digits.
//! A header `x-sluice-transform` = param `tag` is appended; key, source,
//! timestamp and attempt are kept.
//!
//! With param `split_items = "true"` the order is split instead: one output
//! message per entry of `items` (none for an order without items).

use std::sync::OnceLock;

use serde_json::{Map, Value};

wit_bindgen::generate!({
    world: "transform",
    path: "../../../wit",
});

use sluice::plugin::host;

const HEADER: &str = "x-sluice-transform";

/// The stage params, read once per instance (they never change within it).
struct Params {
    /// Output fields to mask.
    redact: Vec<String>,
    /// Value of the `x-sluice-transform` header.
    tag: String,
    /// One output message per item instead of one per order.
    split_items: bool,
}

fn params() -> Result<&'static Params, Error> {
    static PARAMS: OnceLock<Result<Params, String>> = OnceLock::new();
    PARAMS
        .get_or_init(|| {
            let redact = host::config("redact")
                .unwrap_or_else(|| "card".to_string())
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect();
            let tag = host::config("tag").unwrap_or_else(|| "order-transform@1".to_string());
            let split_items = match host::config("split_items").as_deref().map(str::trim) {
                None | Some("false") | Some("") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(format!(
                        "order-transform: param `split_items` = {other:?} is neither \"true\" nor \"false\""
                    ))
                }
            };
            Ok(Params { redact, tag, split_items })
        })
        .as_ref()
        .map_err(|e| Error::Fatal(e.clone()))
}

/// Masks a value down to its last 4 digits: `"4111111111111111"` becomes
/// `"************1111"`. Non-digit characters are dropped; a value with 4
/// digits or fewer is masked whole. `null` stays `null`.
fn mask(value: &Value) -> Value {
    let text = match value {
        Value::Null => return Value::Null,
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Value::String("****".to_string()),
    };
    let digits: Vec<char> = text.chars().filter(char::is_ascii_digit).collect();
    let keep = if digits.len() > 4 { 4 } else { 0 };
    let mut masked = "*".repeat(digits.len() - keep);
    masked.extend(&digits[digits.len() - keep..]);
    Value::String(masked)
}

/// Converts an amount in currency units to integer cents, rounding half away
/// from zero.
fn cents(amount: f64) -> Option<i64> {
    let cents = (amount * 100.0).round();
    (cents.is_finite() && cents.abs() < 9.0e15).then_some(cents as i64)
}

/// Serialises `fields` as a JSON object in the given order (serde_json's own
/// map would sort the keys), masking the fields named by `redact`.
fn object(fields: Vec<(&str, Value)>, redact: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    for (i, (name, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let value = if redact.iter().any(|r| r == name) { mask(&value) } else { value };
        // Writing to a Vec cannot fail, and strings/values always serialise.
        serde_json::to_writer(&mut out, name).expect("serialise key");
        out.push(b':');
        serde_json::to_writer(&mut out, &value).expect("serialise value");
    }
    out.push(b'}');
    out
}

fn field(order: &Map<String, Value>, name: &str) -> Value {
    order.get(name).cloned().unwrap_or(Value::Null)
}

/// A copy of `msg` (key, headers, source, timestamp, attempt) with a new
/// payload and the transform header appended.
fn derive(msg: &Message, payload: Vec<u8>, tag: &str) -> Message {
    let mut headers = msg.headers.clone();
    headers.push((HEADER.to_string(), tag.as_bytes().to_vec()));
    Message {
        key: msg.key.clone(),
        payload,
        headers,
        source: msg.source.clone(),
        timestamp_ms: msg.timestamp_ms,
        attempt: msg.attempt,
    }
}

fn transform(msg: Message) -> Result<Vec<Message>, Error> {
    let params = params()?;
    let doc: Value = serde_json::from_slice(&msg.payload)
        .map_err(|e| Error::Fatal(format!("payload is not valid JSON: {e}")))?;
    let Value::Object(order) = doc else {
        return Err(Error::Fatal("payload is not a JSON object".to_string()));
    };
    let items: &[Value] = match order.get("items") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(items)) => items,
        Some(_) => return Err(Error::Fatal("field `items` is not a list".to_string())),
    };

    if params.split_items {
        let count = items.len();
        return items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let Value::Object(item) = item else {
                    return Err(Error::Fatal(format!("item {index} is not a JSON object")));
                };
                let qty = item.get("qty").and_then(Value::as_f64);
                let price = item.get("price").and_then(Value::as_f64);
                let line_cents = match (qty, price) {
                    (Some(q), Some(p)) => cents(q * p).map(Value::from).unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                let payload = object(
                    vec![
                        ("order_id", field(&order, "id")),
                        ("item_index", Value::from(index)),
                        ("item_count", Value::from(count)),
                        ("customer_id", field(&order, "customer_id")),
                        ("country", field(&order, "country")),
                        ("currency", field(&order, "currency")),
                        ("sku", field(item, "sku")),
                        ("qty", field(item, "qty")),
                        ("price", field(item, "price")),
                        ("total_cents", line_cents),
                    ],
                    &params.redact,
                );
                Ok(derive(&msg, payload, &params.tag))
            })
            .collect();
    }

    let total_cents = order
        .get("amount")
        .and_then(Value::as_f64)
        .and_then(cents)
        .ok_or_else(|| Error::Fatal("field `amount` is missing or not a number".to_string()))?;
    let payload = object(
        vec![
            ("order_id", field(&order, "id")),
            ("customer_id", field(&order, "customer_id")),
            ("country", field(&order, "country")),
            ("total_cents", Value::from(total_cents)),
            ("currency", field(&order, "currency")),
            ("card", field(&order, "card")),
            ("item_count", Value::from(items.len())),
        ],
        &params.redact,
    );
    Ok(vec![derive(&msg, payload, &params.tag)])
}

struct OrderTransform;

impl Guest for OrderTransform {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        transform(msg)
    }

    fn transform_batch(msgs: Vec<Message>) -> Vec<Result<Vec<Message>, Error>> {
        msgs.into_iter().map(transform).collect()
    }
}

export!(OrderTransform);
