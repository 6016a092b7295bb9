//! Pipeline benchmark: the same three-stage chain (filter → transform →
//! route) run as WebAssembly components and as native Rust closures, in the
//! same process and on the same ~1 KiB JSON orders.
//!
//! ```sh
//! cargo bench -p sluice-tests --bench pipeline
//! ```
//!
//! Environment:
//! - `SLUICE_BENCH_N`      messages per pass (default 50000)
//! - `SLUICE_BENCH_ROUNDS` timed rounds per measurement, median reported (default 5)
//! - `SLUICE_BENCH_MD`     also write the tables as markdown to this file
//!
//! What it measures (see BENCHMARKS.md):
//! - A. per-stage cost: `Stage::call` in a loop on a warm instance, no engine,
//!   native vs Wasm (fuel and epoch on), plus the Wasm batch export in
//!   batches of 64;
//! - B. end to end: `MemorySource` → `Pipeline` (3 stages) → two
//!   `MemorySink`s, concurrency 1 and 2;
//! - C. the four fuel/epoch combinations, each in its own `WasmHost`.
//!
//! Before anything is timed every Wasm stage's answer is compared with the
//! native stage's answer for every input, and every end-to-end run is
//! checked against the expected counts and the native run's sink contents.
//! A mismatch panics: a benchmark that measures the wrong thing is worse
//! than none. Rounds of different configurations are interleaved so that
//! background load hits all of them alike.

use serde_json::Value;
use sluice_core::engine::EngineOptions;
use sluice_core::memory::{MemorySink, MemorySource};
use sluice_core::stage::NativeStage;
use sluice_core::{
    Limits, Message, Pipeline, PipelineReport, RetryPolicy, Stage, StageError, StageFactory,
    StageKind, StageOutput, StageSpec,
};
use sluice_tests::goals::thousands;
use sluice_tests::{repo, Rng};
use sluice_wasm::{ArtifactCache, HostOptions, WasmHost, WasmStage, WasmStageFactory};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Size of every generated payload, exactly.
const PAYLOAD_BYTES: usize = 1024;
/// Messages per `call_batch` call.
const BATCH: usize = 64;
/// Filter threshold (param `min` of json-filter).
const MIN_AMOUNT: f64 = 100.0;
/// Country, currency, and the sink a `route.<country>` param maps it to
/// (`None`: no param, the router's `default` applies).
const COUNTRIES: [(&str, &str, Option<&str>); 10] = [
    ("DE", "EUR", Some("europe")),
    ("FR", "EUR", Some("europe")),
    ("US", "USD", Some("americas")),
    ("GB", "GBP", Some("europe")),
    ("IT", "EUR", Some("europe")),
    ("ES", "EUR", Some("europe")),
    ("NL", "EUR", Some("europe")),
    ("CA", "CAD", Some("americas")),
    ("BR", "BRL", Some("americas")),
    ("JP", "JPY", None),
];
const DEFAULT_SINK: &str = "europe";
const SINKS: [&str; 2] = ["europe", "americas"];

// ---------------------------------------------------------------- input data

/// What the generator knows about the messages it made, independently of
/// any stage implementation.
struct Expected {
    passed: usize,
    per_sink: BTreeMap<&'static str, usize>,
}

fn generate(n: usize) -> (Vec<Message>, Expected) {
    const FILLER: &str =
        "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ";
    let mut rng = Rng(0x5EED_0F0F_1234_5678);
    let mut messages = Vec::with_capacity(n);
    let mut expected = Expected {
        passed: 0,
        per_sink: SINKS.iter().map(|s| (*s, 0)).collect(),
    };
    for i in 0..n {
        let customer = rng.below(5000);
        let (country, currency, route) = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
        // One order in ten is below the filter threshold.
        let cents = if rng.below(10) == 0 {
            500 + rng.below(9_500)
        } else {
            10_000 + rng.below(190_000)
        };
        let card = format!("4{:015}", rng.below(1_000_000_000_000_000));
        let mut items = String::new();
        for k in 0..1 + rng.below(4) {
            if k > 0 {
                items.push(',');
            }
            let price = 100 + rng.below(20_000);
            write!(
                items,
                r#"{{"sku":"SKU-{:05}","qty":{},"price":{}.{:02}}}"#,
                rng.below(100_000),
                1 + rng.below(5),
                price / 100,
                price % 100
            )
            .unwrap();
        }
        let mut json = format!(
            r#"{{"id":"o-{i:07}","customer_id":"c-{customer:04}","country":"{country}","currency":"{currency}","amount":{}.{:02},"card":"{card}","items":[{items}],"note":""#,
            cents / 100,
            cents % 100
        );
        let pad = PAYLOAD_BYTES - 2 - json.len(); // 2: the closing `"}`
        json.extend(FILLER.chars().cycle().take(pad));
        json.push_str("\"}");
        assert_eq!(json.len(), PAYLOAD_BYTES);

        if cents >= 10_000 {
            expected.passed += 1;
            *expected
                .per_sink
                .get_mut(route.unwrap_or(DEFAULT_SINK))
                .unwrap() += 1;
        }
        let key = format!("c-{customer:04}");
        messages.push(Message {
            key: Some(key.into_bytes()),
            payload: json.into_bytes(),
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                (
                    "trace-id".into(),
                    format!("{:016x}", rng.next_u64()).into_bytes(),
                ),
            ],
            source: "orders".into(),
            timestamp_ms: Some(1_700_000_000_000 + i as u64 * 7),
            attempt: 1,
            header_types: Vec::new(),
        });
    }
    (messages, expected)
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn filter_params() -> BTreeMap<String, String> {
    params(&[("field", "amount"), ("min", "100")])
}

fn transform_params() -> BTreeMap<String, String> {
    params(&[("redact", "card")])
}

fn route_params() -> BTreeMap<String, String> {
    let mut p = params(&[("field", "country"), ("default", DEFAULT_SINK)]);
    for (country, _, route) in COUNTRIES {
        if let Some(sink) = route {
            p.insert(format!("route.{country}"), sink.to_string());
        }
    }
    p
}

// ------------------------------------------------- native baseline (closures)
//
// The same logic as the three plugins (documented in plugins/README.md),
// written with the same library (serde_json's `Value`), so the comparison is
// "same algorithm, native vs sandboxed", not "typed parser vs generic one".

fn parse(msg: &Message) -> Result<Value, StageError> {
    serde_json::from_slice(&msg.payload)
        .map_err(|e| StageError::Fatal(format!("payload is not valid JSON: {e}")))
}

fn native_filter(
    field: String,
    min: f64,
) -> impl Fn(&Message) -> Result<StageOutput, StageError> + Clone + Send + Sync + 'static {
    move |msg: &Message| {
        let doc = parse(msg)?;
        let amount = doc.get(&field).and_then(Value::as_f64).ok_or_else(|| {
            StageError::Fatal(format!("field `{field}` is missing or not a number"))
        })?;
        Ok(StageOutput::Keep(amount >= min))
    }
}

/// Keep the last 4 digits of a card-like value, star the other digits.
fn redacted(value: &Value) -> Value {
    let text = match value {
        Value::Null => return Value::Null,
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Value::String("****".into()),
    };
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_digit).collect();
    let shown = if digits.len() > 4 { 4 } else { 0 };
    let mut out = "*".repeat(digits.len() - shown);
    out.extend(digits[digits.len() - shown..].iter().map(|d| *d as char));
    Value::String(out)
}

fn native_transform(
    redact: Vec<String>,
    tag: String,
) -> impl Fn(&Message) -> Result<StageOutput, StageError> + Clone + Send + Sync + 'static {
    static NULL: Value = Value::Null;
    move |msg: &Message| {
        let Value::Object(order) = parse(msg)? else {
            return Err(StageError::Fatal("payload is not a JSON object".into()));
        };
        let item_count = match order.get("items") {
            None | Some(Value::Null) => 0,
            Some(Value::Array(items)) => items.len(),
            Some(_) => return Err(StageError::Fatal("field `items` is not a list".into())),
        };
        let total_cents = order
            .get("amount")
            .and_then(Value::as_f64)
            .map(|a| (a * 100.0).round())
            .filter(|c| c.is_finite() && c.abs() < 9.0e15)
            .ok_or_else(|| StageError::Fatal("field `amount` is missing or not a number".into()))?
            as i64;
        let text = |name: &str| order.get(name).unwrap_or(&NULL);
        let total = Value::from(total_cents);
        let count = Value::from(item_count);
        let fields: [(&str, &Value); 7] = [
            ("order_id", text("id")),
            ("customer_id", text("customer_id")),
            ("country", text("country")),
            ("total_cents", &total),
            ("currency", text("currency")),
            ("card", text("card")),
            ("item_count", &count),
        ];
        let mut payload = Vec::with_capacity(192);
        payload.push(b'{');
        for (i, (name, value)) in fields.into_iter().enumerate() {
            if i > 0 {
                payload.push(b',');
            }
            serde_json::to_writer(&mut payload, name).expect("write key");
            payload.push(b':');
            if redact.iter().any(|r| r == name) {
                serde_json::to_writer(&mut payload, &redacted(value)).expect("write value");
            } else {
                serde_json::to_writer(&mut payload, value).expect("write value");
            }
        }
        payload.push(b'}');
        let mut headers = msg.headers.clone();
        headers.push(("x-sluice-transform".into(), tag.as_bytes().to_vec()));
        Ok(StageOutput::Messages(vec![Message {
            key: msg.key.clone(),
            payload,
            headers,
            source: msg.source.clone(),
            timestamp_ms: msg.timestamp_ms,
            attempt: msg.attempt,
            header_types: msg.header_types.clone(),
        }]))
    }
}

fn native_route(
    params: &BTreeMap<String, String>,
) -> impl Fn(&Message) -> Result<StageOutput, StageError> + Clone + Send + Sync + 'static {
    let field = params
        .get("field")
        .cloned()
        .unwrap_or_else(|| "country".into());
    let default = params.get("default").cloned();
    let routes: HashMap<String, String> = params
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("route.")?.to_string(), v.clone())))
        .collect();
    move |msg: &Message| {
        let doc = parse(msg)?;
        let pick = |value: &str| {
            routes
                .get(value)
                .or(default.as_ref())
                .cloned()
                .unwrap_or_else(|| value.to_string())
        };
        let sink = match doc.get(&field) {
            Some(Value::String(s)) => pick(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => pick(&v.to_string()),
            None | Some(Value::Null) => default.clone().ok_or_else(|| {
                StageError::Fatal(format!(
                    "field `{field}` is missing and param `default` is not set"
                ))
            })?,
            Some(_) => {
                return Err(StageError::Fatal(format!(
                    "field `{field}` is not a string, number or boolean"
                )))
            }
        };
        Ok(StageOutput::Routes(vec![sink]))
    }
}

fn native_identity(
) -> impl Fn(&Message) -> Result<StageOutput, StageError> + Clone + Send + Sync + 'static {
    |msg: &Message| Ok(StageOutput::Messages(vec![msg.clone()]))
}

// ------------------------------------------------------------ configurations

/// The stages measured, in chain order; `Identity` is not part of the chain
/// (it measures the cost of a call and of copying the message in and out).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Filter,
    Transform,
    Route,
    Identity,
}

const WHICH: [Which; 4] = [
    Which::Filter,
    Which::Transform,
    Which::Route,
    Which::Identity,
];
const CHAIN: [Which; 3] = [Which::Filter, Which::Transform, Which::Route];

impl Which {
    fn label(self) -> &'static str {
        match self {
            Which::Filter => "filter (json-filter)",
            Which::Transform => "transform (order-transform)",
            Which::Route => "route (country-router)",
            Which::Identity => "identity (call + copy only)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Which::Filter => "filter",
            Which::Transform => "transform",
            Which::Route => "route",
            Which::Identity => "identity",
        }
    }

    fn kind(self) -> StageKind {
        match self {
            Which::Filter => StageKind::Filter,
            Which::Transform | Which::Identity => StageKind::Transform,
            Which::Route => StageKind::Route,
        }
    }
}

/// A live stage instance used for direct calls.
enum Instance {
    Native(Box<dyn Stage>),
    Wasm(WasmStage),
}

impl Instance {
    fn stage(&mut self) -> &mut dyn Stage {
        match self {
            Instance::Native(s) => s.as_mut(),
            Instance::Wasm(s) => s,
        }
    }
}

/// One way of running the stages: native, or Wasm with one fuel/epoch setting.
struct Config {
    label: String,
    /// `None` for native.
    limits: Option<(bool, bool)>,
    factories: Vec<Arc<dyn StageFactory>>,
    instances: Vec<Instance>,
    /// Keeps the engine (and its epoch thread) alive.
    _host: Option<WasmHost>,
}

impl Config {
    fn native() -> Config {
        let factories: Vec<Arc<dyn StageFactory>> = vec![
            Arc::new(NativeStage::new(
                StageKind::Filter,
                native_filter("amount".into(), MIN_AMOUNT),
            )),
            Arc::new(NativeStage::new(
                StageKind::Transform,
                native_transform(vec!["card".into()], "order-transform@1".into()),
            )),
            Arc::new(NativeStage::new(
                StageKind::Route,
                native_route(&route_params()),
            )),
            Arc::new(NativeStage::new(StageKind::Transform, native_identity())),
        ];
        let instances = factories
            .iter()
            .map(|f| Instance::Native(f.instantiate().expect("native stage")))
            .collect();
        Config {
            label: "native".into(),
            limits: None,
            factories,
            instances,
            _host: None,
        }
    }

    fn wasm(fuel: bool, epoch: bool, cache: &ArtifactCache) -> Config {
        let host = WasmHost::new(HostOptions {
            fuel,
            epoch,
            cache: cache.clone(),
        })
        .expect("wasm host");
        let mut factories: Vec<Arc<dyn StageFactory>> = Vec::new();
        let mut instances = Vec::new();
        for which in WHICH {
            let (plugin, params) = match which {
                Which::Filter => ("json-filter", filter_params()),
                Which::Transform => ("order-transform", transform_params()),
                Which::Route => ("country-router", route_params()),
                Which::Identity => ("identity", BTreeMap::new()),
            };
            let plugin = host
                .load(&sluice_tests::plugin(plugin))
                .unwrap_or_else(|e| panic!("loading {plugin}: {e}"));
            let factory: Arc<WasmStageFactory> = Arc::new(
                host.stage(
                    plugin,
                    which.short(),
                    which.kind(),
                    Limits::default(),
                    params,
                    Default::default(),
                )
                .expect("stage kind"),
            );
            instances.push(Instance::Wasm(factory.instance().expect("instantiate")));
            factories.push(factory);
        }
        let label = format!("wasm fuel {} / epoch {}", on_off(fuel), on_off(epoch));
        Config {
            label,
            limits: Some((fuel, epoch)),
            factories,
            instances,
            _host: Some(host),
        }
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

// ------------------------------------------------------------- verification

fn short_debug<T: std::fmt::Debug>(value: &T) -> String {
    let text = format!("{value:?}");
    if text.len() > 600 {
        format!("{}… ({} chars)", &text[..600], text.len())
    } else {
        text
    }
}

/// Call every input once through `instance` and compare with `reference`.
/// Returns the average fuel one call used, when fuel is metered.
fn verify_single(
    label: &str,
    which: Which,
    instance: &mut Instance,
    inputs: &[Message],
    reference: &[Result<StageOutput, StageError>],
) -> Option<f64> {
    let mut fuel_used = 0u64;
    let mut metered = true;
    for (i, (msg, want)) in inputs.iter().zip(reference).enumerate() {
        let got = instance.stage().call(msg);
        if &got != want {
            panic!(
                "MISMATCH: {label}, stage {}, input #{i}: native and wasm disagree\n  native: {}\n  {label}: {}\n  input: {}",
                which.short(),
                short_debug(want),
                short_debug(&got),
                String::from_utf8_lossy(&msg.payload)
            );
        }
        match instance {
            Instance::Wasm(w) => match w.fuel_remaining() {
                Some(left) => fuel_used += Limits::DEFAULT_FUEL - left,
                None => metered = false,
            },
            Instance::Native(_) => metered = false,
        }
    }
    (metered && !inputs.is_empty()).then(|| fuel_used as f64 / inputs.len() as f64)
}

fn verify_batch(
    label: &str,
    which: Which,
    stage: &mut WasmStage,
    inputs: &[Message],
    reference: &[Result<StageOutput, StageError>],
) {
    for (c, (chunk, want)) in inputs
        .chunks(BATCH)
        .zip(reference.chunks(BATCH))
        .enumerate()
    {
        let got = stage
            .call_batch(&chunk.iter().collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{label}: batch call of {} failed: {e:?}", which.short()));
        if got != want {
            let i = got
                .iter()
                .zip(want)
                .position(|(g, w)| g != w)
                .unwrap_or(got.len().min(want.len()));
            panic!(
                "MISMATCH: {label}, stage {} (batch), input #{}: batch result differs from the native single call\n  native: {}\n  batch: {}",
                which.short(),
                c * BATCH + i,
                short_debug(&want.get(i)),
                short_debug(&got.get(i))
            );
        }
    }
}

/// An order-independent fingerprint of what a sink received.
fn fingerprint(sink: &MemorySink) -> Vec<u64> {
    let mut prints: Vec<u64> = sink
        .messages()
        .iter()
        .map(|m| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (
                &m.key,
                &m.payload,
                &m.headers,
                &m.source,
                m.timestamp_ms,
                m.attempt,
            )
                .hash(&mut h);
            h.finish()
        })
        .collect();
    prints.sort_unstable();
    prints
}

// ---------------------------------------------------------------- timing

/// Median, minimum and maximum of some samples.
#[derive(Clone, Copy, Debug)]
struct Sample {
    median: f64,
    min: f64,
    max: f64,
}

impl Sample {
    fn of(mut values: Vec<f64>) -> Sample {
        values.sort_by(|a, b| a.total_cmp(b));
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Sample {
            median,
            min: values[0],
            max: values[n - 1],
        }
    }

    /// (max - min) / median, in percent.
    fn spread(&self) -> f64 {
        (self.max - self.min) / self.median * 100.0
    }
}

fn ns_per(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_nanos() as f64 / n.max(1) as f64
}

fn time_single(stage: &mut dyn Stage, inputs: &[Message]) -> f64 {
    let started = Instant::now();
    for msg in inputs {
        let _ = black_box(stage.call(black_box(msg)));
    }
    ns_per(started.elapsed(), inputs.len())
}

fn time_batch(stage: &mut WasmStage, inputs: &[Message]) -> f64 {
    let inputs: Vec<&Message> = inputs.iter().collect();
    let started = Instant::now();
    for chunk in inputs.chunks(BATCH) {
        let _ = black_box(stage.call_batch(black_box(chunk)));
    }
    ns_per(started.elapsed(), inputs.len())
}

/// Sink contents of the native reference run, per sink.
type Reference = Vec<Vec<u64>>;

/// One end-to-end run. Returns input messages per second; panics if the run
/// did not do exactly what the generator expects (and, given a reference,
/// exactly what the native run delivered).
fn run_e2e(
    rt: &tokio::runtime::Runtime,
    config: &Config,
    messages: &[Message],
    concurrency: usize,
    expected: &Expected,
    reference: Option<&Reference>,
) -> (f64, Reference) {
    let (source, acks) = MemorySource::new("orders", messages.to_vec());
    let stages: Vec<Arc<StageSpec>> = CHAIN
        .iter()
        .zip(&config.factories)
        .map(|(which, factory)| {
            Arc::new(StageSpec::new(
                which.short(),
                factory.clone(),
                RetryPolicy::default(),
            ))
        })
        .collect();
    let sinks: Vec<Arc<MemorySink>> = SINKS.iter().map(|s| MemorySink::new(*s)).collect();
    let dlq = MemorySink::new("dlq");
    let mut pipeline = Pipeline::builder("bench", Box::new(source), dlq.clone())
        .stages(stages)
        .options(EngineOptions {
            concurrency,
            ..EngineOptions::default()
        });
    for (name, sink) in SINKS.iter().zip(&sinks) {
        pipeline = pipeline.sink(*name, sink.clone());
    }
    let pipeline = pipeline.build();
    let started = Instant::now();
    let report: PipelineReport = rt
        .block_on(pipeline.run(CancellationToken::new()))
        .expect("pipeline run");
    let elapsed = started.elapsed();

    let what = format!("{} (concurrency {concurrency})", config.label);
    let n = messages.len() as u64;
    let c = &report.counts;
    let ok = c.received == n
        && c.acked == n
        && c.dead_lettered == 0
        && c.delivered == expected.passed as u64
        && c.dropped == n - expected.passed as u64
        && dlq.is_empty()
        && acks.acked.lock().unwrap().len() as u64 == n
        && acks.nacked.lock().unwrap().is_empty();
    assert!(
        ok,
        "WRONG RESULT: {what}: expected {n} received/acked, {} delivered, {} dropped, 0 dead-lettered; got\n{report}\nDLQ holds {} (first: {:?})",
        expected.passed,
        n - expected.passed as u64,
        dlq.len(),
        dlq.messages().first().map(|m| m.headers.clone())
    );
    for (name, sink) in SINKS.iter().zip(&sinks) {
        assert_eq!(
            sink.len(),
            expected.per_sink[name],
            "WRONG RESULT: {what}: sink `{name}` message count"
        );
    }
    let prints: Reference = sinks.iter().map(|s| fingerprint(s)).collect();
    if let Some(reference) = reference {
        assert!(
            &prints == reference,
            "WRONG RESULT: {what}: sink contents differ from the native run's"
        );
    }
    (n as f64 / elapsed.as_secs_f64(), prints)
}

/// The engine alone: no stages, one sink that gets every message. Its time
/// per message is what the engine costs around the stages.
fn run_engine_only(rt: &tokio::runtime::Runtime, messages: &[Message], concurrency: usize) -> f64 {
    let (source, _acks) = MemorySource::new("orders", messages.to_vec());
    let sink = MemorySink::new("all");
    let dlq = MemorySink::new("dlq");
    let pipeline = Pipeline::builder("bench-engine-only", Box::new(source), dlq.clone())
        .sink("all", sink.clone())
        .options(EngineOptions {
            concurrency,
            ..EngineOptions::default()
        })
        .build();
    let started = Instant::now();
    let report = rt
        .block_on(pipeline.run(CancellationToken::new()))
        .expect("pipeline run");
    let elapsed = started.elapsed();
    let n = messages.len() as u64;
    assert!(
        report.counts.delivered == n && report.counts.acked == n && sink.len() == messages.len() && dlq.is_empty(),
        "WRONG RESULT: engine only (concurrency {concurrency}): expected {n} delivered and acked, got\n{report}"
    );
    n as f64 / elapsed.as_secs_f64()
}

// ---------------------------------------------------------------- output

struct Table {
    title: String,
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    fn new(title: impl Into<String>, head: &[&'static str]) -> Table {
        Table {
            title: title.into(),
            head: head.to_vec(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn text(&self) -> String {
        let mut widths: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::from(" ");
            for (i, (cell, w)) in cells.zip(&widths).enumerate() {
                let pad = w - cell.chars().count();
                if i == 0 {
                    write!(out, " {cell}{}", " ".repeat(pad)).unwrap();
                } else {
                    write!(out, "  {}{cell}", " ".repeat(pad)).unwrap();
                }
            }
            out.push('\n');
            out
        };
        let mut out = format!("{}\n", self.title);
        out += &line(&mut self.head.iter().copied());
        out += &format!(
            "  {}\n",
            "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
        );
        for row in &self.rows {
            out += &line(&mut row.iter().map(String::as_str));
        }
        for note in &self.notes {
            out += &format!("  {note}\n");
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!("#### {}\n\n| {} |\n|", self.title, self.head.join(" | "));
        for i in 0..self.head.len() {
            out += if i == 0 { " --- |" } else { " ---: |" };
        }
        out.push('\n');
        for row in &self.rows {
            out += &format!("| {} |\n", row.join(" | "));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                out += &format!("{note}\n");
            }
        }
        out
    }
}

fn ns(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn ratio(v: f64) -> String {
    format!("{v:.2}x")
}

/// Today's date (UTC) as YYYY-MM-DD, from the civil-from-days conversion.
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64 + 719_468; // days since 0000-03-01
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------- main

fn main() {
    let bench_started = Instant::now();
    let n = env_usize("SLUICE_BENCH_N", 50_000);
    let rounds = env_usize("SLUICE_BENCH_ROUNDS", 5).max(1);
    assert!(n > 0, "SLUICE_BENCH_N must be positive");
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);

    let (messages, expected) = generate(n);
    eprintln!(
        "bench: {n} messages generated; {} pass the filter",
        expected.passed
    );

    // Native first: its answers are the reference every Wasm answer must match.
    let mut configs = vec![Config::native()];
    let cache = ArtifactCache::at(repo().join("target/bench-artifact-cache"));
    let load_started = Instant::now();
    for (fuel, epoch) in [(true, true), (false, true), (true, false), (false, false)] {
        configs.push(Config::wasm(fuel, epoch, &cache));
    }
    eprintln!(
        "bench: 4 wasm hosts ready in {:.2?} (compile or artifact cache)",
        load_started.elapsed()
    );
    // The production setting, fuel and epoch on, is the wasm row of A and B.
    let default = configs
        .iter()
        .position(|c| c.limits == Some((true, true)))
        .expect("fuel+epoch config");

    // Inputs of each stage: what it sees inside the chain.
    let mut inputs: Vec<Vec<Message>> = Vec::new();
    let mut reference: Vec<Vec<Result<StageOutput, StageError>>> = Vec::new();
    {
        let native = &mut configs[0];
        let mut stage_inputs = messages.clone();
        for which in WHICH {
            let input = if which == Which::Identity {
                messages.clone()
            } else {
                std::mem::take(&mut stage_inputs)
            };
            let outs: Vec<_> = input
                .iter()
                .map(|m| native.instances[which as usize].stage().call(m))
                .collect();
            for (m, out) in input.iter().zip(&outs).filter(|_| which != Which::Identity) {
                match out {
                    Ok(StageOutput::Keep(true)) => stage_inputs.push(m.clone()),
                    Ok(StageOutput::Keep(false)) | Ok(StageOutput::Routes(_)) => {}
                    Ok(StageOutput::Messages(ms)) => stage_inputs.extend(ms.iter().cloned()),
                    Ok(other) => panic!("native {} answered {other:?}", which.short()),
                    Err(e) => panic!(
                        "native {} failed on a generated message: {e:?}",
                        which.short()
                    ),
                }
            }
            inputs.push(input);
            reference.push(outs);
        }
    }
    assert_eq!(
        inputs[Which::Transform as usize].len(),
        expected.passed,
        "native filter disagrees with the generator"
    );

    // Correctness of every Wasm configuration (also the warm-up).
    let mut fuel_per_msg: Vec<Option<f64>> = vec![None; WHICH.len()];
    for (ci, config) in configs.iter_mut().enumerate().skip(1) {
        for which in WHICH {
            let w = which as usize;
            let fuel = verify_single(
                &config.label,
                which,
                &mut config.instances[w],
                &inputs[w],
                &reference[w],
            );
            if ci == default {
                fuel_per_msg[w] = fuel;
                let Instance::Wasm(stage) = &mut config.instances[w] else {
                    unreachable!()
                };
                verify_batch(&config.label, which, stage, &inputs[w], &reference[w]);
            }
        }
    }
    eprintln!(
        "bench: every wasm configuration agrees with native on every input ({:.1?})",
        bench_started.elapsed()
    );

    // A. and C.: direct calls, rounds interleaved across configurations.
    let mut single: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); WHICH.len()]; configs.len()];
    let mut batch: Vec<Vec<f64>> = vec![Vec::new(); WHICH.len()];
    for round in 0..rounds {
        for (ci, config) in configs.iter_mut().enumerate() {
            for which in WHICH {
                let w = which as usize;
                single[ci][w].push(time_single(config.instances[w].stage(), &inputs[w]));
                if ci == default {
                    let Instance::Wasm(stage) = &mut config.instances[w] else {
                        unreachable!()
                    };
                    batch[w].push(time_batch(stage, &inputs[w]));
                }
            }
        }
        eprintln!(
            "bench: direct-call round {}/{rounds} done ({:.1?})",
            round + 1,
            bench_started.elapsed()
        );
    }
    let single: Vec<Vec<Sample>> = single
        .into_iter()
        .map(|c| c.into_iter().map(Sample::of).collect())
        .collect();
    let batch: Vec<Sample> = batch.into_iter().map(Sample::of).collect();

    // B. and C.: end to end through the engine.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (_, native_prints) = run_e2e(&rt, &configs[0], &messages, 1, &expected, None); // warm-up + reference
                                                                                       // (config index, concurrency); ENGINE_ONLY: no stages at all.
    const ENGINE_ONLY: usize = usize::MAX;
    let runs: Vec<(usize, usize)> = {
        let mut runs = vec![
            (ENGINE_ONLY, 1),
            (0, 1),
            (default, 1),
            (ENGINE_ONLY, 2),
            (0, 2),
            (default, 2),
        ];
        runs.extend(
            (1..configs.len())
                .filter(|ci| *ci != default)
                .map(|ci| (ci, 1)),
        );
        runs
    };
    let mut e2e: HashMap<(usize, usize), Vec<f64>> = HashMap::new();
    for round in 0..rounds {
        for &(ci, conc) in &runs {
            let rate = if ci == ENGINE_ONLY {
                run_engine_only(&rt, &messages, conc)
            } else {
                run_e2e(
                    &rt,
                    &configs[ci],
                    &messages,
                    conc,
                    &expected,
                    Some(&native_prints),
                )
                .0
            };
            e2e.entry((ci, conc)).or_default().push(rate);
        }
        eprintln!(
            "bench: end-to-end round {}/{rounds} done ({:.1?})",
            round + 1,
            bench_started.elapsed()
        );
    }
    let e2e: HashMap<(usize, usize), Sample> =
        e2e.into_iter().map(|(k, v)| (k, Sample::of(v))).collect();

    // ------------------------------------------------------------ report
    let chain_ns = |ci: usize| -> f64 {
        CHAIN
            .iter()
            .map(|w| single[ci][*w as usize].median * inputs[*w as usize].len() as f64)
            .sum::<f64>()
            / n as f64
    };
    let chain_batch_ns = CHAIN
        .iter()
        .map(|w| batch[*w as usize].median * inputs[*w as usize].len() as f64)
        .sum::<f64>()
        / n as f64;

    let mut header = vec![
        format!("date: {} (UTC)", today()),
        format!("machine: {cores} cores (available_parallelism), CPU: {}", cpu_model()),
        format!(
            "messages: N = {n}, payload {PAYLOAD_BYTES} bytes of JSON each, 2 headers, keyed by customer id; {} ({:.1}%) pass the filter",
            expected.passed,
            expected.passed as f64 * 100.0 / n as f64
        ),
        format!("rounds: {rounds} per measurement, median reported; spread = (max - min) / median over the rounds"),
        "wasm: Limits::default() (fuel 500M/call, timeout 1 s, memory 128 MiB), stages instantiated once and warm".into(),
    ];
    header.push(format!("total bench time: {:.1?}", bench_started.elapsed()));

    let mut a = Table::new(
        "A. Per-stage cost, direct Stage::call on a warm instance (no engine), ns per message",
        &[
            "stage",
            "inputs",
            "in bytes",
            "native",
            "wasm",
            "wasm/native",
            "wasm batch64",
            "batch/native",
            "fuel/msg",
            "spread n/w/b",
        ],
    );
    for which in WHICH {
        let w = which as usize;
        let (nat, was, bat) = (single[0][w], single[default][w], batch[w]);
        let bytes =
            inputs[w].iter().map(|m| m.payload.len()).sum::<usize>() / inputs[w].len().max(1);
        a.rows.push(vec![
            which.label().into(),
            inputs[w].len().to_string(),
            bytes.to_string(),
            ns(nat.median),
            ns(was.median),
            ratio(was.median / nat.median),
            ns(bat.median),
            ratio(bat.median / nat.median),
            fuel_per_msg[w].map(thousands).unwrap_or_else(|| "-".into()),
            format!(
                "{:.0}/{:.0}/{:.0}%",
                nat.spread(),
                was.spread(),
                bat.spread()
            ),
        ]);
    }
    a.rows.push(vec![
        "chain filter→transform→route, per input msg".into(),
        n.to_string(),
        PAYLOAD_BYTES.to_string(),
        ns(chain_ns(0)),
        ns(chain_ns(default)),
        ratio(chain_ns(default) / chain_ns(0)),
        ns(chain_batch_ns),
        ratio(chain_batch_ns / chain_ns(0)),
        "-".into(),
        "".into(),
    ]);
    a.notes.push("wasm = fuel on, epoch on. Each stage gets what it sees in the chain: transform only the messages the filter".into());
    a.notes.push("kept, route the transform's (smaller) output. identity (a transform returning its input) is not in the chain.".into());

    let mut b = Table::new(
        "B. End to end: MemorySource -> Pipeline(filter, transform, route) -> 2 MemorySinks",
        &[
            "implementation",
            "concurrency",
            "msg/s",
            "ns/msg",
            "wasm/native time",
            "spread",
        ],
    );
    for conc in [1, 2] {
        let nat = e2e[&(0, conc)];
        for ci in [ENGINE_ONLY, 0, default] {
            let s = e2e[&(ci, conc)];
            b.rows.push(vec![
                match ci {
                    ENGINE_ONLY => "engine only (no stages, 1 sink)".into(),
                    0 => "native".into(),
                    _ => "wasm (fuel on, epoch on)".into(),
                },
                conc.to_string(),
                thousands(s.median),
                ns(1e9 / s.median),
                if ci == default {
                    ratio(nat.median / s.median)
                } else {
                    "-".into()
                },
                format!("{:.0}%", s.spread()),
            ]);
        }
    }
    b.notes.push("msg/s counts input messages (dropped ones included); the run includes instantiating the stages per worker.".into());

    let mut c = Table::new(
        "C. Wasm fuel/epoch variants: end to end (concurrency 1) and direct calls, ns per message",
        &[
            "fuel",
            "epoch",
            "e2e msg/s",
            "e2e vs fuel+epoch",
            "filter",
            "transform",
            "route",
            "identity",
            "chain/msg",
        ],
    );
    let base = e2e[&(default, 1)].median;
    for ci in 1..configs.len() {
        let (fuel, epoch) = configs[ci].limits.expect("wasm config");
        let s = e2e[&(ci, 1)];
        let mut row = vec![
            on_off(fuel).into(),
            on_off(epoch).into(),
            thousands(s.median),
            format!("{:+.1}%", (s.median / base - 1.0) * 100.0),
        ];
        row.extend(WHICH.iter().map(|w| ns(single[ci][*w as usize].median)));
        row.push(ns(chain_ns(ci)));
        c.rows.push(row);
    }
    let mut native_row = vec![
        "(native)".into(),
        "".into(),
        thousands(e2e[&(0, 1)].median),
        "".into(),
    ];
    native_row.extend(WHICH.iter().map(|w| ns(single[0][*w as usize].median)));
    native_row.push(ns(chain_ns(0)));
    c.rows.push(native_row);
    c.notes.push("each variant runs in its own WasmHost (fuel metering and epoch interruption are engine settings).".into());

    let tables = [a, b, c];
    let mut text = String::from("sluice pipeline benchmark\n");
    for line in &header {
        text += &format!("  {line}\n");
    }
    for table in &tables {
        text.push('\n');
        text += &table.text();
    }
    println!("{text}");

    if let Some(path) = std::env::var_os("SLUICE_BENCH_MD") {
        let mut md = String::new();
        for line in &header {
            md += &format!("- {line}\n");
        }
        for table in &tables {
            md.push('\n');
            md += &table.markdown();
        }
        std::fs::write(&path, md)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", PathBuf::from(&path).display()));
        eprintln!(
            "bench: markdown written to {}",
            PathBuf::from(&path).display()
        );
    }
}
