//! Every metric sluice exports, defined in this one place and encoded by
//! the official `prometheus-client` from the engine's own counters at each
//! scrape.
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
//!
//! Two formats, by the scraper's `Accept` header: OpenMetrics for a
//! scraper that asks for it (Prometheus does), and the classic text format
//! (0.0.4) otherwise, for `curl` and `promtool check metrics`. The sample
//! lines are the same in both.

use crate::status::{PipelineStatus, Reload, Status};
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use sluice_core::stats::Histogram;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// The content types of the two formats.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The registry every scrape encodes: one collector over [`Status`].
pub fn registry(status: Arc<Status>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collector(status)));
    registry
}

/// The exposition, OpenMetrics or classic text.
pub fn render(registry: &Registry, openmetrics: bool) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        tracing::error!("encoding /metrics failed");
    }
    if openmetrics {
        out
    } else {
        to_classic_text(&out)
    }
}

/// OpenMetrics text → the classic Prometheus text format: a counter's
/// family is named with its `_total` suffix in HELP and TYPE, and there are
/// no UNIT or EOF lines.
fn to_classic_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(&name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{total} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[derive(Debug)]
struct Collector(Arc<Status>);

/// One sample's value.
enum Value<'a> {
    Count(u64),
    Gauge(u64),
    Histogram(&'a Histogram),
}

type Labels = Vec<(&'static str, String)>;

/// One family: HELP, TYPE (and UNIT) once, then its samples.
fn family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, Value<'a>)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, value) in samples {
        let mut sample = metric.encode_family(&labels)?;
        match value {
            Value::Count(n) => sample.encode_counter::<NoLabelSet, _, u64>(&n, None)?,
            Value::Gauge(n) => sample.encode_gauge(&n)?,
            Value::Histogram(h) => {
                let (counts, sum) = h.buckets();
                let bounds = Histogram::BOUNDS.iter().copied().chain([f64::INFINITY]);
                let buckets: Vec<(f64, u64)> = bounds.zip(counts).collect();
                let count = counts.iter().sum();
                sample.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?
            }
        }
    }
    Ok(())
}

fn pipeline(p: &PipelineStatus) -> Labels {
    vec![("pipeline", p.name.clone())]
}

fn stage(p: &PipelineStatus, stage: &str) -> Labels {
    vec![("pipeline", p.name.clone()), ("stage", stage.to_string())]
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let pipelines = self.0.pipelines();
        let stages: Vec<_> = pipelines
            .iter()
            .flat_map(|p| {
                let current = p.stages.current();
                current
                    .stages
                    .iter()
                    .map(|s| (p, s.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let e = &mut encoder;
        family(
            e,
            "sluice_pipeline_messages",
            "Deliveries by pipeline and outcome.",
            None,
            MetricType::Counter,
            pipelines.iter().flat_map(|p| {
                let c = p.stats.snapshot();
                [
                    ("received", c.received),
                    ("delivered", c.delivered),
                    ("dropped", c.dropped),
                    ("dead_lettered", c.dead_lettered),
                    ("acked", c.acked),
                    ("retried_later", c.retried_later),
                ]
                .map(|(outcome, n)| {
                    let mut labels = pipeline(p);
                    labels.push(("outcome", outcome.to_string()));
                    (labels, Value::Count(n))
                })
            }),
        )?;
        family(
            e,
            "sluice_messages",
            "Messages by pipeline, stage and outcome.",
            None,
            MetricType::Counter,
            stages.iter().flat_map(|(p, s)| {
                let c = s.stats.snapshot();
                [
                    ("in", c.input),
                    ("ok", c.output),
                    ("dropped", c.dropped),
                    ("retried", c.retried),
                    ("dead_lettered", c.dead_lettered),
                ]
                .map(|(outcome, n)| {
                    let mut labels = stage(p, &s.name);
                    labels.push(("outcome", outcome.to_string()));
                    (labels, Value::Count(n))
                })
            }),
        )?;
        family(
            e,
            "sluice_stage_duration",
            "Duration of one stage call (a batch call is one call).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
            stages
                .iter()
                .map(|(p, s)| (stage(p, &s.name), Value::Histogram(&s.stats.call_seconds))),
        )?;
        type StageCounter = fn(&sluice_core::stats::StageCounts) -> u64;
        let per_stage: [(&str, &str, StageCounter); 4] = [
            (
                "sluice_stage_fuel_consumed",
                "Fuel burnt by a stage's calls.",
                |c| c.fuel,
            ),
            (
                "sluice_instance_replacements",
                "Plugin instances replaced after a fault that stopped a call.",
                |c| c.replaced,
            ),
            (
                "sluice_plugin_log_suppressed",
                "Plugin log lines not written because of the stage's log rate limit.",
                |c| c.log_suppressed,
            ),
            (
                "sluice_deduplicated",
                "Messages a dedupe stage dropped as already delivered.",
                |c| c.deduplicated,
            ),
        ];
        for (name, help, count) in per_stage {
            family(
                e,
                name,
                help,
                None,
                MetricType::Counter,
                stages
                    .iter()
                    .map(|(p, s)| (stage(p, &s.name), Value::Count(count(&s.stats.snapshot())))),
            )?;
        }
        family(
            e,
            "sluice_sink_publish_duration",
            "From handing a message to a sink to its confirm.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
            pipelines
                .iter()
                .map(|p| (pipeline(p), Value::Histogram(&p.stats.publish_seconds))),
        )?;
        family(
            e,
            "sluice_sink_retries",
            "Failed sink publishes that were retried.",
            None,
            MetricType::Counter,
            pipelines
                .iter()
                .map(|p| (pipeline(p), Value::Count(p.stats.snapshot().sink_retries))),
        )?;
        family(
            e,
            "sluice_in_flight",
            "Deliveries received and not yet settled with the source.",
            None,
            MetricType::Gauge,
            pipelines.iter().map(|p| {
                let c = p.stats.snapshot();
                (
                    pipeline(p),
                    Value::Gauge(c.received.saturating_sub(c.acked)),
                )
            }),
        )?;
        family(
            e,
            "sluice_in_flight_bytes",
            "Bytes of messages received and not yet settled with the source (what the byte budget holds).",
            None,
            MetricType::Gauge,
            pipelines
                .iter()
                .map(|p| (pipeline(p), Value::Gauge(p.stats.in_flight_bytes.load(Relaxed)))),
        )?;
        family(
            e,
            "sluice_source_lag",
            "Messages waiting in the broker for the source, as the broker reports it.",
            None,
            MetricType::Gauge,
            pipelines
                .iter()
                .filter_map(|p| Some((pipeline(p), Value::Gauge(p.stats.source_lag.get()?)))),
        )?;
        family(
            e,
            "sluice_reloads",
            "Config and plugin reloads by result.",
            None,
            MetricType::Counter,
            Reload::ALL.map(|r| {
                (
                    vec![("result", r.as_str().to_string())],
                    Value::Count(self.0.reload_count(r)),
                )
            }),
        )?;
        family(
            e,
            "sluice_connected",
            "1 while the source or sink is connected to its broker.",
            None,
            MetricType::Gauge,
            pipelines.iter().flat_map(|p| {
                p.endpoints().into_iter().filter_map(|(role, endpoint)| {
                    let up = endpoint.health.as_ref()?.is_up();
                    let mut labels = pipeline(p);
                    labels.push(("endpoint", format!("{role} {}", endpoint.name)));
                    Some((labels, Value::Gauge(u64::from(up))))
                })
            }),
        )?;
        family(
            e,
            "sluice_ready",
            "1 while every pipeline's source and sinks are connected.",
            None,
            MetricType::Gauge,
            [(
                Labels::new(),
                Value::Gauge(u64::from(self.0.readiness().is_ok())),
            )],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Endpoint;
    use sluice_core::{Health, LiveStages, PipelineStats};

    fn orders(stats: Arc<PipelineStats>, source: Option<Health>) -> PipelineStatus {
        PipelineStatus {
            name: "orders".into(),
            source: Endpoint {
                name: "redis-stream:orders".into(),
                health: source,
            },
            sinks: Vec::new(),
            dlq: Endpoint {
                name: "stderr".into(),
                health: None,
            },
            stats,
            stages: LiveStages::new(Vec::new()),
            concurrency: 1,
            taps: Arc::default(),
            progress: None,
        }
    }

    #[test]
    fn renders_counters_histograms_and_reloads_in_both_formats() {
        let status = Arc::new(Status::default());
        let stats = Arc::new(PipelineStats::default());
        stats.received.fetch_add(3, Relaxed);
        stats.acked.fetch_add(1, Relaxed);
        stats
            .publish_seconds
            .observe(std::time::Duration::from_millis(2));
        status.set_pipelines(vec![orders(stats, None)]);
        status.reloaded(Reload::Ok, None);
        let registry = registry(status);
        let text = render(&registry, false);
        for line in [
            "sluice_pipeline_messages_total{pipeline=\"orders\",outcome=\"received\"} 3",
            "sluice_in_flight{pipeline=\"orders\"} 2",
            "sluice_sink_publish_duration_seconds_count{pipeline=\"orders\"} 1",
            "sluice_sink_publish_duration_seconds_bucket{le=\"0.005\",pipeline=\"orders\"} 1",
            "sluice_sink_publish_duration_seconds_bucket{le=\"0.001\",pipeline=\"orders\"} 0",
            "sluice_sink_publish_duration_seconds_bucket{le=\"+Inf\",pipeline=\"orders\"} 1",
            "sluice_sink_publish_duration_seconds_bucket{le=\"0.00001\",pipeline=\"orders\"} 0",
            "sluice_sink_publish_duration_seconds_bucket{le=\"1.0\",pipeline=\"orders\"} 1",
            "sluice_reloads_total{result=\"ok\"} 1",
            "# TYPE sluice_reloads_total counter",
            "# HELP sluice_messages_total Messages by pipeline, stage and outcome.",
            "# TYPE sluice_stage_duration_seconds histogram",
            "# TYPE sluice_in_flight gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        let open = render(&registry, true);
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(open.contains("# TYPE sluice_reloads counter\n"), "{open}");
        assert!(
            open.contains("sluice_reloads_total{result=\"ok\"} 1\n"),
            "{open}"
        );
    }

    #[test]
    fn ready_and_connected_follow_the_source() {
        let status = Arc::new(Status::default());
        let source = Health::new("redis-stream:orders");
        status.set_pipelines(vec![orders(Arc::default(), Some(source.clone()))]);
        status.set_ready(true);
        source.down("connection refused");
        let registry = registry(status);
        let text = render(&registry, false);
        assert!(text.lines().any(|l| l == "sluice_ready 0"), "{text}");
        assert!(
            text.contains(
                "sluice_connected{pipeline=\"orders\",endpoint=\"source redis-stream:orders\"} 0"
            ),
            "{text}"
        );
        source.up();
        assert!(render(&registry, false)
            .lines()
            .any(|l| l == "sluice_ready 1"));
    }
}
