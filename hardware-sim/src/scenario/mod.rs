//! Scenario files: parse (serde, unknown keys rejected), then validate purely, collecting
//! every problem with its path (`devices[0].registers[2].address: ...`).
//!
//! - `raw`: the file as written; `model`: the validated [`Scenario`];
//! - `validate` (devices, registers, MQTT, `[truth]`, `[room]`) and `segments` (timeline
//!   entries, device events): raw to model, every problem collected as an [`Issue`];
//! - `expand`: the `[room]` model written out as timeline entries before validation;
//! - `error`: [`ScenarioError`]; `duration`: the duration grammar.

mod duration;
mod error;
mod expand;
mod model;
mod raw;
mod segments;
mod validate;

pub use duration::{format_duration, parse_duration};
pub use error::{Issue, ScenarioError};
pub use model::*;

use std::path::Path;

use raw::RawFile;
use validate::validate;

impl Scenario {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Scenario::from_toml_str(&text)
    }

    pub fn from_toml_str(text: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawFile = toml::from_str(text)?;
        validate(raw).map_err(ScenarioError::Invalid)
    }
}

#[cfg(test)]
mod tests;
