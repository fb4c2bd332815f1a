//! What goes wrong loading a scenario: the file cannot be read, the TOML does not parse
//! (unknown keys included), or the scenario does not make sense (every problem, with its
//! path).

use std::fmt;
use std::time::Duration;

use super::duration::parse_duration;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid TOML: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("{} problem(s) in the scenario:\n{}", .0.len(), issues_text(.0))]
    Invalid(Vec<Issue>),
}

impl ScenarioError {
    /// Every problem as a line `path: message` (parse errors are one multi-line problem).
    pub fn lines(&self) -> Vec<String> {
        match self {
            ScenarioError::Invalid(issues) => issues.iter().map(Issue::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

fn issues_text(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(Issue::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One validation problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found while validating a scenario, each with its path.
#[derive(Default)]
pub(super) struct Issues(pub(super) Vec<Issue>);

impl Issues {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }

    pub(super) fn duration(&mut self, path: impl Into<String>, text: &str) -> Option<Duration> {
        match parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.push(path, e);
                None
            }
        }
    }
}
