//! `bgp_withdraw`: take an anycast prefix away from this site by disabling the BIRD 2
//! protocol that announces it (or enable it again, `action = "announce"`, for an undo
//! step), over BIRD's control socket. Verified by BIRD's own protocol state and, with
//! `verify_peer`, by another BIRD's routing table. Runner: `run.rs`; the control-socket
//! client: `birdc.rs`.

use super::{Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

pub mod birdc;
pub mod run;

/// The keys of a `bgp_withdraw` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub socket: Option<String>,
    pub protocol: Option<String>,
    pub prefix: Option<String>,
    pub verify_peer: Option<String>,
    pub verify_from: Option<String>,
    pub action: Option<String>,
}

/// What the step does to the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BgpAction {
    /// `disable` the protocol: the prefix is no longer announced from here.
    Withdraw,
    /// `enable` it again (the undo of a withdraw).
    Announce,
}

impl BgpAction {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

/// An IPv4 or IPv6 prefix with its host bits zero, as BIRD prints it (`203.0.113.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a prefix (address/length, e.g. 203.0.113.0/24)"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` in `{s}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("`/{len}` in `{s}` is not a prefix length (0 to {max})"))?;
        let bits = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
            IpAddr::V6(a) => u128::from(a),
        };
        // The bits after the first `len` (a shift by 128 leaves none).
        let host = bits.checked_shl(u32::from(len)).unwrap_or(0);
        if host != 0 {
            return Err(format!(
                "`{s}` has host bits set (BIRD would announce a different network)"
            ));
        }
        Ok(Prefix { addr, len })
    }
}

#[derive(Debug, Clone)]
pub struct BgpStep {
    /// BIRD's control socket (the one `birdc -s` takes).
    pub socket: PathBuf,
    pub protocol: String,
    pub prefix: Prefix,
    /// Another BIRD's control socket whose table must lose (or regain) the prefix.
    pub verify_peer: Option<PathBuf>,
    /// Only routes `verify_peer` learned from this address count (other sites announcing
    /// the same anycast prefix do not).
    pub verify_from: Option<IpAddr>,
    pub action: BgpAction,
}

impl StepInfo for BgpStep {
    fn describe(&self) -> String {
        let verb = match self.action {
            BgpAction::Withdraw => "disable",
            BgpAction::Announce => "enable",
        };
        let mut s = format!(
            "bgp_withdraw {} {}: {verb} protocol {} @ unix://{}",
            self.action.as_str(),
            self.prefix,
            self.protocol,
            self.socket.display()
        );
        if let Some(p) = &self.verify_peer {
            s.push_str(&format!("; verified on unix://{}", p.display()));
            if let Some(from) = self.verify_from {
                s.push_str(&format!(" (routes from {from})"));
            }
        }
        s
    }
}

/// A `unix:///absolute/path` socket, or the problem.
fn unix_socket(v: &str) -> Result<PathBuf, String> {
    match v.strip_prefix("unix://") {
        Some(rest) if rest.starts_with('/') => Ok(PathBuf::from(rest)),
        Some(_) => Err(format!(
            "`{v}`: the socket path must be absolute (unix:///run/bird/bird.ctl)"
        )),
        None => Err(format!(
            "`{v}` is not unix:///path (BIRD's control socket is a Unix socket)"
        )),
    }
}

/// A BIRD symbol: letters, digits and `_`, not starting with a digit. The runner quotes it
/// as a pattern, so `*` or `?` would match other protocols: refused here.
fn protocol_name(v: &str) -> Result<&str, String> {
    let mut chars = v.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(v)
    } else {
        Err(format!(
            "`{v}` is not a BIRD protocol name (letters, digits and _, as in `protocol static {{name}}`)"
        ))
    }
}

impl StepConfig for BgpStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, _refs: &Refs) -> Option<Self> {
        let socket = c
            .required_str(&format!("{path}.socket"), &s.socket)
            .and_then(|v| match unix_socket(v) {
                Ok(p) => Some(p),
                Err(e) => {
                    c.err(format!("{path}.socket"), e);
                    None
                }
            });
        let protocol = c
            .required_str(&format!("{path}.protocol"), &s.protocol)
            .and_then(|v| match protocol_name(v) {
                Ok(p) => Some(p.to_string()),
                Err(e) => {
                    c.err(format!("{path}.protocol"), e);
                    None
                }
            });
        let prefix = c
            .required_str(&format!("{path}.prefix"), &s.prefix)
            .and_then(|v| match v.parse::<Prefix>() {
                Ok(p) => Some(p),
                Err(e) => {
                    c.err(format!("{path}.prefix"), e);
                    None
                }
            });
        let verify_peer = s.verify_peer.as_deref().and_then(|v| match unix_socket(v) {
            Ok(p) => Some(p),
            Err(e) => {
                c.err(format!("{path}.verify_peer"), e);
                None
            }
        });
        let verify_from = s.verify_from.as_deref().and_then(|v| match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                c.err(
                    format!("{path}.verify_from"),
                    format!("`{v}` is not an IP address (the address verify_peer learns the prefix from)"),
                );
                None
            }
        });
        if s.verify_from.is_some() && s.verify_peer.is_none() {
            c.err(
                format!("{path}.verify_from"),
                "needs verify_peer (the BIRD whose routes from this address are checked)",
            );
        }
        if let (Some(a), Some(same)) = (&socket, &verify_peer) {
            if a == same {
                c.err(
                    format!("{path}.verify_peer"),
                    "is the same socket as `socket`: the peer must be another BIRD",
                );
            }
        }
        let action = match s.action.as_deref() {
            None => Some(BgpAction::Withdraw),
            Some(a) => match crate::names::from_name::<BgpAction>(a) {
                Some(a) => Some(a),
                None => {
                    c.err(
                        format!("{path}.action"),
                        format!("unknown action `{a}` (withdraw or announce)"),
                    );
                    None
                }
            },
        };
        Some(BgpStep {
            socket: socket?,
            protocol: protocol?,
            prefix: prefix?,
            verify_peer,
            verify_from,
            action: action?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_with_host_bits_or_bad_lengths_are_refused() {
        assert_eq!(
            "203.0.113.0/24".parse::<Prefix>().unwrap().to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(
            "2001:db8::/32".parse::<Prefix>().unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!("0.0.0.0/0".parse::<Prefix>().is_ok());
        assert!("203.0.113.1/32".parse::<Prefix>().is_ok());
        assert!("203.0.113.1/24"
            .parse::<Prefix>()
            .unwrap_err()
            .contains("host bits"));
        assert!("203.0.113.0/33".parse::<Prefix>().is_err());
        assert!("203.0.113.0".parse::<Prefix>().is_err());
        assert!("2001:db8::1/64".parse::<Prefix>().is_err());
        assert!("2001:db8::1/128".parse::<Prefix>().is_ok());
    }

    #[test]
    fn protocol_names_are_bird_symbols_without_patterns() {
        assert!(protocol_name("anycast_b3").is_ok());
        assert!(protocol_name("_x1").is_ok());
        for bad in ["", "1st", "to_*", "a b", "\"x\"", "a-b"] {
            assert!(protocol_name(bad).is_err(), "{bad}");
        }
    }
}
