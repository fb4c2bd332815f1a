//! The shared error collector: every component's validation reports into it, each
//! problem named by its key path, so one run lists everything wrong with a config. Pure;
//! imports nothing of the crate, so components below `config` (each runbook step type's
//! validation) can use it.

use super::units::parse_duration;
use std::fmt;
use std::time::Duration;

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

#[derive(Default)]
pub struct Collector {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Collector {
    pub fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem::new(path, message));
    }
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem::new(path, message));
    }
    pub fn duration(&mut self, path: &str, v: &Option<String>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => parse_duration(s).unwrap_or_else(|e| {
                self.err(path, e);
                default
            }),
        }
    }
    pub fn opt_duration(&mut self, path: &str, v: &Option<String>) -> Option<Duration> {
        v.as_ref().and_then(|s| match parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(path, e);
                None
            }
        })
    }
    /// An optional integer key that must lie in `range`; out of range is reported and
    /// treated as absent (the caller's default applies).
    pub fn int_in(
        &mut self,
        path: &str,
        v: Option<i64>,
        range: std::ops::RangeInclusive<i64>,
        note: &str,
    ) -> Option<i64> {
        let n = v?;
        if range.contains(&n) {
            return Some(n);
        }
        self.err(
            path,
            format!(
                "{n} is out of range ({} to {}{note})",
                range.start(),
                range.end()
            ),
        );
        None
    }
    pub fn required<'a, T>(&mut self, path: &str, v: &'a Option<T>) -> Option<&'a T> {
        if v.is_none() {
            self.err(path, "missing (required)");
        }
        v.as_ref()
    }
    pub fn required_str<'a>(&mut self, path: &str, v: &'a Option<String>) -> Option<&'a str> {
        match v.as_deref() {
            None => {
                self.err(path, "missing (required)");
                None
            }
            Some(s) if s.trim().is_empty() => {
                self.err(path, "must not be empty");
                None
            }
            Some(s) => Some(s),
        }
    }
    pub fn not_for(&mut self, path: String, key: &str, set: bool, what: &str) {
        if set {
            self.err(format!("{path}.{key}"), format!("does not apply to {what}"));
        }
    }
}

/// The key path serde_ignored reports, as problems name keys (`a.b[2].c`).
pub fn ignored_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.to_string()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// The key path of a serde error, as problems name keys.
pub fn typed_path(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in p.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// A serde error's message without the config crate's own location.
pub fn clean_serde_message(m: &str) -> String {
    // The config crate appends its own origin; the path and line say it better.
    m.split(" for key `").next().unwrap_or(m).trim().to_string()
}

/// Reads a component's own keys (`params`: every key of its table but the ones all
/// components of its kind share) into its raw struct `R`, for a `noun` (step, source) of
/// type `kind`. Reports unknown keys, and keys another type takes (`taken_elsewhere`) as not
/// applying to this one, each at `{path}.{key}` and all at once; then a type error, if any.
///
/// Design: not `#[serde(tag = "type")]`. An internally tagged enum buffers the table and
/// deserializes the variant from that buffer, where neither `serde_ignored` nor
/// `serde_path_to_error` can see: a misspelled key would be silently dropped, or with
/// `deny_unknown_fields` stop the load at the first one.
pub fn read_keys<R: serde::de::DeserializeOwned>(
    c: &mut Collector,
    path: &str,
    noun: &str,
    kind: &str,
    params: std::collections::BTreeMap<String, ::config::Value>,
    taken_elsewhere: &dyn Fn(&str) -> bool,
) -> Option<R> {
    // Keys the type does not take are reported and left out, so that the reading below,
    // which stops at its first type error, sees only the type's own keys.
    let own = super::fields::of::<R>();
    let mut params = params;
    params.retain(|key, _| {
        if own.contains(&key.as_str()) {
            return true;
        }
        let message = if taken_elsewhere(key) {
            format!("does not apply to a `{kind}` {noun}")
        } else {
            format!("unknown key `{key}`")
        };
        c.err(format!("{path}.{key}"), message);
        false
    });
    let table = ::config::Value::new(
        None,
        ::config::ValueKind::Table(params.into_iter().collect()),
    );
    let mut unknown = Vec::new();
    let raw = {
        // Nested keys nothing takes (inside a table-valued key of the type's own).
        let mut on_unknown = |p: serde_ignored::Path<'_>| unknown.push(ignored_path(&p));
        let de = serde_ignored::Deserializer::new(table, &mut on_unknown);
        serde_path_to_error::deserialize::<_, R>(de)
    };
    for key in unknown {
        let last = key.rsplit('.').next().unwrap_or(&key);
        c.err(format!("{path}.{key}"), format!("unknown key `{last}`"));
    }
    match raw {
        Ok(raw) => Some(raw),
        Err(e) => {
            let at = typed_path(e.path());
            let at = if at.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{at}")
            };
            c.err(at, clean_serde_message(&e.inner().to_string()));
            None
        }
    }
}
