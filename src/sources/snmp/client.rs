//! An SNMP GET client over UDP: many OIDs per request (split when the agent answers
//! tooBig), a timeout per attempt and `retries` more attempts, request ids matched (late
//! or foreign datagrams are dropped), v2c communities and SNMPv3 USM (authNoPriv and
//! authPriv: engine discovery, time synchronisation, re-discovery after the agent restarts).
//!
//! Design: written on tokio's UDP socket with this folder's codec (`ber`, `message`, `usm`)
//! rather than on an SNMP crate. The crates that do v3 (snmp2) return a late reply to an
//! earlier request as an error instead of dropping it, have no timeouts or retries, do not
//! tell a wrong password from an unknown user, and derive the one-megabyte password key
//! again on every discovery; the rest (csnmp) speak v2c only.

use super::ber::{Oid, Value};
use super::message::{
    self, MsgData, MsgDataRef, Pdu, ScopedPdu, UsmParams, FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE,
    REPORT, RESPONSE,
};
use super::usm::{self, AuthProtocol, PrivProtocol};
use crate::detect::FaultKind;
use crate::sources::metrics::ErrorKind;
use std::time::Duration;
use tokio::net::UdpSocket;

/// The largest message we accept (`msgMaxSize`): a UDP datagram over IPv4.
const MAX_MESSAGE: usize = 65507;

/// error-status tooBig (RFC 3416).
const TOO_BIG: i64 = 1;

/// How many times one request may be answered with "resynchronise" (discovery, a time
/// window report, an agent that restarted in between) before giving up.
const MAX_RESYNC: usize = 4;

/// A failed request as a whole.
#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("no answer from {addr} in {attempts} attempt(s) of {timeout:?} (the agent is down, or drops a wrong community)")]
    Timeout {
        addr: String,
        attempts: u32,
        timeout: Duration,
    },
    #[error("authentication failed: {0}")]
    Authentication(String),
    #[error("the agent does not know the user `{0}`")]
    UnknownUser(String),
    #[error("the agent answered error-status {} ({status}) at varbind {index}", error_status_name(*.status))]
    Agent { status: i64, index: i64 },
    #[error("the agent sent a report: {0}")]
    Report(String),
    #[error("malformed reply: {0}")]
    Malformed(String),
}

impl SnmpError {
    /// The class counted in `firebreak_source_errors_total{error}`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnmpError::Resolve(_) | SnmpError::Io { .. } => ErrorKind::Connect,
            SnmpError::Timeout { .. } => ErrorKind::Timeout,
            SnmpError::Authentication(_) | SnmpError::UnknownUser(_) => ErrorKind::Authentication,
            SnmpError::Agent { .. } | SnmpError::Report(_) => ErrorKind::Exception,
            SnmpError::Malformed(_) => ErrorKind::Transport,
        }
    }

    /// Whether the agent answered (its reply said no), as opposed to no usable answer.
    pub fn agent_answered(&self) -> bool {
        matches!(self, SnmpError::Agent { .. })
    }
}

fn error_status_name(status: i64) -> &'static str {
    match status {
        1 => "tooBig",
        2 => "noSuchName",
        3 => "badValue",
        4 => "readOnly",
        5 => "genErr",
        6 => "noAccess",
        13 => "resourceUnavailable",
        16 => "authorizationError",
        _ => "other",
    }
}

/// Why one OID of a request has no number (the rest of the request is fine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidFault {
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
    /// A value of a type that holds no number (the type's SMI name).
    NotNumeric(&'static str),
}

impl OidFault {
    pub fn kind(self) -> ErrorKind {
        match self {
            OidFault::NotNumeric(_) => ErrorKind::BadValue,
            _ => ErrorKind::NoSuchObject,
        }
    }

    /// The fault a sensor reading this OID reports.
    pub fn fault(self) -> FaultKind {
        match self {
            OidFault::NotNumeric(_) => FaultKind::NotNumeric,
            _ => FaultKind::NoSuchObject,
        }
    }
}

/// A varbind's value as a number: the integer types, and an OCTET STRING that holds a
/// decimal number (some UPS cards report temperatures as text).
pub fn number(v: &Value) -> Result<f64, OidFault> {
    match v {
        Value::Integer(i) => Ok(*i as f64),
        Value::Counter32(u) | Value::Gauge32(u) | Value::TimeTicks(u) => Ok(f64::from(*u)),
        Value::Counter64(u) => Ok(*u as f64),
        Value::OctetString(b) => std::str::from_utf8(b)
            .ok()
            .map(|s| s.trim_matches(|c: char| c.is_whitespace() || c == '\0'))
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|f| f.is_finite())
            .ok_or(OidFault::NotNumeric("OCTET STRING")),
        Value::NoSuchObject => Err(OidFault::NoSuchObject),
        Value::NoSuchInstance => Err(OidFault::NoSuchInstance),
        Value::EndOfMibView => Err(OidFault::EndOfMibView),
        other => Err(OidFault::NotNumeric(other.type_name())),
    }
}

/// Who we are to the agent.
pub enum Credentials {
    /// SNMPv2c.
    Community(Vec<u8>),
    /// SNMPv3 with the User-based Security Model.
    Usm(UsmUser),
}

/// An SNMPv3 user with its keys derived from the passwords (not yet localised to an
/// engine).
pub struct UsmUser {
    pub name: Vec<u8>,
    pub auth: AuthProtocol,
    pub privacy: PrivProtocol,
    auth_ku: Vec<u8>,
    priv_ku: Vec<u8>,
}

impl UsmUser {
    /// Derives the user's keys: the slow step (a megabyte hashed per password), done once;
    /// localising them to an engine after each discovery is one more digest.
    pub fn new(
        name: &str,
        auth: AuthProtocol,
        auth_password: &[u8],
        privacy: PrivProtocol,
        priv_password: &[u8],
    ) -> Self {
        let priv_ku = match privacy {
            PrivProtocol::None => Vec::new(),
            PrivProtocol::Aes128 => usm::password_to_key(auth, priv_password),
        };
        UsmUser {
            name: name.as_bytes().to_vec(),
            auth,
            privacy,
            auth_ku: usm::password_to_key(auth, auth_password),
            priv_ku,
        }
    }
}

/// What we know of the agent's SNMP engine (the authoritative one), and the user's keys
/// localised to it.
struct Engine {
    id: Vec<u8>,
    boots: u32,
    time: u32,
    /// When `time` was learned.
    at: tokio::time::Instant,
    auth_key: Vec<u8>,
    priv_key: Vec<u8>,
}

impl Engine {
    /// The agent's engine time now, by our clock since we learned it.
    fn time_now(&self) -> u32 {
        let elapsed = crate::clock::now()
            .saturating_duration_since(self.at)
            .as_secs();
        (u64::from(self.time) + elapsed).min(i32::MAX as u64) as u32
    }
}

/// What a reply meant.
enum Reply {
    Pdu(Pdu),
    /// The engine state changed (discovered, resynchronised): send the request again.
    Resync,
}

/// One agent, polled by one source.
pub struct Client {
    target: String,
    creds: Credentials,
    timeout: Duration,
    retries: u32,
    socket: Option<UdpSocket>,
    next_id: i32,
    salt: u64,
    engine: Option<Engine>,
    /// OIDs per request: all of them until the agent says tooBig.
    max_varbinds: usize,
}

impl Client {
    /// A client for the agent at `target` (`host:port`); opens no socket yet.
    pub fn new(target: String, creds: Credentials, timeout: Duration, retries: u32) -> Self {
        use ring::rand::SecureRandom;
        let mut seed = [0u8; 12];
        // Only unpredictability suffers if the system generator fails: ids still work.
        let _ = ring::rand::SystemRandom::new().fill(&mut seed);
        let id = i32::from_be_bytes(seed[..4].try_into().unwrap_or_default()) & 0x3fff_ffff;
        Client {
            target,
            creds,
            timeout,
            retries,
            socket: None,
            next_id: id.max(1),
            salt: u64::from_be_bytes(seed[4..].try_into().unwrap_or_default()),
            engine: None,
            max_varbinds: usize::MAX,
        }
    }

    /// The `host:port` polled.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Reads `oids`: one number or one fault per OID, in order. An error is the whole
    /// request's (no answer, refused credentials, the agent's error-status, a bad reply).
    pub async fn get(&mut self, oids: &[Oid]) -> Result<Vec<Result<f64, OidFault>>, SnmpError> {
        let mut out = Vec::with_capacity(oids.len());
        let mut rest = oids;
        while !rest.is_empty() {
            let n = rest.len().min(self.max_varbinds);
            let chunk = &rest[..n];
            let pdu = match self.request(chunk).await {
                Err(SnmpError::Agent {
                    status: TOO_BIG, ..
                }) if n > 1 => {
                    self.max_varbinds = n / 2;
                    tracing::debug!(target = %self.target, oids = n / 2, "SNMP agent answered tooBig; splitting requests");
                    continue;
                }
                r => r?,
            };
            let same = pdu.varbinds.len() == n
                && pdu
                    .varbinds
                    .iter()
                    .zip(chunk)
                    .all(|((got, _), asked)| got == asked);
            if !same {
                return Err(SnmpError::Malformed(
                    "the reply's varbinds are not the OIDs asked for".into(),
                ));
            }
            out.extend(pdu.varbinds.iter().map(|(_, v)| number(v)));
            rest = &rest[n..];
        }
        Ok(out)
    }

    /// One GetRequest, answered.
    async fn request(&mut self, oids: &[Oid]) -> Result<Pdu, SnmpError> {
        if self.socket.is_none() {
            self.socket = Some(self.open().await?);
        }
        let mut result = Err(SnmpError::Report(
            "the agent keeps asking to resynchronise".into(),
        ));
        // Whether the agent answered this request's discovery: then a silent agent is not
        // a dead one.
        let mut answered_discovery = false;
        for _ in 0..MAX_RESYNC {
            let discovering = self.engine.is_none();
            match self.exchange(oids).await {
                Ok(Reply::Resync) => {
                    answered_discovery |= discovering;
                    continue;
                }
                Ok(Reply::Pdu(p)) => {
                    result = Ok(p);
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let encrypted =
            matches!(&self.creds, Credentials::Usm(u) if u.privacy != PrivProtocol::None);
        if answered_discovery && encrypted && matches!(result, Err(SnmpError::Timeout { .. })) {
            // net-snmp drops a request it cannot decrypt without a word (a wrong privacy
            // password decrypts to garbage, which is not a report-worthy error), so an agent
            // that answered discovery a moment ago and then goes silent is refusing the key.
            result = Err(SnmpError::Authentication(
                "the agent answers discovery but not the encrypted request (wrong priv_password?)"
                    .into(),
            ));
            self.engine = None;
        }
        match &result {
            Err(SnmpError::Io { .. }) => {
                self.socket = None;
                self.engine = None;
            }
            // An agent that stopped answering may come back as another engine, or with
            // its clock reset: discover it afresh rather than wait for its reports.
            Err(SnmpError::Timeout { .. }) => self.engine = None,
            _ => {}
        }
        let pdu = result?;
        if pdu.error_status != 0 {
            return Err(SnmpError::Agent {
                status: pdu.error_status,
                index: pdu.error_index,
            });
        }
        Ok(pdu)
    }

    async fn open(&self) -> Result<UdpSocket, SnmpError> {
        let io = |source| self.io(source);
        let addr = tokio::time::timeout(self.timeout, tokio::net::lookup_host(&self.target))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|mut a| a.next())
            .ok_or_else(|| SnmpError::Resolve(self.target.clone()))?;
        let local = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        // Connected: the kernel drops datagrams from anyone but the agent, and reports an
        // agent whose port is closed (ICMP) as an error on the next receive.
        socket.connect(addr).await.map_err(io)?;
        Ok(socket)
    }

    fn take_id(&mut self) -> i32 {
        let id = self.next_id;
        self.next_id = if id >= i32::MAX - 1 { 1 } else { id + 1 };
        id
    }

    /// Sends the request (again after each timeout) and waits for a reply to any of its
    /// attempts.
    async fn exchange(&mut self, oids: &[Oid]) -> Result<Reply, SnmpError> {
        let Some(socket) = self.socket.take() else {
            unreachable!("request() opens the socket first")
        };
        let result = self.exchange_on(&socket, oids).await;
        self.socket = Some(socket);
        result
    }

    async fn exchange_on(&mut self, socket: &UdpSocket, oids: &[Oid]) -> Result<Reply, SnmpError> {
        let mut sent = Vec::with_capacity(self.retries as usize + 1);
        let mut buf = vec![0u8; 65535];
        for _ in 0..=self.retries {
            let id = self.take_id();
            let msg = self.encode(id, oids);
            sent.push(id);
            socket.send(&msg).await.map_err(|e| self.io(e))?;
            let deadline = crate::clock::now() + self.timeout;
            loop {
                let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(Err(e)) => return Err(self.io(e)),
                    Ok(Ok(n)) => n,
                };
                match self.accept(&buf[..n], &sent) {
                    Some(reply) => return reply,
                    None => {
                        tracing::trace!(target = %self.target, "SNMP datagram for no pending request dropped")
                    }
                }
            }
        }
        Err(SnmpError::Timeout {
            addr: self.target.clone(),
            attempts: self.retries + 1,
            timeout: self.timeout,
        })
    }

    fn io(&self, source: std::io::Error) -> SnmpError {
        SnmpError::Io {
            addr: self.target.clone(),
            source,
        }
    }

    fn encode(&mut self, id: i32, oids: &[Oid]) -> Vec<u8> {
        let pdu = Pdu::get(id, oids);
        let user = match &self.creds {
            Credentials::Community(c) => return message::encode_v2c(c, &pdu),
            Credentials::Usm(u) => u,
        };
        let Some(engine) = &self.engine else {
            // Discovery (RFC 3414 4): an empty, unauthenticated request; the agent
            // answers with a report that names its engine, boots and time.
            let scoped = ScopedPdu {
                context_engine_id: Vec::new(),
                context_name: Vec::new(),
                pdu: Pdu::get(id, &[]),
            }
            .encode();
            let (msg, _) = message::encode_v3(
                id,
                MAX_MESSAGE as i64,
                FLAG_REPORTABLE,
                &UsmParams::default(),
                &MsgDataRef::Plain(&scoped),
            );
            return msg;
        };
        let boots = engine.boots;
        let time = engine.time_now();
        let scoped = ScopedPdu {
            context_engine_id: engine.id.clone(),
            context_name: Vec::new(),
            pdu,
        }
        .encode();
        let mut flags = FLAG_AUTH | FLAG_REPORTABLE;
        let mut params = UsmParams {
            engine_id: engine.id.clone(),
            boots: i64::from(boots),
            time: i64::from(time),
            user: user.name.clone(),
            auth: vec![0; user.auth.mac_len()],
            privacy: Vec::new(),
        };
        let encrypted;
        let data = match user.privacy {
            PrivProtocol::None => MsgDataRef::Plain(&scoped),
            PrivProtocol::Aes128 => {
                flags |= FLAG_PRIV;
                self.salt = self.salt.wrapping_add(1);
                let salt = self.salt.to_be_bytes();
                params.privacy = salt.to_vec();
                encrypted = usm::aes_encrypt(&engine.priv_key, boots, time, &salt, &scoped);
                MsgDataRef::Encrypted(&encrypted)
            }
        };
        let (mut msg, range) = message::encode_v3(id, MAX_MESSAGE as i64, flags, &params, &data);
        let mac = usm::sign(user.auth, &engine.auth_key, &msg);
        msg[range].copy_from_slice(&mac);
        msg
    }

    /// What a datagram means for the pending request: `None` when it is not a reply to it.
    fn accept(&mut self, bytes: &[u8], sent: &[i32]) -> Option<Result<Reply, SnmpError>> {
        let malformed = |e: &dyn std::fmt::Display| Some(Err(SnmpError::Malformed(e.to_string())));
        let user = match &self.creds {
            Credentials::Community(community) => {
                let (got, pdu) = match message::decode_v2c(bytes) {
                    Ok(m) => m,
                    Err(e) => return malformed(&e),
                };
                if !sent.contains(&pdu.request_id) || &got != community {
                    return None;
                }
                if pdu.tag != RESPONSE {
                    return malformed(&format_args!("PDU type 0x{:02x}, not a Response", pdu.tag));
                }
                return Some(Ok(Reply::Pdu(pdu)));
            }
            Credentials::Usm(u) => u,
        };
        let m = match message::decode_v3(bytes) {
            Ok(m) => m,
            Err(e) => return malformed(&e),
        };
        if !sent.contains(&m.msg_id) {
            return None;
        }
        if m.security_model != message::USM {
            return malformed(&format_args!(
                "security model {}, not USM",
                m.security_model
            ));
        }
        let authenticated = m.flags & FLAG_AUTH != 0;
        if authenticated {
            let Some(engine) = self.engine.as_mut() else {
                return malformed(&"an authenticated reply to a discovery request");
            };
            if m.usm.engine_id != engine.id {
                // Signed by another engine: the agent was replaced. Discover it again.
                self.engine = None;
                return Some(Ok(Reply::Resync));
            }
            if !usm::verify(user.auth, &engine.auth_key, bytes, m.auth_range.clone()) {
                return Some(Err(SnmpError::Authentication(
                    "the reply's digest does not match (wrong auth_password or auth_protocol?)"
                        .into(),
                )));
            }
            // An authenticated message carries the agent's clock: keep ours in step.
            if let (Ok(boots), Ok(time)) = (u32::try_from(m.usm.boots), u32::try_from(m.usm.time)) {
                engine.boots = boots;
                engine.time = time;
                engine.at = crate::clock::now();
            }
        }
        let scoped = match m.data {
            MsgData::Plain(s) => s,
            MsgData::Encrypted(bytes) => {
                let (Some(engine), true) = (&self.engine, authenticated) else {
                    return malformed(&"an encrypted reply that is not authenticated");
                };
                let Ok(salt) = <[u8; 8]>::try_from(m.usm.privacy.as_slice()) else {
                    return Some(Err(SnmpError::Authentication(format!(
                        "the reply's privacy parameters are {} bytes, not 8",
                        m.usm.privacy.len()
                    ))));
                };
                let plain = usm::aes_decrypt(
                    &engine.priv_key,
                    m.usm.boots as u32,
                    m.usm.time as u32,
                    &salt,
                    &bytes,
                );
                match ScopedPdu::decode(&plain) {
                    Ok(s) => s,
                    Err(_) => {
                        return Some(Err(SnmpError::Authentication(
                            "cannot decrypt the reply (wrong priv_password?)".into(),
                        )))
                    }
                }
            }
        };
        match scoped.pdu.tag {
            REPORT => Some(self.report(&m.usm, &scoped.pdu)),
            RESPONSE => {
                let wanted_priv = user.privacy != PrivProtocol::None;
                if !authenticated || (wanted_priv && m.flags & FLAG_PRIV == 0) {
                    return Some(Err(SnmpError::Authentication(
                        "the agent answered below the security level asked for".into(),
                    )));
                }
                Some(Ok(Reply::Pdu(scoped.pdu)))
            }
            other => malformed(&format_args!("PDU type 0x{other:02x}, not a Response")),
        }
    }

    /// A Report PDU (RFC 3412 7.1.3, RFC 3414 3.2): the USM statistics counter it carries
    /// says what went wrong.
    fn report(&mut self, params: &UsmParams, pdu: &Pdu) -> Result<Reply, SnmpError> {
        const USM_STATS: [u32; 9] = [1, 3, 6, 1, 6, 3, 15, 1, 1];
        let Some((oid, _)) = pdu.varbinds.first() else {
            return Err(SnmpError::Malformed("an empty report".into()));
        };
        let Credentials::Usm(user) = &self.creds else {
            return Err(SnmpError::Malformed("a report to a v2c request".into()));
        };
        let arcs = oid.arcs();
        let counter = match arcs.strip_prefix(&USM_STATS[..]) {
            Some([n, 0]) => *n,
            _ => return Err(SnmpError::Report(oid.to_string())),
        };
        let boots = u32::try_from(params.boots).unwrap_or(0);
        let time = u32::try_from(params.time).unwrap_or(0);
        match counter {
            // usmStatsUnknownEngineIDs: discovery's answer, or the agent's engine changed.
            4 => {
                if params.engine_id.is_empty() {
                    return Err(SnmpError::Malformed(
                        "a discovery report without an engine id".into(),
                    ));
                }
                let localise = |ku: &[u8]| {
                    if ku.is_empty() {
                        Vec::new()
                    } else {
                        usm::localize(user.auth, ku, &params.engine_id)
                    }
                };
                tracing::debug!(target = %self.target, boots, time, "SNMP engine discovered");
                self.engine = Some(Engine {
                    id: params.engine_id.clone(),
                    boots,
                    time,
                    at: crate::clock::now(),
                    auth_key: localise(&user.auth_ku),
                    priv_key: localise(&user.priv_ku),
                });
                Ok(Reply::Resync)
            }
            // usmStatsNotInTimeWindows: the agent restarted (boots went up) or our notion
            // of its clock drifted; the report carries the right values.
            2 => {
                let Some(engine) = self.engine.as_mut() else {
                    return Err(SnmpError::Malformed(
                        "a time window report before discovery".into(),
                    ));
                };
                tracing::debug!(target = %self.target, boots, time, "SNMP engine time resynchronised");
                engine.boots = boots;
                engine.time = time;
                engine.at = crate::clock::now();
                Ok(Reply::Resync)
            }
            3 => Err(SnmpError::UnknownUser(
                String::from_utf8_lossy(&user.name).into_owned(),
            )),
            5 => Err(SnmpError::Authentication(
                "the agent says the digest is wrong (wrong auth_password or auth_protocol)".into(),
            )),
            6 => Err(SnmpError::Authentication(
                "the agent cannot decrypt the request (wrong priv_password or priv_protocol)"
                    .into(),
            )),
            1 => Err(SnmpError::Authentication(
                "the agent does not accept this security level for the user (usmStatsUnsupportedSecLevels)".into(),
            )),
            _ => Err(SnmpError::Report(oid.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_come_from_integer_types_and_numeric_text() {
        assert_eq!(number(&Value::Integer(-12)), Ok(-12.0));
        assert_eq!(number(&Value::Gauge32(230)), Ok(230.0));
        assert_eq!(number(&Value::Counter32(7)), Ok(7.0));
        assert_eq!(number(&Value::TimeTicks(100)), Ok(100.0));
        assert_eq!(number(&Value::Counter64(1 << 40)), Ok((1u64 << 40) as f64));
        assert_eq!(number(&Value::OctetString(b" 23.5\0".to_vec())), Ok(23.5));
        assert_eq!(
            number(&Value::OctetString(b"OK".to_vec())),
            Err(OidFault::NotNumeric("OCTET STRING"))
        );
        assert_eq!(
            number(&Value::OctetString(b"inf".to_vec())),
            Err(OidFault::NotNumeric("OCTET STRING"))
        );
        assert_eq!(
            number(&Value::IpAddress(vec![10, 0, 0, 1])),
            Err(OidFault::NotNumeric("IpAddress"))
        );
        assert_eq!(
            number(&Value::NoSuchInstance),
            Err(OidFault::NoSuchInstance)
        );
        assert_eq!(
            OidFault::EndOfMibView.fault(),
            crate::detect::FaultKind::NoSuchObject
        );
    }

    #[test]
    fn errors_are_counted_by_what_went_wrong() {
        let timeout = SnmpError::Timeout {
            addr: "a:161".into(),
            attempts: 2,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        assert_eq!(
            SnmpError::Authentication("x".into()).kind(),
            ErrorKind::Authentication
        );
        assert_eq!(
            SnmpError::UnknownUser("u".into()).kind(),
            ErrorKind::Authentication
        );
        let agent = SnmpError::Agent {
            status: 5,
            index: 1,
        };
        assert_eq!(agent.kind(), ErrorKind::Exception);
        assert!(agent.to_string().contains("genErr"), "{agent}");
        assert_eq!(OidFault::NoSuchObject.kind(), ErrorKind::NoSuchObject);
    }

    /// A v2c agent played on loopback: each GET is answered with the PDUs `answer` makes.
    /// For what no real agent does on demand (late replies, tooBig); the codec itself is
    /// checked against net-snmp in tests/it/sources_snmp.rs.
    async fn scripted_agent(answer: impl Fn(&Pdu) -> Vec<Pdu> + Send + 'static) -> String {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let (community, request) = message::decode_v2c(&buf[..n]).unwrap();
                for reply in answer(&request) {
                    let bytes = message::encode_v2c(&community, &reply);
                    socket.send_to(&bytes, from).await.unwrap();
                }
            }
        });
        addr
    }

    fn response(request_id: i32, status: i64, varbinds: Vec<(Oid, Value)>) -> Pdu {
        Pdu {
            tag: RESPONSE,
            request_id,
            error_status: status,
            error_index: 0,
            varbinds,
        }
    }

    fn client(addr: String) -> Client {
        Client::new(
            addr,
            Credentials::Community(b"public".to_vec()),
            Duration::from_secs(2),
            0,
        )
    }

    #[tokio::test]
    async fn a_late_reply_to_another_request_is_dropped_and_the_right_one_read() {
        let addr = scripted_agent(|req| {
            let stale = |v| vec![(req.varbinds[0].0.clone(), Value::Integer(v))];
            vec![
                response(req.request_id.wrapping_sub(1), 0, stale(1)),
                response(req.request_id, 0, stale(2)),
            ]
        })
        .await;
        let oid: Oid = "1.3.6.1.2.1.33.1.2.3.0".parse().unwrap();
        let mut c = client(addr);
        assert_eq!(c.get(std::slice::from_ref(&oid)).await.unwrap(), [Ok(2.0)]);
        // The next request reads its own answer, not the one left over.
        assert_eq!(c.get(&[oid]).await.unwrap(), [Ok(2.0)]);
    }

    #[tokio::test]
    async fn a_too_big_answer_splits_the_request_and_keeps_the_order() {
        let addr = scripted_agent(|req| {
            if req.varbinds.len() > 2 {
                return vec![response(req.request_id, TOO_BIG, Vec::new())];
            }
            let values = req
                .varbinds
                .iter()
                .map(|(o, _)| (o.clone(), Value::Gauge32(*o.arcs().last().unwrap())))
                .collect();
            vec![response(req.request_id, 0, values)]
        })
        .await;
        let oids: Vec<Oid> = (1..=5)
            .map(|i| format!("1.3.6.1.4.1.99.{i}").parse().unwrap())
            .collect();
        let mut c = client(addr);
        let got = c.get(&oids).await.unwrap();
        assert_eq!(got, [Ok(1.0), Ok(2.0), Ok(3.0), Ok(4.0), Ok(5.0)]);
    }

    #[tokio::test]
    async fn a_reply_for_other_oids_is_malformed_and_an_error_status_is_the_agents() {
        let addr = scripted_agent(|req| {
            let other: Oid = "1.3.6.1.2.1.1.3.0".parse().unwrap();
            match req.varbinds.len() {
                1 => vec![response(
                    req.request_id,
                    0,
                    vec![(other, Value::TimeTicks(5))],
                )],
                _ => vec![response(req.request_id, 5, Vec::new())],
            }
        })
        .await;
        let a: Oid = "1.3.6.1.2.1.33.1.2.3.0".parse().unwrap();
        let b: Oid = "1.3.6.1.2.1.33.1.2.4.0".parse().unwrap();
        let mut c = client(addr);
        let one = c.get(std::slice::from_ref(&a)).await.unwrap_err();
        assert!(matches!(one, SnmpError::Malformed(_)), "{one}");
        let two = c.get(&[a, b]).await.unwrap_err();
        assert!(matches!(two, SnmpError::Agent { status: 5, .. }), "{two}");
        assert!(two.agent_answered());
    }
}
