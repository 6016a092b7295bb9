//! Raw TOML → validated, resolved [`Config`]: defaults applied, paths made
//! relative to the config file, params flattened to strings.

use crate::error::ConfigError;
use crate::raw;
use crate::units::{ByteSize, Name};
use sluice_brokers::dlq::DlqFormat;
use sluice_brokers::{SinkConfig, SourceConfig};
use sluice_core::engine::EngineOptions;
use sluice_core::HttpGrant;
use sluice_core::{ByteLimits, Limits, RetryPolicy, StageKind};
use sluice_state::dedupe::{DedupeConfig, IdSource};
use sluice_state::StoreConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A loaded, valid config file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its directory; relative paths in the file are relative to it.
    pub base_dir: PathBuf,
    pub pipelines: Vec<PipelineConfig>,
}

/// One pipeline, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    pub name: String,
    pub source: SourceConfig,
    pub stages: Vec<StageConfig>,
    /// Named sinks in name order.
    pub sinks: Vec<(String, SinkConfig)>,
    pub dlq: SinkConfig,
    /// How dead letters are written: `headers` where the DLQ's sink keeps
    /// headers, else `envelope`.
    pub dlq_format: DlqFormat,
    pub engine: EngineOptions,
}

/// One stage, resolved. Two stages are equal when they would run the same
/// way: where they were written ([`Written`]) does not count.
#[derive(Debug, Clone, PartialEq)]
pub struct StageConfig {
    pub name: String,
    pub kind: StageKind,
    /// Absolute or config-relative-resolved plugin path; `None` for a
    /// built-in stage (`dedupe`).
    pub plugin: Option<PathBuf>,
    /// A `dedupe` stage's settings.
    pub dedupe: Option<DedupeConfig>,
    /// What the stage's plugin may import beyond `host`.
    pub capabilities: Capabilities,
    /// Where the stage keeps state: its own `store`, else its pipeline's,
    /// else the embedded store in `state/` beside the config file.
    pub store: StoreConfig,
    pub limits: Limits,
    pub retry: RetryPolicy,
    /// Flattened params: nested tables become dotted keys, values strings.
    pub params: BTreeMap<String, String>,
    /// Where the stage was written, for error messages.
    pub written: Written,
}

/// The capabilities a stage grants its plugin (`capabilities = ["kv"]`,
/// or `{ kv = true, http = { allow = [...] } }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `sluice:plugin/kv`: the stage's key-value namespace of its store.
    pub kv: bool,
    /// `wasi:http/outgoing-handler`: requests to an allow-list.
    pub http: Option<HttpGrant>,
}

/// Where something was written in the config file. Not part of what it
/// is: moving a stage down a line (or adding a comment above it) changes
/// nothing a reload must act on, so any two are equal.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The dotted key (`pipelines.orders.stages[0]`).
    pub key: String,
    /// 1-based line and column of the stage's `plugin` key (`kind` for a
    /// built-in stage).
    pub line: Option<(usize, usize)>,
}

impl PartialEq for Written {
    fn eq(&self, _: &Written) -> bool {
        true
    }
}

/// Read and resolve a config file.
///
/// # Errors
/// An unreadable file, a TOML syntax error, an unknown key, a bad value.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(path, format!("cannot read config file: {e}"))
            .help("check the path given to sluice")
    })?;
    parse(&text, path)
}

/// Resolve config `text` as if read from `path`.
///
/// # Errors
/// See [`load`].
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw: raw::File = toml::from_str(text).map_err(|e| {
        let error = ConfigError::new(path, e.message().trim().to_owned())
            .at(text, e.span())
            .help(help_for(e.message()));
        match e.span().and_then(|span| key_before(text, span.start)) {
            Some(key) => error.key(key),
            None => error,
        }
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base_dir = if base_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base_dir
    };
    let cx = Resolver {
        path,
        text,
        base_dir: &base_dir,
    };
    if raw.pipelines.is_empty() {
        return Err(ConfigError::new(path, "no pipelines defined")
            .key("pipelines")
            .help("add a [pipelines.NAME] table with a source, stages, sinks and a dlq (see examples/quickstart.toml)"));
    }
    let pipelines = raw
        .pipelines
        .into_iter()
        .map(|(name, pipeline)| cx.pipeline(name, pipeline))
        .collect::<Result<_, _>>()?;
    Ok(Config {
        path: path.to_owned(),
        base_dir,
        pipelines,
    })
}

/// The key whose value starts at byte `offset`: the name right before the
/// `=` that precedes it on the same line (`timeout = "fast"` → `timeout`).
fn key_before(text: &str, offset: usize) -> Option<String> {
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let before = text[line_start..offset.min(text.len())]
        .trim_end()
        .strip_suffix('=')?
        .trim_end();
    let key: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"'))
        .collect();
    let key: String = key
        .chars()
        .rev()
        .collect::<String>()
        .trim_matches('"')
        .to_owned();
    (!key.is_empty()).then_some(key)
}

/// A fix suggestion for serde's most common messages.
fn help_for(message: &str) -> String {
    if message.starts_with("unknown field") {
        "remove the key or correct its spelling (the keys allowed here are listed)".into()
    } else if message.starts_with("missing field") {
        "add the missing key".into()
    } else if message.starts_with("unknown variant") {
        "use one of the values listed".into()
    } else {
        "see the config reference in docs/configuration.md".into()
    }
}

struct Resolver<'a> {
    path: &'a Path,
    text: &'a str,
    base_dir: &'a Path,
}

impl Resolver<'_> {
    fn error<T>(
        &self,
        spanned: &Spanned<T>,
        key: String,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(self.path, message)
            .at(self.text, Some(spanned.span()))
            .key(key)
            .help(help)
    }

    fn pipeline(
        &self,
        name: Name,
        spanned: Spanned<raw::Pipeline>,
    ) -> Result<PipelineConfig, ConfigError> {
        let key = format!("pipelines.{name}");
        let span = spanned.span();
        let p = spanned.into_inner();
        if p.sinks.is_empty() {
            return Err(
                ConfigError::new(self.path, "a pipeline needs at least one sink")
                    .at(self.text, Some(span))
                    .key(format!("{key}.sinks"))
                    .help(format!(
                        "add a [{key}.sinks.NAME] table, e.g. type = \"stdout\""
                    )),
            );
        }
        if let Err(e) = p.source.get_ref().validate() {
            return Err(self.error(&p.source, format!("{key}.source"), e.message, e.help));
        }
        let defaults = EngineOptions::default();
        let positive = |v: &Option<Spanned<usize>>,
                        field: &str,
                        default: usize|
         -> Result<usize, ConfigError> {
            match v {
                None => Ok(default),
                Some(s) if *s.get_ref() >= 1 && *s.get_ref() <= 65_536 => Ok(*s.get_ref()),
                Some(s) => Err(self.error(
                    s,
                    format!("{key}.{field}"),
                    format!("{field} must be between 1 and 65536, not {}", s.get_ref()),
                    format!("set {field} to a positive number (default {default})"),
                )),
            }
        };
        let engine = EngineOptions {
            concurrency: positive(&p.concurrency, "concurrency", defaults.concurrency)?,
            buffer: positive(&p.buffer, "buffer", defaults.buffer)?,
            max_in_flight: positive(&p.max_in_flight, "max_in_flight", defaults.max_in_flight)?,
            batch: positive(&p.batch, "batch", defaults.batch)?,
            sink_retry: defaults.sink_retry,
            republish_retries: false,
            bytes: self.byte_limits(&p, &key)?,
        };
        let mut engine = engine;
        if let Some(r) = &p.retry {
            if r.get_ref().republish == Some(true) {
                let source = p.source.get_ref();
                if !source.republishes_retries() {
                    return Err(self.error(
                        r,
                        format!("{key}.retry.republish"),
                        format!("a `{}` source cannot retry through its broker", source.kind()),
                        "remove `republish` (retries then wait on the worker, parked per key); only kafka, rabbitmq, sqs and redis-stream sources retry through their broker",
                    ));
                }
                engine.republish_retries = true;
            }
        }
        let pipeline_retry = match &p.retry {
            Some(r) => self.retry(r, RetryPolicy::default(), &format!("{key}.retry"))?,
            None => RetryPolicy::default(),
        };
        let carries_headers = p.dlq.get_ref().carries_headers();
        let dlq_format = match &p.dlq_format {
            None if carries_headers => DlqFormat::Headers,
            None => DlqFormat::Envelope,
            Some(f) if *f.get_ref() == DlqFormat::Headers && !carries_headers => {
                return Err(self.error(
                    f,
                    format!("{key}.dlq_format"),
                    format!(
                        "a `{}` DLQ{} keeps no headers, so `headers` would lose the reason of every dead letter",
                        p.dlq.get_ref().kind(),
                        if matches!(p.dlq.get_ref().kind(), "file" | "stdout") { " in `lines` format" } else { "" }
                    ),
                    "remove `dlq_format` (such a DLQ writes the envelope form), or use a DLQ that keeps headers",
                ));
            }
            Some(f) => *f.get_ref(),
        };
        let pipeline_store = self.store(p.store.as_ref(), &format!("{key}.store"))?;
        let mut stages = Vec::with_capacity(p.stages.len());
        for (i, stage) in p.stages.iter().enumerate() {
            let stage_key = format!("{key}.stages[{i}]");
            let s = stage.get_ref();
            if p.stages[..i]
                .iter()
                .any(|other| other.get_ref().name == s.name)
            {
                return Err(self.error(
                    stage,
                    format!("{stage_key}.name"),
                    format!("stage name `{}` is used twice", s.name),
                    "give every stage of a pipeline its own name",
                ));
            }
            if *s.kind.get_ref() == StageKind::Route && i + 1 != p.stages.len() {
                return Err(self.error(
                    &s.kind,
                    format!("{stage_key}.kind"),
                    format!("route stage `{}` is not the last stage", s.name),
                    "move the route stage to the end of the chain: it decides the sinks",
                ));
            }
            stages.push(self.stage(stage, &stage_key, pipeline_retry, &pipeline_store)?);
        }
        let base = self.base_dir;
        let mut source = p.source.get_ref().clone();
        source
            .resolve_files(base)
            .map_err(|e| self.error(&p.source, format!("{key}.source"), e.message, e.help))?;
        if engine.republish_retries {
            source.retry_through_broker();
        }
        source.bound_read_ahead(engine.bytes.max_in_flight_bytes);
        let resolved_sink = |spanned: &Spanned<SinkConfig>, at: String| {
            let mut sink = spanned.get_ref().clone();
            sink.resolve_files(base)
                .map_err(|e| self.error(spanned, at, e.message, e.help))?;
            Ok::<SinkConfig, ConfigError>(sink)
        };
        let mut sinks = Vec::with_capacity(p.sinks.len());
        for (n, s) in &p.sinks {
            sinks.push((
                n.0.clone(),
                resolved_sink(s, format!("{key}.sinks.{}", n.0))?,
            ));
        }
        let dlq = resolved_sink(&p.dlq, format!("{key}.dlq"))?;
        Ok(PipelineConfig {
            name: name.0,
            source,
            stages,
            sinks,
            dlq,
            dlq_format,
            engine,
        })
    }

    /// A `store` table resolved (paths relative to the config file), or
    /// the default embedded store.
    fn store(
        &self,
        spanned: Option<&Spanned<StoreConfig>>,
        key: &str,
    ) -> Result<StoreConfig, ConfigError> {
        let mut store = spanned.map_or_else(StoreConfig::default_embedded, |s| s.get_ref().clone());
        if let (StoreConfig::Redis { url }, Some(at)) = (&store, spanned) {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(self.error(
                    at,
                    format!("{key}.url"),
                    format!(
                        "`{}` is not a redis:// URL",
                        sluice_brokers::redact_text(url)
                    ),
                    "write url = \"redis://127.0.0.1:6379\"",
                ));
            }
        }
        store.resolve(self.base_dir);
        Ok(store)
    }

    /// What a stage runs: its plugin, or a built-in (`dedupe`) with its
    /// settings. The keys of one are refused on the other.
    fn stage_body(
        &self,
        spanned: &Spanned<raw::Stage>,
        key: &str,
    ) -> Result<(Option<PathBuf>, Option<DedupeConfig>), ConfigError> {
        let s = spanned.get_ref();
        let kind = *s.kind.get_ref();
        if kind.has_plugin() {
            let Some(plugin) = &s.plugin else {
                return Err(self.error(
                    spanned,
                    format!("{key}.plugin"),
                    format!("{kind} stage `{}` names no plugin", s.name),
                    "add plugin = \"path/to/plugin.wasm\" (relative to this file)",
                ));
            };
            let dedupe_key = [
                ("id", s.id.is_some()),
                ("window", s.window.is_some()),
                ("capacity", s.capacity.is_some()),
                ("claim_ttl", s.claim_ttl.is_some()),
            ]
            .into_iter()
            .find(|(_, set)| *set);
            if let Some((name, _)) = dedupe_key {
                return Err(self.error(
                    spanned,
                    format!("{key}.{name}"),
                    format!("`{name}` is a setting of dedupe stages, not of a {kind} stage"),
                    format!("remove `{name}`, or make a stage with kind = \"dedupe\" for it"),
                ));
            }
            return Ok((Some(normalize(&self.base_dir.join(plugin.get_ref()))), None));
        }
        if let Some(plugin) = &s.plugin {
            return Err(self.error(
                plugin,
                format!("{key}.plugin"),
                format!("a {kind} stage is built in and runs no plugin"),
                "remove `plugin`",
            ));
        }
        let Some(id) = &s.id else {
            return Err(self.error(
                spanned,
                format!("{key}.id"),
                format!(
                    "dedupe stage `{}` does not say where a message's id is",
                    s.name
                ),
                "add id = \"key\", \"header:NAME\", \"json:/field\" or \"payload\"",
            ));
        };
        let source: IdSource = id.get_ref().parse().map_err(|e: String| {
            self.error(
                id,
                format!("{key}.id"),
                e,
                "write e.g. id = \"json:/order_id\"",
            )
        })?;
        let capacity = match &s.capacity {
            Some(c) if *c.get_ref() == 0 => {
                return Err(self.error(
                    c,
                    format!("{key}.capacity"),
                    "capacity must be at least 1",
                    format!(
                        "leave it out for the default ({})",
                        DedupeConfig::DEFAULT_CAPACITY
                    ),
                ))
            }
            Some(c) => *c.get_ref(),
            None => DedupeConfig::DEFAULT_CAPACITY,
        };
        let config = DedupeConfig {
            id: source,
            window: s.window.map_or(DedupeConfig::DEFAULT_WINDOW, |d| d.0),
            capacity,
            claim_ttl: s.claim_ttl.map_or(DedupeConfig::DEFAULT_CLAIM_TTL, |d| d.0),
        };
        if config.window.is_zero() || config.claim_ttl < Duration::from_millis(10) {
            return Err(self.error(
                spanned,
                key.to_owned(),
                "window must be above zero and claim_ttl at least 10ms",
                "leave them out for the defaults (window 24h, claim_ttl 30s)",
            ));
        }
        Ok((None, Some(config)))
    }

    fn stage(
        &self,
        spanned: &Spanned<raw::Stage>,
        key: &str,
        pipeline_retry: RetryPolicy,
        pipeline_store: &StoreConfig,
    ) -> Result<StageConfig, ConfigError> {
        let s = spanned.get_ref();
        let (plugin, dedupe) = self.stage_body(spanned, key)?;
        let capabilities = self.capabilities(s, key)?;
        let store = match &s.store {
            Some(own) => self.store(Some(own), &format!("{key}.store"))?,
            None => pipeline_store.clone(),
        };
        let defaults = Limits::default();
        let limits = Limits {
            fuel: s.fuel.unwrap_or(defaults.fuel),
            timeout: s.timeout.map_or(defaults.timeout, |d| d.0),
            memory: s.memory.map_or(defaults.memory, |m| m.0),
            max_outputs: s.max_outputs.unwrap_or(defaults.max_outputs),
            max_output_bytes: s
                .max_output_bytes
                .map_or(defaults.max_output_bytes, |m| m.0),
            max_call_output_bytes: s
                .max_call_output_bytes
                .map_or(defaults.max_call_output_bytes, |m| m.0),
            log_lines_per_second: s
                .log_lines_per_second
                .unwrap_or(defaults.log_lines_per_second),
            log_line_bytes: s
                .log_line_bytes
                .map_or(defaults.log_line_bytes, |m| m.0 as usize),
            kv_ops: s.kv_ops.as_ref().map_or(defaults.kv_ops, |n| *n.get_ref()),
        };
        if let Some(n) = s.kv_ops.as_ref().filter(|n| *n.get_ref() == 0) {
            return Err(self.error(
                n,
                format!("{key}.kv_ops"),
                "kv_ops must be at least 1",
                format!(
                    "leave it out for the default ({} per message)",
                    Limits::DEFAULT_KV_OPS
                ),
            ));
        }
        if limits.fuel == 0 || limits.timeout.is_zero() || limits.memory < 64 * 1024 {
            return Err(self.error(
                spanned,
                key.to_owned(),
                "fuel and timeout must be above zero and memory at least 64KiB",
                "raise the limit, or leave it out to use the default",
            ));
        }
        if limits.max_outputs == 0
            || limits.max_output_bytes == 0
            || limits.max_call_output_bytes < limits.max_output_bytes
        {
            return Err(self.error(
                spanned,
                key.to_owned(),
                "max_outputs and max_output_bytes must be above zero, and max_call_output_bytes at least max_output_bytes",
                "raise the cap, or leave it out to use the default",
            ));
        }
        if limits.log_line_bytes < 16 {
            return Err(self.error(
                spanned,
                key.to_owned(),
                "log_line_bytes must be at least 16B",
                "raise it, or leave it out to use the default (8KiB)",
            ));
        }
        let retry = match &s.retry {
            Some(r) if r.get_ref().republish.is_some() => {
                return Err(self.error(
                    r,
                    format!("{key}.retry.republish"),
                    "`republish` is a pipeline setting",
                    "move `republish` to the pipeline's [retry] table",
                ));
            }
            Some(r) => self.retry(r, pipeline_retry, &format!("{key}.retry"))?,
            // A copy of a message whose id another copy holds waits for it:
            // long enough, by default, to outlast the claim.
            None if dedupe.is_some() => RetryPolicy {
                max_attempts: pipeline_retry.max_attempts.max(12),
                initial: Duration::from_millis(200),
                max_delay: Duration::from_secs(5),
                ..pipeline_retry
            },
            None => pipeline_retry,
        };
        let mut params = BTreeMap::new();
        flatten(&s.params, "", &mut params).map_err(|bad| {
            self.error(
                spanned,
                format!("{key}.params.{bad}"),
                "params values must be strings, numbers, booleans or lists of them",
                "write the value as a string",
            )
        })?;
        let at = s
            .plugin
            .as_ref()
            .map_or(s.kind.span().start, |p| p.span().start);
        Ok(StageConfig {
            name: s.name.0.clone(),
            kind: *s.kind.get_ref(),
            plugin,
            dedupe,
            capabilities,
            store,
            limits,
            retry,
            params,
            written: Written {
                key: key.to_owned(),
                line: Some(crate::error::line_col(self.text, at)),
            },
        })
    }

    /// A stage's `capabilities`: a list of names (`["kv"]`) or a table
    /// (`{ kv = true, http = { allow = [...] } }`), on a stage with a plugin.
    fn capabilities(&self, s: &raw::Stage, key: &str) -> Result<Capabilities, ConfigError> {
        let mut granted = Capabilities::default();
        let Some(spanned) = &s.capabilities else {
            return Ok(granted);
        };
        let key = format!("{key}.capabilities");
        let fail =
            |key: String, message: String, help: &str| self.error(spanned, key, message, help);
        if !s.kind.get_ref().has_plugin() {
            return Err(fail(
                key,
                format!(
                    "a {} stage runs no plugin to grant capabilities to",
                    s.kind.get_ref()
                ),
                "remove `capabilities`",
            ));
        }
        const FORMS: &str = "write capabilities = [\"kv\"], or a table: capabilities = { kv = true, http = { allow = [\"api.example.com:443\"] } }";
        match spanned.get_ref() {
            toml::Value::Array(names) => {
                for name in names {
                    match name.as_str() {
                        Some("kv") => granted.kv = true,
                        Some("http") => {
                            return Err(fail(
                                key,
                                "`http` needs its allow-list".into(),
                                "write capabilities = { http = { allow = [\"HOST:PORT\"] } } (with kv = true beside it for kv)",
                            ))
                        }
                        _ => {
                            return Err(fail(
                                key,
                                format!(
                                    "unknown capability {}",
                                    name.as_str().map_or(name.to_string(), |n| format!("`{n}`"))
                                ),
                                "capabilities are \"kv\" and `http` (a table)",
                            ))
                        }
                    }
                }
            }
            toml::Value::Table(table) => {
                for (name, value) in table {
                    match (name.as_str(), value) {
                        ("kv", toml::Value::Boolean(on)) => granted.kv = *on,
                        ("http", toml::Value::Table(_)) => {
                            granted.http =
                                Some(self.http_grant(spanned, value, &format!("{key}.http"))?);
                        }
                        ("kv" | "http", _) => {
                            return Err(fail(
                                format!("{key}.{name}"),
                                format!("`{name}` has the wrong type"),
                                FORMS,
                            ))
                        }
                        _ => {
                            return Err(fail(
                                format!("{key}.{name}"),
                                format!("unknown capability `{name}`"),
                                "capabilities are `kv` and `http`",
                            ))
                        }
                    }
                }
            }
            _ => {
                return Err(fail(
                    key,
                    "capabilities must be a list or a table".into(),
                    FORMS,
                ))
            }
        }
        Ok(granted)
    }

    /// `capabilities.http`: an allow-list of `HOST:PORT`, a timeout, a size.
    fn http_grant(
        &self,
        spanned: &Spanned<toml::Value>,
        value: &toml::Value,
        key: &str,
    ) -> Result<HttpGrant, ConfigError> {
        let raw: raw::HttpCapability = value.clone().try_into().map_err(|e: toml::de::Error| {
            self.error(
                spanned,
                key.to_owned(),
                e.message().trim().to_owned(),
                "write http = { allow = [\"api.example.com:443\"], timeout = \"2s\", max_response = \"1MiB\" }",
            )
        })?;
        let mut allow = Vec::with_capacity(raw.allow.len());
        for entry in &raw.allow {
            allow.push(entry.parse().map_err(|why: String| {
                self.error(
                    spanned,
                    format!("{key}.allow"),
                    why,
                    "list each server as HOST:PORT",
                )
            })?);
        }
        if allow.is_empty() {
            return Err(self.error(
                spanned,
                format!("{key}.allow"),
                "the allow-list is empty: no request could be sent",
                "list the servers the plugin may call, as HOST:PORT",
            ));
        }
        let grant = HttpGrant {
            allow,
            timeout: raw.timeout.map_or(HttpGrant::DEFAULT_TIMEOUT, |d| d.0),
            max_response: raw
                .max_response
                .map_or(HttpGrant::DEFAULT_MAX_RESPONSE, |b| b.0),
        };
        if grant.timeout.is_zero() || grant.max_response == 0 {
            return Err(self.error(
                spanned,
                key.to_owned(),
                "timeout and max_response must be above zero",
                "leave them out for the defaults (2s, 1MiB)",
            ));
        }
        Ok(grant)
    }

    /// The pipeline's byte budget: `max_in_flight_bytes` (at least 1 KiB)
    /// ≥ `max_message_bytes` ≥ `too_large_keep`.
    fn byte_limits(&self, p: &raw::Pipeline, key: &str) -> Result<ByteLimits, ConfigError> {
        let defaults = ByteLimits::default();
        let value = |v: &Option<Spanned<ByteSize>>| v.as_ref().map(|s| s.get_ref().0);
        let budget = value(&p.max_in_flight_bytes).unwrap_or(defaults.max_in_flight_bytes);
        let max = value(&p.max_message_bytes).unwrap_or(defaults.max_message_bytes.min(budget));
        let keep = value(&p.too_large_keep).unwrap_or(defaults.too_large_keep);
        let show = |n: u64| bytesize::ByteSize(n).to_string();
        if let Some(s) = p.max_in_flight_bytes.as_ref().filter(|_| budget < 1024) {
            return Err(self.error(
                s,
                format!("{key}.max_in_flight_bytes"),
                format!(
                    "max_in_flight_bytes must be at least 1KiB, not {}",
                    show(budget)
                ),
                format!(
                    "set it to a size such as \"64MiB\" (default {})",
                    show(defaults.max_in_flight_bytes)
                ),
            ));
        }
        if max > budget {
            let at = p
                .max_message_bytes
                .as_ref()
                .or(p.max_in_flight_bytes.as_ref());
            let at = at.expect("one of them is set when they differ from the defaults");
            return Err(self.error(
                at,
                format!("{key}.max_message_bytes"),
                format!(
                    "max_message_bytes ({}) is larger than max_in_flight_bytes ({}): such a message could never fit",
                    show(max),
                    show(budget)
                ),
                "raise max_in_flight_bytes to at least max_message_bytes, or lower max_message_bytes",
            ));
        }
        if let Some(s) = p.too_large_keep.as_ref().filter(|_| keep > max) {
            return Err(self.error(
                s,
                format!("{key}.too_large_keep"),
                format!(
                    "too_large_keep ({}) is larger than max_message_bytes ({})",
                    show(keep),
                    show(max)
                ),
                "keep at most max_message_bytes of a too-large payload (0B omits it)",
            ));
        }
        Ok(ByteLimits {
            max_in_flight_bytes: budget,
            max_message_bytes: max,
            too_large_keep: keep,
        })
    }

    fn retry(
        &self,
        spanned: &Spanned<raw::Retry>,
        base: RetryPolicy,
        key: &str,
    ) -> Result<RetryPolicy, ConfigError> {
        let r = spanned.get_ref();
        let policy = RetryPolicy {
            max_attempts: r.attempts.unwrap_or(base.max_attempts),
            initial: r.initial.map_or(base.initial, |d| d.0),
            factor: r.factor.unwrap_or(base.factor),
            max_delay: r.max.map_or(base.max_delay, |d| d.0),
            jitter: r.jitter.unwrap_or(base.jitter),
        };
        if policy.max_attempts == 0 {
            return Err(self.error(
                spanned,
                format!("{key}.attempts"),
                "attempts must be at least 1 (1 means no retry)",
                "set attempts = 1 to disable retries",
            ));
        }
        if !(1.0..=100.0).contains(&policy.factor) {
            return Err(self.error(
                spanned,
                format!("{key}.factor"),
                format!("factor must be between 1 and 100, not {}", policy.factor),
                "use factor = 2.0 for doubling delays",
            ));
        }
        if !(0.0..=1.0).contains(&policy.jitter) {
            return Err(self.error(
                spanned,
                format!("{key}.jitter"),
                format!("jitter must be between 0 and 1, not {}", policy.jitter),
                "use jitter = 0.2 for ±20%",
            ));
        }
        Ok(policy)
    }
}

/// Flatten a params table: `route = { DE = "x" }` becomes `route.DE = "x"`;
/// numbers and booleans become their text; lists become comma-joined text.
/// Returns the offending key for values that cannot be flattened.
fn flatten(
    table: &toml::Table,
    prefix: &str,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(t, &key, out)?,
            toml::Value::Array(items) => {
                let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
                out.insert(key.clone(), parts.ok_or(key)?.join(","));
            }
            other => {
                out.insert(key.clone(), scalar(other).ok_or(key)?);
            }
        }
    }
    Ok(())
}

/// Remove `.` and `name/..` pairs without touching the file system, so
/// messages show `plugins/dist/x.wasm`, not `examples/../plugins/dist/x.wasm`.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[pipelines.orders]
concurrency = 2
source = { type = "file", path = "orders.jsonl" }
dlq = { type = "file", path = "out/dlq.jsonl" }

[pipelines.orders.retry]
attempts = 5

[[pipelines.orders.stages]]
name = "big"
kind = "filter"
plugin = "../plugins/dist/json-filter.wasm"
timeout = "250ms"
memory = "32MiB"
params = { field = "amount", min = 100, route = { DE = "eu" }, also = ["a", "b"] }

[pipelines.orders.sinks.eu]
type = "stdout"
"#;

    #[test]
    fn a_good_config_resolves_with_defaults_and_relative_paths() {
        let c = parse(GOOD, Path::new("examples/q.toml")).unwrap();
        let p = &c.pipelines[0];
        assert_eq!(p.engine.concurrency, 2);
        let s = &p.stages[0];
        assert_eq!(
            s.plugin.as_deref(),
            Some(Path::new("plugins/dist/json-filter.wasm"))
        );
        assert_eq!(s.limits.timeout, std::time::Duration::from_millis(250));
        assert_eq!(s.limits.memory, 32 * 1024 * 1024);
        assert_eq!(s.limits.fuel, Limits::DEFAULT_FUEL);
        assert_eq!(s.retry.max_attempts, 5);
        assert_eq!(s.params["min"], "100");
        assert_eq!(s.params["route.DE"], "eu");
        assert_eq!(s.params["also"], "a,b");
        assert_eq!(s.written.line, Some((13, 10)));
    }

    #[test]
    fn a_typo_names_the_key_and_the_line() {
        let bad = GOOD.replace("timeout = ", "timout = ");
        let e = parse(&bad, Path::new("q.toml")).unwrap_err();
        assert_eq!(e.line.map(|l| l.0), Some(14), "{e}");
        assert!(e.to_string().contains("unknown field `timout`"), "{e}");
    }
}
