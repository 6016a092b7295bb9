//! `sluice plugin new --lang LANG --kind WORLD [--capability kv] NAME`:
//! write a buildable plugin folder `NAME/`: the manifest, the plugin
//! contract (`wit/`: 0.1.0, or 0.2.0 with a capability), the language's
//! template ([`super::lang`]), a build script, sample fixtures with their
//! expected results, a README and a `.gitignore`.

use super::build::{PLUGIN_WIT, PLUGIN_WIT_0_2};
use super::lang;
use super::manifest::{check_name, Capability, Language, World, FILE};
use crate::exit::CliError;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Create `parent/NAME` (it must not exist yet); returns its path.
///
/// # Errors
/// [`CliError::Invalid`] for a bad name or an existing folder; I/O errors
/// naming the file.
pub fn new(
    parent: &Path,
    name: &str,
    language: Language,
    world: World,
    capabilities: &[Capability],
) -> Result<PathBuf, CliError> {
    check_name(name).map_err(CliError::Invalid)?;
    let kv = capabilities.contains(&Capability::Kv);
    if kv && world != World::Filter {
        return Err(CliError::Invalid(format!(
            "the kv template is a filter: use --kind filter with --capability kv (then change its world to `{}-kv` in src/ and sluice-plugin.toml's `world` for a {})",
            world.as_str(),
            world.as_str()
        )));
    }
    let Some(template) = lang::template(language, world, kv) else {
        return Err(CliError::Invalid(format!(
            "there is no kv template for {}: the kv templates are rust and js (a {} plugin can import sluice:plugin/kv@0.2.0 too, built against wit/0.2.0's `filter-kv` world)",
            language.as_str(),
            language.as_str()
        )));
    };
    let dir = parent.join(name);
    if dir.exists() {
        return Err(CliError::Invalid(format!(
            "{}: already exists; pick another NAME or remove it",
            dir.display()
        )));
    }
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{world}}", world.as_str())
            .replace("{{snake}}", &name.replace('-', "_"))
    };
    let manifest = format!(
        "# A sluice plugin (see `sluice plugin build --help`).\nname = \"{name}\"\nlanguage = \"{}\"\nworld = \"{}\"\n{}",
        language.as_str(),
        world.as_str(),
        if kv { "capabilities = [\"kv\"]\n" } else { "" }
    );
    let (contract, sample, expected, readme) = if kv {
        (
            PLUGIN_WIT_0_2,
            KV_SAMPLE,
            KV_EXPECTED.to_string(),
            KV_README,
        )
    } else {
        (PLUGIN_WIT, SAMPLE, expected(name, world), README)
    };
    let mut files: Vec<(String, String)> = vec![
        (FILE.to_string(), manifest),
        ("wit/plugin.wit".to_string(), contract.to_string()),
        ("build.sh".to_string(), "#!/bin/sh\n# Build this plugin into dist/ (needs `sluice` on PATH).\nexec sluice plugin build \"$(dirname \"$0\")\" \"$@\"\n".to_string()),
        ("fixtures/sample.jsonl".to_string(), sample.to_string()),
        ("fixtures/sample.expected.jsonl".to_string(), expected),
        ("README.md".to_string(), fill(readme)),
        (".gitignore".to_string(), "/build/\n/dist/\n/target/\n/node_modules/\n__pycache__/\n".to_string()),
    ];
    files.extend(
        template
            .into_iter()
            .map(|(path, text)| (path.to_string(), fill(text))),
    );
    for (path, text) in &files {
        let path = dir.join(path);
        let write = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text));
        write.map_err(|e| CliError::Invalid(format!("{}: cannot write: {e}", path.display())))?;
    }
    set_executable(&dir.join("build.sh"))?;
    eprintln!(
        "{}: new {} {} plugin; build it with `sluice plugin build {}`, then `sluice test {}/dist/{name}.wasm --input {}/fixtures/sample.jsonl --expect {}/fixtures/sample.expected.jsonl`",
        dir.display(),
        language.as_str(),
        world.as_str(),
        dir.display(),
        dir.display(),
        dir.display(),
        dir.display()
    );
    Ok(dir)
}

fn set_executable(path: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))
}

/// Three messages every template is checked on (see [`super::lang`] for
/// what each world's template does with them).
const SAMPLE: &str = r#"{"key": "k-1", "headers": {"route": "audit"}, "payload": {"id": 1, "text": "hello"}}
{"key": "k-2", "payload": {"id": 2}}
{"payload": ""}
"#;

/// What the kv template is checked on: `sluice test` gives it an empty
/// store, so the second message of `k-1` is over its limit of one.
pub const KV_SAMPLE: &str = r#"{"key": "k-1", "payload": {"id": 1}}
{"key": "k-1", "payload": {"id": 2}}
{"key": "k-2", "payload": {"id": 3}}
{"payload": {"id": 4}}
"#;

const KV_EXPECTED: &str = r#"{"kept":true}
{"kept":false}
{"kept":true}
{"kept":true}
"#;

/// What the template of `world` gives for [`SAMPLE`], as `sluice test` prints it.
fn expected(name: &str, world: World) -> String {
    let lines: Vec<Value> = match world {
        World::Filter => vec![
            json!({"kept": true}),
            json!({"kept": true}),
            json!({"kept": false}),
        ],
        World::Transform => {
            let out = |key: &str, headers: Value, payload: Value| json!({"messages": [{"key": key, "headers": headers, "payload": payload, "source": "", "timestamp_ms": null}]});
            vec![
                out(
                    "k-1",
                    json!({"route": "audit", "processed-by": name}),
                    json!({"id": 1, "text": "hello"}),
                ),
                out("k-2", json!({"processed-by": name}), json!({"id": 2})),
                json!({"error": {"class": "fatal", "text": "empty payload"}}),
            ]
        }
        World::Route => vec![
            json!({"routes": ["audit"]}),
            json!({"routes": ["default"]}),
            json!({"routes": ["default"]}),
        ],
    };
    lines.iter().map(|l| format!("{l}\n")).collect()
}

const README: &str = r#"# {{name}}

A sluice `{{world}}` plugin. `wit/plugin.wit` is the contract it implements;
`sluice-plugin.toml` says its name, language and world.

```sh
sluice plugin build .            # or ./build.sh: writes dist/{{name}}.wasm
sluice test dist/{{name}}.wasm --input fixtures/sample.jsonl --expect fixtures/sample.expected.jsonl
```

Use it in a pipeline:

```toml
[[pipelines.example.stages]]
name = "{{name}}"
kind = "{{world}}"
plugin = "path/to/dist/{{name}}.wasm"
params = {}
```

The template's behaviour (the same in every language, so the sample
fixtures check it): a filter keeps messages of at least param `min-bytes`
bytes (default 1); a transform adds the header `processed-by: {{name}}` and
fails fatally on an empty payload; a router routes to the value of header
`route`, else to param `default` (default `default`).
"#;

const KV_README: &str = r#"# {{name}}

A sluice `filter` plugin with the `kv` capability: it is built against
`sluice:plugin@0.2.0` (`wit/plugin.wit`, world `filter-kv`) and keeps state
in its stage's key-value store. `sluice-plugin.toml` says its name,
language, world and capabilities.

```sh
sluice plugin build .            # or ./build.sh: writes dist/{{name}}.wasm
sluice test dist/{{name}}.wasm --input fixtures/sample.jsonl --expect fixtures/sample.expected.jsonl
```

Use it in a pipeline; the stage must grant the capability (without
`capabilities`, `sluice check` refuses the plugin and says so):

```toml
[[pipelines.example.stages]]
name = "{{name}}"
kind = "filter"
plugin = "path/to/dist/{{name}}.wasm"
capabilities = ["kv"]
params = { limit = 1, window-ms = 60000 }
```

The template's behaviour: a rate limit per key. It keeps at most param
`limit` (default 1) messages of each key within param `window-ms` (default
60000), counting them with `kv.increment` on a key that expires with the
window; a message without a key is kept. `sluice test` runs it against an
empty store, so the sample's second `k-1` is dropped. A store that cannot
answer is a `retryable` error: the host retries the message later.
"#;
