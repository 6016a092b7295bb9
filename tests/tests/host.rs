//! The Wasm host itself: the sandbox denies every WASI capability, the
//! artifact cache spares a restart the compile, world detection, and any
//! message crossing into a real component and back unchanged.

use sluice_core::engine::EngineOptions;
use sluice_core::{Limits, Message, RetryPolicy, Stage, StageKind, StageOutput, SystemClock};
use sluice_tests::*;
use sluice_wasm::{ArtifactCache, HostOptions, LoadError, WasmHost};
use std::sync::Arc;

#[test]
fn a_plugin_sees_no_files_no_environment_and_no_arguments() {
    let host = host();
    let probe = wasm_stage(
        &host,
        "probe",
        "sandbox-probe",
        StageKind::Transform,
        Limits::default(),
        params(&[]),
        RetryPolicy::default(),
    );
    let run = run_pipeline(
        vec![Message::new("{}")],
        vec![probe],
        &["out"],
        EngineOptions::default(),
        Arc::new(SystemClock),
    );
    let out = &run.sinks["out"][0];
    for probe in ["probe-file", "probe-dir", "probe-env", "probe-args"] {
        let result = out
            .header_str(probe)
            .unwrap_or_else(|| panic!("{probe} header missing"));
        assert!(result.starts_with("denied"), "{probe}: {result}");
    }
}

#[test]
fn a_restart_loads_the_precompiled_artifact_instead_of_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let options = || HostOptions {
        fuel: true,
        epoch: true,
        cache: ArtifactCache::at(dir.path()),
    };
    let first = WasmHost::new(options()).unwrap();
    let loaded = first.load(&plugin("json-filter")).unwrap();
    let artifacts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1, "one artifact written: {artifacts:?}");
    let artifact = &artifacts[0];
    assert!(
        artifact
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&loaded.info.sha256),
        "named by content hash"
    );
    let written = std::fs::metadata(artifact).unwrap().modified().unwrap();

    // A new host (a restart) uses the artifact as it is and runs the plugin.
    let second = WasmHost::new(options()).unwrap();
    let reloaded = second.load(&plugin("json-filter")).unwrap();
    assert_eq!(
        std::fs::metadata(artifact).unwrap().modified().unwrap(),
        written,
        "not recompiled"
    );
    let factory = second
        .stage(
            reloaded,
            "f",
            StageKind::Filter,
            Limits::default(),
            params(&[("min", "10")]),
            Default::default(),
        )
        .unwrap();
    let mut stage = factory.instance().unwrap();
    assert_eq!(
        stage.call(&Message::new(r#"{"amount":11}"#)),
        Ok(StageOutput::Keep(true))
    );

    // A corrupt artifact is replaced, not fatal. (Artifacts are mapped into
    // memory: the running hosts go first, as in a real restart.)
    drop((stage, factory, second, first));
    std::fs::write(artifact, b"garbage").unwrap();
    let third = WasmHost::new(options()).unwrap();
    third
        .load(&plugin("json-filter"))
        .expect("recompiles over a corrupt artifact");
    assert!(std::fs::read(artifact).unwrap().len() > 1000);
}

#[test]
fn the_world_is_detected_and_a_wrong_kind_is_refused() {
    let host = host();
    for (name, kind) in [
        ("json-filter", StageKind::Filter),
        ("order-transform", StageKind::Transform),
        ("country-router", StageKind::Route),
    ] {
        let plugin = host.load(&plugin(name)).unwrap();
        assert_eq!(plugin.kind, kind, "{name}");
    }
    let filter = host.load(&plugin("json-filter")).unwrap();
    let err = host
        .stage(
            filter,
            "s",
            StageKind::Route,
            Limits::default(),
            params(&[]),
            Default::default(),
        )
        .err()
        .unwrap();
    assert!(matches!(
        err,
        LoadError::KindMismatch {
            expected: StageKind::Route,
            found: StageKind::Filter,
            ..
        }
    ));
}

#[test]
fn the_batch_export_answers_like_the_single_one() {
    let host = host();
    let plugin = host.load(&plugin("json-filter")).unwrap();
    let factory = host
        .stage(
            plugin,
            "f",
            StageKind::Filter,
            Limits::default(),
            params(&[("min", "100")]),
            Default::default(),
        )
        .unwrap();
    let mut stage = factory.instance().unwrap();
    let msgs: Vec<Message> = [
        r#"{"amount":5}"#,
        r#"{"amount":500}"#,
        "nope",
        r#"{"amount":"x"}"#,
    ]
    .iter()
    .map(|p| Message::new(*p))
    .collect();
    let batch = stage.call_batch(&msgs.iter().collect::<Vec<_>>()).unwrap();
    let single: Vec<_> = msgs.iter().map(|m| stage.call(m)).collect();
    assert_eq!(batch, single);
    assert_eq!(batch[1], Ok(StageOutput::Keep(true)));
    assert!(
        matches!(batch[2], Err(sluice_core::StageError::Fatal(_))),
        "one bad item does not fail the batch"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 500, ..Default::default() })]

    /// The host/guest boundary both ways, through the identity component:
    /// any key, payload and headers (binary, empty, odd names, repeated
    /// names), alone and in batches, come back as they went in.
    #[test]
    fn any_message_crosses_into_a_component_and_back_unchanged(
        msgs in proptest::collection::vec(sluice_core::arbitrary::message(), 1..6),
    ) {
        IDENTITY.with(|stage| {
            let mut stage = stage.borrow_mut();
            for msg in &msgs {
                proptest::prop_assert_eq!(
                    stage.call(msg),
                    Ok(StageOutput::Messages(vec![msg.clone()]))
                );
            }
            let batch = stage
                .call_batch(&msgs.iter().collect::<Vec<_>>())
                .expect("the batch call");
            let each: Vec<_> = msgs.iter().map(|m| Ok(StageOutput::Messages(vec![m.clone()]))).collect();
            proptest::prop_assert_eq!(batch, each);
            Ok(())
        })?;
    }
}

thread_local! {
    /// One identity instance per test thread (compiling it is the slow part).
    static IDENTITY: std::cell::RefCell<sluice_wasm::WasmStage> = {
        let host = host();
        let plugin = host.load(&plugin("identity")).unwrap();
        let factory = host
            .stage(
                plugin,
                "same",
                StageKind::Transform,
                Limits::default(),
                params(&[]),
                Default::default(),
            )
            .unwrap();
        std::cell::RefCell::new(factory.instance().unwrap())
    };
}
