//! `GET /api/v1/tap`: a live stream of copies of the messages entering or
//! leaving one stage, or handed to a sink, as JSON lines (`sluice tap` reads
//! it). Off unless the daemon runs with `--tap`; on a listener that is not
//! on loopback it also needs the tap token (`Authorization: Bearer TOKEN`).
//!
//! Query: `pipeline` (required), `stage` (a stage or sink name; none: every
//! sink), `side` (`inputs` or `outputs`, default `outputs`; a sink has
//! inputs only), `limit` (copies, then the stream ends), `sample` (0–1, the
//! share of messages copied), `payload_bytes` (payloads cut there, default
//! 4096).
//!
//! Lines: first `{"tap":"attached",...}`, then one object per copy, and
//! `{"dropped":N}` whenever the copies dropped so far (the reader was too
//! slow: the pipeline never waits for a tap) went up.

use super::Shared;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sluice_core::tap::{Attached, Copy, Point, Side};
use std::time::Duration;
use tokio::sync::mpsc;

/// Who may tap: off, or on with an optional bearer token.
#[derive(Debug, Clone, Default)]
pub struct TapAccess {
    pub enabled: bool,
    pub token: Option<String>,
}

/// Copies waiting for the reader; past this they are dropped.
const QUEUE: usize = 1024;

#[derive(Deserialize)]
pub(super) struct TapQuery {
    pipeline: String,
    stage: Option<String>,
    side: Option<String>,
    limit: Option<u64>,
    sample: Option<f64>,
    payload_bytes: Option<usize>,
}

fn refuse(code: StatusCode, text: String) -> Response {
    (code, format!("{text}\n")).into_response()
}

pub(super) async fn tap(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<TapQuery>,
) -> Response {
    if !s.tap.enabled {
        return refuse(
            StatusCode::FORBIDDEN,
            "the tap is off: run the daemon with `sluice run --tap` to allow it".into(),
        );
    }
    if let Some(token) = &s.tap.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "the tap needs its token: `sluice tap --token-file FILE` or SLUICE_TAP_TOKEN"
                    .into(),
            );
        }
    }
    let pipelines = s.status.pipelines();
    let Some(p) = pipelines.iter().find(|p| p.name == q.pipeline) else {
        let names: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no pipeline `{}` is running (running: {})",
                q.pipeline,
                names.join(", ")
            ),
        );
    };
    let side = match q.side.as_deref() {
        None | Some("outputs") => Side::Outputs,
        Some("inputs") => Side::Inputs,
        Some(other) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("side `{other}`: use `inputs` or `outputs`"),
            )
        }
    };
    let stages: Vec<String> = p
        .stages
        .current()
        .stages
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let point = match &q.stage {
        None => Point::Sink(None),
        Some(name) if stages.contains(name) => Point::stage(name, side),
        Some(name) if p.sinks.iter().any(|(n, _)| n == name) => Point::Sink(Some(name.clone())),
        Some(name) => {
            let sinks: Vec<&str> = p.sinks.iter().map(|(n, _)| n.as_str()).collect();
            return refuse(
                StatusCode::NOT_FOUND,
                format!(
                    "pipeline `{}` has no stage or sink `{name}` (stages: {}; sinks: {})",
                    p.name,
                    stages.join(", "),
                    sinks.join(", ")
                ),
            );
        }
    };
    let sample = q.sample.unwrap_or(1.0);
    if !(sample > 0.0 && sample <= 1.0) {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("sample {sample}: use a share of messages in (0, 1], e.g. 0.1"),
        );
    }
    let payload_bytes = q.payload_bytes.unwrap_or(4096);
    let (attached, copies) = p.taps.attach(point.clone(), sample, payload_bytes, QUEUE);
    tracing::info!(pipeline = %p.name, ?point, sample, "tap attached");
    let (at, side) = match &point {
        Point::Stage { name, side } => (name.clone(), side.as_str()),
        Point::Sink(name) => (
            name.clone().unwrap_or_else(|| "every sink".into()),
            "inputs",
        ),
    };
    let hello = json!({"tap": "attached", "pipeline": p.name, "at": at, "side": side, "sample": sample, "payload_bytes": payload_bytes});
    let stream = Stream {
        pipeline: p.name.clone(),
        hello: Some(hello.to_string()),
        copies,
        attached,
        tick: tokio::time::interval(Duration::from_secs(1)),
        sent: 0,
        limit: q.limit,
        dropped: 0,
    };
    let body = Body::from_stream(futures::stream::unfold(stream, Stream::next));
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// One tap's stream of lines; detaches when dropped (the reader left).
struct Stream {
    pipeline: String,
    hello: Option<String>,
    copies: mpsc::Receiver<Copy>,
    attached: Attached,
    tick: tokio::time::Interval,
    sent: u64,
    limit: Option<u64>,
    /// Drops already reported.
    dropped: u64,
}

impl Stream {
    async fn next(mut self) -> Option<(Result<Bytes, std::convert::Infallible>, Self)> {
        if let Some(hello) = self.hello.take() {
            return Some((Ok(line(hello)), self));
        }
        if self.limit.is_some_and(|l| self.sent >= l) {
            return None;
        }
        loop {
            tokio::select! {
                copy = self.copies.recv() => {
                    let copy = copy?;
                    self.sent += 1;
                    let text = copy_json(&self.pipeline, &copy).to_string();
                    return Some((Ok(line(text)), self));
                }
                _ = self.tick.tick() => {
                    let dropped = self.attached.dropped();
                    if dropped > self.dropped {
                        self.dropped = dropped;
                        return Some((Ok(line(json!({"dropped": dropped}).to_string())), self));
                    }
                }
            }
        }
    }
}

fn line(mut text: String) -> Bytes {
    text.push('\n');
    Bytes::from(text)
}

/// Bytes as text when they are UTF-8, else as hex under `NAME_hex`.
fn bytes_field(object: &mut serde_json::Map<String, serde_json::Value>, name: &str, bytes: &[u8]) {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        // Cut inside a character by `payload_bytes`: the text before it.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    match text {
        Some(text) => object.insert(name.to_string(), text.into()),
        None => object.insert(format!("{name}_hex"), hex::encode(bytes).into()),
    };
}

fn copy_json(pipeline: &str, c: &Copy) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    o.insert(
        "time".into(),
        humantime::format_rfc3339_millis(c.time).to_string().into(),
    );
    o.insert("pipeline".into(), pipeline.into());
    o.insert("at".into(), c.at.clone().into());
    o.insert("side".into(), c.side.as_str().into());
    if let Some(key) = &c.key {
        bytes_field(&mut o, "key", key);
    }
    bytes_field(&mut o, "payload", &c.payload);
    o.insert("payload_bytes".into(), c.payload_bytes.into());
    o.insert(
        "truncated".into(),
        (c.payload.len() < c.payload_bytes).into(),
    );
    let mut headers = serde_json::Map::new();
    for (name, value) in &c.headers {
        headers.insert(name.clone(), String::from_utf8_lossy(value).into());
    }
    o.insert("headers".into(), headers.into());
    o.insert("attempt".into(), c.attempt.into());
    serde_json::Value::Object(o)
}
