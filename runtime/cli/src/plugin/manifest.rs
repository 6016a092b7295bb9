//! `sluice-plugin.toml`: what a plugin folder holds.
//!
//! ```toml
//! name = "mask-cards"      # the component is built to dist/mask-cards.wasm
//! language = "js"          # rust | js | python | c | zig
//! world = "transform"      # filter | transform | route
//! capabilities = ["kv"]    # optional: build against sluice:plugin@0.2.0's `transform-kv`
//! ```

use crate::exit::CliError;
use serde::Deserialize;
use sluice_core::StageKind;
use std::path::{Path, PathBuf};

/// The manifest's file name inside a plugin folder.
pub const FILE: &str = "sluice-plugin.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Js,
    Python,
    C,
    Zig,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Js => "js",
            Language::Python => "python",
            Language::C => "c",
            Language::Zig => "zig",
        }
    }
}

/// The plugin contract's world a plugin implements (the `--kind` of `plugin new`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Filter,
    Transform,
    Route,
}

impl World {
    pub fn as_str(self) -> &'static str {
        self.kind().as_str()
    }

    pub fn kind(self) -> StageKind {
        match self {
            World::Filter => StageKind::Filter,
            World::Transform => StageKind::Transform,
            World::Route => StageKind::Route,
        }
    }
}

/// A capability the plugin imports (its stage must grant it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// `sluice:plugin/kv@0.2.0`.
    Kv,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Lower-case letters, digits and `-`; names the built component.
    pub name: String,
    pub language: Language,
    pub world: World,
    /// With `kv`, the plugin is built against `sluice:plugin@0.2.0` and
    /// its world's `-kv` variant.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
}

impl Manifest {
    /// Read and check `DIR/sluice-plugin.toml`.
    ///
    /// # Errors
    /// [`CliError::Invalid`] naming the file, the key and the fix.
    pub fn read(dir: &Path) -> Result<Manifest, CliError> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            CliError::Invalid(format!(
                "{}: cannot read: {e} (a plugin folder has a {FILE} with `name`, `language` and `world`; `sluice plugin new` writes one)",
                path.display()
            ))
        })?;
        Self::parse(&path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Manifest, CliError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            CliError::Invalid(format!("{}: {}", path.display(), e.to_string().trim_end()))
        })?;
        check_name(&manifest.name)
            .map_err(|why| CliError::Invalid(format!("{}: key `name`: {why}", path.display())))?;
        if manifest.uses_kv() && matches!(manifest.language, Language::C | Language::Zig) {
            return Err(CliError::Invalid(format!(
                "{}: key `capabilities`: `plugin build` builds {} plugins against sluice:plugin@0.1.0 only; remove `capabilities`, or build the component yourself against wit/0.2.0 (world `{}-kv`)",
                path.display(),
                manifest.language.as_str(),
                manifest.world.as_str()
            )));
        }
        Ok(manifest)
    }

    /// Whether it imports the key-value store.
    pub fn uses_kv(&self) -> bool {
        self.capabilities.contains(&Capability::Kv)
    }

    /// The WIT world it is built against: `filter`, or `filter-kv`.
    pub fn world_name(&self) -> String {
        let world = self.world.as_str();
        if self.uses_kv() {
            format!("{world}-kv")
        } else {
            world.to_owned()
        }
    }

    /// Where `plugin build` puts the component unless told otherwise.
    pub fn default_output(&self, dir: &Path) -> PathBuf {
        dir.join("dist").join(format!("{}.wasm", self.name))
    }
}

/// A plugin name: what `plugin new` accepts and a manifest may hold.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a plugin name: use lower-case letters, digits and `-`, starting with a letter (e.g. `mask-cards`)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_names_language_and_world() {
        let m = Manifest::parse(
            Path::new("p/sluice-plugin.toml"),
            "name = \"mask-cards\"\nlanguage = \"js\"\nworld = \"transform\"\n",
        )
        .unwrap();
        assert_eq!(
            (m.name.as_str(), m.language, m.world),
            ("mask-cards", Language::Js, World::Transform)
        );
    }

    #[test]
    fn a_capability_picks_the_worlds_kv_variant_where_the_build_supports_it() {
        let m = Manifest::parse(
            Path::new("p/sluice-plugin.toml"),
            "name = \"limit\"\nlanguage = \"js\"\nworld = \"filter\"\ncapabilities = [\"kv\"]\n",
        )
        .unwrap();
        assert!(m.uses_kv());
        assert_eq!(m.world_name(), "filter-kv");
        let err = Manifest::parse(
            Path::new("p/sluice-plugin.toml"),
            "name = \"limit\"\nlanguage = \"zig\"\nworld = \"filter\"\ncapabilities = [\"kv\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("key `capabilities`") && err.contains("filter-kv"),
            "{err}"
        );
    }

    #[test]
    fn bad_manifests_name_the_file_and_key() {
        let err = Manifest::parse(
            Path::new("p/sluice-plugin.toml"),
            "name = \"x\"\nlanguage = \"cobol\"\nworld = \"filter\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("p/sluice-plugin.toml") && err.contains("cobol") && err.contains("js"),
            "{err}"
        );
        let err = Manifest::parse(
            Path::new("p/sluice-plugin.toml"),
            "name = \"Bad_Name\"\nlanguage = \"c\"\nworld = \"filter\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("key `name`") && err.contains("Bad_Name"),
            "{err}"
        );
        let err = Manifest::parse(
            Path::new("p/sluice-plugin.toml"),
            "name = \"x\"\nlanguage = \"c\"\nworld = \"filter\"\nmain = \"a\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("main"), "{err}");
    }
}
