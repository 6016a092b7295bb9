//! `sluice dlq stats|show CONFIG`: what is in a pipeline's DLQ, read back
//! from the DLQ its TOML configures (every form: headers, SQS's packed
//! attribute, the JSON envelope) without consuming it
//! ([`SinkConfig::read_back`](sluice_brokers::SinkConfig::read_back) says
//! how, per broker).

use crate::exit::CliError;
use sluice_brokers::dlq::DeadLetter;
use sluice_config::{Config, PipelineConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

/// Which dead letters a command looks at: `class=…,stage=…,sha=…,since=…`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filter {
    class: Option<String>,
    stage: Option<String>,
    /// A prefix of the plugin's sha256.
    sha: Option<String>,
    /// Last failure at or after this time.
    since: Option<SystemTime>,
}

impl Filter {
    /// Parse `--filter`: comma-separated `name=value` pairs; `since` is an
    /// RFC 3339 time or a duration back from now (`1h`, `30m`).
    ///
    /// # Errors
    /// An unknown name or a `since` that is neither.
    pub fn parse(text: &str) -> Result<Filter, CliError> {
        let mut filter = Filter::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(CliError::Invalid(format!(
                    "--filter `{pair}`: expected NAME=VALUE (class, stage, sha or since)"
                )));
            };
            let value = value.trim().to_owned();
            match name.trim() {
                "class" => filter.class = Some(value),
                "stage" => filter.stage = Some(value),
                "sha" | "sha256" => filter.sha = Some(value),
                "since" => {
                    let at = humantime::parse_rfc3339_weak(&value)
                        .ok()
                        .or_else(|| {
                            humantime::parse_duration(&value)
                                .ok()
                                .and_then(|ago| SystemTime::now().checked_sub(ago))
                        })
                        .ok_or_else(|| {
                            CliError::Invalid(format!(
                                "--filter since={value}: not a time (2026-12-03T10:00:00Z) or a duration ago (1h)"
                            ))
                        })?;
                    filter.since = Some(at);
                }
                other => {
                    return Err(CliError::Invalid(format!(
                        "--filter: unknown field `{other}` (use class, stage, sha or since)"
                    )))
                }
            }
        }
        Ok(filter)
    }

    /// Is `dead` one of those chosen?
    pub fn takes(&self, dead: &DeadLetter) -> bool {
        let is = |want: &Option<String>, field: &str| {
            want.as_deref().is_none_or(|w| dead.field(field) == Some(w))
        };
        is(&self.class, "class")
            && is(&self.stage, "stage")
            && self.sha.as_deref().is_none_or(|prefix| {
                dead.field("plugin-sha256")
                    .is_some_and(|sha| sha.starts_with(prefix))
            })
            && self
                .since
                .is_none_or(|since| time(dead, "last-failure").is_some_and(|last| last >= since))
    }
}

fn time(dead: &DeadLetter, field: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(dead.field(field)?).ok()
}

/// What `read` found in one pipeline's DLQ.
struct Found {
    pipeline: String,
    dlq: String,
    letters: Vec<DeadLetter>,
    /// Messages in the DLQ that are not sluice dead letters.
    foreign: usize,
}

/// The most messages one command reads from a DLQ.
pub const READ_LIMIT: usize = 1_000_000;

/// The pipelines a command works on: the one named, or all.
///
/// # Errors
/// No pipeline of that name.
pub fn chosen<'a>(
    config: &'a Config,
    pipeline: Option<&str>,
) -> Result<Vec<&'a PipelineConfig>, CliError> {
    let Some(name) = pipeline else {
        return Ok(config.pipelines.iter().collect());
    };
    let found: Vec<_> = config.pipelines.iter().filter(|p| p.name == name).collect();
    if found.is_empty() {
        let names: Vec<&str> = config.pipelines.iter().map(|p| p.name.as_str()).collect();
        return Err(CliError::Invalid(format!(
            "{}: no pipeline `{name}` (pipelines: {})",
            config.path.display(),
            names.join(", ")
        )));
    }
    Ok(found)
}

/// A multi-threaded runtime for a command's broker calls.
///
/// # Errors
/// The runtime cannot start.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the async runtime: {e}")))
}

fn read(config: &Config, pipeline: Option<&str>, filter: &Filter) -> Result<Vec<Found>, CliError> {
    let chosen = chosen(config, pipeline)?;
    let runtime = runtime()?;
    let mut all = Vec::new();
    for p in chosen {
        let name = format!("{}.dlq", p.name);
        let read = runtime
            .block_on(p.dlq.read_back(&config.base_dir, &name, READ_LIMIT))
            .map_err(|e| {
                CliError::from(e).context(&format!("pipeline `{}`: reading its DLQ", p.name))
            })?;
        let mut found = Found {
            pipeline: p.name.clone(),
            dlq: p.dlq.kind().to_owned(),
            letters: Vec::new(),
            foreign: 0,
        };
        for (at, message) in read {
            match DeadLetter::read(at, &message) {
                Some(dead) if filter.takes(&dead) => found.letters.push(dead),
                Some(_) => {}
                None => found.foreign += 1,
            }
        }
        all.push(found);
    }
    Ok(all)
}

/// `sluice dlq show`: the selected dead letters as JSON lines (`at`,
/// `error`, `message`), oldest first, at most `limit` per pipeline.
pub fn show(
    path: &Path,
    pipeline: Option<&str>,
    filter: &Filter,
    limit: usize,
) -> Result<(), CliError> {
    let config = sluice_config::load(path)?;
    for found in read(&config, pipeline, filter)? {
        for dead in found.letters.iter().take(limit) {
            println!("{}", dead.to_json(&found.pipeline));
        }
    }
    Ok(())
}

/// One group of `stats`.
#[derive(Default)]
struct Group {
    count: u64,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
}

/// `sluice dlq stats`: counts grouped by class, stage, plugin sha256 and
/// error text, with the first and last failure of each group.
pub fn stats(path: &Path, pipeline: Option<&str>, filter: &Filter) -> Result<(), CliError> {
    let config = sluice_config::load(path)?;
    for found in read(&config, pipeline, filter)? {
        let mut groups: BTreeMap<[String; 4], Group> = BTreeMap::new();
        for dead in &found.letters {
            let field = |name: &str| dead.field(name).unwrap_or("-").to_owned();
            let sha = field("plugin-sha256");
            let key = [
                field("class"),
                field("stage"),
                sha.chars().take(12).collect(),
                one_line(&field("text"), 80),
            ];
            let group = groups.entry(key).or_default();
            group.count += 1;
            let (first, last) = (time(dead, "first-failure"), time(dead, "last-failure"));
            group.first = min(group.first, first);
            group.last = max(group.last, last);
        }
        println!(
            "pipeline {}: {} dead letter(s) in its {} DLQ{}",
            found.pipeline,
            found.letters.len(),
            found.dlq,
            if found.foreign > 0 {
                format!(" (and {} other message(s))", found.foreign)
            } else {
                String::new()
            }
        );
        if groups.is_empty() {
            continue;
        }
        println!(
            "  {:>7}  {:<17} {:<16} {:<12}  {:<24} {:<24} text",
            "count", "class", "stage", "sha256", "first failure", "last failure"
        );
        let mut rows: Vec<_> = groups.into_iter().collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
        for ([class, stage, sha, text], g) in rows {
            let at = |t: Option<SystemTime>| {
                t.map_or("-".to_string(), |t| {
                    humantime::format_rfc3339_millis(t).to_string()
                })
            };
            println!(
                "  {:>7}  {:<17} {:<16} {:<12}  {:<24} {:<24} {}",
                g.count,
                class,
                stage,
                sha,
                at(g.first),
                at(g.last),
                text
            );
        }
    }
    Ok(())
}

fn min(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `text` on one line, at most `width` characters.
fn one_line(text: &str, width: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= width {
        return flat;
    }
    let cut: String = flat.chars().take(width - 1).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_filter_names_its_fields_and_rejects_others() {
        let f = Filter::parse("class=timeout, stage=check,sha=ab12").unwrap();
        assert_eq!(f.class.as_deref(), Some("timeout"));
        assert_eq!(f.stage.as_deref(), Some("check"));
        assert_eq!(f.sha.as_deref(), Some("ab12"));
        let since = Filter::parse("since=1h").unwrap().since.unwrap();
        let ago = SystemTime::now().duration_since(since).unwrap();
        assert!(ago >= Duration::from_secs(3599) && ago < Duration::from_secs(3700));
        assert!(Filter::parse("since=2026-12-03T10:00:00Z").is_ok());
        assert!(Filter::parse("colour=red").is_err());
        assert!(Filter::parse("since=soon").is_err());
    }
}
