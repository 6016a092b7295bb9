//! Human-friendly config values: durations ("500ms"), sizes ("64MiB") and
//! validated names.

use serde::Deserialize;

pub use sluice_core::HumanDuration;

/// A size in bytes: an integer, or a string like `"64MiB"` or `"1GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SizeRepr")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Bytes(u64),
    Text(String),
}

impl TryFrom<SizeRepr> for ByteSize {
    type Error = String;
    fn try_from(repr: SizeRepr) -> Result<Self, String> {
        match repr {
            SizeRepr::Bytes(n) => Ok(ByteSize(n)),
            SizeRepr::Text(s) => s
                .parse::<bytesize::ByteSize>()
                .map(|b| ByteSize(b.as_u64()))
                .map_err(|e| format!("`{s}` is not a size ({e}); write e.g. \"64MiB\" or \"1GB\"")),
        }
    }
}

/// A pipeline, stage or sink name: letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Name(pub String);

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Name(s))
        } else {
            Err(format!(
                "`{s}` is not a valid name: use 1-64 letters, digits, `-` or `_`"
            ))
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}
