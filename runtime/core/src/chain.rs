//! The synchronous stage chain: `process(msg) -> ChainOutcome`. One `Chain`
//! per worker thread; it owns one instance of every stage. A chain never
//! waits out a backoff: a retryable error below the stage's `max_attempts`
//! ends the call with [`ChainOutcome::RetryLater`], and either the worker
//! parks the message (per key, so later messages of other keys go on; see
//! `engine::parking`) or, in a pipeline that retries through its broker
//! ([`Chain::republishing_retries`]), the broker brings it back.

use crate::claim::Claim;
use crate::clock::Clock;
use crate::dlq::{Failure, FailureClass};
use crate::events;
use crate::message::Message;
use crate::retry::RetryPolicy;
use crate::stage::{PluginInfo, Stage, StageError, StageFactory, StageKind, StageOutput};
use crate::stats::{bump, StageStats};
use crate::tap::{Side, Taps};
use crate::trace::StageTrace;
use opentelemetry::trace::SpanContext;
use std::borrow::Cow;
use std::sync::Arc;

/// One stage of a pipeline as configured: shared by every worker.
pub struct StageSpec {
    pub name: String,
    pub factory: Arc<dyn StageFactory>,
    pub retry: RetryPolicy,
    pub stats: Arc<StageStats>,
    /// The factory's plugin, read once here for stage spans and failures
    /// rather than on every call.
    pub plugin: PluginInfo,
}

impl StageSpec {
    pub fn new(
        name: impl Into<String>,
        factory: Arc<dyn StageFactory>,
        retry: RetryPolicy,
    ) -> Self {
        StageSpec {
            name: name.into(),
            plugin: factory.plugin(),
            factory,
            retry,
            stats: Arc::default(),
        }
    }
}

impl std::fmt::Debug for StageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageSpec")
            .field("name", &self.name)
            .field("kind", &self.factory.kind())
            .field("plugin", &self.plugin.path)
            .field("retry", &self.retry)
            .finish()
    }
}

/// What the chain decided for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainOutcome {
    /// Publish each message to the named sink.
    Deliver(Vec<(String, Message)>),
    /// Every output was dropped: acknowledge, publish nothing.
    Dropped,
    /// Publish the original message to the DLQ with this reason.
    DeadLetter(Failure),
    /// A retryable error with attempts left: try the original again after
    /// `failure.retry_after`, as attempt `failure.attempts + 1` (the worker
    /// parks it, or the source has its broker bring it back).
    RetryLater(Failure),
}

/// Why a chain could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("stage `{stage}`: a route stage must be the last stage of the chain")]
    RouteNotLast { stage: String },
    #[error("stage `{stage}`: cannot instantiate plugin: {reason:#}")]
    Instantiate {
        stage: String,
        reason: anyhow::Error,
    },
}

/// A worker's private chain of live stage instances.
pub struct Chain {
    stages: Vec<(Arc<StageSpec>, Box<dyn Stage>)>,
    sinks: Arc<[String]>,
    clock: Arc<dyn Clock>,
    republish: bool,
    /// For spans and log events.
    pipeline: String,
    /// Live copies for `sluice tap`.
    taps: Arc<Taps>,
}

impl Chain {
    /// Instantiate every stage. `sinks` are the names a route may use; with
    /// no route stage every surviving message goes to all of them.
    ///
    /// # Errors
    /// A route stage that is not last, or a stage that fails to instantiate.
    pub fn new(
        specs: &[Arc<StageSpec>],
        sinks: Arc<[String]>,
        clock: Arc<dyn Clock>,
    ) -> Result<Chain, ChainError> {
        let mut stages = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            if spec.factory.kind() == StageKind::Route && i + 1 != specs.len() {
                return Err(ChainError::RouteNotLast {
                    stage: spec.name.clone(),
                });
            }
            let stage = spec
                .factory
                .instantiate()
                .map_err(|reason| ChainError::Instantiate {
                    stage: spec.name.clone(),
                    reason,
                })?;
            stages.push((spec.clone(), stage));
        }
        Ok(Chain {
            stages,
            sinks,
            clock,
            republish: false,
            pipeline: String::new(),
            taps: Arc::default(),
        })
    }

    /// Builder: the pipeline's name, for the `stage` span and log events.
    pub fn for_pipeline(mut self, pipeline: &str) -> Self {
        self.pipeline = pipeline.to_owned();
        self
    }

    /// Builder: the pipeline's taps, offered what enters and leaves each
    /// stage while one is attached.
    pub fn tapped(mut self, taps: Arc<Taps>) -> Self {
        self.taps = taps;
        self
    }

    /// Builder: retry through the broker. [`ChainOutcome::RetryLater`] then
    /// carries the un-jittered backoff delay (a broker's delay queues are
    /// per delay); otherwise the jittered one. Attempts count from the
    /// message's `attempt` either way, which the worker or the source
    /// (from the broker) sets.
    pub fn republishing_retries(mut self, republish: bool) -> Self {
        self.republish = republish;
        self
    }

    /// Run `original` through every stage.
    pub fn process(&mut self, original: &Message) -> ChainOutcome {
        self.process_batch(&[original])
            .pop()
            .expect("one outcome per message")
    }

    /// Run several messages through every stage, one outcome per message in
    /// order. Claims a `dedupe` stage took are released at once: see
    /// [`Chain::process_claiming`] for a caller that delivers.
    pub fn process_batch(&mut self, originals: &[&Message]) -> Vec<ChainOutcome> {
        self.process_claiming(originals)
            .into_iter()
            .map(|(outcome, _)| outcome)
            .collect()
    }

    /// Run several messages through every stage, one outcome per message in
    /// order, each with the claims its stages took (only a
    /// [`ChainOutcome::Deliver`] keeps any: the others released theirs).
    /// The caller completes them once the message is delivered.
    ///
    /// Each stage is called once for the whole batch (its batch export);
    /// retryable errors are retried one message at a time, and a batch call
    /// that faults is redone one message at a time so only the culprit is
    /// dead-lettered.
    pub fn process_claiming(&mut self, originals: &[&Message]) -> Vec<(ChainOutcome, Vec<Claim>)> {
        self.process_traced(originals, &[])
    }

    /// [`Chain::process_claiming`], with each message's span (one per
    /// message, or none while tracing is off): every stage call gets a span
    /// under them ([`crate::trace`]).
    pub fn process_traced(
        &mut self,
        originals: &[&Message],
        traces: &[SpanContext],
    ) -> Vec<(ChainOutcome, Vec<Claim>)> {
        let n = originals.len();
        let traced = traces.len() == n && n > 0;
        let mut failed: Vec<Option<Failure>> = vec![None; n];
        let mut claims: Vec<Vec<Claim>> = vec![Vec::new(); n];
        let mut routed: Vec<Option<Vec<(String, Message)>>> = vec![None; n];
        // The messages still in flight and the input each one came from.
        // An input is copied only once something is to be done with it as
        // a value: a stage that keeps it reads it where it is.
        let mut origins: Vec<usize> = (0..n).collect();
        let mut msgs: Vec<Cow<'_, Message>> = originals
            .iter()
            .map(|&m| {
                if m.attempt >= 1 {
                    Cow::Borrowed(m)
                } else {
                    let mut m = m.clone();
                    m.attempt = 1;
                    Cow::Owned(m)
                }
            })
            .collect();
        for (spec, stage) in &mut self.stages {
            if msgs.is_empty() {
                break;
            }
            let stats = &spec.stats;
            let _span = tracing::debug_span!("stage", pipeline = %self.pipeline, stage = %spec.name, messages = msgs.len()).entered();
            tracing::debug!(
                event = events::INVOKED, pipeline = %self.pipeline, stage = %spec.name,
                messages = msgs.len(), attempt = msgs[0].attempt, "stage invoked"
            );
            let tapping = self.taps.active();
            if tapping {
                self.taps
                    .offer(&spec.name, Side::Inputs, msgs.iter().map(|m| &**m));
            }
            let trace = if traced {
                // One context per input message the call serves (a split
                // message's parts are next to each other).
                let mut contexts: Vec<SpanContext> = Vec::new();
                let mut last = usize::MAX;
                for &origin in &origins {
                    if origin != last {
                        contexts.push(traces[origin].clone());
                        last = origin;
                    }
                }
                let kind = spec.factory.kind().as_str();
                let sha256 = &spec.plugin.sha256;
                StageTrace::start(&self.pipeline, &spec.name, kind, sha256, &contexts)
            } else {
                None
            };
            let started = std::time::Instant::now();
            let results = call_all(spec, stage.as_mut(), &msgs, &*self.clock, self.republish);
            let took = started.elapsed();
            if let Some(trace) = trace {
                trace.end(results.iter().filter(|r| r.is_err()).count());
            }
            stats.call_seconds.observe(took);
            let usage = stage.take_usage();
            bump(&stats.fuel, usage.fuel);
            bump(&stats.log_suppressed, usage.log_suppressed);
            tracing::debug!(
                event = events::COMPLETED, pipeline = %self.pipeline, stage = %spec.name,
                messages = msgs.len(), failures = results.iter().filter(|r| r.is_err()).count(),
                duration_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX), "stage completed"
            );
            let mut next_origins = Vec::with_capacity(origins.len());
            let mut next_msgs = Vec::with_capacity(msgs.len());
            for ((origin, msg), result) in origins.into_iter().zip(msgs).zip(results) {
                if failed[origin].is_some() {
                    continue; // another part of the same input already failed here
                }
                bump(&stats.input, 1);
                let output = match result {
                    Ok(output) => output,
                    Err(failure) => {
                        if failure.retry_after.is_none() {
                            bump(&stats.dead_lettered, 1);
                        }
                        failed[origin] = Some(failure);
                        continue;
                    }
                };
                match output {
                    StageOutput::Keep(true) => {
                        bump(&stats.output, 1);
                        next_origins.push(origin);
                        next_msgs.push(msg);
                    }
                    StageOutput::Keep(false) => bump(&stats.dropped, 1),
                    StageOutput::Claimed(claim) => {
                        bump(&stats.output, 1);
                        claims[origin].push(claim);
                        next_origins.push(origin);
                        next_msgs.push(msg);
                    }
                    StageOutput::Duplicate => {
                        bump(&stats.dropped, 1);
                        bump(&stats.deduplicated, 1);
                    }
                    StageOutput::Messages(out) if out.is_empty() => bump(&stats.dropped, 1),
                    StageOutput::Messages(out) => {
                        bump(&stats.output, out.len() as u64);
                        for mut part in out {
                            part.attempt = msg.attempt;
                            if part.header_types.is_empty() {
                                part.header_types.clone_from(&msg.header_types);
                            }
                            next_origins.push(origin);
                            next_msgs.push(Cow::Owned(part));
                        }
                    }
                    StageOutput::Routes(names) if names.is_empty() => bump(&stats.dropped, 1),
                    StageOutput::Routes(names) => {
                        if let Some(unknown) = names.iter().find(|n| !self.sinks.contains(n)) {
                            bump(&stats.dead_lettered, 1);
                            let text = format!(
                                "route `{unknown}` is not a sink of this pipeline (sinks: {})",
                                self.sinks.join(", ")
                            );
                            let mut failure = Failure::once(
                                &spec.name,
                                FailureClass::UnknownRoute,
                                text,
                                self.clock.now(),
                            );
                            failure.plugin = Some(spec.plugin.clone());
                            failed[origin] = Some(failure);
                            continue;
                        }
                        bump(&stats.output, names.len() as u64);
                        if tapping {
                            let copies = std::iter::repeat_n(&*msg, names.len());
                            self.taps.offer(&spec.name, Side::Outputs, copies);
                        }
                        let routes = routed[origin].get_or_insert_with(Vec::new);
                        routes.extend(copies(names, msg.into_owned()));
                    }
                }
            }
            if tapping {
                self.taps
                    .offer(&spec.name, Side::Outputs, next_msgs.iter().map(|m| &**m));
            }
            origins = next_origins;
            msgs = next_msgs;
        }
        // Whatever is left after the last stage (no route stage) goes to
        // every sink. Inputs keep their order through the stages, so each
        // input's survivors are next to each other.
        let mut survivors = origins.into_iter().zip(msgs).peekable();
        (0..n)
            .map(|i| {
                let mine = std::iter::from_fn(|| survivors.next_if(|(origin, _)| *origin == i));
                if let Some(failure) = failed[i].take() {
                    mine.for_each(drop);
                    let outcome = match failure.retry_after {
                        Some(_) => ChainOutcome::RetryLater(failure),
                        None => ChainOutcome::DeadLetter(failure),
                    };
                    return (outcome, Vec::new());
                }
                let mut deliver = routed[i].take().unwrap_or_default();
                for (_, msg) in mine {
                    deliver.extend(copies(self.sinks.iter().cloned(), msg.into_owned()));
                }
                if deliver.is_empty() {
                    (ChainOutcome::Dropped, Vec::new())
                } else {
                    (
                        ChainOutcome::Deliver(deliver),
                        std::mem::take(&mut claims[i]),
                    )
                }
            })
            .collect()
    }
}

/// `msg` paired with each of `names`: copies for all but the last, which
/// takes the message itself.
fn copies<N: Clone>(
    names: impl IntoIterator<Item = N, IntoIter: ExactSizeIterator>,
    msg: Message,
) -> impl Iterator<Item = (N, Message)> {
    let names = names.into_iter();
    let last = names.len().saturating_sub(1);
    let mut msg = Some(msg);
    names.enumerate().map(move |(i, name)| {
        let copy = if i == last {
            msg.take().expect("the last name takes the message")
        } else {
            msg.clone().expect("the message is kept for the last name")
        };
        (name, copy)
    })
}

/// Call one stage for every message (one batch call when there are several)
/// and settle each answer: retry retryable errors, turn the rest into
/// failures.
fn call_all(
    spec: &StageSpec,
    stage: &mut dyn Stage,
    msgs: &[Cow<'_, Message>],
    clock: &dyn Clock,
    republish: bool,
) -> Vec<Result<StageOutput, Failure>> {
    let first: Vec<Result<StageOutput, StageError>> = if msgs.len() == 1 {
        vec![stage.call(&msgs[0])]
    } else {
        let refs: Vec<&Message> = msgs.iter().map(|m| &**m).collect();
        match stage.call_batch(&refs) {
            Ok(results) => results,
            Err(fault) => {
                if fault.kind.replaces_instance() {
                    bump(&spec.stats.replaced, 1);
                }
                tracing::debug!(stage = %spec.name, class = %fault.kind.class(), "batch call faulted; calling one message at a time");
                return msgs
                    .iter()
                    .map(|m| call_with_retry(spec, stage, m, clock, republish, None))
                    .collect();
            }
        }
    };
    msgs.iter()
        .zip(first)
        .map(|(m, r)| call_with_retry(spec, stage, m, clock, republish, Some(r)))
        .collect()
}

/// Settle one message at one stage: `first` is the answer to its attempt
/// if the stage was already called (in a batch). Returns the output, or the
/// failure to dead-letter with; a retryable error with attempts left is a
/// failure with `retry_after` set (un-jittered with `republish`).
///
/// Attempts count from the message's own `attempt`: 1 for a fresh message,
/// more for one that was parked or that the broker brought back.
fn call_with_retry(
    spec: &StageSpec,
    stage: &mut dyn Stage,
    msg: &Message,
    clock: &dyn Clock,
    republish: bool,
    first: Option<Result<StageOutput, StageError>>,
) -> Result<StageOutput, Failure> {
    let result = first.unwrap_or_else(|| stage.call(msg));
    let attempt = msg.attempt;
    let mut retry_after = None;
    let (class, text) = match result {
        Ok(output) if output_matches(spec.factory.kind(), &output) => return Ok(output),
        Ok(output) => (
            FailureClass::BadOutput,
            format!("a {} stage returned {output:?}", spec.factory.kind()),
        ),
        Err(StageError::Retryable(text)) if attempt < spec.retry.max_attempts => {
            bump(&spec.stats.retried, 1);
            let delay = if republish {
                spec.retry.base_delay(attempt)
            } else {
                spec.retry.delay(attempt)
            };
            tracing::debug!(stage = %spec.name, attempt, ?delay, republish, error = %text, "retryable error, trying again later");
            retry_after = Some(delay);
            (FailureClass::Retryable, text)
        }
        Err(StageError::Retryable(text)) => {
            let class = if spec.retry.max_attempts > 1 {
                FailureClass::RetriesExhausted
            } else {
                FailureClass::Retryable
            };
            (class, text)
        }
        Err(StageError::Fatal(text)) => (FailureClass::Fatal, text),
        Err(StageError::Fault(fault)) => {
            if fault.kind.replaces_instance() {
                bump(&spec.stats.replaced, 1);
            }
            (fault.kind.class(), fault.detail)
        }
    };
    let now = clock.now();
    Err(Failure {
        stage: spec.name.clone(),
        plugin: Some(spec.plugin.clone()),
        class,
        text,
        attempts: attempt,
        first_failure: now,
        last_failure: now,
        retry_after,
    })
}

fn output_matches(kind: StageKind, output: &StageOutput) -> bool {
    matches!(
        (kind, output),
        (StageKind::Filter, StageOutput::Keep(_))
            | (StageKind::Transform, StageOutput::Messages(_))
            | (StageKind::Route, StageOutput::Routes(_))
            | (
                StageKind::Dedupe,
                StageOutput::Claimed(_) | StageOutput::Duplicate
            )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::{Fault, FaultKind, PluginInfo};
    use crate::SystemClock;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A filter that keeps everything, faults a whole batch that contains
    /// `bad` (and a single call on it), and fails `retry` messages once.
    struct Picky {
        retried: Arc<AtomicU32>,
    }

    impl Stage for Picky {
        fn call(&mut self, msg: &Message) -> Result<StageOutput, StageError> {
            if msg.payload == b"bad" {
                return Err(StageError::Fault(Fault {
                    kind: FaultKind::Trap,
                    detail: "bad".into(),
                }));
            }
            if msg.payload == b"retry" && msg.attempt == 1 {
                self.retried.fetch_add(1, Ordering::SeqCst);
                return Err(StageError::Retryable("once more".into()));
            }
            Ok(StageOutput::Keep(true))
        }

        fn call_batch(
            &mut self,
            msgs: &[&Message],
        ) -> Result<Vec<Result<StageOutput, StageError>>, Fault> {
            if msgs.iter().any(|m| m.payload == b"bad") {
                return Err(Fault {
                    kind: FaultKind::Trap,
                    detail: "bad in batch".into(),
                });
            }
            Ok(msgs.iter().map(|m| self.call(m)).collect())
        }
    }

    struct PickyFactory(Arc<AtomicU32>);

    impl StageFactory for PickyFactory {
        fn kind(&self) -> StageKind {
            StageKind::Filter
        }
        fn plugin(&self) -> PluginInfo {
            PluginInfo::default()
        }
        fn instantiate(&self) -> anyhow::Result<Box<dyn Stage>> {
            Ok(Box::new(Picky {
                retried: self.0.clone(),
            }))
        }
    }

    fn chain(retried: &Arc<AtomicU32>) -> Chain {
        let retry = RetryPolicy {
            initial: std::time::Duration::ZERO,
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let spec = Arc::new(StageSpec::new(
            "picky",
            Arc::new(PickyFactory(retried.clone())),
            retry,
        ));
        Chain::new(
            &[spec],
            Arc::from(vec!["out".to_string()]),
            Arc::new(SystemClock),
        )
        .unwrap()
    }

    #[test]
    fn a_faulting_batch_is_redone_one_by_one_and_only_the_culprit_fails() {
        let retried = Arc::new(AtomicU32::new(0));
        let msgs: Vec<Message> = ["a", "bad", "retry", "b"]
            .iter()
            .map(|p| Message::new(*p))
            .collect();
        let refs: Vec<&Message> = msgs.iter().collect();
        let outcomes = chain(&retried).process_batch(&refs);
        let kinds: Vec<&str> = outcomes
            .iter()
            .map(|o| match o {
                ChainOutcome::Deliver(_) => "deliver",
                ChainOutcome::Dropped => "dropped",
                ChainOutcome::DeadLetter(f) => {
                    if f.class == FailureClass::Trap {
                        "trap"
                    } else {
                        "other"
                    }
                }
                ChainOutcome::RetryLater(_) => "later",
            })
            .collect();
        assert_eq!(kinds, ["deliver", "trap", "later", "deliver"]);
        assert_eq!(
            retried.load(Ordering::SeqCst),
            1,
            "the retryable message was called once, alone"
        );
    }

    #[test]
    fn a_retryable_answer_inside_a_batch_is_handed_back_alone() {
        let retried = Arc::new(AtomicU32::new(0));
        let msgs: Vec<Message> = ["a", "retry", "b"]
            .iter()
            .map(|p| Message::new(*p))
            .collect();
        let refs: Vec<&Message> = msgs.iter().collect();
        let mut chain = chain(&retried);
        let outcomes = chain.process_batch(&refs);
        assert!(matches!(&outcomes[0], ChainOutcome::Deliver(d) if d.len() == 1));
        assert!(
            matches!(&outcomes[1], ChainOutcome::RetryLater(f) if f.attempts == 1),
            "{:?}",
            outcomes[1]
        );
        assert!(matches!(&outcomes[2], ChainOutcome::Deliver(d) if d.len() == 1));
        let stats = chain.stages[0].0.stats.snapshot();
        assert_eq!((stats.retried, stats.dead_lettered), (1, 0));
    }

    #[test]
    fn republishing_chains_hand_retries_back_and_count_attempts_from_the_message() {
        let retried = Arc::new(AtomicU32::new(0));
        let retry = RetryPolicy {
            initial: std::time::Duration::from_millis(300),
            jitter: 0.5,
            ..RetryPolicy::default()
        };
        let spec = Arc::new(StageSpec::new(
            "picky",
            Arc::new(PickyFactory(retried.clone())),
            retry,
        ));
        let mut chain = Chain::new(
            &[spec],
            Arc::from(vec!["out".to_string()]),
            Arc::new(SystemClock),
        )
        .unwrap()
        .republishing_retries(true);
        // `Picky` fails "retry" on attempt 1 only: handed back once, with the
        // un-jittered first delay, no waiting and no second call here.
        match chain.process(&Message::new("retry")) {
            ChainOutcome::RetryLater(f) => {
                assert_eq!(
                    (f.attempts, f.retry_after),
                    (1, Some(std::time::Duration::from_millis(300)))
                );
                assert_eq!(f.class, FailureClass::Retryable);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(retried.load(Ordering::SeqCst), 1);
        // Back as attempt 2, it passes.
        let mut again = Message::new("retry");
        again.attempt = 2;
        assert!(matches!(chain.process(&again), ChainOutcome::Deliver(_)));
    }

    /// Always retryable.
    struct Never;

    impl Stage for Never {
        fn call(&mut self, _: &Message) -> Result<StageOutput, StageError> {
            Err(StageError::Retryable("not yet".into()))
        }
    }

    struct NeverFactory;

    impl StageFactory for NeverFactory {
        fn kind(&self) -> StageKind {
            StageKind::Filter
        }
        fn plugin(&self) -> PluginInfo {
            PluginInfo::default()
        }
        fn instantiate(&self) -> anyhow::Result<Box<dyn Stage>> {
            Ok(Box::new(Never))
        }
    }

    #[test]
    fn the_last_attempt_dead_letters_in_either_mode() {
        let retry = RetryPolicy {
            initial: std::time::Duration::ZERO,
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        for republish in [false, true] {
            let spec = Arc::new(StageSpec::new("never", Arc::new(NeverFactory), retry));
            let mut chain = Chain::new(
                &[spec],
                Arc::from(vec!["out".to_string()]),
                Arc::new(SystemClock),
            )
            .unwrap()
            .republishing_retries(republish);
            let mut last = Message::new("x");
            last.attempt = 3;
            match chain.process(&last) {
                ChainOutcome::DeadLetter(f) => assert_eq!(
                    (f.class.as_str(), f.attempts),
                    ("retries-exhausted", 3),
                    "republish {republish}"
                ),
                other => panic!("republish {republish}: {other:?}"),
            }
            // A fresh message is handed back, as attempt 1 of 3.
            match chain.process(&Message::new("x")) {
                ChainOutcome::RetryLater(f) => assert_eq!(f.attempts, 1),
                other => panic!("{other:?}"),
            }
        }
    }
}
