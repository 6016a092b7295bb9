//! Plugins in every language: the example plugins of Rust, JavaScript,
//! Python, C and Zig (built from `plugins/` by `plugins/build.sh`) run
//! together in `examples/polyglot.toml`, every record accounted for; each
//! language's template goes through `plugin new` → `plugin build` →
//! `sluice test`; a missing toolchain is named with how to install it; the
//! compiled components are cached so a restart does not recompile them.

use serde_json::Value;
use sluice_tests::daemon::example_in;
use sluice_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LANGUAGES: [&str; 5] = ["rust", "js", "python", "c", "zig"];
const WORLDS: [&str; 3] = ["filter", "transform", "route"];

/// The plugin toolchains' programs (`plugins/toolchains.sh` puts them in
/// `$SLUICE_TOOLS/bin`) ahead of the caller's PATH.
fn tools_path() -> String {
    let tools = std::env::var_os("SLUICE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/sluice/tools")
        });
    format!(
        "{}:{}",
        tools.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn sluice(args: &[&str], cache: &Path) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .env("PATH", tools_path())
        .env("SLUICE_CACHE_DIR", cache)
        .output()
        .expect("sluice runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An artifact cache that outlives the checkout: artifacts are named by
/// the component's sha256 and the engine's settings, so sharing is safe, and
/// a fresh clone does not recompile the 10-20 MB JavaScript and Python
/// components (the cache test below uses a cache of its own).
fn shared_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    home.join("sluice/test-artifacts")
}

/// What `examples/polyglot.toml` must do with one order, computed here from
/// the order itself: `Err(why)` = dead-lettered, `Ok(None)` = dropped,
/// `Ok(Some((sink, total_cents)))` = delivered.
fn expected(order: &Value) -> Result<Option<(&'static str, i64)>, &'static str> {
    let o = order.as_object().ok_or("not an object")?;
    for key in ["id", "country", "amount", "card", "items"] {
        if !o.contains_key(key) {
            return Err("required field missing");
        }
    }
    let country = o["country"]
        .as_str()
        .filter(|c| c.chars().count() == 2)
        .ok_or("country")?;
    o["id"].as_str().ok_or("id")?;
    o["card"].as_str().ok_or("card")?;
    o["amount"].as_f64().filter(|a| *a >= 0.0).ok_or("amount")?;
    let mut total = 0i64;
    for item in o["items"].as_array().ok_or("items")? {
        let qty = item
            .get("qty")
            .and_then(Value::as_i64)
            .filter(|q| *q >= 1)
            .ok_or("qty")?;
        let price = item
            .get("price")
            .and_then(Value::as_f64)
            .filter(|p| *p >= 0.0)
            .ok_or("price")?;
        total += qty * (price * 100.0).round() as i64;
    }
    if total < 10_000 {
        return Ok(None);
    }
    Ok(Some((
        match country {
            "DE" | "FR" | "NL" => "europe",
            "US" | "CA" => "americas",
            _ => "other",
        },
        total,
    )))
}

#[test]
fn the_polyglot_pipeline_runs_plugins_of_all_five_languages_and_accounts_for_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_in(dir.path(), "polyglot.toml", &[]);
    let out = sluice(&["run", config.to_str().unwrap()], &shared_cache());
    assert!(out.status.success(), "{}", text(&out));

    let input = std::fs::read_to_string(repo().join("examples/orders.jsonl")).unwrap();
    let (mut want_dead, mut want_dropped) = (0usize, 0usize);
    let mut want: std::collections::BTreeMap<String, (&str, i64, String)> = Default::default();
    for line in input.lines() {
        let Ok(order) = serde_json::from_str::<Value>(line) else {
            want_dead += 1;
            continue;
        };
        match expected(&order) {
            Err(_) => want_dead += 1,
            Ok(None) => want_dropped += 1,
            Ok(Some((sink, total))) => {
                let card = order["card"].as_str().unwrap().to_string();
                want.insert(
                    order["id"].as_str().unwrap().to_string(),
                    (sink, total, card),
                );
            }
        }
    }
    assert!(
        want.len() > 1000 && want_dead > 100 && want_dropped > 100,
        "the example data exercises every path"
    );

    let read = |name: &str| -> Vec<Value> {
        let path = dir
            .path()
            .join("out")
            .join(format!("polyglot-{name}.jsonl"));
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mut delivered = 0;
    for sink in ["europe", "americas", "other"] {
        for msg in read(sink) {
            delivered += 1;
            let payload = &msg["payload"];
            let id = payload["id"].as_str().unwrap_or_else(|| panic!("{msg}"));
            let (want_sink, total, card) = want
                .get(id)
                .unwrap_or_else(|| panic!("{id} should not have been delivered: {msg}"));
            assert_eq!(sink, *want_sink, "{id} routed by country (C router)");
            assert_eq!(
                payload["total_cents"].as_i64(),
                Some(*total),
                "{id}: total from the items (Zig transform): {msg}"
            );
            let masked = payload["card"].as_str().unwrap();
            let digits = card.chars().filter(char::is_ascii_digit).count();
            assert!(
                masked.ends_with(&card[card.len() - 4..])
                    && masked.matches('*').count() == digits - 4,
                "{id}: card masked but the last 4 (JS transform): {masked}"
            );
            assert_eq!(
                msg["headers"]["x-masked"].as_str(),
                Some("1"),
                "{id}: one card masked: {msg}"
            );
        }
    }
    assert_eq!(
        delivered,
        want.len(),
        "every order above 100.00 that passes the schema is delivered exactly once"
    );

    let dlq = read("dlq");
    assert_eq!(
        dlq.len(),
        want_dead,
        "malformed records and schema violations are dead-lettered"
    );
    let by_schema: Vec<&Value> = dlq
        .iter()
        .filter(|m| m["headers"]["sluice-error-stage"] == "valid")
        .collect();
    assert!(!by_schema.is_empty());
    for m in &by_schema {
        let why = m["headers"]["sluice-error-text"].as_str().unwrap();
        assert!(
            m["headers"]["sluice-error-class"] == "fatal" && why.contains("$."),
            "the Python filter names the violation's JSON path: {m}"
        );
    }
    let log = text(&out);
    assert!(
        log.contains(&format!(
            "received {}, delivered {delivered}, dropped {want_dropped}, dead-lettered {want_dead}",
            input.lines().count()
        )),
        "summary: {log}"
    );
}

/// `plugin new` → `plugin build` → `sluice test --expect` for every world of
/// one language, and for its `kv` template where it has one (Rust, JS).
fn template_round_trip(lang: &str, root: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    let mut variants: Vec<(&str, Option<&str>)> = WORLDS.iter().map(|w| (*w, None)).collect();
    if matches!(lang, "rust" | "js") {
        variants.push(("filter", Some("kv")));
    }
    for (kind, capability) in variants {
        // `filter` or `filter-kv`: for the folder's name and the messages.
        let world = match capability {
            Some(c) => format!("{kind}-{c}"),
            None => kind.to_owned(),
        };
        let name = format!("demo-{lang}-{world}");
        let dir = root.join(&name);
        let cache = shared_cache();
        let mut args = vec![
            "plugin",
            "new",
            "--lang",
            lang,
            "--kind",
            kind,
            &name,
            "--dir",
            root.to_str().unwrap(),
        ];
        if let Some(capability) = capability {
            args.extend(["--capability", capability]);
        }
        let new = sluice(&args, &cache);
        if !new.status.success() {
            failures.push(format!(
                "{lang} {world}: plugin new failed:\n{}",
                text(&new)
            ));
            continue;
        }
        let started = std::time::Instant::now();
        let build = sluice(&["plugin", "build", dir.to_str().unwrap()], &cache);
        if !build.status.success() {
            failures.push(format!(
                "{lang} {world}: plugin build failed:\n{}",
                text(&build)
            ));
            continue;
        }
        println!("{lang:6} {world:9}: built in {:.1?}", started.elapsed());
        let wasm = dir.join("dist").join(format!("{name}.wasm"));
        let fixtures = dir.join("fixtures");
        let mut args = vec!["test", wasm.to_str().unwrap(), "--input"];
        let (input, expect) = (
            fixtures.join("sample.jsonl"),
            fixtures.join("sample.expected.jsonl"),
        );
        args.extend([
            input.to_str().unwrap(),
            "--expect",
            expect.to_str().unwrap(),
        ]);
        let test = sluice(&args, &cache);
        if !test.status.success() {
            failures.push(format!(
                "{lang} {world}: sluice test failed:\n{}",
                text(&test)
            ));
        }
    }
    failures
}

#[test]
fn every_language_s_template_builds_and_passes_its_sample_fixtures() {
    let root = tempfile::tempdir().unwrap();
    // The languages side by side: most of the time is each toolchain's own.
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = LANGUAGES
            .iter()
            .map(|lang| {
                let dir = root.path().join(lang);
                s.spawn(move || template_round_trip(lang, &dir))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_missing_toolchain_is_named_with_how_to_install_it() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    for (lang, tool) in [
        ("js", "componentize-js"),
        ("python", "componentize-py"),
        ("c", "wit-bindgen"),
        ("zig", "zig"),
    ] {
        let name = format!("no-{lang}");
        assert!(sluice(
            &[
                "plugin",
                "new",
                "--lang",
                lang,
                "--kind",
                "filter",
                &name,
                "--dir",
                root.path().to_str().unwrap()
            ],
            &cache
        )
        .status
        .success());
        let out = Command::new(sluice_bin())
            .args(["plugin", "build", root.path().join(&name).to_str().unwrap()])
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        let err = text(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("`{tool}` was not found on PATH")) && err.contains("install"),
            "{lang}: {err}"
        );
        assert!(
            err.contains(&format!("plugins/toolchains/{lang}.sh")),
            "{lang}: says which script installs it: {err}"
        );
    }
}

#[test]
fn plugin_build_and_new_refuse_bad_input_with_the_fix() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let out = sluice(&["plugin", "build", root.path().to_str().unwrap()], &cache);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("sluice-plugin.toml: cannot read")
            && text(&out).contains("sluice plugin new"),
        "{}",
        text(&out)
    );

    std::fs::write(
        root.path().join("sluice-plugin.toml"),
        "name = \"x\"\nlanguage = \"cobol\"\nworld = \"filter\"\n",
    )
    .unwrap();
    let out = sluice(&["plugin", "build", root.path().to_str().unwrap()], &cache);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("cobol") && text(&out).contains("`rust`"),
        "{}",
        text(&out)
    );

    let out = sluice(
        &[
            "plugin",
            "new",
            "--lang",
            "rust",
            "--kind",
            "filter",
            "Bad_Name",
            "--dir",
            root.path().to_str().unwrap(),
        ],
        &cache,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("lower-case letters"), "{}", text(&out));
    std::fs::create_dir(root.path().join("taken")).unwrap();
    let out = sluice(
        &[
            "plugin",
            "new",
            "--lang",
            "rust",
            "--kind",
            "filter",
            "taken",
            "--dir",
            root.path().to_str().unwrap(),
        ],
        &cache,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("already exists"), "{}", text(&out));
}

/// JS and Python components are 10-20 MB and take seconds to compile: a
/// second start takes them from the artifact cache instead. (One component,
/// the JavaScript one, to keep the suite short: the mechanism is the same.)
#[test]
fn compiled_components_are_cached_so_a_restart_does_not_recompile_them() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let fixtures = repo().join("plugins/js/mask-cards/fixtures");
    let (wasm, input) = (plugin("mask-cards"), fixtures.join("input.jsonl"));
    let run = |label: &str| {
        let started = std::time::Instant::now();
        let out = sluice(
            &[
                "--log",
                "sluice_wasm=debug",
                "test",
                wasm.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
            ],
            &cache,
        );
        assert!(out.status.success(), "{}", text(&out));
        println!("sluice test mask-cards, {label}: {:.2?}", started.elapsed());
        text(&out)
    };
    let first = run("empty cache");
    assert_eq!(first.matches("plugin compiled").count(), 1, "{first}");
    let cached = std::fs::read_dir(&cache)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count();
    assert_eq!(cached, 1, "one artifact for the plugin");
    let second = run("warm cache");
    assert_eq!(
        second
            .matches("plugin loaded from the artifact cache")
            .count(),
        1,
        "{second}"
    );
    assert_eq!(second.matches("plugin compiled").count(), 0, "{second}");
}
