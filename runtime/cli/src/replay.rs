//! `sluice dlq replay CONFIG`: send dead letters back through their
//! pipeline, as the plugins are now, and take them out of the DLQ once each
//! has settled again (delivered, dropped by a filter, or dead-lettered
//! anew, with its reason).
//!
//! The DLQ is taken with [`DeadLetterQueue`](sluice_brokers::dlq::DeadLetterQueue)
//! (held where the broker can hold a message); each selected dead letter
//! becomes its original message again, with `sluice-replay-count` one up
//! and the retry bookkeeping (`x-retry-count`) off, so its attempts start
//! over. It runs through the pipeline's engine (an in-memory source of the
//! chosen messages, the pipeline's own sinks and DLQ, file sinks appending)
//! from the stage that failed when only filters come before it, else from
//! the start. A dead letter replayed `max_replays` times already stays in
//! the DLQ and is reported: a plugin that still fails is never cycled for
//! ever. The DLQ loses a dead letter only after its replay settled; a replay
//! cut short leaves the rest where they were (a message may then be
//! replayed twice, never lost).

use crate::assemble;
use crate::dlq::{chosen, runtime, Filter, READ_LIMIT};
use crate::exit::CliError;
use sluice_brokers::dlq::DeadLetter;
use sluice_brokers::RETRY_COUNT_HEADER;
use sluice_config::{Config, PipelineConfig};
use sluice_core::memory::MemorySource;
use sluice_core::{Message, Pipeline, Shutdown, StageKind, StageSpec, SystemClock};
use sluice_state::Stores;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The loop guard: how often a message was replayed from a DLQ.
pub const REPLAY_COUNT_HEADER: &str = "sluice-replay-count";

/// Where a replayed message enters its pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EntryPoint {
    /// At the stage that failed, when only filters come before it (they
    /// pass messages on unchanged); else at the start.
    Stage,
    /// At the first stage.
    Source,
}

/// How `replay` goes.
#[derive(Debug, Clone)]
pub struct Options {
    pub from: EntryPoint,
    /// Say what would be replayed; change nothing.
    pub dry_run: bool,
    /// Replays a message may have had and still be replayed.
    pub max_replays: u32,
}

/// `sluice dlq replay`.
///
/// # Errors
/// A bad config or plugin (exit 1), a DLQ or sink that cannot be reached
/// (exit 2).
pub fn replay(
    path: &Path,
    pipeline: Option<&str>,
    filter: &Filter,
    options: &Options,
) -> Result<(), CliError> {
    let config = sluice_config::load(path)?;
    let chosen = chosen(&config, pipeline)?;
    let host = assemble::host()?;
    let runtime = runtime()?;
    let stores = Stores::default();
    for p in chosen {
        let open = runtime.block_on(assemble::open_stores(&stores, p))?;
        let stages = assemble::load_stages(&host, &config, p, &open)?;
        let replayed = runtime.block_on(replay_pipeline(&config, p, &stages, filter, options));
        runtime.block_on(stores.flush());
        replayed?;
    }
    Ok(())
}

/// A dead letter to replay: its index in what was taken, and its message.
type Chosen = (usize, Message);

async fn replay_pipeline(
    config: &Config,
    p: &PipelineConfig,
    stages: &[Arc<StageSpec>],
    filter: &Filter,
    options: &Options,
) -> Result<(), CliError> {
    let reading = |e| assemble::in_pipeline(p, e).context("its DLQ");
    let mut queue = p
        .dlq
        .open_dlq(&config.base_dir, &format!("{}.dlq", p.name))
        .await
        .map_err(reading)?;
    let taken = match queue.take(READ_LIMIT).await {
        Ok(taken) => taken,
        Err(e) => {
            let _ = queue.finish(&[]).await;
            return Err(reading(e));
        }
    };
    let mut plan: BTreeMap<usize, Vec<Chosen>> = BTreeMap::new();
    let mut guarded = Vec::new();
    let mut from_start = 0;
    for (i, (at, message)) in taken.iter().enumerate() {
        let Some(dead) = DeadLetter::read(at.clone(), message) else {
            continue;
        };
        if !filter.takes(&dead) {
            continue;
        }
        let replays = replay_count(&dead.message);
        if replays >= options.max_replays {
            guarded.push(dead);
            continue;
        }
        let start = match options.from {
            EntryPoint::Source => 0,
            EntryPoint::Stage => {
                let (start, fell_back) = entry_stage(p, &dead);
                from_start += usize::from(fell_back);
                start
            }
        };
        plan.entry(start)
            .or_default()
            .push((i, again(dead.message, replays)));
    }
    let chosen: usize = plan.values().map(Vec::len).sum();
    if options.dry_run {
        queue.finish(&[]).await.map_err(reading)?;
        println!(
            "pipeline {}: would replay {chosen} dead letter(s) from its {} DLQ{}",
            p.name,
            p.dlq.kind(),
            at_stages(p, &plan)
        );
        report_guarded(&guarded, options.max_replays);
        return Ok(());
    }
    let mut settled = Vec::new();
    let mut counts = Counts::default();
    let mut failed = None;
    for (start, batch) in plan {
        match run(config, p, &stages[start..], batch).await {
            Ok((done, c)) => {
                settled.extend(done);
                counts.add(&c);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    // Remove what settled, even when a later batch failed.
    let removed = queue.finish(&settled).await;
    println!(
        "pipeline {}: replayed {} of {chosen} dead letter(s) from its {} DLQ: {} delivered, {} dropped, {} dead-lettered again; {} removed from the DLQ{}",
        p.name,
        counts.received,
        p.dlq.kind(),
        counts.delivered,
        counts.dropped,
        counts.dead_lettered,
        if removed.is_ok() { settled.len() } else { 0 },
        if from_start > 0 {
            format!(" ({from_start} from the start: a stage before the one that failed changes messages)")
        } else {
            String::new()
        }
    );
    report_guarded(&guarded, options.max_replays);
    if let Some(e) = failed {
        return Err(e);
    }
    removed.map_err(|e| assemble::in_pipeline(p, e).context("removing replayed dead letters"))
}

/// What the replay runs of one pipeline counted.
#[derive(Debug, Default)]
struct Counts {
    received: u64,
    delivered: u64,
    dropped: u64,
    dead_lettered: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.received += other.received;
        self.delivered += other.delivered;
        self.dropped += other.dropped;
        self.dead_lettered += other.dead_lettered;
    }
}

/// Run `batch` through `stages` of `p` with its sinks and DLQ; returns the
/// taken indices of the messages that settled, and the counts.
async fn run(
    config: &Config,
    p: &PipelineConfig,
    stages: &[Arc<StageSpec>],
    batch: Vec<Chosen>,
) -> Result<(Vec<usize>, Counts), CliError> {
    let (indices, messages): (Vec<usize>, Vec<Message>) = batch.into_iter().unzip();
    let (source, acks) = MemorySource::new(format!("{}.dlq", p.name), messages);
    let (sinks, dlq) = assemble::open_outputs(config, p, true).await?;
    let mut options = p.engine.clone();
    // The memory source cannot bring a message back later: retries wait
    // on the worker (parked per key).
    options.republish_retries = false;
    let pipeline = Pipeline {
        name: p.name.clone(),
        source: Box::new(source),
        stages: stages.to_vec().into(),
        sinks,
        dlq,
        options,
        clock: Arc::new(SystemClock),
        stats: Arc::default(),
        taps: Arc::default(),
    };
    let stats = pipeline.stats.clone();
    pipeline
        .run(Shutdown::new(std::time::Duration::from_secs(30)))
        .await
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let acked = acks.acked.lock().map(|a| a.clone()).unwrap_or_default();
    let done = acked
        .into_iter()
        .filter_map(|a| indices.get(a as usize).copied())
        .collect();
    let read = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let counts = Counts {
        received: read(&stats.received),
        delivered: read(&stats.delivered),
        dropped: read(&stats.dropped),
        dead_lettered: read(&stats.dead_lettered),
    };
    Ok((done, counts))
}

/// How often `message` was replayed already.
fn replay_count(message: &Message) -> u32 {
    message
        .header_str(REPLAY_COUNT_HEADER)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// `message` as it goes back in: one more replay, its retries forgotten.
fn again(mut message: Message, replays: u32) -> Message {
    let bookkeeping = |name: &str| {
        name == REPLAY_COUNT_HEADER
            || name == RETRY_COUNT_HEADER
            || name == sluice_brokers::RETRY_DUE_HEADER
    };
    message.headers.retain(|(name, _)| !bookkeeping(name));
    message.header_types.retain(|(name, _)| !bookkeeping(name));
    message.attempt = 1;
    message.with_header(REPLAY_COUNT_HEADER, (replays + 1).to_string())
}

/// The stage a dead letter re-enters at with `--from stage`, and whether
/// it had to be the start instead (a transform or route before the stage
/// that failed changes what that stage saw; the DLQ holds the message as
/// the source gave it). A failure outside the stages (a sink, the source)
/// enters at the start.
fn entry_stage(p: &PipelineConfig, dead: &DeadLetter) -> (usize, bool) {
    let Some(failed) = p
        .stages
        .iter()
        .position(|s| Some(s.name.as_str()) == dead.field("stage"))
    else {
        return (0, false);
    };
    if p.stages[..failed]
        .iter()
        .all(|s| s.kind == StageKind::Filter)
    {
        (failed, false)
    } else {
        (0, true)
    }
}

/// ` (3 at stage check, 2 at the start)` for a dry run.
fn at_stages(p: &PipelineConfig, plan: &BTreeMap<usize, Vec<Chosen>>) -> String {
    if plan.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = plan
        .iter()
        .map(|(start, batch)| match start {
            0 => format!("{} at the start", batch.len()),
            i => format!("{} at stage {}", batch.len(), p.stages[*i].name),
        })
        .collect();
    format!(" ({})", parts.join(", "))
}

fn report_guarded(guarded: &[DeadLetter], max: u32) {
    if guarded.is_empty() {
        return;
    }
    println!(
        "  {} dead letter(s) stay in the DLQ: replayed {max} time(s) already (the replay guard, --max-replays)",
        guarded.len()
    );
    for dead in guarded.iter().take(20) {
        println!(
            "    {}  {} at {}: {}",
            dead.at,
            dead.field("class").unwrap_or("-"),
            dead.field("stage").unwrap_or("-"),
            dead.field("text").unwrap_or("-")
        );
    }
    if guarded.len() > 20 {
        println!("    … and {} more", guarded.len() - 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_message_counts_its_replays_and_forgets_its_retries() {
        let m = Message::new(b"{}".to_vec())
            .with_header(RETRY_COUNT_HEADER, "3")
            .with_header("trace", "t1");
        assert_eq!(replay_count(&m), 0);
        let once = again(m, 0);
        assert_eq!(replay_count(&once), 1);
        assert!(once.header(RETRY_COUNT_HEADER).is_none());
        assert_eq!(once.header("trace"), Some(&b"t1"[..]));
        let twice = again(once, 1);
        assert_eq!(replay_count(&twice), 2);
        let names: Vec<&str> = twice.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["trace", REPLAY_COUNT_HEADER]);
    }
}
