//! Every config key is documented. Each struct (and tagged enum) with
//! `#[serde(deny_unknown_fields)]` in the config and connector crates is a
//! table a user writes in TOML; every key it accepts must appear, in
//! backticks, on the doc page for its file. Adding a field without a line
//! of docs fails here, naming the field and the page.

use sluice_tests::repo;
use std::path::{Path, PathBuf};
use syn::ext::IdentExt;

/// The doc page that documents the config structs of a source file
/// (`path` relative to the repository root).
fn page_for(path: &str) -> Option<&'static str> {
    let pages = [
        ("runtime/config/src/", "docs/configuration.md"),
        ("runtime/brokers/src/lib.rs", "docs/configuration.md"),
        ("runtime/brokers/src/tls.rs", "docs/configuration.md"),
        ("runtime/brokers/src/kafka/", "docs/connectors/kafka.md"),
        ("runtime/brokers/src/amqp/", "docs/connectors/rabbitmq.md"),
        ("runtime/brokers/src/redis/", "docs/connectors/redis.md"),
        ("runtime/brokers/src/sqs/", "docs/connectors/sqs.md"),
        ("runtime/brokers/src/file.rs", "docs/connectors/file.md"),
        ("runtime/brokers/src/stdio.rs", "docs/connectors/file.md"),
        ("runtime/brokers/src/lines.rs", "docs/connectors/file.md"),
        ("runtime/cli/src/plugin/manifest.rs", "docs/plugins.md"),
        ("runtime/state/src/", "docs/state.md"),
    ];
    pages
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(_, page)| *page)
}

/// What a `#[serde(...)]` attribute list says, as far as key names go.
#[derive(Default)]
struct Serde {
    deny_unknown_fields: bool,
    flatten: bool,
    skip: bool,
    rename: Option<String>,
    rename_all: Option<String>,
}

fn serde_attrs(attrs: &[syn::Attribute]) -> Serde {
    let mut serde = Serde::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            let name = meta.path.get_ident().map(|i| i.to_string());
            let mut value = None;
            if meta.input.peek(syn::Token![=]) {
                if let syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) = meta.value()?.parse::<syn::Expr>()?
                {
                    value = Some(s.value());
                }
            } else if meta.input.peek(syn::token::Paren) {
                // `rename(deserialize = "...")` and the like: not used here.
                let _nested;
                syn::parenthesized!(_nested in meta.input);
            }
            match name.as_deref() {
                Some("deny_unknown_fields") => serde.deny_unknown_fields = true,
                Some("flatten") => serde.flatten = true,
                Some("skip" | "skip_deserializing") => serde.skip = true,
                Some("rename") => serde.rename = value,
                Some("rename_all") => serde.rename_all = value,
                _ => {}
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("cannot read a #[serde] attribute: {e}"));
    }
    serde
}

/// A field or variant name as serde spells it under `rename_all`.
fn renamed(ident: &str, rule: Option<&str>) -> String {
    // Split `RedisStream` or `max_in_flight` into lower-case words.
    let mut words: Vec<String> = Vec::new();
    for part in ident.split('_').filter(|p| !p.is_empty()) {
        let mut word = String::new();
        for c in part.chars() {
            if c.is_uppercase() && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            word.extend(c.to_lowercase());
        }
        words.push(word);
    }
    match rule {
        None => ident.to_string(),
        Some("lowercase") => words.concat(),
        Some("UPPERCASE") => words.concat().to_uppercase(),
        Some("snake_case") => words.join("_"),
        Some("kebab-case") => words.join("-"),
        Some(other) => panic!("teach docs_reference.rs the rename_all rule {other:?}"),
    }
}

/// The keys of one TOML table: (type name, key).
fn keys_of(item: &syn::Item) -> Vec<(String, String)> {
    match item {
        syn::Item::Struct(s) if serde_attrs(&s.attrs).deny_unknown_fields => {
            let rule = serde_attrs(&s.attrs).rename_all;
            s.fields
                .iter()
                .filter_map(|field| {
                    let attrs = serde_attrs(&field.attrs);
                    // A flattened struct's keys are checked as its own table.
                    if attrs.flatten || attrs.skip {
                        return None;
                    }
                    let ident = field.ident.as_ref()?.unraw().to_string();
                    let key = attrs
                        .rename
                        .unwrap_or_else(|| renamed(&ident, rule.as_deref()));
                    Some((s.ident.to_string(), key))
                })
                .collect()
        }
        // A tagged enum's variants are the values of its tag (`type = "kafka"`).
        syn::Item::Enum(e) if serde_attrs(&e.attrs).deny_unknown_fields => {
            let rule = serde_attrs(&e.attrs).rename_all;
            e.variants
                .iter()
                .filter(|v| !serde_attrs(&v.attrs).skip)
                .map(|v| {
                    let key = serde_attrs(&v.attrs)
                        .rename
                        .unwrap_or_else(|| renamed(&v.ident.to_string(), rule.as_deref()));
                    (e.ident.to_string(), key)
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_config_key_is_on_its_doc_page() {
    let root = repo();
    let mut files = Vec::new();
    for dir in [
        "runtime/config/src",
        "runtime/brokers/src",
        "runtime/state/src",
        "runtime/cli/src",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();

    let mut checked = 0;
    let mut missing = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .expect("under the repository")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{relative}: {e}"));
        let keys: Vec<_> = ast.items.iter().flat_map(keys_of).collect();
        if keys.is_empty() {
            continue;
        }
        let page = page_for(&relative).unwrap_or_else(|| {
            panic!("{relative} has config structs but no doc page: add it to page_for()")
        });
        let docs = std::fs::read_to_string(root.join(page))
            .unwrap_or_else(|e| panic!("{page} (for {relative}): {e}"));
        for (type_name, key) in keys {
            checked += 1;
            if !docs.contains(&format!("`{key}`")) {
                missing.push(format!("{type_name}.{key} ({relative}) is not in {page}"));
            }
        }
    }

    // A parser that found nothing would pass vacuously.
    assert!(
        checked > 80,
        "only {checked} config keys found: is the parsing right?"
    );
    assert!(
        missing.is_empty(),
        "config keys without docs (write each as `key` on its page):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn rename_all_spells_like_serde() {
    assert_eq!(renamed("RedisStream", Some("kebab-case")), "redis-stream");
    assert_eq!(renamed("Rabbitmq", Some("lowercase")), "rabbitmq");
    assert_eq!(renamed("max_in_flight", None), "max_in_flight");
    assert_eq!(
        renamed("max_in_flight", Some("kebab-case")),
        "max-in-flight"
    );
}
