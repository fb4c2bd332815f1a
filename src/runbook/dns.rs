//! DNS failover: RFC 2136 dynamic UPDATE signed with TSIG (RFC 8945), and
//! verification of the result by querying the same server.
//!
//! The module is self-contained (std, tokio, hickory-proto, thiserror, base64,
//! tracing) so it can live at `crate::runbook::dns` without depending on the rest of
//! the crate.
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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

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

fn notauth_message(tsig_error: &Option<String>, signed: &bool) -> String {
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

fn query_hint(rcode: &str) -> &'static str {
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

// ---------------------------------------------------------------------------
// TSIG secret files
// ---------------------------------------------------------------------------

/// Parse a TSIG secret file and return the decoded secret. Accepted formats:
/// * a bare base64 line (`#` comment lines are ignored),
/// * `algorithm:name:base64` (the `-y` form of knsupdate/nsupdate),
/// * BIND `key "name" { algorithm hmac-sha256; secret "BASE64"; };` (tsig-keygen),
/// * Knot YAML `key:\n  - id: name\n    algorithm: hmac-sha256\n    secret: BASE64` (keymgr -t).
pub fn parse_tsig_secret(text: &str) -> Result<Vec<u8>, DnsError> {
    parse_tsig_key_file(text).map(|k| k.secret)
}

/// Like [`parse_tsig_secret`], also returning the key name and algorithm when the file has them.
pub fn parse_tsig_key_file(text: &str) -> Result<ParsedTsigKeyFile, DnsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(DnsError::BadSecret(
            "the secret file is empty; put the base64 secret (e.g. from `keymgr -t NAME \
             hmac-sha256`) in it"
                .into(),
        ));
    }
    if text.contains('{') && find_keyword(text, "secret").is_some() {
        return parse_bind_key(text);
    }
    if text
        .lines()
        .any(|l| yaml_key_value(l).is_some_and(|(k, _)| k == "secret"))
    {
        return parse_knot_yaml_key(text);
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match lines.as_slice() {
        [] => Err(DnsError::BadSecret(
            "the secret file has only comments; put the base64 secret on its own line".into(),
        )),
        [line] => {
            let parts: Vec<&str> = line.split(':').collect();
            if parts.len() == 3 {
                // algorithm:name:secret
                let algorithm = parts[0].parse::<TsigAlgorithm>().map_err(|e| {
                    DnsError::BadSecret(format!("in 'algorithm:name:secret' line: {e}"))
                })?;
                Ok(ParsedTsigKeyFile {
                    name: Some(parts[1].trim().to_string()).filter(|n| !n.is_empty()),
                    algorithm: Some(algorithm),
                    secret: decode_secret(parts[2])?,
                })
            } else {
                Ok(ParsedTsigKeyFile {
                    name: None,
                    algorithm: None,
                    secret: decode_secret(line)?,
                })
            }
        }
        _ => Err(DnsError::BadSecret(format!(
            "expected one base64 line, a BIND `key {{ ... }};` block or a Knot `key:` YAML list, \
             found {} unrecognised lines",
            lines.len()
        ))),
    }
}

fn decode_secret(s: &str) -> Result<Vec<u8>, DnsError> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let compact = compact.trim_matches(|c| c == '"' || c == '\'');
    if compact.is_empty() {
        return Err(DnsError::BadSecret("the secret is empty".into()));
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(compact).map_err(|e| {
        DnsError::BadSecret(format!(
            "the secret is not valid base64 ({e}); copy the `secret` value exactly as the \
             server has it"
        ))
    })?;
    if bytes.is_empty() {
        return Err(DnsError::BadSecret(
            "the secret decodes to zero bytes".into(),
        ));
    }
    Ok(bytes)
}

/// Strip `#`, `//` and `/* */` comments from BIND configuration text.
fn strip_bind_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_quote = false;
    while let Some(c) = chars.next() {
        if in_quote {
            out.push(c);
            if c == '"' {
                in_quote = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_quote = true;
                out.push(c);
            }
            '#' => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Byte offsets just after each occurrence of `word` standing as a keyword (preceded by
/// start/whitespace/`{`/`;`, followed by whitespace), outside quotes.
fn keyword_positions(text: &str, word: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut in_quote = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            in_quote = !in_quote;
        } else if !in_quote
            && text[i..].starts_with(word)
            && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'\r' | b'{' | b';'))
            && bytes
                .get(i + word.len())
                .is_some_and(|c| c.is_ascii_whitespace())
        {
            found.push(i + word.len());
            i += word.len();
            continue;
        }
        i += 1;
    }
    found
}

fn find_keyword(text: &str, word: &str) -> Option<usize> {
    keyword_positions(text, word).into_iter().next()
}

/// Read one BIND value after a keyword: a quoted string or a bare token up to `;`/space/`{`.
fn bind_value(text: &str, at: usize) -> Option<String> {
    let rest = text[at..].trim_start();
    if let Some(q) = rest.strip_prefix('"') {
        let end = q.find('"')?;
        Some(q[..end].to_string())
    } else {
        let end = rest
            .find(|c: char| c == ';' || c == '{' || c.is_whitespace())
            .unwrap_or(rest.len());
        Some(rest[..end].to_string()).filter(|v| !v.is_empty())
    }
}

fn parse_bind_key(text: &str) -> Result<ParsedTsigKeyFile, DnsError> {
    let text = strip_bind_comments(text);
    let secrets = keyword_positions(&text, "secret");
    match secrets.len() {
        0 => {
            return Err(DnsError::BadSecret(
                "BIND key file has no `secret \"...\";` statement".into(),
            ))
        }
        1 => {}
        n => {
            return Err(DnsError::BadSecret(format!(
                "BIND key file holds {n} secrets; put exactly one key in the file"
            )))
        }
    }
    let secret = bind_value(&text, secrets[0]).ok_or_else(|| {
        DnsError::BadSecret("BIND key file: `secret` is not followed by a value".into())
    })?;
    let algorithm = find_keyword(&text, "algorithm")
        .and_then(|at| bind_value(&text, at))
        .map(|a| {
            a.parse::<TsigAlgorithm>()
                .map_err(|e| DnsError::BadSecret(format!("BIND key file: {e}")))
        })
        .transpose()?;
    let name = find_keyword(&text, "key").and_then(|at| bind_value(&text, at));
    Ok(ParsedTsigKeyFile {
        name,
        algorithm,
        secret: decode_secret(&secret)?,
    })
}

/// `key: value` of a simple YAML line (list dash allowed), comments and quotes removed.
fn yaml_key_value(line: &str) -> Option<(String, String)> {
    let l = line.trim();
    if l.starts_with('#') {
        return None;
    }
    let l = l.strip_prefix("- ").unwrap_or(l).trim_start();
    let (k, v) = l.split_once(':')?;
    let k = k.trim();
    if k.is_empty() || k.contains(char::is_whitespace) {
        return None;
    }
    let mut v = v.trim();
    if let Some(idx) = v.find(" #") {
        v = v[..idx].trim_end();
    }
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(v);
    Some((k.to_ascii_lowercase(), v.to_string()))
}

fn parse_knot_yaml_key(text: &str) -> Result<ParsedTsigKeyFile, DnsError> {
    let mut name = None;
    let mut algorithm = None;
    let mut secrets = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = yaml_key_value(line) else {
            continue;
        };
        match k.as_str() {
            "id" if name.is_none() => name = Some(v),
            "algorithm" if algorithm.is_none() => {
                algorithm = Some(
                    v.parse::<TsigAlgorithm>()
                        .map_err(|e| DnsError::BadSecret(format!("Knot key file: {e}")))?,
                )
            }
            "secret" => secrets.push(v),
            _ => {}
        }
    }
    if secrets.len() != 1 {
        return Err(DnsError::BadSecret(format!(
            "Knot key file holds {} secrets; put exactly one key in the file",
            secrets.len()
        )));
    }
    Ok(ParsedTsigKeyFile {
        name,
        algorithm,
        secret: decode_secret(&secrets[0])?,
    })
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Parse and check a domain name written by an operator. Always treated as absolute.
fn parse_name(what: &str, s: &str) -> Result<Name, DnsError> {
    let invalid = |why: String| DnsError::InvalidSpec(format!("{what} '{s}' {why}"));
    let t = s.trim();
    if t.is_empty() {
        return Err(DnsError::InvalidSpec(format!("{what} is empty")));
    }
    if t == "." {
        return Err(invalid("is the root; give a full domain name".into()));
    }
    let t = t.strip_suffix('.').unwrap_or(t);
    if !t.is_ascii() {
        return Err(invalid(
            "contains non-ASCII characters; write internationalised names in punycode (xn--...)"
                .into(),
        ));
    }
    if t.len() > 253 {
        return Err(invalid("is longer than 253 characters".into()));
    }
    for (i, label) in t.split('.').enumerate() {
        if label.is_empty() {
            return Err(invalid("has an empty label (two dots in a row?)".into()));
        }
        if label.len() > 63 {
            return Err(invalid(format!(
                "has a label longer than 63 characters ('{label}')"
            )));
        }
        if label == "*" && i == 0 {
            continue;
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(invalid(format!(
                "contains '{c}'; only letters, digits, '-' and '_' are allowed in labels"
            )));
        }
    }
    Name::from_ascii(format!("{t}.")).map_err(|e| invalid(format!("is not a valid name: {e}")))
}

/// Normalised text of a name: lowercase, no trailing dot.
fn name_text(name: &Name) -> String {
    let s = name.to_lowercase().to_ascii();
    match s.strip_suffix('.') {
        Some(x) if !x.is_empty() => x.to_string(),
        _ => s,
    }
}

/// Parse one value for `kind` into record data.
/// Checks one record value for `kind` (what `validate` does for each of `spec.values`).
pub fn validate_value(kind: RecordKind, value: &str) -> Result<(), DnsError> {
    parse_value(kind, value).map(|_| ())
}

fn parse_value(kind: RecordKind, value: &str) -> Result<RData, DnsError> {
    match kind {
        RecordKind::A => value
            .trim()
            .parse::<Ipv4Addr>()
            .map(|ip| RData::A(A(ip)))
            .map_err(|_| {
                DnsError::InvalidSpec(format!(
                    "'{value}' is not an IPv4 address (A records need e.g. 192.0.2.10)"
                ))
            }),
        RecordKind::Aaaa => value
            .trim()
            .parse::<Ipv6Addr>()
            .map(|ip| RData::AAAA(AAAA(ip)))
            .map_err(|_| {
                DnsError::InvalidSpec(format!(
                    "'{value}' is not an IPv6 address (AAAA records need e.g. 2001:db8::10)"
                ))
            }),
        RecordKind::Cname => parse_name("CNAME target", value).map(|n| RData::CNAME(CNAME(n))),
        RecordKind::Txt => {
            if value.len() > MAX_TXT_LEN {
                return Err(DnsError::InvalidSpec(format!(
                    "TXT value is {} bytes; at most {MAX_TXT_LEN} fit in one record",
                    value.len()
                )));
            }
            let bytes = value.as_bytes();
            let chunks: Vec<&[u8]> = if bytes.is_empty() {
                vec![bytes]
            } else {
                bytes.chunks(255).collect()
            };
            Ok(RData::TXT(TXT::from_bytes(chunks)))
        }
    }
}

/// Normalised text of one answered record data (same form as [`normalise_values`]).
fn rdata_text(data: &RData) -> Option<String> {
    match data {
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(a) => Some(a.0.to_string()),
        RData::CNAME(c) => Some(name_text(&c.0)),
        RData::TXT(t) => {
            let joined: Vec<u8> = t.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
            Some(String::from_utf8_lossy(&joined).into_owned())
        }
        _ => None,
    }
}

/// Normalise values for `kind` the way [`query_rrset`] prints answers: addresses in
/// canonical form, CNAME targets lowercase without trailing dot, TXT unchanged.
/// Sorted and de-duplicated.
pub fn normalise_values(kind: RecordKind, values: &[String]) -> Result<Vec<String>, DnsError> {
    let mut set = BTreeSet::new();
    for v in values {
        let data = parse_value(kind, v)?;
        if let Some(t) = rdata_text(&data) {
            set.insert(t);
        }
    }
    Ok(set.into_iter().collect())
}

struct Plan {
    zone: Name,
    record: Name,
    rtype: RecordType,
    rdatas: Vec<RData>,
}

fn plan(spec: &UpdateSpec) -> Result<Plan, DnsError> {
    if spec.server.port() == 0 {
        return Err(DnsError::InvalidSpec(format!(
            "server address {} has port 0; DNS servers listen on port 53",
            spec.server
        )));
    }
    if spec.server.ip().is_unspecified() {
        return Err(DnsError::InvalidSpec(format!(
            "server address {} is unspecified; give the DNS server's address",
            spec.server
        )));
    }
    if spec.timeout.is_zero() {
        return Err(DnsError::InvalidSpec(
            "timeout must be greater than zero".into(),
        ));
    }
    let zone = parse_name("zone", &spec.zone)?;
    let record = parse_name("record", &spec.record)?;
    if !zone.zone_of(&record) {
        return Err(DnsError::InvalidSpec(format!(
            "record '{}' is not inside zone '{}' (record names must be absolute, e.g. 'app.{}')",
            spec.record,
            spec.zone,
            name_text(&zone)
        )));
    }
    if spec.kind == RecordKind::Cname && record == zone {
        return Err(DnsError::InvalidSpec(format!(
            "a CNAME cannot be placed at the zone apex '{}'",
            spec.zone
        )));
    }
    if spec.ttl > MAX_TTL {
        return Err(DnsError::InvalidSpec(format!(
            "ttl {} is too large (max {MAX_TTL})",
            spec.ttl
        )));
    }
    if spec.values.is_empty() {
        return Err(DnsError::InvalidSpec(format!(
            "no values given for {} {}; an update must name the new value(s)",
            spec.record, spec.kind
        )));
    }
    if spec.kind == RecordKind::Cname && spec.values.len() != 1 {
        return Err(DnsError::InvalidSpec(format!(
            "a CNAME must have exactly one value, got {}",
            spec.values.len()
        )));
    }
    let rdatas = spec
        .values
        .iter()
        .map(|v| parse_value(spec.kind, v))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(key) = &spec.key {
        parse_name("TSIG key name", &key.name)?;
        if key.secret.is_empty() {
            return Err(DnsError::BadSecret(format!(
                "TSIG key '{}' has an empty secret",
                key.name
            )));
        }
    }
    Ok(Plan {
        zone,
        record,
        rtype: spec.kind.record_type(),
        rdatas,
    })
}

/// Validate the spec without network: names, record inside zone, values for the kind,
/// TTL, timeout, key name and secret.
pub fn validate(spec: &UpdateSpec) -> Result<(), DnsError> {
    plan(spec).map(|_| ())
}

// ---------------------------------------------------------------------------
// Update
// ---------------------------------------------------------------------------

/// Send ONE RFC 2136 UPDATE that replaces the whole RRset `spec.record`/`spec.kind`
/// with `spec.values` (TTL `spec.ttl`), signed with TSIG when `spec.key` is set.
///
/// `prerequisite`: `Some(values)` makes the update apply only if the current RRset equals
/// exactly `values` (RFC 2136 §2.4.2, "RRset exists (value dependent)"); `Some(&[])`
/// requires that the RRset does not exist (§2.4.3). The server answers NXRRSET/YXRRSET
/// otherwise, reported as [`DnsError::PrerequisiteFailed`]. Note that a value-dependent
/// prerequisite compares RDATA only, not TTLs.
pub async fn send_update(
    spec: &UpdateSpec,
    prerequisite: Option<&[String]>,
) -> Result<UpdateOutcome, DnsError> {
    send_update_fenced(spec, prerequisite, None).await
}

/// The fencing TXT RRset a clustered leader's UPDATE compares and replaces (`[cluster]`):
/// `_firebreak-fence.<record>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// Owner name of the fencing TXT RRset, inside the zone.
    pub name: String,
    /// Its value when read before the update (`None`: no fencing record yet).
    pub current: Option<String>,
    /// This leader's fencing revision, written by the same UPDATE.
    pub new: String,
}

/// The fencing record's name for `record`.
pub fn fence_name(record: &str) -> String {
    format!("_firebreak-fence.{}", record.trim_end_matches('.'))
}

/// As [`send_update`]; with `fence`, the same message also requires the fencing TXT
/// RRset to be exactly `fence.current` (or absent) and replaces it with `fence.new`: a
/// compare-and-swap in the server, so of two leaders racing, the one whose view of the
/// fence is stale gets NXRRSET/YXRRSET and changes nothing.
pub async fn send_update_fenced(
    spec: &UpdateSpec,
    prerequisite: Option<&[String]>,
    fence: Option<&Fence>,
) -> Result<UpdateOutcome, DnsError> {
    let started = Instant::now();
    let plan = plan(spec)?;
    let prereq_rdatas = prerequisite
        .map(|vals| {
            vals.iter()
                .map(|v| {
                    parse_value(spec.kind, v).map_err(|e| match e {
                        DnsError::InvalidSpec(m) => {
                            DnsError::InvalidSpec(format!("prerequisite value: {m}"))
                        }
                        other => other,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;

    // Zone section + "delete RRset" (class ANY, type, ttl 0, empty rdata); random id.
    let mut msg = update_message::delete_rrset(
        Record::update0(plan.record.clone(), 0, plan.rtype),
        plan.zone.clone(),
        false,
    );
    if let Some(prereqs) = prereq_rdatas {
        if prereqs.is_empty() {
            // RRset does not exist: class NONE, type, ttl 0, empty rdata.
            let mut r = Record::update0(plan.record.clone(), 0, plan.rtype);
            r.dns_class = DNSClass::NONE;
            msg.add_pre_requisite(r);
        } else {
            for data in prereqs {
                // RRset exists (value dependent): class = zone class, ttl 0, full rdata.
                msg.add_pre_requisite(Record::from_rdata(plan.record.clone(), 0, data));
            }
        }
    }
    for data in plan.rdatas {
        msg.add_update(Record::from_rdata(plan.record.clone(), spec.ttl, data));
    }
    if let Some(f) = fence {
        let name = parse_name("fence", &f.name)?;
        if !plan.zone.zone_of(&name) {
            return Err(DnsError::InvalidSpec(format!(
                "fencing record '{}' is not inside zone '{}'",
                f.name, spec.zone
            )));
        }
        let txt = |v: &str| RData::TXT(TXT::new(vec![v.to_string()]));
        match &f.current {
            None => {
                let mut r = Record::update0(name.clone(), 0, RecordType::TXT);
                r.dns_class = DNSClass::NONE;
                msg.add_pre_requisite(r);
            }
            Some(v) => msg.add_pre_requisite(Record::from_rdata(name.clone(), 0, txt(v))),
        }
        let mut delete = Record::update0(name.clone(), 0, RecordType::TXT);
        delete.dns_class = DNSClass::ANY;
        msg.add_update(delete);
        msg.add_update(Record::from_rdata(name, spec.ttl, txt(&f.new)));
    }
    let id = msg.id;

    let signer = match &spec.key {
        Some(key) => Some(make_signer(key)?),
        None => None,
    };
    let mut request_mac = Vec::new();
    if let Some(signer) = &signer {
        msg.finalize(signer, unix_now()).map_err(|e| {
            DnsError::InvalidSpec(format!("could not sign the update with TSIG: {e}"))
        })?;
        request_mac = msg.signature().map(|t| t.data.mac.clone()).ok_or_else(|| {
            DnsError::InvalidSpec("signing produced no TSIG record (hickory-proto bug?)".into())
        })?;
    }
    let request = msg
        .to_vec()
        .map_err(|e| DnsError::InvalidSpec(format!("could not encode the update: {e}")))?;

    tracing::debug!(
        server = %spec.server, zone = %spec.zone, record = %spec.record, kind = %spec.kind,
        id, bytes = request.len(), signed = signer.is_some(), "sending DNS UPDATE"
    );
    let reply = exchange(spec.server, &request, id, spec.timeout).await?;
    let judged = judge_update_reply(
        &reply.message,
        &reply.bytes,
        id,
        signer.as_ref(),
        &request_mac,
        &spec.zone,
    );
    tracing::debug!(server = %spec.server, id, outcome = ?judged.as_ref().map(|(rcode, _)| rcode), rtt = ?reply.rtt, transport = %reply.transport, "DNS UPDATE answered");
    let (rcode, tsig_verified) = judged?;
    Ok(UpdateOutcome {
        rcode,
        rtt: reply.rtt,
        elapsed: started.elapsed(),
        transport: reply.transport,
        message_id: id,
        tsig_verified,
    })
}

/// The checks on an UPDATE reply that parsed and carries our id: opcode, TSIG (error
/// field, signature over `bytes` against `request_mac`, time window) and rcode. Gives the
/// rcode's name and whether the reply's TSIG verified.
fn judge_update_reply(
    resp: &Message,
    bytes: &[u8],
    id: u16,
    signer: Option<&TSigner>,
    request_mac: &[u8],
    zone: &str,
) -> Result<(String, bool), DnsError> {
    if resp.op_code != OpCode::Update {
        return Err(DnsError::BadResponse(format!(
            "reply to UPDATE id {id} has opcode {:?}",
            resp.op_code
        )));
    }

    let mut tsig_verified = false;
    if let Some(signer) = signer {
        match resp.signature().map(|r| &r.data) {
            Some(tsig) => {
                let err = tsig_error_code(tsig).unwrap_or(0);
                if err != 0 {
                    // BADSIG/BADKEY replies are unsigned (empty MAC): nothing to verify.
                    return Err(DnsError::NotAuth {
                        tsig_error: Some(tsig_error_name(err)),
                        signed: true,
                    });
                }
                let (_, _, window) = signer
                    .verify_message_byte(bytes, Some(request_mac), true)
                    .map_err(|e| {
                        DnsError::BadResponse(format!(
                            "the reply's TSIG signature does not verify ({e}); the reply may be \
                             forged or altered in transit"
                        ))
                    })?;
                if !window.contains(&unix_now()) {
                    return Err(DnsError::BadResponse(format!(
                        "the reply's TSIG time is outside ±{TSIG_FUDGE_SECS} s of our clock \
                         (check NTP on this host and the server)"
                    )));
                }
                tsig_verified = true;
            }
            None if resp.response_code == ResponseCode::NoError => {
                return Err(DnsError::BadResponse(
                    "the server answered NOERROR to our signed update without a TSIG \
                     signature; refusing to trust it"
                        .into(),
                ));
            }
            // Unsigned error replies (e.g. NOTAUTH for an unknown key) are reported by rcode.
            None => {}
        }
    }

    let rcode = resp.response_code;
    let name = rcode_name(rcode);
    match rcode {
        ResponseCode::NoError => Ok((name, tsig_verified)),
        ResponseCode::Refused => Err(DnsError::Refused { rcode: name }),
        ResponseCode::NotAuth => Err(DnsError::NotAuth {
            tsig_error: None,
            signed: signer.is_some(),
        }),
        ResponseCode::BADSIG | ResponseCode::BADKEY | ResponseCode::BADTIME => {
            Err(DnsError::NotAuth {
                tsig_error: Some(name),
                signed: signer.is_some(),
            })
        }
        ResponseCode::NotZone => Err(DnsError::NotZone {
            zone: zone.to_string(),
        }),
        ResponseCode::NXRRSet
        | ResponseCode::YXRRSet
        | ResponseCode::NXDomain
        | ResponseCode::YXDomain => Err(DnsError::PrerequisiteFailed { rcode: name }),
        ResponseCode::ServFail => Err(DnsError::ServerFailure { rcode: name }),
        _ => Err(DnsError::Rejected { rcode: name }),
    }
}

/// What [`send_update`] does with the bytes of a reply, without a socket: [`check_reply`]
/// (length, id, parse, QR) then [`judge_update_reply`], with `key` signing and `request_mac`
/// the MAC of our signed request. Gives the rcode's name and whether the TSIG verified.
/// Public for the fuzz targets (tests/fuzz).
pub fn check_update_reply(
    bytes: &[u8],
    id: u16,
    zone: &str,
    key: Option<&TsigKey>,
    request_mac: &[u8],
) -> Result<(String, bool), DnsError> {
    let signer = key.map(make_signer).transpose()?;
    let resp = check_reply(bytes, id).map_err(DnsError::BadResponse)?;
    judge_update_reply(&resp, bytes, id, signer.as_ref(), request_mac, zone)
}

fn make_signer(key: &TsigKey) -> Result<TSigner, DnsError> {
    let name = parse_name("TSIG key name", &key.name)?;
    if key.secret.is_empty() {
        return Err(DnsError::BadSecret(format!(
            "TSIG key '{}' has an empty secret",
            key.name
        )));
    }
    TSigner::new(
        key.secret.clone(),
        key.algorithm.to_hickory(),
        name,
        TSIG_FUDGE_SECS,
    )
    .map_err(|e| DnsError::InvalidSpec(format!("TSIG key '{}': {e}", key.name)))
}

/// The TSIG error field (RFC 8945 section 4.3; 0, no error, when absent).
fn tsig_error_code(tsig: &TSIG) -> Option<u16> {
    Some(tsig.error.map_or(0, u16::from))
}

fn tsig_error_name(code: u16) -> String {
    match code {
        16 => "BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        19 => "BADMODE".into(),
        20 => "BADNAME".into(),
        21 => "BADALG".into(),
        22 => "BADTRUNC".into(),
        n => format!("TSIG error {n}"),
    }
}

/// DNS mnemonic of a response code (as dig/kdig print it).
fn rcode_name(rcode: ResponseCode) -> String {
    let n = u16::from(rcode);
    match n {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADVERS/BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        23 => "BADCOOKIE".into(),
        n => format!("RCODE{n}"),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Query / verify
// ---------------------------------------------------------------------------

/// Query `server` (RD=0) for `record`/`kind` and return the answered values, normalised
/// like [`normalise_values`] (sorted, de-duplicated). NXDOMAIN or no data gives an empty
/// list. Only answers owned by `record` with type `kind` are returned (a CNAME found
/// when asking for A is not).
pub async fn query_rrset(
    server: SocketAddr,
    record: &str,
    kind: RecordKind,
    timeout: Duration,
) -> Result<Vec<String>, DnsError> {
    Ok(query_rrset_ttl(server, record, kind, timeout).await?.0)
}

/// [`query_rrset`] and the RRset's TTL (the lowest of its records; `None` when empty).
pub async fn query_rrset_ttl(
    server: SocketAddr,
    record: &str,
    kind: RecordKind,
    timeout: Duration,
) -> Result<(Vec<String>, Option<u32>), DnsError> {
    if timeout.is_zero() {
        return Err(DnsError::InvalidSpec(
            "timeout must be greater than zero".into(),
        ));
    }
    let name = parse_name("record", record)?;
    let rtype = kind.record_type();
    let id = random_id();
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
    msg.set_edns(edns);
    let request = msg
        .to_vec()
        .map_err(|e| DnsError::InvalidSpec(format!("could not encode the query: {e}")))?;

    let reply = exchange(server, &request, id, timeout).await?;
    judge_query_reply(&reply.message, server, &name, kind)
}

/// The checks on a query reply that parsed and carries our id: the question matches,
/// the rcode is NOERROR or NXDOMAIN; then the answers owned by `name` of type `kind`.
fn judge_query_reply(
    resp: &Message,
    server: SocketAddr,
    name: &Name,
    kind: RecordKind,
) -> Result<(Vec<String>, Option<u32>), DnsError> {
    let rtype = kind.record_type();
    if let Some(q) = resp.queries.first() {
        if q.name() != name || q.query_type() != rtype {
            return Err(DnsError::BadResponse(format!(
                "reply question {} {} does not match our query {} {}",
                q.name(),
                q.query_type(),
                name,
                rtype
            )));
        }
    }
    match resp.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        rcode => {
            return Err(DnsError::QueryFailed {
                server,
                name: name_text(name),
                kind,
                rcode: rcode_name(rcode),
            })
        }
    }
    // Only records that carry a value count, for the TTL too: an answer with empty RDATA
    // (RDLENGTH 0, which hickory reads as an update-style "no data" record) has none
    // (found by the cargo-fuzz `dns_response` target: it gave a TTL with no values).
    let answered: Vec<(String, u32)> = resp
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype && &r.name == name)
        .filter_map(|r| Some((rdata_text(&r.data)?, r.ttl)))
        .collect();
    let ttl = answered.iter().map(|(_, ttl)| *ttl).min();
    let set: BTreeSet<String> = answered.into_iter().map(|(v, _)| v).collect();
    Ok((set.into_iter().collect(), ttl))
}

/// What [`query_rrset_ttl`] does with the bytes of a reply to its query for `record`/`kind`
/// with `id`, without a socket. Public for the fuzz targets (tests/fuzz).
pub fn check_query_reply(
    bytes: &[u8],
    id: u16,
    server: SocketAddr,
    record: &str,
    kind: RecordKind,
) -> Result<(Vec<String>, Option<u32>), DnsError> {
    let name = parse_name("record", record)?;
    let resp = check_reply(bytes, id).map_err(DnsError::BadResponse)?;
    judge_query_reply(&resp, server, &name, kind)
}

/// True when the server answers exactly `spec.values` (as a set, normalised) for
/// `spec.record`/`spec.kind`.
pub async fn verify(spec: &UpdateSpec) -> Result<bool, DnsError> {
    validate(spec)?;
    let want = normalise_values(spec.kind, &spec.values)?;
    let (got, ttl) = query_rrset_ttl(spec.server, &spec.record, spec.kind, spec.timeout).await?;
    // The TTL counts too: lowering TTLs ahead of a failover is an update of its own.
    let same = got == want && (got.is_empty() || ttl == Some(spec.ttl));
    if !same {
        tracing::debug!(server = %spec.server, record = %spec.record, kind = %spec.kind, ?want, ?got, ?ttl, want_ttl = spec.ttl, "DNS verify mismatch");
    }
    Ok(same)
}

fn random_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u16
}

// ---------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------

struct Reply {
    bytes: Vec<u8>,
    message: Message,
    transport: Transport,
    rtt: Duration,
}

/// UDP first (unless the request is too big), TCP when the UDP reply is truncated.
/// The TCP try gets its own `timeout`.
async fn exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Reply, DnsError> {
    if request.len() <= UDP_REQUEST_LIMIT {
        if let Some(reply) = udp_exchange(server, request, id, timeout).await? {
            return Ok(reply);
        }
        tracing::debug!(%server, id, "UDP reply truncated, retrying over TCP");
    } else {
        tracing::debug!(%server, id, bytes = request.len(), "request too big for UDP, using TCP");
    }
    tcp_exchange(server, request, id, timeout).await
}

fn io_err(server: SocketAddr, context: &str) -> impl FnOnce(std::io::Error) -> DnsError + '_ {
    move |source| DnsError::Io {
        server,
        context: context.to_string(),
        source,
    }
}

/// Check a raw reply: long enough, our id, parses, is a response.
fn check_reply(bytes: &[u8], id: u16) -> Result<Message, String> {
    if bytes.len() < 12 {
        return Err(format!(
            "reply of {} bytes is shorter than a DNS header",
            bytes.len()
        ));
    }
    let rid = u16::from_be_bytes([bytes[0], bytes[1]]);
    if rid != id {
        return Err(format!("reply id {rid} does not match request id {id}"));
    }
    let msg = Message::from_vec(bytes).map_err(|e| format!("malformed reply: {e}"))?;
    if msg.message_type != MessageType::Response {
        return Err("reply is not a response (QR bit clear)".into());
    }
    Ok(msg)
}

async fn udp_exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Option<Reply>, DnsError> {
    let local: SocketAddr = match server.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(io_err(server, "binding a UDP socket"))?;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || DnsError::Timeout {
        server,
        after: timeout,
    };
    match tokio::time::timeout_at(deadline, sock.send_to(request, server)).await {
        Err(_) => return Err(timed_out()),
        Ok(r) => r.map_err(io_err(server, "sending UDP request"))?,
    };
    let mut buf = vec![0u8; 65_535];
    // A garbled reply carrying our id is remembered; we keep waiting for a good one
    // (it may be spoofed) and report it instead of a bare timeout.
    let mut garbled: Option<String> = None;
    loop {
        let (n, from) = match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            Err(_) => {
                return Err(match garbled {
                    Some(why) => DnsError::BadResponse(why),
                    None => timed_out(),
                })
            }
            Ok(r) => r.map_err(io_err(server, "receiving UDP reply"))?,
        };
        if from.ip() != server.ip() || from.port() != server.port() {
            tracing::debug!(%server, %from, "ignoring UDP datagram from another address");
            continue;
        }
        let bytes = &buf[..n];
        // Our id, QR and TC set: go to TCP even if the truncated body does not parse.
        if n >= 12 && u16::from_be_bytes([bytes[0], bytes[1]]) == id && bytes[2] & 0x82 == 0x82 {
            return Ok(None);
        }
        match check_reply(bytes, id) {
            Ok(message) => {
                return Ok(Some(Reply {
                    bytes: bytes.to_vec(),
                    message,
                    transport: Transport::Udp,
                    rtt: started.elapsed(),
                }))
            }
            Err(why) => {
                tracing::debug!(%server, id, %why, "ignoring UDP datagram");
                if n >= 2 && u16::from_be_bytes([bytes[0], bytes[1]]) == id {
                    garbled = Some(why);
                }
            }
        }
    }
}

async fn tcp_exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Reply, DnsError> {
    let len = u16::try_from(request.len()).map_err(|_| {
        DnsError::InvalidSpec(format!(
            "request of {} bytes does not fit in a DNS message",
            request.len()
        ))
    })?;
    let started = Instant::now();
    let work = async {
        let mut stream = TcpStream::connect(server)
            .await
            .map_err(io_err(server, "connecting over TCP"))?;
        let _ = stream.set_nodelay(true);
        let mut out = Vec::with_capacity(request.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(request);
        stream
            .write_all(&out)
            .await
            .map_err(io_err(server, "sending TCP request"))?;
        let mut len_buf = [0u8; 2];
        stream
            .read_exact(&mut len_buf)
            .await
            .map_err(io_err(server, "reading TCP reply length"))?;
        let mut body = vec![0u8; u16::from_be_bytes(len_buf) as usize];
        stream
            .read_exact(&mut body)
            .await
            .map_err(io_err(server, "reading TCP reply"))?;
        Ok::<_, DnsError>(body)
    };
    let bytes = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| DnsError::Timeout {
            server,
            after: timeout,
        })??;
    let message = check_reply(&bytes, id).map_err(DnsError::BadResponse)?;
    Ok(Reply {
        bytes,
        message,
        transport: Transport::Tcp,
        rtt: started.elapsed(),
    })
}

// ---------------------------------------------------------------------------
// Unit tests (no network)
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> UpdateSpec {
        UpdateSpec {
            server: "127.0.0.1:53".parse().unwrap(),
            zone: "example.com".into(),
            record: "app.example.com".into(),
            kind: RecordKind::A,
            ttl: 60,
            values: vec!["192.0.2.1".into()],
            key: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn algorithm_and_kind_parse_case_insensitively() {
        assert_eq!(
            "HMAC-SHA512".parse::<TsigAlgorithm>().unwrap(),
            TsigAlgorithm::HmacSha512
        );
        assert_eq!(
            "hmac-sha256.".parse::<TsigAlgorithm>().unwrap(),
            TsigAlgorithm::HmacSha256
        );
        assert_eq!(TsigAlgorithm::HmacSha384.to_string(), "hmac-sha384");
        assert!("hmac-md5".parse::<TsigAlgorithm>().is_err());
        assert_eq!("aaaa".parse::<RecordKind>().unwrap(), RecordKind::Aaaa);
        assert_eq!("Cname".parse::<RecordKind>().unwrap(), RecordKind::Cname);
        assert!("MX".parse::<RecordKind>().is_err());
    }

    #[test]
    fn key_debug_does_not_print_secret() {
        let k = TsigKey {
            name: "k".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: b"supersecret".to_vec(),
        };
        let s = format!("{k:?}");
        assert!(!s.contains("115"), "{s}");
        assert!(s.contains("redacted"));
    }

    #[test]
    fn validate_accepts_good_spec_and_apex() {
        validate(&spec()).unwrap();
        let mut s = spec();
        s.record = "EXAMPLE.com.".into();
        validate(&s).unwrap();
    }

    #[test]
    fn validate_rejects_cname_at_apex_and_many_cnames() {
        let mut s = spec();
        s.kind = RecordKind::Cname;
        s.values = vec!["dr.example.net".into()];
        validate(&s).unwrap();
        s.values.push("other.example.net".into());
        assert!(validate(&s)
            .unwrap_err()
            .to_string()
            .contains("exactly one"));
        s.values.pop();
        s.record = "example.com".into();
        assert!(validate(&s).unwrap_err().to_string().contains("apex"));
    }

    #[test]
    fn validate_rejects_bad_names_and_values() {
        let mut s = spec();
        s.record = "app..example.com".into();
        assert!(validate(&s)
            .unwrap_err()
            .to_string()
            .contains("empty label"));
        let mut s = spec();
        s.record = "app example.com".into();
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.kind = RecordKind::Aaaa;
        assert!(validate(&s).unwrap_err().to_string().contains("IPv6"));
        let mut s = spec();
        s.values.clear();
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.timeout = Duration::ZERO;
        assert!(validate(&s).is_err());
    }

    #[test]
    fn normalise_is_canonical() {
        let v = normalise_values(
            RecordKind::Aaaa,
            &["2001:DB8:0:0::1".into(), "2001:db8::1".into()],
        )
        .unwrap();
        assert_eq!(v, vec!["2001:db8::1".to_string()]);
        let v = normalise_values(RecordKind::Cname, &["DR.Example.NET.".into()]).unwrap();
        assert_eq!(v, vec!["dr.example.net".to_string()]);
        let long = "x".repeat(600);
        let v = normalise_values(RecordKind::Txt, std::slice::from_ref(&long)).unwrap();
        assert_eq!(v, vec![long]);
    }

    #[test]
    fn tsig_error_code_is_read_back() {
        let t = TSIG::new(
            HickoryTsigAlgorithm::HmacSha256,
            1,
            300,
            vec![1, 2, 3],
            7,
            Some(16.into()),
            vec![],
        );
        assert_eq!(tsig_error_code(&t), Some(16));
        let t = TSIG::new(
            HickoryTsigAlgorithm::HmacSha512,
            1,
            300,
            vec![],
            7,
            Some(18.into()),
            vec![9],
        );
        assert_eq!(tsig_error_code(&t), Some(18));
    }

    #[test]
    fn check_reply_rejects_garbage_without_panicking() {
        assert!(check_reply(&[], 1).is_err());
        assert!(check_reply(&[0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0], 1).is_err()); // truncated question
        assert!(check_reply(&[0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1).is_err()); // wrong id
        assert!(check_reply(&[0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1).is_ok());
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ n).collect();
            let _ = check_reply(&junk, 0);
        }
    }

    fn reply_bytes(op: OpCode, rcode: ResponseCode, answers: &[(&str, u32)]) -> Vec<u8> {
        let name = Name::from_ascii("app.example.com.").unwrap();
        let mut msg = Message::new(7, MessageType::Response, op);
        msg.metadata.response_code = rcode;
        msg.add_query(Query::query(name.clone(), RecordType::A));
        for (ip, ttl) in answers {
            let data = RData::A(A(ip.parse().unwrap()));
            msg.add_answer(Record::from_rdata(name.clone(), *ttl, data));
        }
        msg.to_vec().unwrap()
    }

    #[test]
    fn a_query_reply_gives_the_sorted_values_and_the_lowest_ttl() {
        let server = "127.0.0.1:53".parse().unwrap();
        let bytes = reply_bytes(
            OpCode::Query,
            ResponseCode::NoError,
            &[("192.0.2.2", 60), ("192.0.2.1", 30)],
        );
        let got = check_query_reply(&bytes, 7, server, "app.example.com", RecordKind::A).unwrap();
        assert_eq!(
            got,
            (vec!["192.0.2.1".into(), "192.0.2.2".into()], Some(30))
        );
        let other_id = check_query_reply(&bytes, 8, server, "app.example.com", RecordKind::A);
        assert!(matches!(other_id, Err(DnsError::BadResponse(_))));
        let other_name = check_query_reply(&bytes, 7, server, "db.example.com", RecordKind::A);
        assert!(matches!(other_name, Err(DnsError::BadResponse(_))));
    }

    #[test]
    fn an_answer_without_rdata_gives_neither_a_value_nor_a_ttl() {
        // Found by the cargo-fuzz `dns_response` target: an AAAA answer with RDLENGTH 0.
        let mut bytes = vec![0, 7, 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0];
        bytes.extend_from_slice(b"\x03app\x07example\x03com\x00\x00\x1c\x00\x01");
        bytes.extend_from_slice(&[0xc0, 0x0c, 0, 0x1c, 0, 1, 0, 0, 0, 30, 0, 0]);
        let server = "127.0.0.1:53".parse().unwrap();
        let got = check_query_reply(&bytes, 7, server, "app.example.com", RecordKind::Aaaa);
        // hickory-proto 0.25 read it as an update-style "no data" record and this gave
        // `(vec![], None)`; 0.26 rejects a zero-length record outside an UPDATE as
        // malformed, so the whole reply is refused: still neither a value nor a TTL.
        assert!(
            matches!(&got, Err(DnsError::BadResponse(m)) if m.contains("length 0")),
            "{got:?}"
        );
    }

    #[test]
    fn an_unsigned_noerror_to_a_signed_update_is_not_trusted() {
        let key = TsigKey {
            name: "firebreak".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: b"firebreak-test-secret-32-bytes!!".to_vec(),
        };
        let ok = reply_bytes(OpCode::Update, ResponseCode::NoError, &[]);
        let signed = check_update_reply(&ok, 7, "example.com", Some(&key), &[1; 32]);
        assert!(
            matches!(signed, Err(DnsError::BadResponse(_))),
            "{signed:?}"
        );
        let unsigned = check_update_reply(&ok, 7, "example.com", None, &[]).unwrap();
        assert_eq!(unsigned, ("NOERROR".to_string(), false));
        let notauth = reply_bytes(OpCode::Update, ResponseCode::NotAuth, &[]);
        let refused = check_update_reply(&notauth, 7, "example.com", Some(&key), &[1; 32]);
        assert!(
            matches!(refused, Err(DnsError::NotAuth { signed: true, .. })),
            "{refused:?}"
        );
        let query = reply_bytes(OpCode::Query, ResponseCode::NoError, &[]);
        let wrong_op = check_update_reply(&query, 7, "example.com", None, &[]);
        assert!(
            matches!(wrong_op, Err(DnsError::BadResponse(_))),
            "{wrong_op:?}"
        );
    }

    #[test]
    fn retryable_classification() {
        assert!(DnsError::Timeout {
            server: "127.0.0.1:53".parse().unwrap(),
            after: Duration::from_secs(1)
        }
        .is_retryable());
        assert!(DnsError::ServerFailure {
            rcode: "SERVFAIL".into()
        }
        .is_retryable());
        assert!(!DnsError::NotAuth {
            tsig_error: Some("BADSIG".into()),
            signed: true
        }
        .is_retryable());
        assert!(!DnsError::Refused {
            rcode: "REFUSED".into()
        }
        .is_retryable());
        assert!(!DnsError::PrerequisiteFailed {
            rcode: "NXRRSET".into()
        }
        .is_retryable());
        assert!(!DnsError::InvalidSpec("x".into()).is_retryable());
    }
}
