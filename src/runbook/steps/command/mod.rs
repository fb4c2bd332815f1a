//! `command`: run a program (no shell) with templated arguments and environment; exit 0 is
//! success. Runner: `run.rs`.

use super::{check_template, Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub mod run;

/// The keys of a `command` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub argv: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub cwd: Option<String>,
    pub idempotent: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct CommandStep {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Safe to run again if the agent died while it was running.
    pub idempotent: bool,
}

impl StepInfo for CommandStep {
    fn describe(&self) -> String {
        format!("command {}", self.argv.join(" "))
    }

    fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}

impl StepConfig for CommandStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, _refs: &Refs) -> Option<Self> {
        let argv = c.required(&format!("{path}.argv"), &s.argv).cloned();
        if let Some(a) = &argv {
            if a.is_empty() || a[0].trim().is_empty() {
                c.err(format!("{path}.argv"), "needs at least the program to run");
            }
            for (i, arg) in a.iter().enumerate() {
                check_template(c, &format!("{path}.argv[{i}]"), arg);
            }
        }
        let mut env = Vec::new();
        for (k, v) in s.env.iter().flatten() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                c.err(
                    format!("{path}.env"),
                    format!("`{k}` is not an environment variable name"),
                );
            }
            check_template(c, &format!("{path}.env.{k}"), v);
            env.push((k.clone(), v.clone()));
        }
        let cwd = s.cwd.as_deref().map(PathBuf::from);
        if cwd.as_ref().is_some_and(|p| !p.is_absolute()) {
            c.err(format!("{path}.cwd"), "must be an absolute path");
        }
        argv.map(|argv| CommandStep {
            argv,
            env,
            cwd,
            idempotent: s.idempotent.unwrap_or(false),
        })
    }
}
