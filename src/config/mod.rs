//! Configuration: parsed (TOML + environment overrides, unknown keys rejected), then
//! validated purely with every problem collected, then built into [`model::Config`].

mod duration;
mod load;
pub mod model;
pub mod raw;
pub mod units;
pub mod validate;

pub use load::{load, load_str, Loaded};
pub use model::*;

use std::fmt;

/// One thing wrong (or worth a warning) in a config, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `sensors[3].register.address`.
    pub path: String,
    pub message: String,
    /// 1-based line in the config file, when the key is in the file.
    pub line: Option<usize>,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
            line: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded: every error (with warnings alongside).
#[derive(Debug, thiserror::Error)]
#[error("{} error(s) in {}", errors.len(), origin)]
pub struct ConfigError {
    pub origin: String,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}
