//! Headers ↔ SQS message attributes, within what SQS takes: at most
//! [`MAX_ATTRIBUTES`] per message; names of 1–256 characters from
//! `A-Za-z0-9_-.`, not starting with `AWS.` or `Amazon.` (any case), without
//! a leading or trailing `.` or `..`; no empty values.
//!
//! A message's headers become, in this order of claim on the ten slots:
//! `sluice-key` and `sluice-encoding` when needed; every `sluice-error-*`
//! field of a dead letter together as one JSON object in `sluice-error`;
//! one attribute per header while they fit; and the rest (more headers than
//! slots, names SQS refuses, repeated names, empty values) as one JSON array
//! of `[name, value]` pairs in `sluice-headers` (a value that is not text as
//! `{"base64": "..."}`). The source unpacks both, so a message comes out of
//! SQS with the headers it went in with.

use base64::Engine as _;
use sluice_core::dlq::HEADER_PREFIX;

/// The most message attributes SQS takes on one message.
pub const MAX_ATTRIBUTES: usize = 10;
/// A dead letter's `sluice-error-*` fields, as one JSON object.
pub const ERROR_ATTRIBUTE: &str = "sluice-error";
/// Headers that are not attributes of their own, as one JSON array.
pub const HEADERS_ATTRIBUTE: &str = "sluice-headers";

/// Whether SQS takes `name` as a message attribute name.
pub fn valid_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (1..=256).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
}

/// The attributes for `headers` when `reserved` slots are taken already
/// (key, encoding), each as its name and value, in slot order.
pub(super) fn pack(headers: &[(String, Vec<u8>)], reserved: usize) -> Vec<(String, Vec<u8>)> {
    let mut error = Vec::new();
    let mut others = Vec::new();
    for (name, value) in headers {
        match name.strip_prefix(HEADER_PREFIX) {
            Some(field) => error.push((
                field.to_owned(),
                String::from_utf8_lossy(value).into_owned(),
            )),
            None => others.push((name, value)),
        }
    }
    let mut attributes = Vec::new();
    if !error.is_empty() {
        let json = crate::dlq::error_json(&error).to_string();
        attributes.push((ERROR_ATTRIBUTE.to_owned(), json.into_bytes()));
    }
    let slots = MAX_ATTRIBUTES.saturating_sub(reserved + attributes.len());
    let mut seen = std::collections::HashSet::new();
    let fits = |name: &String, value: &Vec<u8>, seen: &mut std::collections::HashSet<String>| {
        valid_name(name) && !value.is_empty() && !is_reserved(name) && seen.insert(name.clone())
    };
    let direct: Vec<bool> = others
        .iter()
        .map(|(name, value)| fits(name, value, &mut seen))
        .collect();
    let all_fit = direct.iter().all(|d| *d) && others.len() <= slots;
    let room = if all_fit {
        slots
    } else {
        slots.saturating_sub(1)
    };
    let (mut packed, mut placed) = (Vec::new(), 0);
    for ((name, value), direct) in others.into_iter().zip(direct) {
        if direct && placed < room {
            placed += 1;
            attributes.push((name.clone(), value.clone()));
        } else {
            packed.push(serde_json::json!([name, json_value(value)]));
        }
    }
    if !packed.is_empty() {
        let json = serde_json::Value::Array(packed).to_string();
        attributes.push((HEADERS_ATTRIBUTE.to_owned(), json.into_bytes()));
    }
    attributes
}

fn is_reserved(name: &str) -> bool {
    [
        super::KEY_ATTRIBUTE,
        super::ENCODING_ATTRIBUTE,
        ERROR_ATTRIBUTE,
        HEADERS_ATTRIBUTE,
    ]
    .contains(&name)
}

fn json_value(value: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(value) {
        Ok(text) => serde_json::Value::String(text.to_owned()),
        Err(_) => serde_json::json!({
            "base64": base64::engine::general_purpose::STANDARD.encode(value)
        }),
    }
}

/// The headers one attribute stands for: `sluice-error` and
/// `sluice-headers` unpacked, any other as itself. A packed attribute that
/// does not parse stays as it is (nothing is lost).
pub fn unpack(name: &str, value: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    let parsed = serde_json::from_slice::<serde_json::Value>(&value).ok();
    match (name, parsed) {
        (ERROR_ATTRIBUTE, Some(serde_json::Value::Object(fields))) => fields
            .into_iter()
            .map(|(field, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (format!("{HEADER_PREFIX}{field}"), text.into_bytes())
            })
            .collect(),
        (HEADERS_ATTRIBUTE, Some(serde_json::Value::Array(pairs))) => {
            let unpacked: Option<Vec<_>> = pairs.iter().map(header_of).collect();
            unpacked.unwrap_or_else(|| vec![(name.to_owned(), value)])
        }
        _ => vec![(name.to_owned(), value)],
    }
}

fn header_of(pair: &serde_json::Value) -> Option<(String, Vec<u8>)> {
    let name = pair.get(0)?.as_str()?.to_owned();
    let value = match pair.get(1)? {
        serde_json::Value::String(s) => s.clone().into_bytes(),
        other => base64::engine::general_purpose::STANDARD
            .decode(other.get("base64")?.as_str()?)
            .ok()?,
    };
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn roundtrip(headers: &[(String, Vec<u8>)], reserved: usize) -> Vec<(String, Vec<u8>)> {
        let attributes = pack(headers, reserved);
        assert!(
            attributes.len() + reserved <= MAX_ATTRIBUTES,
            "{} attributes",
            attributes.len()
        );
        assert!(attributes
            .iter()
            .all(|(n, v)| valid_name(n) && !v.is_empty()));
        let mut back: Vec<_> = attributes
            .into_iter()
            .flat_map(|(n, v)| unpack(&n, v))
            .collect();
        back.sort();
        back
    }

    fn sorted(headers: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
        let mut h = headers.to_vec();
        h.sort();
        h
    }

    #[test]
    fn a_dead_letter_with_many_headers_stays_within_ten_attributes() {
        let mut headers: Vec<(String, Vec<u8>)> = (0..12)
            .map(|i| (format!("h{i}"), format!("v{i}").into_bytes()))
            .collect();
        for field in [
            "pipeline",
            "stage",
            "class",
            "text",
            "attempts",
            "source-line",
        ] {
            headers.push((format!("{HEADER_PREFIX}{field}"), b"x".to_vec()));
        }
        headers.push(("bad name!".into(), vec![0xff, 0]));
        headers.push(("h1".into(), b"again".to_vec()));
        headers.push(("empty".into(), Vec::new()));
        headers.push(("AWS.reserved".into(), b"v".to_vec()));
        assert_eq!(roundtrip(&headers, 2), sorted(&headers));
        assert_eq!(roundtrip(&headers, 0), sorted(&headers));
    }

    #[test]
    fn few_headers_stay_attributes_of_their_own() {
        let headers: Vec<(String, Vec<u8>)> =
            (0..9).map(|i| (format!("h{i}"), b"v".to_vec())).collect();
        let attributes = pack(&headers, 1);
        assert_eq!(attributes.len(), 9);
        assert!(attributes.iter().all(|(n, _)| n.starts_with('h')));
        let attributes = pack(&headers, 2);
        assert_eq!(
            attributes.len(),
            8,
            "eight slots: seven headers and the pack"
        );
        assert_eq!(attributes[7].0, HEADERS_ATTRIBUTE);
    }

    #[test]
    fn names_sqs_refuses_are_found() {
        for bad in ["", "a b", "AWS.x", "amazon.x", ".a", "a.", "a..b", "é"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in ["a", "x-trace_id.v1", "traceparent"] {
            assert!(valid_name(good), "{good:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        /// Any headers (odd names, repeated names, empty and binary values,
        /// more than ten) come back from the attributes they were packed
        /// into, within SQS's limits, whatever the slots already taken.
        #[test]
        fn any_headers_round_trip_through_at_most_ten_attributes(
            headers in proptest::collection::vec(
                (sluice_core::arbitrary::header_name(), sluice_core::arbitrary::bytes(40)),
                0..16,
            )
            .prop_filter("not dead-letter fields", |h| h.iter().all(|(n, _)| !n.starts_with(HEADER_PREFIX))),
            reserved in 0usize..=2,
        ) {
            proptest::prop_assert_eq!(roundtrip(&headers, reserved), sorted(&headers));
        }
    }
}
