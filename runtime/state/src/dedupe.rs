//! The built-in `dedupe` stage: drops a message whose id was already
//! delivered within a window, and lets only one copy of an id through at a
//! time.
//!
//! For each message the stage claims its id in the store ([`Store::claim`]):
//! a free id is claimed and the message goes on, carrying the claim; an id
//! recorded as delivered drops the message (counted as deduplicated); an
//! id another copy holds is a retryable error, so this copy waits (parked
//! with backoff) until the other is delivered (then it is dropped) or
//! released (then it goes). The engine completes the claim after every sink
//! confirmed the message and before the source is acknowledged
//! ([`sluice_core::claim`]).
//!
//! ```toml
//! [[pipelines.orders.stages]]
//! name = "once"
//! kind = "dedupe"
//! id = "json:/order_id"     # or "key", "header:NAME", "payload"
//! window = "24h"
//! ```

use crate::{ClaimState, Store};
use futures::future::BoxFuture;
use sha2::Digest;
use sluice_core::{
    Claim, ClaimStore, Message, PluginInfo, Stage, StageError, StageFactory, StageKind, StageOutput,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a message's id comes from (`id = "…"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdSource {
    /// The message key.
    Key,
    /// The first header with this name.
    Header(String),
    /// The value at this JSON pointer in the payload (a string as its text,
    /// anything else as its JSON).
    Json(String),
    /// The sha256 of the payload.
    Payload,
}

impl std::str::FromStr for IdSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "key" {
            Ok(IdSource::Key)
        } else if s == "payload" {
            Ok(IdSource::Payload)
        } else if let Some(name) = s.strip_prefix("header:").filter(|n| !n.is_empty()) {
            Ok(IdSource::Header(name.to_owned()))
        } else if let Some(pointer) = s.strip_prefix("json:") {
            if pointer.starts_with('/') {
                Ok(IdSource::Json(pointer.to_owned()))
            } else {
                Err(format!(
                    "`{s}`: a JSON pointer starts with `/`, e.g. \"json:/order_id\""
                ))
            }
        } else {
            Err(format!(
                "`{s}` is not an id source: use \"key\", \"header:NAME\", \"json:/POINTER\" or \"payload\""
            ))
        }
    }
}

impl std::fmt::Display for IdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdSource::Key => f.write_str("key"),
            IdSource::Header(name) => write!(f, "header:{name}"),
            IdSource::Json(pointer) => write!(f, "json:{pointer}"),
            IdSource::Payload => f.write_str("payload"),
        }
    }
}

impl IdSource {
    /// The id of `msg`, or why it has none.
    ///
    /// # Errors
    /// The message has no key, no such header, a payload that is not JSON,
    /// or nothing at the pointer.
    pub fn id_of(&self, msg: &Message) -> Result<Vec<u8>, String> {
        match self {
            IdSource::Key => msg
                .key
                .clone()
                .ok_or_else(|| "the message has no key".into()),
            IdSource::Header(name) => msg
                .header(name)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| format!("the message has no header `{name}`")),
            IdSource::Json(pointer) => {
                let value: serde_json::Value = serde_json::from_slice(&msg.payload)
                    .map_err(|e| format!("the payload is not JSON ({e})"))?;
                match value.pointer(pointer) {
                    None | Some(serde_json::Value::Null) => {
                        Err(format!("the payload has nothing at `{pointer}`"))
                    }
                    Some(serde_json::Value::String(s)) => Ok(s.clone().into_bytes()),
                    Some(other) => Ok(other.to_string().into_bytes()),
                }
            }
            IdSource::Payload => Ok(sha2::Sha256::digest(&msg.payload).to_vec()),
        }
    }
}

/// A dedupe stage as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupeConfig {
    pub id: IdSource,
    /// How long a delivered id is remembered.
    pub window: Duration,
    /// Most ids an embedded store remembers for the stage (oldest go first).
    pub capacity: u64,
    /// How long a claim holds an id for a copy in flight: longer than a
    /// message takes from this stage to its sinks' confirms.
    pub claim_ttl: Duration,
}

impl DedupeConfig {
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);
    pub const DEFAULT_CAPACITY: u64 = 1_000_000;
    pub const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(30);
}

/// Makes dedupe stages; all of a stage's instances share its store.
pub struct DedupeFactory {
    shared: Arc<Shared>,
}

struct Shared {
    /// `pipeline/stage`: the stage's ids are its own.
    ns: String,
    config: DedupeConfig,
    store: Arc<dyn Store>,
}

impl DedupeFactory {
    pub fn new(pipeline: &str, stage: &str, config: DedupeConfig, store: Arc<dyn Store>) -> Self {
        DedupeFactory {
            shared: Arc::new(Shared {
                ns: format!("{pipeline}/{stage}"),
                config,
                store,
            }),
        }
    }
}

impl StageFactory for DedupeFactory {
    fn kind(&self) -> StageKind {
        StageKind::Dedupe
    }

    fn plugin(&self) -> PluginInfo {
        PluginInfo {
            path: PathBuf::from(format!("<dedupe {}>", self.shared.store.describe())),
            sha256: String::new(),
        }
    }

    fn instantiate(&self) -> anyhow::Result<Box<dyn Stage>> {
        Ok(Box::new(DedupeStage {
            shared: self.shared.clone(),
            claims: Arc::new(Claims(self.shared.clone())),
        }))
    }
}

struct DedupeStage {
    shared: Arc<Shared>,
    /// What each claim this stage takes settles through.
    claims: Arc<dyn ClaimStore>,
}

/// The claims of one stage, completed or released by the engine.
struct Claims(Arc<Shared>);

impl ClaimStore for Claims {
    fn complete(&self, id: &[u8], _token: u64) -> BoxFuture<'static, Result<(), String>> {
        let s = &self.0;
        let done = s
            .store
            .complete(&s.ns, id, s.config.window, s.config.capacity);
        Box::pin(async move { done.await.map_err(|e| e.to_string()) })
    }

    fn release(&self, id: &[u8], token: u64) {
        self.0.store.release(&self.0.ns, id, token);
    }
}

impl DedupeStage {
    fn decide(&self, msgs: &[&Message]) -> Vec<Result<StageOutput, StageError>> {
        let s = &self.shared;
        let ids: Vec<Result<Vec<u8>, String>> = msgs.iter().map(|m| s.config.id.id_of(m)).collect();
        let found: Vec<&[u8]> = ids.iter().filter_map(|r| r.as_deref().ok()).collect();
        let tokens: Vec<u64> = found.iter().map(|_| rand::random()).collect();
        let states = match s.store.claim(&s.ns, &found, &tokens, s.config.claim_ttl) {
            Ok(states) => states,
            Err(e) => {
                let text = e.to_string();
                return ids
                    .iter()
                    .map(|r| match r {
                        Ok(_) => Err(StageError::Retryable(format!("dedupe: {text}"))),
                        Err(why) => Err(no_id(&s.config.id, why)),
                    })
                    .collect();
            }
        };
        let mut answers = states.into_iter().zip(tokens);
        ids.into_iter()
            .map(|r| {
                let id = r.map_err(|why| no_id(&s.config.id, &why))?;
                let (state, token) = answers.next().expect("one state per id");
                match state {
                    ClaimState::Claimed => Ok(StageOutput::Claimed(Claim::new(
                        self.claims.clone(),
                        id,
                        token,
                    ))),
                    ClaimState::Delivered => Ok(StageOutput::Duplicate),
                    ClaimState::InFlight => Err(StageError::Retryable(format!(
                        "dedupe: id `{}` is held by another copy in flight (claims last {:?})",
                        String::from_utf8_lossy(&id),
                        s.config.claim_ttl
                    ))),
                }
            })
            .collect()
    }
}

fn no_id(source: &IdSource, why: &str) -> StageError {
    StageError::Fatal(format!("dedupe: no id ({source}): {why}"))
}

impl Stage for DedupeStage {
    fn call(&mut self, msg: &Message) -> Result<StageOutput, StageError> {
        self.decide(&[msg]).pop().expect("one answer per message")
    }

    fn call_batch(
        &mut self,
        msgs: &[&Message],
    ) -> Result<Vec<Result<StageOutput, StageError>>, sluice_core::Fault> {
        Ok(self.decide(msgs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_key_header_json_or_payload() {
        let msg = Message::new(r#"{"order":{"id":42},"name":"x"}"#)
            .with_key("k1")
            .with_header("h", "v1");
        let id = |s: &str| s.parse::<IdSource>().unwrap().id_of(&msg);
        assert_eq!(id("key").unwrap(), b"k1");
        assert_eq!(id("header:h").unwrap(), b"v1");
        assert_eq!(id("json:/order/id").unwrap(), b"42");
        assert_eq!(id("json:/name").unwrap(), b"x");
        assert_eq!(id("payload").unwrap().len(), 32);
        assert!(id("json:/missing")
            .unwrap_err()
            .contains("nothing at `/missing`"));
        assert!(id("header:nope").unwrap_err().contains("no header `nope`"));
        assert!(IdSource::Key.id_of(&Message::new("x")).is_err());
        assert!("json:order"
            .parse::<IdSource>()
            .unwrap_err()
            .contains("starts with `/`"));
        assert!("uuid"
            .parse::<IdSource>()
            .unwrap_err()
            .contains("\"header:NAME\""));
    }
}
