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

mod c;
mod js;
mod python;
mod rust;
mod zig;

use super::build::{BuildError, Job};
use super::manifest::{Language, World};

/// A template file: its path in the new folder and its text.
pub type TemplateFile = (&'static str, &'static str);

/// The language-specific files of a new plugin of `world`.
pub fn template(language: Language, world: World) -> Vec<TemplateFile> {
    match language {
        Language::Rust => rust::template(world),
        Language::Js => js::template(world),
        Language::Python => python::template(world),
        Language::C => c::template(world),
        Language::Zig => zig::template(world),
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
