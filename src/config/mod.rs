//! Configuration: parsed (TOML + environment overrides, unknown keys rejected), then
//! validated purely with every problem collected, then built into [`model::Config`].

pub mod collect;
mod duration;
pub mod fields;
mod load;
pub mod model;
pub mod raw;
pub mod units;
pub mod validate;

pub use collect::Problem;
pub use load::{load, load_str, Loaded};
pub use model::*;

/// Why a config could not be loaded: every error (with warnings alongside).
#[derive(Debug, thiserror::Error)]
#[error("{} error(s) in {}", errors.len(), origin)]
pub struct ConfigError {
    pub origin: String,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}
