//! Human-friendly config values shared by every crate that reads TOML.

use serde::Deserialize;
use std::time::Duration;

/// A duration written as a human string: `"250ms"`, `"1s"`, `"2m 30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HumanDuration(pub Duration);

impl TryFrom<String> for HumanDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                format!("`{s}` is not a duration ({e}); write e.g. \"500ms\", \"2s\" or \"1m\"")
            })
    }
}
