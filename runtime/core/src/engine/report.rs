//! What a finished run did, for the summary printed at exit.

use crate::stats::{PipelineCounts, StageCounts};

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    pub pipeline: String,
    pub counts: PipelineCounts,
    pub stages: Vec<(String, StageCounts)>,
}

impl std::fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counts;
        let deduplicated: u64 = self.stages.iter().map(|(_, s)| s.deduplicated).sum();
        writeln!(
            f,
            "pipeline {}: received {}, delivered {}, dropped {}, dead-lettered {}, acked {}{}{}",
            self.pipeline,
            c.received,
            c.delivered,
            c.dropped,
            c.dead_lettered,
            c.acked,
            if c.retried_later > 0 {
                format!(", retried through the broker {}", c.retried_later)
            } else {
                String::new()
            },
            if deduplicated > 0 {
                format!(" ({deduplicated} of the dropped were duplicates)")
            } else {
                String::new()
            },
        )?;
        writeln!(
            f,
            "  {:<24} {:>9} {:>9} {:>9} {:>9} {:>13}",
            "stage", "in", "out", "dropped", "retried", "dead-lettered"
        )?;
        for (name, s) in &self.stages {
            writeln!(
                f,
                "  {:<24} {:>9} {:>9} {:>9} {:>9} {:>13}",
                name, s.input, s.output, s.dropped, s.retried, s.dead_lettered
            )?;
        }
        Ok(())
    }
}
