//! Plugins in python. (Being written.)

use crate::plugin::build::{BuildError, Job};
use crate::plugin::lang::TemplateFile;
use crate::plugin::manifest::World;

pub fn template(_world: World) -> Vec<TemplateFile> {
    Vec::new()
}

pub fn build(_job: &Job) -> Result<(), BuildError> {
    Err(BuildError::other("python plugins", "not supported yet"))
}
