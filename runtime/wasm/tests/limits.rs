//! The host's limits at their edges, on a plugin written inline in WAT (no
//! plugin build): fuel, timeout, memory cap, traps, per-message limits in a
//! batch, and the log rate. The WAT core module is made a `filter`
//! component with wit-component, against the repository's `wit/`.
//!
//! The plugin acts on each payload's first byte: `k` keeps, `d` drops, `f`
//! is a fatal error, `l` loops forever, `u` traps, `g` grows memory by two
//! pages and `G` by three, `L` logs 100 lines; anything else keeps.

use sluice_core::{FaultKind, Limits, Message, Stage, StageError, StageKind, StageOutput};
use sluice_wasm::{ArtifactCache, HostOptions, WasmHost, WasmStage};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PAGE: u64 = 64 * 1024;

/// The core module. Memory starts at two pages; `cabi_realloc` is a bump
/// allocator that the post-return functions reset after every call.
/// Layouts (canonical ABI): a `message` is 64 bytes with its payload's
/// pointer and length at offsets 12 and 16; a `result<bool, error>` is 16
/// bytes (tag at 0, the bool or the error's tag at 4, its string at 8/12).
const FILTER_WAT: &str = r#"
(module
  (import "sluice:plugin/host@0.1.0" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "flood")
  (data (i32.const 32) "refused")

  (func $alloc (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and
      (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
      (i32.xor (i32.sub (local.get $align) (i32.const 1)) (i32.const -1))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (block $fits
      (loop $grow
        (br_if $fits (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
        (br $grow)))
    (local.get $p))

  ;; 1 keep, 0 drop, 2 fatal
  (func $decide (param $ptr i32) (param $len i32) (result i32)
    (local $op i32) (local $i i32)
    (if (i32.eqz (local.get $len)) (then (return (i32.const 1))))
    (local.set $op (i32.load8_u (local.get $ptr)))
    (if (i32.eq (local.get $op) (i32.const 0x6b)) (then (return (i32.const 1))))   ;; k
    (if (i32.eq (local.get $op) (i32.const 0x64)) (then (return (i32.const 0))))   ;; d
    (if (i32.eq (local.get $op) (i32.const 0x66)) (then (return (i32.const 2))))   ;; f
    (if (i32.eq (local.get $op) (i32.const 0x6c)) (then (loop $forever (br $forever))))  ;; l
    (if (i32.eq (local.get $op) (i32.const 0x75)) (then unreachable))              ;; u
    (if (i32.eq (local.get $op) (i32.const 0x67)) (then (drop (memory.grow (i32.const 2)))))  ;; g
    (if (i32.eq (local.get $op) (i32.const 0x47)) (then (drop (memory.grow (i32.const 3)))))  ;; G
    (if (i32.eq (local.get $op) (i32.const 0x4c))                                  ;; L
      (then (block $done (loop $line
        (br_if $done (i32.eq (local.get $i) (i32.const 100)))
        (call $log (i32.const 2) (i32.const 16) (i32.const 5))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $line)))))
    (i32.const 1))

  (func $answer (param $at i32) (param $decision i32)
    (if (i32.eq (local.get $decision) (i32.const 2))
      (then
        (i32.store8 (local.get $at) (i32.const 1))
        (i32.store8 offset=4 (local.get $at) (i32.const 1))
        (i32.store offset=8 (local.get $at) (i32.const 32))
        (i32.store offset=12 (local.get $at) (i32.const 7)))
      (else
        (i32.store8 (local.get $at) (i32.const 0))
        (i32.store8 offset=4 (local.get $at) (local.get $decision)))))

  (func (export "filter")
    (param i32 i32 i32) (param $payload i32) (param $len i32)
    (param i32 i32 i32 i32 i32 i64 i32) (result i32)
    (call $answer (i32.const 64) (call $decide (local.get $payload) (local.get $len)))
    (i32.const 64))

  (func (export "filter-batch") (param $msgs i32) (param $n i32) (result i32)
    (local $out i32) (local $i i32) (local $msg i32)
    (local.set $out (call $alloc (i32.const 0) (i32.const 0) (i32.const 4)
      (i32.mul (local.get $n) (i32.const 16))))
    (block $done (loop $each
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $msg (i32.add (local.get $msgs) (i32.mul (local.get $i) (i32.const 64))))
      (call $answer
        (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 16)))
        (call $decide (i32.load offset=12 (local.get $msg)) (i32.load offset=16 (local.get $msg))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $each)))
    (i32.store (i32.const 80) (local.get $out))
    (i32.store (i32.const 84) (local.get $n))
    (i32.const 80))

  (func (export "cabi_post_filter") (param i32) (global.set $heap (i32.const 4096)))
  (func (export "cabi_post_filter-batch") (param i32) (global.set $heap (i32.const 4096)))
)
"#;

/// The component file, built once per test run.
fn component() -> &'static Path {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_dir, path) = BUILT.get_or_init(|| {
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        let mut resolve = wit_parser::Resolve::default();
        let (package, _) = resolve
            .push_dir(&wit)
            .expect("the repository's wit/ parses");
        let world = resolve
            .select_world(&[package], Some("filter"))
            .expect("a filter world");
        let mut module = wat::parse_str(FILTER_WAT).expect("the WAT parses");
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )
        .expect("metadata embeds");
        let bytes = wit_component::ComponentEncoder::default()
            .module(&module)
            .and_then(|e| e.validate(true).encode())
            .expect("a valid component");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wat-filter.wasm");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    });
    path
}

fn stage(limits: Limits) -> WasmStage {
    let host = WasmHost::new(HostOptions {
        cache: ArtifactCache::disabled(),
        ..HostOptions::default()
    })
    .unwrap();
    let plugin = host.load(component()).expect("the WAT component loads");
    host.stage(
        plugin,
        "wat",
        StageKind::Filter,
        limits,
        Default::default(),
        Default::default(),
    )
    .unwrap()
    .instance()
    .unwrap()
}

fn call(stage: &mut WasmStage, payload: &str) -> Result<StageOutput, StageError> {
    stage.call(&Message::new(payload))
}

fn fault(result: Result<StageOutput, StageError>) -> FaultKind {
    match result {
        Err(StageError::Fault(f)) => f.kind,
        other => panic!("expected a fault, got {other:?}"),
    }
}

#[test]
fn a_plugin_keeps_drops_and_refuses_as_it_says() {
    let mut stage = stage(Limits::default());
    assert_eq!(call(&mut stage, "k"), Ok(StageOutput::Keep(true)));
    assert_eq!(call(&mut stage, "d"), Ok(StageOutput::Keep(false)));
    assert_eq!(
        call(&mut stage, "f"),
        Err(StageError::Fatal("refused".into()))
    );
    let batch: Vec<Message> = ["k", "d", "f"].into_iter().map(Message::new).collect();
    let answers = stage
        .call_batch(&batch.iter().collect::<Vec<_>>())
        .expect("a clean batch");
    assert_eq!(
        answers,
        vec![
            Ok(StageOutput::Keep(true)),
            Ok(StageOutput::Keep(false)),
            Err(StageError::Fatal("refused".into()))
        ]
    );
}

#[test]
fn a_loop_ends_when_its_fuel_runs_out_and_the_next_message_is_handled() {
    let mut stage = stage(Limits {
        fuel: 1_000_000,
        timeout: Duration::from_secs(60),
        ..Limits::default()
    });
    let started = Instant::now();
    assert_eq!(fault(call(&mut stage, "l")), FaultKind::OutOfFuel);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(call(&mut stage, "k"), Ok(StageOutput::Keep(true)));
}

#[test]
fn a_loop_ends_at_its_timeout_when_fuel_lasts_longer() {
    let timeout = Duration::from_millis(50);
    let mut stage = stage(Limits {
        fuel: u64::MAX / 2,
        timeout,
        ..Limits::default()
    });
    let started = Instant::now();
    assert_eq!(fault(call(&mut stage, "l")), FaultKind::Timeout);
    let took = started.elapsed();
    assert!(
        took >= timeout && took < 5 * timeout + Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(call(&mut stage, "k"), Ok(StageOutput::Keep(true)));
}

#[test]
fn memory_grows_up_to_its_cap_and_not_one_page_past_it() {
    // Two pages at the start; a cap of four.
    let mut stage = stage(Limits {
        memory: 4 * PAGE,
        ..Limits::default()
    });
    assert_eq!(
        fault(call(&mut stage, "G")),
        FaultKind::MemoryLimit,
        "2 + 3 pages"
    );
    assert_eq!(
        call(&mut stage, "g"),
        Ok(StageOutput::Keep(true)),
        "2 + 2 pages: the cap"
    );
    assert_eq!(
        fault(call(&mut stage, "g")),
        FaultKind::MemoryLimit,
        "4 + 2 pages"
    );
    assert_eq!(
        call(&mut stage, "k"),
        Ok(StageOutput::Keep(true)),
        "a fresh instance"
    );
}

#[test]
fn a_trap_replaces_the_instance_and_the_next_message_is_handled() {
    let mut stage = stage(Limits::default());
    assert_eq!(fault(call(&mut stage, "u")), FaultKind::Trap);
    assert_eq!(call(&mut stage, "k"), Ok(StageOutput::Keep(true)));
}

#[test]
fn a_loop_in_a_batch_costs_about_one_message_limit_not_the_batch() {
    let timeout = Duration::from_secs(1);
    let mut stage = stage(Limits {
        fuel: u64::MAX / 2,
        timeout,
        ..Limits::default()
    });
    let clean: Vec<Message> = (0..64).map(|_| Message::new("k")).collect();
    assert!(
        stage.call_batch(&clean.iter().collect::<Vec<_>>()).is_ok(),
        "a clean batch teaches the cost"
    );
    let mut poisoned = clean.clone();
    poisoned[40] = Message::new("l");
    let started = Instant::now();
    let fault = stage
        .call_batch(&poisoned.iter().collect::<Vec<_>>())
        .expect_err("the batch faults");
    let took = started.elapsed();
    assert_eq!(fault.kind, FaultKind::Timeout);
    // 64 messages' limits would be 64 s; a batch gets what its messages
    // cost with headroom, at most one message's limit here.
    assert!(took < 5 * timeout, "{took:?}");
}

#[test]
fn log_lines_past_the_rate_are_counted_not_written() {
    let mut stage = stage(Limits {
        log_lines_per_second: 10,
        ..Limits::default()
    });
    assert_eq!(call(&mut stage, "L"), Ok(StageOutput::Keep(true)));
    let suppressed = stage.take_usage().log_suppressed;
    // 100 lines at 10 per second; 20 written if the call crosses a second.
    assert!((80..=90).contains(&suppressed), "{suppressed} suppressed");
}
