//! Every metric sluice exports, defined in this one place and rendered in
//! the Prometheus text format from the engine's own counters.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `sluice_pipeline_messages_total` | pipeline, outcome | deliveries: `received`, `delivered` (sink copies), `dropped`, `dead_lettered`, `acked`, `retried_later` |
//! | `sluice_messages_total` | pipeline, stage, outcome | per stage: `in`, `ok` (passed on), `dropped`, `retried`, `dead_lettered` |
//! | `sluice_stage_duration_seconds` | pipeline, stage | histogram of one call (a batch call is one call) |
//! | `sluice_stage_fuel_consumed_total` | pipeline, stage | fuel the stage's calls burnt |
//! | `sluice_instance_replacements_total` | pipeline, stage | plugin instances replaced after a fault that stopped a call |
//! | `sluice_plugin_log_suppressed_total` | pipeline, stage | plugin log lines dropped by the stage's log rate limit |
//! | `sluice_deduplicated_total` | pipeline, stage | messages a `dedupe` stage dropped as already delivered |
//! | `sluice_sink_publish_duration_seconds` | pipeline | histogram, hand-over to a sink until its confirm |
//! | `sluice_sink_retries_total` | pipeline | failed publishes that were retried |
//! | `sluice_in_flight` | pipeline | received, not yet settled with the source |
//! | `sluice_in_flight_bytes` | pipeline | bytes of those (the byte budget's use: `max_in_flight_bytes`) |
//! | `sluice_source_lag` | pipeline | messages waiting in the broker (Kafka consumer lag, RabbitMQ ready, Redis group lag, SQS visible), where the source reports it |
//! | `sluice_reloads_total` | result | `ok` (changes applied), `unchanged`, `failed` |
//! | `sluice_ready` | | 1 while every pipeline's source and sinks are connected (what `/readyz` says) |
//! | `sluice_connected` | pipeline, endpoint | 1 while that source or sink is connected, 0 while it has lost its broker |

use sluice_core::stats::Histogram;
use sluice_core::{Health, LiveStages, PipelineStats};
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

/// What a running pipeline shows to `/metrics`.
#[derive(Clone)]
pub struct PipelineMetrics {
    pub name: String,
    pub stats: Arc<PipelineStats>,
    pub stages: LiveStages,
    /// Its source's and sinks' connection states, each with what it is to
    /// the pipeline (`source`, `sink out`, `dlq`).
    pub health: Vec<(String, Health)>,
}

/// How a reload ended.
#[derive(Debug, Clone, Copy)]
pub enum Reload {
    Ok,
    Unchanged,
    Failed,
}

/// The process's metrics: the running pipelines (kept up to date by the
/// supervisor) and the reload counters.
#[derive(Default)]
pub struct Metrics {
    pipelines: Mutex<Vec<PipelineMetrics>>,
    reloads: [AtomicU64; 3],
    ready: AtomicBool,
}

impl Metrics {
    pub fn set_pipelines(&self, pipelines: Vec<PipelineMetrics>) {
        *self
            .pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = pipelines;
    }

    pub fn reloaded(&self, result: Reload) {
        self.reloads[result as usize].fetch_add(1, Relaxed);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Relaxed);
    }

    /// Ready: started, and no source or sink has lost its broker. Else
    /// why not, one line per source or sink that is down.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        if !self.ready.load(Relaxed) {
            return Err(vec!["starting".into()]);
        }
        let pipelines = self
            .pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let down: Vec<String> = pipelines
            .iter()
            .flat_map(|p| {
                p.health.iter().filter_map(|(role, h)| {
                    let reason = h.down_reason()?;
                    Some(format!(
                        "pipeline `{}`: {role} {}: down: {reason}",
                        p.name,
                        h.name()
                    ))
                })
            })
            .collect();
        if down.is_empty() {
            Ok(())
        } else {
            Err(down)
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let pipelines = self
            .pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = String::new();
        header(
            &mut out,
            "sluice_pipeline_messages_total",
            "counter",
            "Deliveries by pipeline and outcome.",
        );
        for p in &pipelines {
            let c = p.stats.snapshot();
            for (outcome, n) in [
                ("received", c.received),
                ("delivered", c.delivered),
                ("dropped", c.dropped),
                ("dead_lettered", c.dead_lettered),
                ("acked", c.acked),
                ("retried_later", c.retried_later),
            ] {
                let _ = writeln!(
                    out,
                    "sluice_pipeline_messages_total{{pipeline=\"{}\",outcome=\"{outcome}\"}} {n}",
                    esc(&p.name)
                );
            }
        }
        header(
            &mut out,
            "sluice_messages_total",
            "counter",
            "Messages by pipeline, stage and outcome.",
        );
        for (p, stage) in stages(&pipelines) {
            let s = stage.stats.snapshot();
            for (outcome, n) in [
                ("in", s.input),
                ("ok", s.output),
                ("dropped", s.dropped),
                ("retried", s.retried),
                ("dead_lettered", s.dead_lettered),
            ] {
                let _ = writeln!(
                    out,
                    "sluice_messages_total{{{},outcome=\"{outcome}\"}} {n}",
                    labels(p, &stage.name)
                );
            }
        }
        header(
            &mut out,
            "sluice_stage_duration_seconds",
            "histogram",
            "Duration of one stage call (a batch call is one call).",
        );
        for (p, stage) in stages(&pipelines) {
            histogram(
                &mut out,
                "sluice_stage_duration_seconds",
                &labels(p, &stage.name),
                &stage.stats.call_seconds,
            );
        }
        header(
            &mut out,
            "sluice_stage_fuel_consumed_total",
            "counter",
            "Fuel burnt by a stage's calls.",
        );
        for (p, stage) in stages(&pipelines) {
            let _ = writeln!(
                out,
                "sluice_stage_fuel_consumed_total{{{}}} {}",
                labels(p, &stage.name),
                stage.stats.snapshot().fuel
            );
        }
        header(
            &mut out,
            "sluice_instance_replacements_total",
            "counter",
            "Plugin instances replaced after a fault that stopped a call.",
        );
        for (p, stage) in stages(&pipelines) {
            let _ = writeln!(
                out,
                "sluice_instance_replacements_total{{{}}} {}",
                labels(p, &stage.name),
                stage.stats.snapshot().replaced
            );
        }
        header(
            &mut out,
            "sluice_plugin_log_suppressed_total",
            "counter",
            "Plugin log lines not written because of the stage's log rate limit.",
        );
        for (p, stage) in stages(&pipelines) {
            let _ = writeln!(
                out,
                "sluice_plugin_log_suppressed_total{{{}}} {}",
                labels(p, &stage.name),
                stage.stats.snapshot().log_suppressed
            );
        }
        header(
            &mut out,
            "sluice_deduplicated_total",
            "counter",
            "Messages a dedupe stage dropped as already delivered.",
        );
        for (p, stage) in stages(&pipelines) {
            let _ = writeln!(
                out,
                "sluice_deduplicated_total{{{}}} {}",
                labels(p, &stage.name),
                stage.stats.snapshot().deduplicated
            );
        }
        header(
            &mut out,
            "sluice_sink_publish_duration_seconds",
            "histogram",
            "From handing a message to a sink to its confirm.",
        );
        for p in &pipelines {
            histogram(
                &mut out,
                "sluice_sink_publish_duration_seconds",
                &format!("pipeline=\"{}\"", esc(&p.name)),
                &p.stats.publish_seconds,
            );
        }
        header(
            &mut out,
            "sluice_sink_retries_total",
            "counter",
            "Failed sink publishes that were retried.",
        );
        for p in &pipelines {
            let _ = writeln!(
                out,
                "sluice_sink_retries_total{{pipeline=\"{}\"}} {}",
                esc(&p.name),
                p.stats.snapshot().sink_retries
            );
        }
        header(
            &mut out,
            "sluice_in_flight",
            "gauge",
            "Deliveries received and not yet settled with the source.",
        );
        for p in &pipelines {
            let c = p.stats.snapshot();
            let _ = writeln!(
                out,
                "sluice_in_flight{{pipeline=\"{}\"}} {}",
                esc(&p.name),
                c.received.saturating_sub(c.acked)
            );
        }
        header(
            &mut out,
            "sluice_in_flight_bytes",
            "gauge",
            "Bytes of messages received and not yet settled with the source (what the byte budget holds).",
        );
        for p in &pipelines {
            let _ = writeln!(
                out,
                "sluice_in_flight_bytes{{pipeline=\"{}\"}} {}",
                esc(&p.name),
                p.stats
                    .in_flight_bytes
                    .load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "sluice_source_lag",
            "gauge",
            "Messages waiting in the broker for the source, as the broker reports it.",
        );
        for p in &pipelines {
            if let Some(n) = p.stats.source_lag.get() {
                let _ = writeln!(
                    out,
                    "sluice_source_lag{{pipeline=\"{}\"}} {n}",
                    esc(&p.name)
                );
            }
        }
        header(
            &mut out,
            "sluice_reloads_total",
            "counter",
            "Config and plugin reloads by result.",
        );
        for (i, result) in ["ok", "unchanged", "failed"].iter().enumerate() {
            let _ = writeln!(
                out,
                "sluice_reloads_total{{result=\"{result}\"}} {}",
                self.reloads[i].load(Relaxed)
            );
        }
        header(
            &mut out,
            "sluice_connected",
            "gauge",
            "1 while the source or sink is connected to its broker.",
        );
        for p in &pipelines {
            for (role, h) in &p.health {
                let _ = writeln!(
                    out,
                    "sluice_connected{{pipeline=\"{}\",endpoint=\"{}\"}} {}",
                    esc(&p.name),
                    esc(&format!("{role} {}", h.name())),
                    u8::from(h.is_up())
                );
            }
        }
        header(
            &mut out,
            "sluice_ready",
            "gauge",
            "1 while every pipeline's source and sinks are connected.",
        );
        let _ = writeln!(out, "sluice_ready {}", u8::from(self.readiness().is_ok()));
        out
    }
}

fn stages(pipelines: &[PipelineMetrics]) -> Vec<(&PipelineMetrics, Arc<sluice_core::StageSpec>)> {
    pipelines
        .iter()
        .flat_map(|p| {
            p.stages
                .current()
                .stages
                .clone()
                .into_iter()
                .map(move |s| (p, s))
        })
        .collect()
}

fn labels(p: &PipelineMetrics, stage: &str) -> String {
    format!("pipeline=\"{}\",stage=\"{}\"", esc(&p.name), esc(stage))
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let (cumulative, sum, count) = h.snapshot();
    for (bound, n) in Histogram::BOUNDS.iter().zip(&cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// Escape a label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_reloads() {
        let m = Metrics::default();
        let stats = Arc::new(PipelineStats::default());
        stats.received.fetch_add(3, Relaxed);
        stats.acked.fetch_add(1, Relaxed);
        stats
            .publish_seconds
            .observe(std::time::Duration::from_millis(2));
        m.set_pipelines(vec![PipelineMetrics {
            name: "orders".into(),
            stats,
            stages: LiveStages::new(Vec::new()),
            health: Vec::new(),
        }]);
        m.reloaded(Reload::Ok);
        let text = m.render();
        assert!(
            text.contains(
                "sluice_pipeline_messages_total{pipeline=\"orders\",outcome=\"received\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_in_flight{pipeline=\"orders\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("sluice_sink_publish_duration_seconds_count{pipeline=\"orders\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_sink_publish_duration_seconds_bucket{pipeline=\"orders\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_reloads_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sluice_stage_duration_seconds histogram"),
            "{text}"
        );
    }

    #[test]
    fn readiness_names_the_pipeline_and_endpoint_that_is_down_until_it_is_back() {
        let m = Metrics::default();
        let source = Health::new("redis-stream:orders");
        m.set_pipelines(vec![PipelineMetrics {
            name: "orders".into(),
            stats: Arc::default(),
            stages: LiveStages::new(Vec::new()),
            health: vec![("source".into(), source.clone())],
        }]);
        assert!(m.readiness().is_err(), "not ready before the start");
        m.set_ready(true);
        assert_eq!(m.readiness(), Ok(()));
        source.down("connection refused");
        assert_eq!(
            m.readiness(),
            Err(vec![
                "pipeline `orders`: source redis-stream:orders: down: connection refused".into()
            ])
        );
        let text = m.render();
        assert!(text.contains("sluice_ready 0"), "{text}");
        assert!(
            text.contains(
                "sluice_connected{pipeline=\"orders\",endpoint=\"source redis-stream:orders\"} 0"
            ),
            "{text}"
        );
        source.up();
        assert_eq!(m.readiness(), Ok(()));
        assert!(m.render().contains("sluice_ready 1"));
    }
}
