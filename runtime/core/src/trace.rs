//! OpenTelemetry traces of messages. Off unless the process installs a
//! tracer provider and calls [`enable`] (`sluice run` does when an OTLP
//! endpoint is given); while off, the message path pays one atomic load.
//!
//! - Each message gets a span from its hand-over by the source until it is
//!   settled (`sluice.message`, kind consumer), a child of the trace its W3C
//!   `traceparent` header names, if it has one; attributes: pipeline, source,
//!   broker coordinates (`sluice.at.*`) and at the end its outcome.
//! - Each stage call gets a span (`sluice.stage`) under the message's: a
//!   batch call is one span, the child of its first message's, with a link
//!   to every message's span; attributes: pipeline, stage, kind, plugin
//!   sha256, messages, failures.
//! - Every output (sinks and DLQ) carries the message span's `traceparent`
//!   (and `tracestate`), so the next pipeline's spans join the same trace
//!   across any broker.

use crate::message::{Coordinates, Message};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Link, SpanContext, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The W3C trace-context header.
pub const TRACEPARENT: &str = "traceparent";
const TRACER: &str = "sluice";

/// Turn tracing on (after installing the global tracer provider).
pub fn enable() {
    ENABLED.store(true, Relaxed);
}

/// Is tracing on? The one check on the message path.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Headers as the propagator reads them (text values only).
struct Headers<'a>(&'a [(String, Vec<u8>)]);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Headers as the propagator writes them: a field it sets replaces one of
/// the same name; an empty one (no `tracestate`) is left out.
struct HeadersMut<'a>(&'a mut Vec<(String, Vec<u8>)>);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        if !value.is_empty() {
            self.0.push((key.to_string(), value.into_bytes()));
        }
    }
}

/// One message's span, from hand-over to settle.
pub struct MessageTrace {
    cx: Context,
}

impl std::fmt::Debug for MessageTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageTrace({:?})", self.cx.span().span_context())
    }
}

impl MessageTrace {
    /// Start the span of a message just handed over by the source, under
    /// the trace its `traceparent` names (a new trace otherwise).
    pub fn start(pipeline: &str, msg: &Message, at: &Coordinates) -> MessageTrace {
        let parent = TraceContextPropagator::new().extract(&Headers(&msg.headers));
        let tracer = global::tracer(TRACER);
        let mut attributes = vec![
            KeyValue::new("sluice.pipeline", pipeline.to_string()),
            KeyValue::new("messaging.source.name", msg.source.clone()),
            KeyValue::new("sluice.attempt", i64::from(msg.attempt)),
        ];
        attributes.extend(
            at.0.iter()
                .map(|(name, value)| KeyValue::new(format!("sluice.at.{name}"), value.clone())),
        );
        let span = tracer
            .span_builder("sluice.message")
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        MessageTrace {
            cx: parent.with_span(span),
        }
    }

    pub fn span_context(&self) -> SpanContext {
        self.cx.span().span_context().clone()
    }

    /// Write this span's `traceparent` (and `tracestate`) into `headers`,
    /// replacing what was there.
    pub fn inject(&self, headers: &mut Vec<(String, Vec<u8>)>) {
        TraceContextPropagator::new().inject_context(&self.cx, &mut HeadersMut(headers));
    }

    /// End the span with the message's outcome (`delivered`, `dropped`,
    /// `dead_lettered`, `retried_later`, `nacked`).
    pub fn end(self, outcome: &'static str) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("sluice.outcome", outcome));
        span.end();
    }
}

/// A stage call's span; ended by [`StageTrace::end`].
pub struct StageTrace {
    cx: Context,
}

impl StageTrace {
    /// Start the span of one call of `stage` for the messages whose spans
    /// are `messages` (in call order; a batch links each).
    pub fn start(
        pipeline: &str,
        stage: &str,
        kind: &'static str,
        sha256: &str,
        messages: &[SpanContext],
    ) -> Option<StageTrace> {
        let first = messages.first()?;
        let tracer = global::tracer(TRACER);
        let parent = Context::new().with_remote_span_context(first.clone());
        let links = if messages.len() > 1 {
            messages.iter().cloned().map(Link::with_context).collect()
        } else {
            Vec::new()
        };
        let span = tracer
            .span_builder("sluice.stage")
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new("sluice.pipeline", pipeline.to_string()),
                KeyValue::new("sluice.stage", stage.to_string()),
                KeyValue::new("sluice.stage.kind", kind),
                KeyValue::new("sluice.plugin.sha256", sha256.to_string()),
                KeyValue::new("sluice.messages", messages.len() as i64),
            ])
            .with_links(links)
            .start_with_context(&tracer, &parent);
        Some(StageTrace {
            cx: parent.with_span(span),
        })
    }

    /// End the call's span: how many of its messages failed.
    pub fn end(self, failures: usize) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("sluice.failures", failures as i64));
        if failures > 0 {
            span.set_status(opentelemetry::trace::Status::error(format!(
                "{failures} message(s) failed"
            )));
        }
        span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_w3c_traceparent() {
        let mut msg = Message::new(b"x".to_vec());
        msg.headers.push((
            "Traceparent".into(),
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(),
        ));
        let parent = TraceContextPropagator::new().extract(&Headers(&msg.headers));
        let sc = parent.span().span_context().clone();
        assert_eq!(
            format!("{:032x}", sc.trace_id()),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_remote() && sc.is_sampled());
        // With no provider installed the span is a no-op that keeps the
        // trace: what is written out is the incoming trace.
        let trace = MessageTrace::start("p", &msg, &Coordinates::default());
        let mut out = vec![("traceparent".to_string(), b"old".to_vec())];
        trace.inject(&mut out);
        let written = String::from_utf8(out[0].1.clone()).unwrap();
        assert_eq!(out.len(), 1, "replaced, not added: {out:?}");
        assert!(
            written.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{written}"
        );
        trace.end("delivered");
    }
}
