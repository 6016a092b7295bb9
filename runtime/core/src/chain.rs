//! The synchronous stage chain: `process(msg) -> ChainOutcome`. One `Chain`
//! per worker thread; it owns one instance of every stage. Retries with
//! backoff happen here, on the worker's thread, so per-key order holds.

use crate::clock::Clock;
use crate::dlq::Failure;
use crate::message::Message;
use crate::retry::RetryPolicy;
use crate::stage::{Stage, StageError, StageFactory, StageKind, StageOutput};
use crate::stats::{bump, StageStats};
use std::sync::Arc;

/// One stage of a pipeline as configured: shared by every worker.
pub struct StageSpec {
    pub name: String,
    pub factory: Arc<dyn StageFactory>,
    pub retry: RetryPolicy,
    pub stats: Arc<StageStats>,
}

impl StageSpec {
    pub fn new(name: impl Into<String>, factory: Arc<dyn StageFactory>, retry: RetryPolicy) -> Self {
        StageSpec { name: name.into(), factory, retry, stats: Arc::default() }
    }
}

impl std::fmt::Debug for StageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageSpec")
            .field("name", &self.name)
            .field("kind", &self.factory.kind())
            .field("plugin", &self.factory.plugin().path)
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
}

/// Why a chain could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("stage `{stage}`: a route stage must be the last stage of the chain")]
    RouteNotLast { stage: String },
    #[error("stage `{stage}`: cannot instantiate plugin: {reason:#}")]
    Instantiate { stage: String, reason: anyhow::Error },
}

/// A worker's private chain of live stage instances.
pub struct Chain {
    stages: Vec<(Arc<StageSpec>, Box<dyn Stage>)>,
    sinks: Arc<[String]>,
    clock: Arc<dyn Clock>,
}

impl Chain {
    /// Instantiate every stage. `sinks` are the names a route may use; with
    /// no route stage every surviving message goes to all of them.
    ///
    /// # Errors
    /// A route stage that is not last, or a stage that fails to instantiate.
    pub fn new(specs: &[Arc<StageSpec>], sinks: Arc<[String]>, clock: Arc<dyn Clock>) -> Result<Chain, ChainError> {
        let mut stages = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            if spec.factory.kind() == StageKind::Route && i + 1 != specs.len() {
                return Err(ChainError::RouteNotLast { stage: spec.name.clone() });
            }
            let stage = spec
                .factory
                .instantiate()
                .map_err(|reason| ChainError::Instantiate { stage: spec.name.clone(), reason })?;
            stages.push((spec.clone(), stage));
        }
        Ok(Chain { stages, sinks, clock })
    }

    /// Run `original` through every stage.
    pub fn process(&mut self, original: &Message) -> ChainOutcome {
        let mut batch = vec![original.clone()];
        let mut routed: Option<Vec<(String, Message)>> = None;
        for (spec, stage) in &mut self.stages {
            let stats = &spec.stats;
            let mut next = Vec::with_capacity(batch.len());
            for msg in batch {
                bump(&stats.input, 1);
                let _span = tracing::trace_span!("stage", stage = %spec.name).entered();
                let output = match call_with_retry(spec, stage.as_mut(), msg.clone(), &*self.clock) {
                    Ok(output) => output,
                    Err(failure) => {
                        bump(&stats.dead_lettered, 1);
                        return ChainOutcome::DeadLetter(failure);
                    }
                };
                match output {
                    StageOutput::Keep(true) => {
                        bump(&stats.output, 1);
                        next.push(msg);
                    }
                    StageOutput::Keep(false) => bump(&stats.dropped, 1),
                    StageOutput::Messages(out) if out.is_empty() => bump(&stats.dropped, 1),
                    StageOutput::Messages(out) => {
                        bump(&stats.output, out.len() as u64);
                        next.extend(out.into_iter().map(|mut m| {
                            m.attempt = msg.attempt;
                            m
                        }));
                    }
                    StageOutput::Routes(names) if names.is_empty() => bump(&stats.dropped, 1),
                    StageOutput::Routes(names) => {
                        if let Some(unknown) = names.iter().find(|n| !self.sinks.contains(n)) {
                            bump(&stats.dead_lettered, 1);
                            let text = format!(
                                "route `{unknown}` is not a sink of this pipeline (sinks: {})",
                                self.sinks.join(", ")
                            );
                            let mut failure = Failure::once(&spec.name, "unknown-route", text, self.clock.now());
                            failure.plugin = Some(spec.factory.plugin());
                            return ChainOutcome::DeadLetter(failure);
                        }
                        bump(&stats.output, names.len() as u64);
                        let routes = routed.get_or_insert_with(Vec::new);
                        routes.extend(names.into_iter().map(|name| (name, msg.clone())));
                    }
                }
            }
            batch = next;
        }
        match routed {
            Some(routes) => ChainOutcome::Deliver(routes),
            None if batch.is_empty() => ChainOutcome::Dropped,
            None => ChainOutcome::Deliver(
                batch
                    .into_iter()
                    .flat_map(|m| self.sinks.iter().map(move |s| (s.clone(), m.clone())))
                    .collect(),
            ),
        }
    }
}

/// Call one stage, retrying `retryable` errors with backoff. Returns the
/// output, or the failure to dead-letter the message with.
fn call_with_retry(spec: &StageSpec, stage: &mut dyn Stage, mut msg: Message, clock: &dyn Clock) -> Result<StageOutput, Failure> {
    let first_attempt = msg.attempt.max(1);
    let mut first_failure = None;
    let mut tries = 0;
    loop {
        tries += 1;
        msg.attempt = first_attempt + tries - 1;
        let (class, text) = match stage.call(&msg) {
            Ok(output) if output_matches(spec.factory.kind(), &output) => return Ok(output),
            Ok(output) => {
                ("bad-output".to_owned(), format!("a {} stage returned {output:?}", spec.factory.kind()))
            }
            Err(StageError::Retryable(text)) if tries < spec.retry.max_attempts => {
                first_failure.get_or_insert_with(|| clock.now());
                bump(&spec.stats.retried, 1);
                let delay = spec.retry.delay(tries);
                tracing::debug!(stage = %spec.name, attempt = msg.attempt, ?delay, error = %text, "retryable error, backing off");
                clock.sleep(delay);
                continue;
            }
            Err(StageError::Retryable(text)) => {
                let class = if spec.retry.max_attempts > 1 { "retries-exhausted" } else { "retryable" };
                (class.to_owned(), text)
            }
            Err(StageError::Fatal(text)) => ("fatal".to_owned(), text),
            Err(StageError::Fault(fault)) => {
                bump(&spec.stats.replaced, 1);
                (fault.kind.class().to_owned(), fault.detail)
            }
        };
        let now = clock.now();
        return Err(Failure {
            stage: spec.name.clone(),
            plugin: Some(spec.factory.plugin()),
            class,
            text,
            attempts: tries,
            first_failure: first_failure.unwrap_or(now),
            last_failure: now,
        });
    }
}

fn output_matches(kind: StageKind, output: &StageOutput) -> bool {
    matches!(
        (kind, output),
        (StageKind::Filter, StageOutput::Keep(_))
            | (StageKind::Transform, StageOutput::Messages(_))
            | (StageKind::Route, StageOutput::Routes(_))
    )
}
