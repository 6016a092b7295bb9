//! `sluice check CONFIG`: validate everything that can be validated without
//! connecting, and print the resolved pipelines.

use crate::assemble;
use crate::exit::CliError;
use std::path::Path;

pub fn check(path: &Path) -> Result<(), CliError> {
    let config = sluice_config::load(path)?;
    let host = assemble::host()?;
    for pipeline in &config.pipelines {
        // `check` connects to nothing: stores are not opened.
        let stages = assemble::load_stages(&host, &config, pipeline, &Default::default())?;
        println!("pipeline {}", pipeline.name);
        // Printed configs show no password (URLs, `*password*` properties).
        let shown = |c: &dyn std::fmt::Debug| sluice_brokers::redact_text(&format!("{c:?}"));
        println!("  source      {}", shown(&pipeline.source));
        for (stage, spec) in pipeline.stages.iter().zip(&stages) {
            let plugin = spec.factory.plugin();
            let l = stage.limits;
            let r = stage.retry;
            println!(
                "  stage       {} ({}) {}",
                stage.name,
                stage.kind,
                plugin.path.display()
            );
            if let Some(d) = &stage.dedupe {
                println!(
                    "                id={} window={:?} capacity={} claim_ttl={:?}; retry attempts={} initial={:?} max={:?}",
                    d.id, d.window, d.capacity, d.claim_ttl, stage.retry.max_attempts, stage.retry.initial, stage.retry.max_delay
                );
                continue;
            }
            println!("                sha256 {}", plugin.sha256);
            println!(
                "                outputs max_outputs={} max_output_bytes={} max_call_output_bytes={}; log {} lines/s, {} bytes/line",
                l.max_outputs, l.max_output_bytes, l.max_call_output_bytes, l.log_lines_per_second, l.log_line_bytes
            );
            println!(
                "                limits fuel={} timeout={:?} memory={} bytes; retry attempts={} initial={:?} factor={} max={:?} jitter={}",
                l.fuel, l.timeout, l.memory, r.max_attempts, r.initial, r.factor, r.max_delay, r.jitter
            );
            if !stage.params.is_empty() {
                let params: Vec<String> = stage
                    .params
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect();
                println!("                params {}", params.join(" "));
            }
        }
        for (name, sink) in &pipeline.sinks {
            println!("  sink        {name}: {}", shown(sink));
        }
        println!("  dlq         {}", shown(&pipeline.dlq));
        let e = &pipeline.engine;
        let size = |n: u64| bytesize::ByteSize(n).to_string();
        println!(
            "  engine      concurrency={} buffer={} max_in_flight={} batch={}",
            e.concurrency, e.buffer, e.max_in_flight, e.batch
        );
        println!(
            "  bytes       max_in_flight_bytes={} max_message_bytes={} too_large_keep={}",
            size(e.bytes.max_in_flight_bytes),
            size(e.bytes.max_message_bytes),
            size(e.bytes.too_large_keep)
        );
    }
    println!(
        "{}: OK ({} pipeline(s))",
        path.display(),
        config.pipelines.len()
    );
    Ok(())
}
