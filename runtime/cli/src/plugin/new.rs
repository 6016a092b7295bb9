//! `sluice plugin new --lang LANG --kind WORLD NAME`: write a buildable
//! plugin folder `NAME/`: the manifest, the plugin contract (`wit/`), the
//! language's template ([`super::lang`]), a build script, sample fixtures
//! with their expected results, a README and a `.gitignore`.

use super::build::PLUGIN_WIT;
use super::lang;
use super::manifest::{check_name, Language, World, FILE};
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
) -> Result<PathBuf, CliError> {
    check_name(name).map_err(CliError::Invalid)?;
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
    let mut files: Vec<(String, String)> = vec![
        (FILE.to_string(), format!("# A sluice plugin (see `sluice plugin build --help`).\nname = \"{name}\"\nlanguage = \"{}\"\nworld = \"{}\"\n", language.as_str(), world.as_str())),
        ("wit/plugin.wit".to_string(), PLUGIN_WIT.to_string()),
        ("build.sh".to_string(), "#!/bin/sh\n# Build this plugin into dist/ (needs `sluice` on PATH).\nexec sluice plugin build \"$(dirname \"$0\")\" \"$@\"\n".to_string()),
        ("fixtures/sample.jsonl".to_string(), SAMPLE.to_string()),
        ("fixtures/sample.expected.jsonl".to_string(), expected(name, world)),
        ("README.md".to_string(), fill(README)),
        (".gitignore".to_string(), "/build/\n/dist/\n/target/\n/node_modules/\n__pycache__/\n".to_string()),
    ];
    files.extend(
        lang::template(language, world)
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
