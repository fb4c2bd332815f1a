//! DNS failover: RFC 2136 dynamic UPDATE signed with TSIG (RFC 8945), and
//! verification of the result by querying the same server.
//!
//! The module is self-contained (std, tokio, hickory-proto, thiserror, base64,
//! tracing): it sits below `config` (which validates DNS steps with it) and imports
//! nothing of the crate. Files: `keyfile` (TSIG secret files), `message` (names, values,
//! the UPDATE plan, judging replies; no I/O), `update` (one RRset replacement), `fence`
//! (the clustered leader's fencing record), `query` (reading an RRset back, verify),
//! `transport` (UDP, TCP fallback).
//!
//! * [`send_update`] replaces one RRset (name + type) in a single UPDATE message:
//!   "delete RRset" followed by one "add" per value, optionally guarded by
//!   RFC 2136 §2.4.2 "RRset exists (value dependent)" prerequisites. UDP is tried
//!   first; a truncated (TC) reply, or a request larger than 512 bytes, goes over TCP.
//!   When a key is set, the request is signed with TSIG and the TSIG of the reply is
//!   verified (MAC over the request MAC + reply, key name, algorithm, and time within
//!   the fudge window).
//! * [`query_rrset`] asks the server (no recursion) for the RRset and returns the
//!   values normalised so they can be compared as a set with [`normalise_values`];
//!   [`verify`] does that comparison for an [`UpdateSpec`].
//!
//! Retries are left to the caller: each function does one exchange (plus the TCP
//! fallback) bounded by the spec's timeout; [`DnsError::is_retryable`] says whether
//! trying again can help. Re-sending a replace-RRset update is idempotent; with a
//! prerequisite, a retry after a lost reply can fail with `PrerequisiteFailed` even
//! though the first attempt was applied, so check with [`verify`] first.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use hickory_proto::op::{
    update_message, Edns, Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage,
};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm as HickoryTsigAlgorithm, TSIG};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::TSigner;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

mod fence;
mod keyfile;
mod message;
mod query;
mod transport;
mod update;

pub use fence::*;
pub use keyfile::*;
pub use message::*;
pub use query::*;
use transport::*;
pub use update::*;
#[cfg(test)]
mod tests;

/// Allowed clock difference between us and the server for TSIG (RFC 8945 recommends 300 s).
pub const TSIG_FUDGE_SECS: u16 = 300;
/// Largest request we send over UDP. Updates carry no EDNS, so the classic limit applies.
const UDP_REQUEST_LIMIT: usize = 512;
/// EDNS UDP payload size advertised on queries (DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;
/// Highest TTL allowed by RFC 2181 §8.
const MAX_TTL: u32 = 0x7fff_ffff;
/// Longest TXT value we accept (an RDATA is at most 65535 bytes, 1 length byte per 255).
const MAX_TXT_LEN: usize = 65_000;

/// TSIG HMAC algorithm. Only the ones hickory-proto (ring) can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    /// Name as used by BIND, Knot and RFC 8945 (`hmac-sha256`, ...).
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }

    fn to_hickory(self) -> HickoryTsigAlgorithm {
        match self {
            Self::HmacSha256 => HickoryTsigAlgorithm::HmacSha256,
            Self::HmacSha384 => HickoryTsigAlgorithm::HmacSha384,
            Self::HmacSha512 => HickoryTsigAlgorithm::HmacSha512,
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TsigAlgorithm {
    type Err = DnsError;

    /// Accepts `hmac-sha256`, `hmac-sha384`, `hmac-sha512`, case-insensitively, with an
    /// optional trailing dot (the algorithm is a domain name on the wire).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_suffix('.').unwrap_or(t).to_ascii_lowercase();
        match t.as_str() {
            "hmac-sha256" => Ok(Self::HmacSha256),
            "hmac-sha384" => Ok(Self::HmacSha384),
            "hmac-sha512" => Ok(Self::HmacSha512),
            "hmac-md5" | "hmac-md5.sig-alg.reg.int" | "hmac-sha1" | "hmac-sha224" => {
                Err(DnsError::InvalidSpec(format!(
                    "TSIG algorithm '{s}' is not supported; use hmac-sha256, hmac-sha384 or hmac-sha512 \
                     (generate a new key with `keymgr -t NAME hmac-sha256` or `tsig-keygen -a hmac-sha256 NAME`)"
                )))
            }
            _ => Err(DnsError::InvalidSpec(format!(
                "unknown TSIG algorithm '{s}'; expected hmac-sha256, hmac-sha384 or hmac-sha512"
            ))),
        }
    }
}

/// A TSIG key: name as configured on the server, algorithm and decoded secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    // Never print the secret (logs, panics, config dumps).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field(
                "secret",
                &format_args!("<{} bytes redacted>", self.secret.len()),
            )
            .finish()
    }
}

/// Record types Firebreak can move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordKind {
    A,
    Aaaa,
    Cname,
    Txt,
}

impl RecordKind {
    /// Upper-case mnemonic as in zone files (`A`, `AAAA`, `CNAME`, `TXT`).
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }

    fn record_type(self) -> RecordType {
        match self {
            Self::A => RecordType::A,
            Self::Aaaa => RecordType::AAAA,
            Self::Cname => RecordType::CNAME,
            Self::Txt => RecordType::TXT,
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordKind {
    type Err = DnsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "A" => Ok(Self::A),
            "AAAA" => Ok(Self::Aaaa),
            "CNAME" => Ok(Self::Cname),
            "TXT" => Ok(Self::Txt),
            _ => Err(DnsError::InvalidSpec(format!(
                "unsupported record type '{s}'; expected A, AAAA, CNAME or TXT"
            ))),
        }
    }
}

/// One RRset replacement to perform on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSpec {
    pub server: SocketAddr,
    /// Zone apex, e.g. "example.com" (trailing dot optional).
    pub zone: String,
    /// Absolute owner name inside `zone`, e.g. "app.example.com" (trailing dot optional).
    pub record: String,
    pub kind: RecordKind,
    pub ttl: u32,
    /// The new RRset. IPv4 addresses for A, IPv6 for AAAA, one absolute name for CNAME,
    /// free text for TXT (longer than 255 bytes is split into several strings).
    pub values: Vec<String>,
    /// `None` sends an unsigned update.
    pub key: Option<TsigKey>,
    /// Bound for each network exchange (the UDP try, and the TCP fallback if needed).
    pub timeout: Duration,
}

/// Transport that carried the exchange that produced the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
        })
    }
}

/// Result of a successful (NOERROR) update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// Response code mnemonic; always "NOERROR" for an `Ok` outcome.
    pub rcode: String,
    /// Round-trip time of the exchange that got the answer.
    pub rtt: Duration,
    /// Wall time of the whole call, including a UDP try that ended truncated.
    pub elapsed: Duration,
    pub transport: Transport,
    /// DNS message id of the request.
    pub message_id: u16,
    /// True when the request was signed and the response's TSIG verified.
    pub tsig_verified: bool,
}

/// A TSIG key file parsed by [`parse_tsig_key_file`]. `name`/`algorithm` are present
/// when the file format carries them (BIND, Knot YAML, `alg:name:secret`).
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedTsigKeyFile {
    pub name: Option<String>,
    pub algorithm: Option<TsigAlgorithm>,
    pub secret: Vec<u8>,
}

impl fmt::Debug for ParsedTsigKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedTsigKeyFile")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field(
                "secret",
                &format_args!("<{} bytes redacted>", self.secret.len()),
            )
            .finish()
    }
}

/// Everything that can go wrong, with messages an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(
        "no answer from DNS server {server} within {after:?} (server down, wrong address/port, \
         or packets dropped by a firewall)"
    )]
    Timeout { server: SocketAddr, after: Duration },

    #[error("network error talking to DNS server {server} ({context}): {source}")]
    Io {
        server: SocketAddr,
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "server REFUSED the update ({rcode}): the zone's ACL does not allow updates from this \
         address/key, or the server is not the primary for the zone"
    )]
    Refused { rcode: String },

    #[error("{}", notauth_message(.tsig_error, .signed))]
    NotAuth {
        /// TSIG error reported by the server (BADSIG, BADKEY, BADTIME, ...), if any.
        tsig_error: Option<String>,
        /// Whether our request carried a TSIG signature.
        signed: bool,
    },

    #[error(
        "NOTZONE: the server says the record is not inside zone '{zone}' (check `zone` and \
         `record`; is the zone delegated to a sub-zone on the server?)"
    )]
    NotZone { zone: String },

    #[error(
        "prerequisite failed ({rcode}): the record no longer holds the expected value; another \
         agent or operator changed it. Nothing was changed"
    )]
    PrerequisiteFailed { rcode: String },

    #[error("server failed to process the request ({rcode}); it may be overloaded or its zone storage broken")]
    ServerFailure { rcode: String },

    #[error(
        "server rejected the update with {rcode} (it does not support or understand this request)"
    )]
    Rejected { rcode: String },

    #[error("query for {name} {kind} to {server} failed with {rcode}{}", query_hint(.rcode))]
    QueryFailed {
        server: SocketAddr,
        name: String,
        kind: RecordKind,
        rcode: String,
    },

    #[error("bad response from DNS server: {0}")]
    BadResponse(String),

    #[error("invalid DNS update spec: {0}")]
    InvalidSpec(String),

    #[error("bad TSIG secret: {0}")]
    BadSecret(String),
}

pub(super) fn notauth_message(tsig_error: &Option<String>, signed: &bool) -> String {
    match (tsig_error, *signed) {
        (Some(e), _) if e == "BADTIME" => format!(
            "NOTAUTH: the server rejected our TSIG signature's time; TSIG error {e}: this host's \
             clock differs from the server's by more than {TSIG_FUDGE_SECS} s (check NTP)"
        ),
        (Some(e), _) => format!(
            "NOTAUTH: the server does not accept our TSIG key (wrong key name, algorithm or \
             secret?); TSIG error {e}"
        ),
        (None, true) => "NOTAUTH: the server did not authorise our signed update: the key is not \
                         allowed to update this zone, or the server is not authoritative for it"
            .to_string(),
        (None, false) => "NOTAUTH: the server requires a TSIG-signed update for this zone (no key \
                          is configured), or it is not authoritative for the zone"
            .to_string(),
    }
}

pub(super) fn query_hint(rcode: &str) -> &'static str {
    match rcode {
        "REFUSED" | "NOTAUTH" => " (is this server authoritative for the zone?)",
        "SERVFAIL" => " (the server could not load or serve the zone)",
        _ => "",
    }
}

impl DnsError {
    /// Whether trying the same request again may succeed: timeouts, I/O errors, server
    /// failures and garbled replies yes; authentication, ACL, prerequisite and spec errors no.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Io { .. } | Self::ServerFailure { .. } => true,
            Self::BadResponse(_) => true,
            Self::QueryFailed { rcode, .. } => rcode == "SERVFAIL",
            Self::Refused { .. }
            | Self::NotAuth { .. }
            | Self::NotZone { .. }
            | Self::PrerequisiteFailed { .. }
            | Self::Rejected { .. }
            | Self::InvalidSpec(_)
            | Self::BadSecret(_) => false,
        }
    }
}
