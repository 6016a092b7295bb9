//! One module per plugin language: its template (the files `plugin new`
//! writes, with `{{name}}`, `{{world}}` and `{{snake}}` placeholders) and its
//! build steps (toolchain in, component out).
//!
//! Every language's template behaves the same for the same world, so one
//! set of sample fixtures ([`super::new`]) checks them all:
//! - filter: keeps a message whose payload has at least param `min-bytes`
//!   bytes (default 1);
//! - transform: returns the message with a header `processed-by: NAME`
//!   added; an empty payload is a fatal error;
//! - route: routes to the value of header `route`, else to param `default`
//!   (default `"default"`).
//!
//! Rust and JavaScript also have a template with the `kv` capability (a
//! filter against `sluice:plugin@0.2.0`'s `filter-kv`): it keeps at most
//! param `limit` (default 1) messages per key within param `window-ms`
//! (default 60000), counting with `kv.increment`; a message without a key is
//! kept. Its fixtures are [`super::new::KV_SAMPLE`].

mod c;
mod js;
mod python;
mod rust;
mod zig;

use super::build::{BuildError, Job};
use super::manifest::{Language, World};

/// A template file: its path in the new folder and its text.
pub type TemplateFile = (&'static str, &'static str);

/// The language-specific files of a new plugin of `world`, with the `kv`
/// capability or without; `None` when the language has no kv template.
pub fn template(language: Language, world: World, kv: bool) -> Option<Vec<TemplateFile>> {
    match (language, kv) {
        (Language::Rust, _) => Some(rust::template(world, kv)),
        (Language::Js, _) => Some(js::template(world, kv)),
        (_, true) => None,
        (Language::Python, false) => Some(python::template(world)),
        (Language::C, false) => Some(c::template(world)),
        (Language::Zig, false) => Some(zig::template(world)),
    }
}

/// Build `job.dir` into the component `job.out`.
///
/// # Errors
/// A missing tool (with how to install it) or a failed step.
pub fn build(job: &Job) -> Result<(), BuildError> {
    match job.manifest.language {
        Language::Rust => rust::build(job),
        Language::Js => js::build(job),
        Language::Python => python::build(job),
        Language::C => c::build(job),
        Language::Zig => zig::build(job),
    }
}
