//! `wait`: pause the runbook (let DNS TTLs run out, connections drain). Runner: `run.rs`.

use super::{Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use crate::config::units::format_duration;
use serde::Deserialize;
use std::time::Duration;

pub mod run;

/// The keys of a `wait` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub duration: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStep {
    pub duration: Duration,
}

impl StepInfo for WaitStep {
    fn describe(&self) -> String {
        format!("wait {}", format_duration(self.duration))
    }

    /// The wait's own duration is its time limit unless one is given; a given one must
    /// leave room for it.
    fn timeout(&self, c: &mut Collector, path: &str, given: Option<Duration>) -> Duration {
        match given {
            Some(t) => {
                if self.duration > t {
                    c.err(
                        format!("{path}.timeout"),
                        "is shorter than the wait's duration",
                    );
                }
                t
            }
            None => self.duration + Duration::from_secs(1),
        }
    }

    fn expected_duration(&self, _timeout: Duration) -> Duration {
        self.duration
    }
}

impl StepConfig for WaitStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, _refs: &Refs) -> Option<Self> {
        let d = c
            .required(&format!("{path}.duration"), &s.duration)
            .cloned();
        c.opt_duration(&format!("{path}.duration"), &d)
            .map(|duration| WaitStep { duration })
    }
}
