//! Plugins in c. (Being written.)

use crate::plugin::build::{BuildError, Job};
use crate::plugin::lang::TemplateFile;
use crate::plugin::manifest::World;

pub fn template(_world: World) -> Vec<TemplateFile> {
    Vec::new()
}

pub fn build(_job: &Job) -> Result<(), BuildError> {
    Err(BuildError::other("c plugins", "not supported yet"))
}
