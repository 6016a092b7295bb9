//! Replies of `XREADGROUP`, `XAUTOCLAIM` and `XRANGE`, parsed into
//! entries, and an entry's fields as a message.

use redis::Value;
use sluice_core::Message;

/// One stream entry: id and fields in order.
#[derive(Debug, PartialEq)]
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// The message an entry holds: `payload_field` is the payload (false
    /// when the entry has none), `key_field` the key, every other field a
    /// header, in order; the first of a repeated payload or key field counts.
    pub(super) fn into_message(
        self,
        payload_field: &str,
        key_field: &str,
        stream: &str,
    ) -> (Message, bool) {
        let mut payload = None;
        let mut key = None;
        let mut headers = Vec::new();
        for (field, value) in self.fields {
            if payload.is_none() && field == payload_field.as_bytes() {
                payload = Some(value);
            } else if key.is_none() && field == key_field.as_bytes() {
                key = Some(value);
            } else {
                headers.push((String::from_utf8_lossy(&field).into_owned(), value));
            }
        }
        let has_payload = payload.is_some();
        let message = Message {
            key,
            payload: payload.unwrap_or_default(),
            headers,
            source: stream.to_owned(),
            timestamp_ms: self.id.split('-').next().and_then(|ms| ms.parse().ok()),
            attempt: 1,
            header_types: Vec::new(),
        };
        (message, has_payload)
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn bytes(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(n) => n.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

/// Entries from `[[id, [field, value, …]], …]` (also `XRANGE`'s reply);
/// entries whose fields are nil (deleted while pending) are skipped.
pub(super) fn entries(v: Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut pair) = item else {
                return None;
            };
            if pair.len() != 2 {
                return None;
            }
            let fields = pair.pop()?;
            let id = text(&pair[0])?;
            let Value::Array(flat) = fields else {
                return None;
            };
            let mut flat = flat.into_iter();
            let mut fields = Vec::new();
            while let (Some(f), Some(v)) = (flat.next(), flat.next()) {
                fields.push((bytes(f), bytes(v)));
            }
            Some(Entry { id, fields })
        })
        .collect()
}

/// XREADGROUP's reply: nil, or `[[stream, entries]]` (RESP2) / a map (RESP3).
pub(super) fn read_reply(v: Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => {
                    entries(pair.pop().unwrap_or(Value::Nil))
                }
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, e)| entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// XAUTOCLAIM's reply: `[next-cursor, entries, deleted-ids]`.
pub(super) fn claim_reply(v: Value) -> (Option<String>, Vec<Entry>) {
    let Value::Array(mut parts) = v else {
        return (None, Vec::new());
    };
    if parts.len() < 2 {
        return (None, Vec::new());
    }
    let claimed = parts.swap_remove(1);
    (text(&parts[0]), entries(claimed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_a_read_reply_keeping_field_order_and_repeats() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("orders"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![
                        bulk("payload"),
                        bulk("{}"),
                        bulk("h"),
                        bulk("1"),
                        bulk("h"),
                        bulk("2"),
                    ]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let got = read_reply(reply);
        assert_eq!(got.len(), 1, "a deleted entry is skipped");
        assert_eq!(got[0].id, "1-0");
        assert_eq!(got[0].fields.len(), 3);
        assert_eq!(got[0].fields[2], (b"h".to_vec(), b"2".to_vec()));
        assert!(read_reply(Value::Nil).is_empty());
    }

    #[test]
    fn parses_a_claim_reply() {
        let reply = Value::Array(vec![
            bulk("5-0"),
            Value::Array(vec![Value::Array(vec![
                bulk("3-0"),
                Value::Array(vec![bulk("payload"), bulk("x")]),
            ])]),
            Value::Array(vec![]),
        ]);
        let (next, got) = claim_reply(reply);
        assert_eq!(next.as_deref(), Some("5-0"));
        assert_eq!(
            got,
            vec![Entry {
                id: "3-0".into(),
                fields: vec![(b"payload".to_vec(), b"x".to_vec())]
            }]
        );
    }

    use proptest::prelude::*;

    /// Any RESP value, nested a few deep.
    fn resp() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<i64>().prop_map(Value::Int),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(Value::BulkString),
            "\\PC{0,12}".prop_map(Value::SimpleString),
            Just(Value::Okay),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((inner.clone(), inner), 0..3).prop_map(Value::Map),
            ]
        })
    }

    fn entry() -> impl Strategy<Value = (String, Vec<(Vec<u8>, Vec<u8>)>)> {
        (
            "[0-9]{1,13}-[0-9]{1,3}",
            prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 0..12),
                    prop::collection::vec(any::<u8>(), 0..40),
                ),
                1..6,
            ),
        )
    }

    fn as_reply(id: &str, fields: &[(Vec<u8>, Vec<u8>)]) -> Value {
        let flat = fields
            .iter()
            .flat_map(|(f, v)| [Value::BulkString(f.clone()), Value::BulkString(v.clone())])
            .collect();
        Value::Array(vec![bulk(id), Value::Array(flat)])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Whatever a server answers, the parsers take what is an entry and
        /// skip the rest, never panicking.
        #[test]
        fn any_reply_parses_without_a_panic(v in resp()) {
            let _ = read_reply(v.clone());
            let _ = claim_reply(v.clone());
            for e in entries(v) {
                let _ = e.into_message("payload", "key", "s");
            }
        }

        /// Entries with binary fields and values, repeated names, come back
        /// from an `XREADGROUP` reply field for field, in order.
        #[test]
        fn well_formed_entries_parse_back_whole(items in prop::collection::vec(entry(), 0..6)) {
            let reply = Value::Array(vec![Value::Array(vec![
                bulk("s"),
                Value::Array(items.iter().map(|(id, f)| as_reply(id, f)).collect()),
            ])]);
            let parsed = read_reply(reply);
            let expected: Vec<Entry> = items
                .into_iter()
                .map(|(id, fields)| Entry { id, fields })
                .collect();
            prop_assert_eq!(parsed, expected);
        }
    }
}
