//! What the daemon knows about itself: the running pipelines (kept up to
//! date by the supervisor), its reloads and whether it is ready. `/metrics`,
//! `/readyz`, the JSON API and the status page all read this one place
//! (`crate::http`).

use sluice_core::stats::ReadProgress;
use sluice_core::tap::Taps;
use sluice_core::{Health, LiveStages, PipelineStats, Sink, Source};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// A source or sink as the status shows it: what it is, and its connection
/// state where the connector keeps one.
#[derive(Clone)]
pub struct Endpoint {
    /// Its `describe()`: broker and address, never credentials.
    pub name: String,
    pub health: Option<Health>,
}

impl Endpoint {
    pub fn source(source: &dyn Source) -> Self {
        Endpoint {
            name: source.describe(),
            health: source.health(),
        }
    }

    pub fn sink(sink: &dyn Sink) -> Self {
        Endpoint {
            name: sink.describe(),
            health: sink.health(),
        }
    }

    /// Why it is down, if the connector says it is.
    pub fn down_reason(&self) -> Option<String> {
        self.health.as_ref().and_then(Health::down_reason)
    }
}

/// A running pipeline, as the status shows it.
#[derive(Clone)]
pub struct PipelineStatus {
    pub name: String,
    pub source: Endpoint,
    /// Named sinks, in config order.
    pub sinks: Vec<(String, Endpoint)>,
    pub dlq: Endpoint,
    pub stats: Arc<PipelineStats>,
    pub stages: LiveStages,
    /// Worker threads.
    pub concurrency: usize,
    /// Where `sluice tap` attaches.
    pub taps: Arc<Taps>,
    /// How far a file source has read.
    pub progress: Option<Arc<ReadProgress>>,
}

impl PipelineStatus {
    /// Source, sinks and DLQ, each with its role (`source`, `sink NAME`,
    /// `dlq`).
    pub fn endpoints(&self) -> Vec<(String, &Endpoint)> {
        let mut all = vec![("source".to_string(), &self.source)];
        all.extend(self.sinks.iter().map(|(n, e)| (format!("sink {n}"), e)));
        all.push(("dlq".to_string(), &self.dlq));
        all
    }
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    Ok,
    Unchanged,
    Failed,
}

impl Reload {
    pub const ALL: [Reload; 3] = [Reload::Ok, Reload::Unchanged, Reload::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Reload::Ok => "ok",
            Reload::Unchanged => "unchanged",
            Reload::Failed => "failed",
        }
    }
}

/// One reload, for the status page.
#[derive(Debug, Clone)]
pub struct ReloadNote {
    pub time: SystemTime,
    pub result: Reload,
    /// Why it failed.
    pub error: Option<String>,
}

/// The process's status; shared by the supervisor (writes) and the HTTP
/// listener (reads).
#[derive(Default)]
pub struct Status {
    pipelines: Mutex<Vec<PipelineStatus>>,
    reloads: [AtomicU64; 3],
    recent_reloads: Mutex<VecDeque<ReloadNote>>,
    ready: AtomicBool,
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Status")
    }
}

impl Status {
    /// Reloads kept for the status page.
    pub const RELOADS_KEPT: usize = 10;

    pub fn set_pipelines(&self, pipelines: Vec<PipelineStatus>) {
        *self
            .pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = pipelines;
    }

    pub fn pipelines(&self) -> Vec<PipelineStatus> {
        self.pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn reloaded(&self, result: Reload, error: Option<String>) {
        self.reloads[result as usize].fetch_add(1, Relaxed);
        let mut recent = self
            .recent_reloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if recent.len() == Self::RELOADS_KEPT {
            recent.pop_front();
        }
        recent.push_back(ReloadNote {
            time: SystemTime::now(),
            result,
            error,
        });
    }

    /// Reloads so far, by result.
    pub fn reload_count(&self, result: Reload) -> u64 {
        self.reloads[result as usize].load(Relaxed)
    }

    /// The latest reloads, oldest first.
    pub fn recent_reloads(&self) -> Vec<ReloadNote> {
        self.recent_reloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
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
                p.endpoints().into_iter().filter_map(|(role, e)| {
                    let reason = e.down_reason()?;
                    Some(format!(
                        "pipeline `{}`: {role} {}: down: {reason}",
                        p.name, e.name
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_the_pipeline_and_endpoint_that_is_down_until_it_is_back() {
        let status = Status::default();
        let health = Health::new("redis-stream:orders");
        let endpoint = |name: &str, health: Option<Health>| Endpoint {
            name: name.into(),
            health,
        };
        status.set_pipelines(vec![PipelineStatus {
            name: "orders".into(),
            source: endpoint("redis-stream:orders", Some(health.clone())),
            sinks: vec![("out".into(), endpoint("stdout", None))],
            dlq: endpoint("stderr", None),
            stats: Arc::default(),
            stages: LiveStages::new(Vec::new()),
            concurrency: 1,
            taps: Arc::default(),
            progress: None,
        }]);
        assert!(status.readiness().is_err(), "not ready before the start");
        status.set_ready(true);
        assert_eq!(status.readiness(), Ok(()));
        health.down("connection refused");
        assert_eq!(
            status.readiness(),
            Err(vec![
                "pipeline `orders`: source redis-stream:orders: down: connection refused".into()
            ])
        );
        health.up();
        assert_eq!(status.readiness(), Ok(()));
    }

    #[test]
    fn keeps_the_latest_reloads_and_counts_all() {
        let status = Status::default();
        for i in 0..Status::RELOADS_KEPT + 3 {
            status.reloaded(Reload::Failed, Some(format!("bad {i}")));
        }
        status.reloaded(Reload::Ok, None);
        assert_eq!(
            status.reload_count(Reload::Failed),
            Status::RELOADS_KEPT as u64 + 3
        );
        let recent = status.recent_reloads();
        assert_eq!(recent.len(), Status::RELOADS_KEPT);
        assert_eq!(recent.last().map(|r| r.result), Some(Reload::Ok));
    }
}
