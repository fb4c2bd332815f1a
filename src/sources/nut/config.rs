//! The keys of a `nut` source (a UPS served by a Network UPS Tools `upsd`), their validation
//! and the built source. Configuration layer: imports only `config` helpers and the
//! protocol's pure grammar (`proto.rs`; see `sources/config.rs`).

use crate::config::collect::Collector;
use crate::config::units::split_host_port;
use crate::sources::config::{reconnect_max, SourceConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// upsd's port (IANA "nut").
pub const DEFAULT_PORT: u16 = 3493;

/// The keys of a `nut` source as written (besides `name`, `type`, `url`).
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    /// The UPS's name in upsd (`upsc -l` lists them).
    pub ups: Option<String>,
    /// The upsd user for privileged commands (the `nut_fsd` step); reads need none.
    pub username: Option<String>,
    pub password_file: Option<String>,
    /// CA of upsd's certificate for `nuts://` (STARTTLS); default: the system roots.
    pub ca_file: Option<String>,
    /// Default "1s".
    pub poll_interval: Option<String>,
    /// Connect and per-request limit. Default "1s".
    pub timeout: Option<String>,
    /// Cap of the exponential reconnect backoff. Default "30s".
    pub reconnect_max: Option<String>,
}

/// Where upsd listens and how to talk to it: one connection per distinct value, shared by
/// every NUT source on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upsd {
    pub host: String,
    pub port: u16,
    /// `nuts://`: `STARTTLS` before anything else.
    pub tls: Option<StartTls>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StartTls {
    pub ca_file: Option<PathBuf>,
}

impl Upsd {
    /// As written in `url` (with the port).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "nuts" } else { "nut" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct NutSource {
    pub upsd: Upsd,
    pub ups: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub reconnect_max: Duration,
}

impl SourceConfig for NutSource {
    type Raw = Raw;

    /// One UPS: its variables come from one driver and fail together.
    fn is_one_device(&self) -> bool {
        true
    }

    fn expected_interval(&self) -> Duration {
        self.poll_interval
    }

    fn validate(
        c: &mut Collector,
        path: &str,
        _name: Option<&str>,
        url: Option<&str>,
        s: Raw,
    ) -> Option<Self> {
        let reconnect_max = reconnect_max(c, path, &s.reconnect_max);
        // Design: 1 s, as Modbus. A poll is one `LIST VAR` on an open connection, cheap
        // for upsd; its data is as fresh as its driver's (dummy-ups and most serial
        // drivers poll every 2 s), and 1 s keeps the sensors far inside the default
        // `stale_after` (5 s) when a poll is lost.
        let poll_interval = c.duration(
            &format!("{path}.poll_interval"),
            &s.poll_interval,
            Duration::from_secs(1),
        );
        let timeout = c.duration(
            &format!("{path}.timeout"),
            &s.timeout,
            Duration::from_secs(1),
        );
        if poll_interval.is_zero() {
            c.err(format!("{path}.poll_interval"), "must be more than 0");
        }
        if timeout.is_zero() {
            c.err(format!("{path}.timeout"), "must be more than 0");
        }
        let ups = c
            .required_str(&format!("{path}.ups"), &s.ups)
            .and_then(|u| match check_ups_name(u) {
                Ok(()) => Some(u.to_string()),
                Err(e) => {
                    c.err(format!("{path}.ups"), e);
                    None
                }
            });
        if let Some(u) = &s.username {
            if u.trim().is_empty() || u.chars().any(|ch| ch.is_whitespace() || ch.is_control())
            {
                c.err(
                    format!("{path}.username"),
                    format!("`{u}` is not a upsd user name (no spaces)"),
                );
            }
        }
        if s.password_file.is_some() != s.username.is_some() {
            let (key, why) = if s.username.is_some() {
                ("password_file", "username is set but password_file is missing")
            } else {
                ("username", "password_file is set but username is missing")
            };
            c.err(format!("{path}.{key}"), why);
        }
        let upsd = url.and_then(|u| match parse_nut_url(u) {
            Ok((host, port, tls)) => Some(Upsd {
                host,
                port,
                tls: tls.then(|| StartTls {
                    ca_file: s.ca_file.as_deref().map(PathBuf::from),
                }),
            }),
            Err(e) => {
                c.err(format!("{path}.url"), e);
                None
            }
        });
        if upsd.as_ref().is_some_and(|u| u.tls.is_none()) && s.ca_file.is_some() {
            c.err(
                format!("{path}.ca_file"),
                "applies only to nuts:// (STARTTLS)",
            );
        }
        Some(NutSource {
            upsd: upsd?,
            ups: ups?,
            username: s.username,
            password_file: s.password_file.map(PathBuf::from),
            poll_interval,
            timeout,
            reconnect_max,
        })
    }
}

/// `nut://host[:port]` or `nuts://host[:port]` (port 3493 by default): host, port and
/// whether to use STARTTLS.
pub fn parse_nut_url(u: &str) -> Result<(String, u16, bool), String> {
    let (rest, tls) = if let Some(r) = u.strip_prefix("nut://") {
        (r, false)
    } else if let Some(r) = u.strip_prefix("nuts://") {
        (r, true)
    } else {
        return Err(format!(
            "`{u}` is not a upsd URL (nut://host:3493, or nuts://host:3493 for STARTTLS)"
        ));
    };
    if rest.contains('@') {
        return Err(format!(
            "`{u}`: name the UPS with `ups`, not in the URL (upsc's ups@host form)"
        ));
    }
    let (host, port) = split_host_port(rest.trim_end_matches('/'), DEFAULT_PORT)
        .map_err(|e| format!("`{u}`: {e}"))?;
    Ok((host, port, tls))
}

/// A UPS name as upsd's `ups.conf` sections have them: one word, no quotes.
fn check_ups_name(u: &str) -> Result<(), String> {
    if let Some((ups, _)) = u.split_once('@') {
        return Err(format!(
            "`{u}`: the UPS's name only (`{ups}`); upsd's address is the source's url"
        ));
    }
    if u
        .chars()
        .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '"' || ch == '\\')
    {
        return Err(format!(
            "`{u}` is not a UPS name (one word, as in upsd's ups.conf)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nut_urls_default_to_port_3493_and_nuts_means_starttls() {
        assert_eq!(
            parse_nut_url("nut://10.20.0.31"),
            Ok(("10.20.0.31".into(), 3493, false))
        );
        assert_eq!(
            parse_nut_url("nuts://ups.example:13493/"),
            Ok(("ups.example".into(), 13493, true))
        );
        assert_eq!(
            parse_nut_url("nut://[::1]:3493"),
            Ok(("::1".into(), 3493, false))
        );
        assert!(parse_nut_url("tcp://10.0.0.1:3493")
            .unwrap_err()
            .contains("nut://host:3493"));
        assert!(parse_nut_url("nut://ups@10.0.0.1")
            .unwrap_err()
            .contains("name the UPS with `ups`"));
    }

    #[test]
    fn a_ups_name_is_one_word_without_the_host() {
        assert!(check_ups_name("ups-b3-1").is_ok());
        assert!(check_ups_name("ups b3").is_err());
        assert!(check_ups_name("ups@10.0.0.1")
            .unwrap_err()
            .contains("(`ups`)"));
    }

    #[test]
    fn a_url_reads_back_as_written_with_its_port() {
        let upsd = Upsd {
            host: "::1".into(),
            port: 3493,
            tls: Some(StartTls { ca_file: None }),
        };
        assert_eq!(upsd.url(), "nuts://[::1]:3493");
    }
}
