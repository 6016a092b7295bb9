//! What a reload changes, from two resolved configs, before anything is
//! connected: which pipelines go, which are drained and started again (a
//! new source, sink, DLQ or engine setting), which only get new stages
//! (swapped in live, nothing drained) and which are new.
//!
//! Equality is derived on the resolved types, so a field added to
//! [`PipelineConfig`] or [`StageConfig`] is seen here without editing a
//! list. What the files do not show, a plugin rebuilt in place, is for the
//! caller to compare (by content hash).

use crate::resolve::PipelineConfig;
#[cfg(doc)]
use crate::resolve::StageConfig;

/// Pipeline names by what a reload does with them, each in config order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PipelineDiff {
    /// In the old config only: drained and stopped.
    pub remove: Vec<String>,
    /// Source, sinks, DLQ or engine settings changed: drained, then started
    /// on the new config.
    pub restart: Vec<String>,
    /// Only the stages changed: the new chain is swapped in while running.
    pub swap: Vec<String>,
    /// In the new config only: started.
    pub add: Vec<String>,
    /// The same in both.
    pub unchanged: Vec<String>,
}

impl PipelineDiff {
    /// Compare the pipelines of an old and a new config.
    pub fn between(old: &[PipelineConfig], new: &[PipelineConfig]) -> PipelineDiff {
        let mut diff = PipelineDiff::default();
        for was in old {
            if !new.iter().any(|p| p.name == was.name) {
                diff.remove.push(was.name.clone());
            }
        }
        for now in new {
            let list = match old.iter().find(|p| p.name == now.name) {
                None => &mut diff.add,
                Some(was) if !same_outside_stages(was, now) => &mut diff.restart,
                Some(was) if was.stages != now.stages => &mut diff.swap,
                Some(_) => &mut diff.unchanged,
            };
            list.push(now.name.clone());
        }
        diff
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.restart.is_empty()
            && self.swap.is_empty()
            && self.add.is_empty()
    }
}

/// Everything but the stages: what a live swap cannot change. Written out
/// field by field so that a new field must be placed on one side or the
/// other (the destructuring does not compile without it).
pub fn same_outside_stages(a: &PipelineConfig, b: &PipelineConfig) -> bool {
    let PipelineConfig {
        name,
        source,
        stages: _,
        sinks,
        dlq,
        dlq_format,
        engine,
    } = a;
    *name == b.name
        && *source == b.source
        && *sinks == b.sinks
        && *dlq == b.dlq
        && *dlq_format == b.dlq_format
        && *engine == b.engine
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[pipelines.a]
source = { type = "file", path = "a.jsonl" }
sinks.out = { type = "file", path = "a.out" }
dlq = { type = "file", path = "a.dlq" }
[[pipelines.a.stages]]
name = "f"
kind = "filter"
plugin = "f.wasm"
timeout = "1s"

[pipelines.b]
source = { type = "file", path = "b.jsonl" }
sinks.out = { type = "file", path = "b.out" }
dlq = { type = "file", path = "b.dlq" }
"#;

    fn pipelines(text: &str) -> Vec<PipelineConfig> {
        crate::parse(text, Path::new("/cfg/pipeline.toml"))
            .unwrap()
            .pipelines
    }

    fn diff(new: &str) -> PipelineDiff {
        PipelineDiff::between(&pipelines(BASE), &pipelines(new))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_same_file_changes_nothing_even_with_lines_moved() {
        let moved = format!("# a comment\n\n{BASE}");
        let d = diff(&moved);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.unchanged, names(&["a", "b"]));
    }

    #[test]
    fn a_stage_setting_is_a_swap() {
        let d = diff(&BASE.replace("timeout = \"1s\"", "timeout = \"2s\""));
        assert_eq!(d.swap, names(&["a"]));
        assert!(d.restart.is_empty() && d.add.is_empty() && d.remove.is_empty());
        // A stage key the diff has never been told about is seen too: any
        // field of StageConfig is compared (here `params`).
        let d = diff(&BASE.replace("timeout = \"1s\"", "params = { min = 3 }"));
        assert_eq!(d.swap, names(&["a"]));
    }

    #[test]
    fn a_source_sink_or_engine_change_is_a_restart() {
        let d = diff(&BASE.replace("a.jsonl", "a2.jsonl"));
        assert_eq!(d.restart, names(&["a"]));
        let d = diff(&BASE.replace("b.out", "b2.out"));
        assert_eq!(d.restart, names(&["b"]));
        let d = diff(&BASE.replace("[pipelines.b]\n", "[pipelines.b]\nconcurrency = 3\n"));
        assert_eq!(d.restart, names(&["b"]));
    }

    #[test]
    fn pipelines_come_and_go() {
        let end = BASE.find("[pipelines.b]").unwrap();
        let d = diff(&BASE[..end].replace("pipelines.a", "pipelines.c"));
        assert_eq!(d.remove, names(&["a", "b"]));
        assert_eq!(d.add, names(&["c"]));
    }
}
