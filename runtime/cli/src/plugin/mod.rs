//! Tools for plugin authors: `sluice plugin new` (a template per language
//! and world), `sluice plugin build` (the right toolchain for the folder's
//! language, ending in a checked component) and `sluice test` (run a
//! component offline on fixture messages).
//!
//! A plugin folder is described by its manifest, `sluice-plugin.toml`
//! ([`manifest`]); each language's template and build steps live in
//! [`lang`].

pub mod build;
pub mod lang;
pub mod manifest;
pub mod new;
pub mod test;
