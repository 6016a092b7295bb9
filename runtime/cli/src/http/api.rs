//! The JSON API under `/api/v1/` (documented in docs/observing.md): what
//! the status page shows, for scripts too. Version 1 only ever gains
//! fields; a change that removes or renames one is `/api/v2/`.
//!
//! `GET /api/v1/pipelines`: every running pipeline with its source, sinks
//! and DLQ (connected or why not), counters and rates per pipeline and per
//! stage, in-flight and source lag, its latest dead letters (never a
//! payload), and the latest reloads. Rates are per second over the last
//! [`WINDOW`], from counters sampled every second.

use crate::status::{Endpoint, PipelineStatus, Reload, Status};
use serde::Serialize;
use sluice_core::stats::{PipelineCounts, StageCounts};
use sluice_core::tap::{Point, Side};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Rates are averaged over this long.
pub const WINDOW: Duration = Duration::from_secs(5);
/// How often counters are sampled for rates.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Counters of every pipeline and stage at one instant.
#[derive(Clone)]
struct Sample {
    at: Instant,
    pipelines: HashMap<String, PipelineCounts>,
    /// By (pipeline, stage).
    stages: HashMap<(String, String), StageCounts>,
}

impl Sample {
    fn take(pipelines: &[PipelineStatus]) -> Sample {
        let mut sample = Sample {
            at: Instant::now(),
            pipelines: HashMap::new(),
            stages: HashMap::new(),
        };
        for p in pipelines {
            sample.pipelines.insert(p.name.clone(), p.stats.snapshot());
            for s in &p.stages.current().stages {
                sample
                    .stages
                    .insert((p.name.clone(), s.name.clone()), s.stats.snapshot());
            }
        }
        sample
    }
}

/// The samples of the last [`WINDOW`], for rates.
#[derive(Default)]
pub struct Rates(Mutex<VecDeque<Sample>>);

impl Rates {
    /// Sample `status` every [`SAMPLE_EVERY`], for as long as the process runs.
    pub async fn sample(self: Arc<Self>, status: Arc<Status>) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tick.tick().await;
            let sample = Sample::take(&status.pipelines());
            let mut samples = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            while samples
                .front()
                .is_some_and(|s| sample.at.duration_since(s.at) > WINDOW)
            {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
    }

    /// The oldest sample of the window and the seconds since it, if any.
    fn base(&self) -> Option<(Sample, f64)> {
        let samples = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = samples.front()?;
        let secs = oldest.at.elapsed().as_secs_f64();
        (secs > 0.2).then(|| (oldest.clone(), secs))
    }
}

#[derive(Serialize)]
pub struct Overview {
    /// `sluice/v1`.
    api: &'static str,
    time: String,
    ready: bool,
    /// Why not ready, one line per source or sink that is down.
    not_ready: Vec<String>,
    /// Over how many seconds the rates are averaged (0 before the first
    /// sample).
    rate_window_seconds: f64,
    pipelines: Vec<PipelineView>,
    reloads: Reloads,
}

#[derive(Serialize)]
struct PipelineView {
    name: String,
    concurrency: usize,
    source: EndpointView,
    sinks: Vec<EndpointView>,
    dlq: EndpointView,
    /// Messages waiting in the broker, where the source reports it.
    source_lag: Option<u64>,
    in_flight: u64,
    in_flight_bytes: u64,
    counts: PipelineCountsView,
    /// Per second, same fields as `counts`.
    rates: PipelineRates,
    stages: Vec<StageView>,
    /// Newest first.
    dead_letters: Vec<DeadLetterView>,
    /// `sluice tap`s attached now.
    taps: Vec<TapView>,
}

#[derive(Serialize)]
struct TapView {
    /// A stage or sink name; `null`: every sink.
    at: Option<String>,
    side: &'static str,
    /// Copies this tap could not take in time (never waited for).
    dropped: u64,
}

#[derive(Serialize)]
struct EndpointView {
    /// The sink's name in the config (`source` and `dlq` for those).
    name: String,
    /// What it is: broker and address, no credentials.
    endpoint: String,
    connected: bool,
    down_reason: Option<String>,
}

#[derive(Serialize)]
struct PipelineCountsView {
    received: u64,
    delivered: u64,
    dropped: u64,
    dead_lettered: u64,
    acked: u64,
    retried_later: u64,
    sink_retries: u64,
}

#[derive(Serialize)]
struct PipelineRates {
    received: f64,
    delivered: f64,
    dropped: f64,
    dead_lettered: f64,
    acked: f64,
}

#[derive(Serialize)]
struct StageView {
    name: String,
    kind: &'static str,
    /// The component file (`<native>` for built-in stages).
    plugin: String,
    sha256: String,
    counts: StageCountsView,
    rates: StageRates,
}

#[derive(Serialize)]
struct StageCountsView {
    #[serde(rename = "in")]
    input: u64,
    ok: u64,
    dropped: u64,
    retried: u64,
    dead_lettered: u64,
    replaced: u64,
    deduplicated: u64,
}

#[derive(Serialize)]
struct StageRates {
    #[serde(rename = "in")]
    input: f64,
    ok: f64,
    dropped: f64,
    retried: f64,
    dead_lettered: f64,
}

#[derive(Serialize)]
struct DeadLetterView {
    time: String,
    stage: String,
    class: &'static str,
    reason: String,
    at: String,
}

#[derive(Serialize)]
struct Reloads {
    ok: u64,
    unchanged: u64,
    failed: u64,
    /// Newest first.
    recent: Vec<ReloadView>,
}

#[derive(Serialize)]
struct ReloadView {
    time: String,
    result: &'static str,
    error: Option<String>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn endpoint(name: &str, e: &Endpoint) -> EndpointView {
    let down_reason = e.down_reason();
    EndpointView {
        name: name.to_string(),
        endpoint: e.name.clone(),
        connected: down_reason.is_none(),
        down_reason,
    }
}

/// Per second, rounded to 0.1.
fn rate(now: u64, then: Option<u64>, secs: f64) -> f64 {
    let Some(then) = then else { return 0.0 };
    (now.saturating_sub(then) as f64 / secs * 10.0).round() / 10.0
}

/// The whole overview, now.
pub fn overview(status: &Status, rates: &Rates) -> Overview {
    let base = rates.base();
    let secs = base.as_ref().map_or(0.0, |(_, s)| *s);
    let pipelines = status
        .pipelines()
        .iter()
        .map(|p| pipeline_view(p, base.as_ref()))
        .collect();
    let readiness = status.readiness();
    Overview {
        api: "sluice/v1",
        time: rfc3339(SystemTime::now()),
        ready: readiness.is_ok(),
        not_ready: readiness.err().unwrap_or_default(),
        rate_window_seconds: (secs * 10.0).round() / 10.0,
        pipelines,
        reloads: Reloads {
            ok: status.reload_count(Reload::Ok),
            unchanged: status.reload_count(Reload::Unchanged),
            failed: status.reload_count(Reload::Failed),
            recent: status
                .recent_reloads()
                .into_iter()
                .rev()
                .map(|r| ReloadView {
                    time: rfc3339(r.time),
                    result: r.result.as_str(),
                    error: r.error,
                })
                .collect(),
        },
    }
}

fn pipeline_view(p: &PipelineStatus, base: Option<&(Sample, f64)>) -> PipelineView {
    let c = p.stats.snapshot();
    let then = base.and_then(|(s, _)| s.pipelines.get(&p.name));
    let secs = base.map_or(1.0, |(_, s)| *s);
    let r = |now: u64, pick: fn(&PipelineCounts) -> u64| rate(now, then.map(pick), secs);
    let stages = p
        .stages
        .current()
        .stages
        .iter()
        .map(|s| {
            let n = s.stats.snapshot();
            let then = base.and_then(|(b, _)| b.stages.get(&(p.name.clone(), s.name.clone())));
            let r = |now: u64, pick: fn(&StageCounts) -> u64| rate(now, then.map(pick), secs);
            let plugin = s.factory.plugin();
            StageView {
                name: s.name.clone(),
                kind: s.factory.kind().as_str(),
                plugin: plugin.path.display().to_string(),
                sha256: plugin.sha256,
                counts: StageCountsView {
                    input: n.input,
                    ok: n.output,
                    dropped: n.dropped,
                    retried: n.retried,
                    dead_lettered: n.dead_lettered,
                    replaced: n.replaced,
                    deduplicated: n.deduplicated,
                },
                rates: StageRates {
                    input: r(n.input, |c| c.input),
                    ok: r(n.output, |c| c.output),
                    dropped: r(n.dropped, |c| c.dropped),
                    retried: r(n.retried, |c| c.retried),
                    dead_lettered: r(n.dead_lettered, |c| c.dead_lettered),
                },
            }
        })
        .collect();
    PipelineView {
        name: p.name.clone(),
        concurrency: p.concurrency,
        source: endpoint("source", &p.source),
        sinks: p.sinks.iter().map(|(n, e)| endpoint(n, e)).collect(),
        dlq: endpoint("dlq", &p.dlq),
        source_lag: p.stats.source_lag.get(),
        in_flight: c.received.saturating_sub(c.acked),
        in_flight_bytes: p
            .stats
            .in_flight_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        counts: PipelineCountsView {
            received: c.received,
            delivered: c.delivered,
            dropped: c.dropped,
            dead_lettered: c.dead_lettered,
            acked: c.acked,
            retried_later: c.retried_later,
            sink_retries: c.sink_retries,
        },
        rates: PipelineRates {
            received: r(c.received, |c| c.received),
            delivered: r(c.delivered, |c| c.delivered),
            dropped: r(c.dropped, |c| c.dropped),
            dead_lettered: r(c.dead_lettered, |c| c.dead_lettered),
            acked: r(c.acked, |c| c.acked),
        },
        stages,
        dead_letters: p
            .stats
            .recent_dead_letters
            .list()
            .into_iter()
            .rev()
            .map(|d| DeadLetterView {
                time: rfc3339(d.time),
                stage: d.stage,
                class: d.class.as_str(),
                reason: d.reason,
                at: d.at,
            })
            .collect(),
        taps: p
            .taps
            .attached()
            .into_iter()
            .map(|(point, dropped)| {
                let (at, side) = match point {
                    Point::Stage { name, side } => (Some(name), side),
                    Point::Sink(name) => (name, Side::Inputs),
                };
                TapView {
                    at,
                    side: side.as_str(),
                    dropped,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_and_zero_without_a_base() {
        assert_eq!(rate(150, Some(100), 5.0), 10.0);
        assert_eq!(rate(100, None, 5.0), 0.0);
        assert_eq!(rate(1, Some(0), 3.0), 0.3);
        assert_eq!(rate(5, Some(9), 1.0), 0.0, "a counter never runs backwards");
    }
}
