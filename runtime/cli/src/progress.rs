//! The progress of finite work in `sluice run`: for each pipeline whose
//! source is a file, the records taken, how much of the file is read and
//! the messages per second. On a terminal, one line on stderr redrawn every
//! second; otherwise (a log file, journald, a pipe) an `info` log event
//! `progress` every 10 seconds, so JSON logs stay JSON. Either way one last
//! line per pipeline when its file is done.

use crate::status::{PipelineStatus, Status};
use sluice_core::stats::ReadProgress;
use sluice_core::PipelineStats;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

struct Tracked {
    file: String,
    read: Arc<ReadProgress>,
    stats: Arc<PipelineStats>,
    started: Instant,
    /// Records and time at the last line, for the rate.
    last: (u64, Instant),
    done: bool,
}

/// The progress lines of one process.
pub struct Progress {
    status: Arc<Status>,
    terminal: bool,
    tracked: Mutex<BTreeMap<String, Tracked>>,
}

impl Progress {
    pub fn new(status: Arc<Status>) -> Arc<Progress> {
        Arc::new(Progress {
            status,
            terminal: std::io::stderr().is_terminal(),
            tracked: Mutex::default(),
        })
    }

    /// Write the progress every second on a terminal, every 10 s otherwise,
    /// for as long as the process runs.
    pub async fn run(self: Arc<Self>) {
        let every = if self.terminal {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            self.update(false);
        }
    }

    /// The last lines, for pipelines whose file is done (at exit).
    pub fn finish(&self) {
        self.update(true);
    }

    /// Take up the file pipelines running now (called often: a short file
    /// may be done before the first line is due).
    pub fn track(&self) {
        let running = self.status.pipelines();
        let mut tracked = self.tracked.lock().unwrap_or_else(PoisonError::into_inner);
        for p in &running {
            track(&mut tracked, p);
        }
    }

    fn update(&self, at_exit: bool) {
        self.track();
        let running = self.status.pipelines();
        let mut tracked = self.tracked.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut live = Vec::new();
        for (name, t) in tracked.iter_mut().filter(|(_, t)| !t.done) {
            let records = t.stats.snapshot().received;
            let ended = at_exit || !running.iter().any(|p| &p.name == name);
            if ended {
                t.done = true;
                let secs = now.duration_since(t.started).as_secs_f64().max(1e-3);
                self.line(name, t, records, records as f64 / secs, true);
                continue;
            }
            let secs = now.duration_since(t.last.1).as_secs_f64().max(1e-3);
            let rate = records.saturating_sub(t.last.0) as f64 / secs;
            t.last = (records, now);
            live.push(text(name, t, records, rate));
            if !self.terminal {
                self.line(name, t, records, rate, false);
            }
        }
        if self.terminal && !live.is_empty() {
            eprint!("\r{}\x1b[K", live.join(" | "));
        }
    }

    fn line(&self, name: &str, t: &Tracked, records: u64, rate: f64, done: bool) {
        let end = match (done, t.read.percent() >= 100.0) {
            (false, _) => "",
            (true, true) => " (done)",
            (true, false) => " (stopped)",
        };
        if self.terminal {
            eprintln!("\r{}{end}\x1b[K", text(name, t, records, rate));
        } else {
            tracing::info!(
                event = "progress",
                pipeline = name,
                records,
                percent = (t.read.percent() * 10.0).round() / 10.0,
                per_second = rate.round(),
                done,
                "{}{end}",
                text(name, t, records, rate)
            );
        }
    }
}

fn track(tracked: &mut BTreeMap<String, Tracked>, p: &PipelineStatus) {
    let Some(read) = &p.progress else { return };
    let now = Instant::now();
    let fresh = tracked
        .get(&p.name)
        .is_none_or(|t| !Arc::ptr_eq(&t.read, read));
    if fresh {
        tracked.insert(
            p.name.clone(),
            Tracked {
                file: p.source.name.clone(),
                read: read.clone(),
                stats: p.stats.clone(),
                started: now,
                last: (p.stats.snapshot().received, now),
                done: false,
            },
        );
    }
}

fn text(name: &str, t: &Tracked, records: u64, rate: f64) -> String {
    format!(
        "{name}: {records} records, {:.0}% of {}, {:.0} msg/s",
        t.read.percent(),
        t.file.strip_prefix("file:").unwrap_or(&t.file),
        rate
    )
}
