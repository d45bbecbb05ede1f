//! From the file model to a [`Config`], collecting every problem with its JSON path.

use std::path::Path;

use super::{Config, ConfigError};
use crate::identity::UserDb;

/// Reads, parses and validates the configuration file at `file`.
pub fn load(file: &Path, users: &UserDb) -> Result<Config, ConfigError> {
    let _ = (file, users);
    todo!()
}
