//! The keys of `[telemetry.influxdb]`, their validation and the built settings.
//! Configuration layer: imports only `config` helpers.

use crate::config::collect::Collector;
use crate::config::units::parse_size;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[telemetry.influxdb]` as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub url: Option<String>,
    pub org: Option<String>,
    pub bucket: Option<String>,
    pub token_file: Option<String>,
    pub flush_interval: Option<String>,
    pub spool_max: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Influx {
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token_file: Option<PathBuf>,
    pub flush_interval: Duration,
    pub spool_max: u64,
}

/// Checks `[telemetry.influxdb]` (at `p`), reporting every problem.
pub fn validate(c: &mut Collector, p: &str, i: &Raw) -> Option<Influx> {
    let url = c
        .required_str(&format!("{p}.url"), &i.url)
        .and_then(|u| match url::Url::parse(u) {
            Ok(parsed) if parsed.scheme() == "http" || parsed.scheme() == "https" => {
                Some(u.to_string())
            }
            Ok(_) => {
                c.err(
                    format!("{p}.url"),
                    format!("`{u}` must be an http:// or https:// URL"),
                );
                None
            }
            Err(e) => {
                c.err(format!("{p}.url"), format!("`{u}` is not a URL: {e}"));
                None
            }
        });
    let org = c
        .required_str(&format!("{p}.org"), &i.org)
        .map(str::to_string);
    let bucket = c
        .required_str(&format!("{p}.bucket"), &i.bucket)
        .map(str::to_string);
    let flush_interval = c.duration(
        &format!("{p}.flush_interval"),
        &i.flush_interval,
        Duration::from_secs(1),
    );
    let spool_max = match &i.spool_max {
        None => 256 * 1024 * 1024,
        Some(s) => parse_size(s).unwrap_or_else(|e| {
            c.err(format!("{p}.spool_max"), e);
            0
        }),
    };
    Some(Influx {
        url: url?,
        org: org?,
        bucket: bucket?,
        token_file: i.token_file.as_deref().map(PathBuf::from),
        flush_interval,
        spool_max,
    })
}
