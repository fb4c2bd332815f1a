//! `nut_fsd`: sets forced shutdown (FSD) on a UPS through upsd, as its primary, so that every
//! `upsmon` the UPS powers shuts its system down cleanly before the power is cut; verified
//! by `FSD` in `ups.status`. Runner: `run.rs`.

use super::{Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use serde::Deserialize;

pub mod run;

/// The keys of a `nut_fsd` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    /// A `nut` source: its upsd, UPS and credentials.
    pub source: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NutFsdStep {
    /// Index of the NUT source in `Config::sources`.
    pub source: usize,
    /// Its name, for summaries.
    pub source_name: String,
    /// The UPS and where upsd is, for summaries.
    pub ups: String,
    pub upsd_url: String,
}

impl StepInfo for NutFsdStep {
    fn describe(&self) -> String {
        format!(
            "nut_fsd {} @ {} via {}",
            self.ups, self.upsd_url, self.source_name
        )
    }

    /// FSD stays set until upsd restarts; setting it again is the same state.
    fn is_idempotent(&self) -> bool {
        true
    }
}

impl StepConfig for NutFsdStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, refs: &Refs) -> Option<Self> {
        let (source, source_name, nut) = (refs.nut_source)(c, &format!("{path}.source"), &s.source)?;
        if nut.username.is_none() || nut.password_file.is_none() {
            c.err(
                format!("{path}.source"),
                format!(
                    "source `{source_name}` has no username and password_file: FSD needs a upsd \
                     user with `upsmon primary` (or `actions = FSD`) in upsd.users"
                ),
            );
            return None;
        }
        Some(NutFsdStep {
            source,
            ups: nut.ups.clone(),
            upsd_url: nut.upsd.url(),
            source_name,
        })
    }
}
