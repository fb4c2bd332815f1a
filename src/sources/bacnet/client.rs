//! A BACnet/IP client for one device over UDP: confirmed requests with a timeout per
//! attempt and `retries` more attempts (same invoke id, as clause 5.4 has it), replies
//! matched by invoke id and sender, COV notifications received on the same socket at any
//! time (a confirmed one is acknowledged at once) and queued for the source, and optional
//! foreign-device registration with a BBMD.
//!
//! Design: written on tokio's UDP socket with this folder's codec rather than on a BACnet
//! crate. bacnet-rs's client is blocking (std's UdpSocket), leaves its retries unused, has
//! no COV subscription, and its ReadPropertyMultiple decoder reads only application-tagged
//! values; bacnet-client (rusty-bacnet) is a full stack of nine crates with segmentation,
//! routing and a server, and needs Rust 1.95, above this crate's rust-version. A reading
//! client needs four services and the tag encoding, small enough to check byte for byte
//! against bacpypes3 (codec tests) and then against a bacpypes3 device (tests/it).

use super::codec::{
    self, AccessResult, Apdu, Bvlc, CovNotification, DecodeError, ErrorCode, ObjectId, Value,
};
use crate::sources::metrics::ErrorKind;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// Notifications kept while the source is busy with a request; older ones are dropped
/// first (the next poll reads every object anyway).
const QUEUE: usize = 256;

/// The most objects asked for in one ReadPropertyMultiple before any device said it was
/// too many: four properties each fit an unsegmented 1476-octet reply many times over.
const MAX_OBJECTS_PER_RPM: usize = 32;

/// A request that failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BacnetError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("no answer from {addr} in {attempts} attempt(s) of {timeout:?}")]
    Timeout {
        addr: String,
        attempts: u32,
        timeout: Duration,
    },
    #[error("the device answered with error {0}")]
    Error(ErrorCode),
    #[error("the device rejected the request ({})", codec::reject_reason(*.0))]
    Reject(u8),
    #[error("the device aborted the request ({})", codec::abort_reason(*.0))]
    Abort(u8),
    #[error("malformed reply: {0}")]
    Malformed(String),
}

impl BacnetError {
    /// The class counted in `firebreak_source_errors_total{error}`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BacnetError::Resolve(_) | BacnetError::Io { .. } => ErrorKind::Connect,
            BacnetError::Timeout { .. } => ErrorKind::Timeout,
            BacnetError::Error(e) if e.is_unknown() => ErrorKind::NoSuchObject,
            BacnetError::Error(_) | BacnetError::Reject(_) | BacnetError::Abort(_) => {
                ErrorKind::Exception
            }
            BacnetError::Malformed(_) => ErrorKind::Transport,
        }
    }

    /// Whether the device answered (it said no), as opposed to no usable answer.
    pub fn device_answered(&self) -> bool {
        matches!(
            self,
            BacnetError::Error(_) | BacnetError::Reject(_) | BacnetError::Abort(_)
        )
    }

    /// The device does not do this service at all (Reject unrecognized-service, or an
    /// error of class services).
    pub fn unsupported_service(&self) -> bool {
        match self {
            BacnetError::Reject(r) => *r == codec::REJECT_UNRECOGNIZED_SERVICE,
            BacnetError::Error(e) => e.class == ErrorCode::CLASS_SERVICES,
            _ => false,
        }
    }
}

impl From<DecodeError> for BacnetError {
    fn from(e: DecodeError) -> Self {
        BacnetError::Malformed(e.to_string())
    }
}

/// What a datagram meant to the client.
enum Incoming {
    Reply(u8, Result<Option<Vec<u8>>, BacnetError>),
    BvlcResult(u16),
    Nothing,
}

/// How the client reads many objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// ReadPropertyMultiple, this many objects per request.
    Multiple(usize),
    /// One ReadProperty per property: the device does not do ReadPropertyMultiple.
    Single,
}

/// One device, read by one source.
pub struct Client {
    socket: UdpSocket,
    device: SocketAddr,
    bbmd: Option<SocketAddr>,
    /// Connected to the device (no BBMD): the kernel filters senders and reports a closed
    /// port on the next receive.
    connected: bool,
    timeout: Duration,
    retries: u32,
    next_invoke: u8,
    queue: VecDeque<CovNotification>,
    dropped: u64,
    mode: ReadMode,
}

impl Client {
    /// Binds `local` (any address and a free port when `None`) for the device at `device`
    /// (`host:port`).
    pub async fn connect(
        device: &str,
        local: Option<SocketAddr>,
        bbmd: Option<SocketAddr>,
        timeout: Duration,
        retries: u32,
    ) -> Result<Client, BacnetError> {
        let addr = tokio::time::timeout(timeout, tokio::net::lookup_host(device))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|mut a| a.find(SocketAddr::is_ipv4))
            .ok_or_else(|| BacnetError::Resolve(device.to_string()))?;
        let io = |source| BacnetError::Io {
            addr: addr.to_string(),
            source,
        };
        let local = local.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        let connected = bbmd.is_none();
        if connected {
            socket.connect(addr).await.map_err(io)?;
        }
        let mut seed = [0u8; 1];
        // Only unpredictability suffers if the system generator fails: ids still work.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        Ok(Client {
            socket,
            device: addr,
            bbmd,
            connected,
            timeout,
            retries,
            next_invoke: seed[0],
            queue: VecDeque::new(),
            dropped: 0,
            mode: ReadMode::Multiple(MAX_OBJECTS_PER_RPM),
        })
    }

    /// The device's address.
    pub fn device(&self) -> SocketAddr {
        self.device
    }

    /// The client's own address (where the device sends notifications).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    pub fn read_mode(&self) -> ReadMode {
        self.mode
    }

    /// Notifications dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn io(&self, source: std::io::Error) -> BacnetError {
        BacnetError::Io {
            addr: self.device.to_string(),
            source,
        }
    }

    async fn send(&self, msg: &[u8]) -> Result<(), BacnetError> {
        let sent = if self.connected {
            self.socket.send(msg).await
        } else {
            self.socket.send_to(msg, self.device).await
        };
        sent.map(|_| ()).map_err(|e| self.io(e))
    }

    /// Sends without waiting (an acknowledgement from the receive path, which must not
    /// await so that it stays cancel-safe); a full socket buffer drops it, and the device
    /// sends its notification again.
    fn try_send(&self, msg: &[u8]) {
        let _ = if self.connected {
            self.socket.try_send(msg)
        } else {
            self.socket.try_send_to(msg, self.device)
        };
    }

    /// Registers with the BBMD as a foreign device for `ttl` seconds (a no-op without
    /// one).
    pub async fn register_foreign_device(&mut self, ttl: u16) -> Result<(), BacnetError> {
        let Some(bbmd) = self.bbmd else {
            return Ok(());
        };
        let msg = codec::register_foreign_device(ttl);
        let mut buf = vec![0u8; 1500];
        for _ in 0..=self.retries {
            self.socket
                .send_to(&msg, bbmd)
                .await
                .map_err(|e| self.io(e))?;
            let deadline = crate::clock::now() + self.timeout;
            loop {
                let (n, from) = match tokio::time::timeout_at(
                    deadline,
                    self.socket.recv_from(&mut buf),
                )
                .await
                {
                    Err(_) => break,
                    Ok(Err(e)) => return Err(self.io(e)),
                    Ok(Ok(x)) => x,
                };
                match self.accept(&buf[..n], from) {
                    Incoming::BvlcResult(0) => return Ok(()),
                    Incoming::BvlcResult(code) => {
                        return Err(BacnetError::Malformed(format!(
                            "the BBMD refused the foreign-device registration (result 0x{code:04x})"
                        )))
                    }
                    _ => {}
                }
            }
        }
        Err(BacnetError::Timeout {
            addr: bbmd.to_string(),
            attempts: self.retries + 1,
            timeout: self.timeout,
        })
    }

    /// One confirmed request: the ComplexACK's parameters, or `None` for a SimpleACK.
    async fn request(&mut self, service: u8, body: &[u8]) -> Result<Option<Vec<u8>>, BacnetError> {
        let invoke = self.next_invoke;
        self.next_invoke = self.next_invoke.wrapping_add(1);
        let msg = codec::confirmed_request(invoke, service, body);
        let mut buf = vec![0u8; 1500];
        for _ in 0..=self.retries {
            self.send(&msg).await?;
            let deadline = crate::clock::now() + self.timeout;
            loop {
                let (n, from) = match tokio::time::timeout_at(
                    deadline,
                    self.socket.recv_from(&mut buf),
                )
                .await
                {
                    Err(_) => break,
                    Ok(Err(e)) => return Err(self.io(e)),
                    Ok(Ok(x)) => x,
                };
                if let Incoming::Reply(id, result) = self.accept(&buf[..n], from) {
                    if id == invoke {
                        return result;
                    }
                    tracing::trace!(device = %self.device, invoke_id = id, "BACnet reply to no pending request dropped");
                }
            }
        }
        Err(BacnetError::Timeout {
            addr: self.device.to_string(),
            attempts: self.retries + 1,
            timeout: self.timeout,
        })
    }

    /// Handles a datagram: queues (and acknowledges) notifications, returns replies.
    fn accept(&mut self, datagram: &[u8], from: SocketAddr) -> Incoming {
        let via_bbmd = self.bbmd == Some(from);
        if from != self.device && !via_bbmd {
            return Incoming::Nothing;
        }
        if via_bbmd {
            if let Ok(Bvlc::Result(code)) = codec::parse_bvlc(datagram) {
                return Incoming::BvlcResult(code);
            }
        }
        let (origin, apdu) = match codec::apdu_of(datagram) {
            Ok(Some(x)) => x,
            Ok(None) => return Incoming::Nothing,
            Err(e) => {
                tracing::debug!(device = %self.device, error = %e, "undecodable BACnet datagram dropped");
                return Incoming::Nothing;
            }
        };
        // Through the BBMD, only what the device itself sent.
        if via_bbmd && origin.map(SocketAddr::V4) != Some(self.device) {
            return Incoming::Nothing;
        }
        match apdu {
            Apdu::ConfirmedRequest {
                invoke_id,
                service: codec::SERVICE_CONFIRMED_COV_NOTIFICATION,
                segmented: false,
                body,
            } => {
                match codec::decode_cov_notification(body) {
                    Ok(n) => {
                        self.try_send(&codec::simple_ack(
                            invoke_id,
                            codec::SERVICE_CONFIRMED_COV_NOTIFICATION,
                        ));
                        self.enqueue(n);
                    }
                    Err(e) => {
                        tracing::debug!(device = %self.device, error = %e, "malformed COV notification");
                        self.try_send(&codec::reject_pdu(invoke_id, 0));
                    }
                }
                Incoming::Nothing
            }
            Apdu::ConfirmedRequest { invoke_id, .. } => {
                // Nothing else is served here.
                self.try_send(&codec::reject_pdu(
                    invoke_id,
                    codec::REJECT_UNRECOGNIZED_SERVICE,
                ));
                Incoming::Nothing
            }
            Apdu::UnconfirmedRequest {
                service: codec::SERVICE_UNCONFIRMED_COV_NOTIFICATION,
                body,
            } => {
                match codec::decode_cov_notification(body) {
                    Ok(n) => self.enqueue(n),
                    Err(e) => {
                        tracing::debug!(device = %self.device, error = %e, "malformed COV notification")
                    }
                }
                Incoming::Nothing
            }
            Apdu::UnconfirmedRequest { .. } | Apdu::SegmentAck { .. } => Incoming::Nothing,
            Apdu::SimpleAck { invoke_id, .. } => Incoming::Reply(invoke_id, Ok(None)),
            Apdu::ComplexAck {
                invoke_id,
                segmented,
                body,
                ..
            } => {
                let r = if segmented {
                    // We never accept segments (the request says so); a device that sends
                    // them anyway is not answering this request usably.
                    Err(BacnetError::Malformed(
                        "a segmented reply, though the request did not accept one".into(),
                    ))
                } else {
                    Ok(Some(body.to_vec()))
                };
                Incoming::Reply(invoke_id, r)
            }
            Apdu::Error {
                invoke_id, error, ..
            } => Incoming::Reply(invoke_id, Err(BacnetError::Error(error))),
            Apdu::Reject { invoke_id, reason } => {
                Incoming::Reply(invoke_id, Err(BacnetError::Reject(reason)))
            }
            Apdu::Abort {
                invoke_id, reason, ..
            } => Incoming::Reply(invoke_id, Err(BacnetError::Abort(reason))),
        }
    }

    fn enqueue(&mut self, n: CovNotification) {
        if self.queue.len() >= QUEUE {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(n);
    }

    /// The next COV notification: a queued one, else the next to arrive. Cancel-safe (it
    /// awaits only the socket's receive).
    pub async fn next_notification(&mut self) -> Result<CovNotification, BacnetError> {
        let mut buf = vec![0u8; 1500];
        loop {
            if let Some(n) = self.queue.pop_front() {
                return Ok(n);
            }
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(x) => x,
                // A closed port reported by ICMP on a connected socket: the poll will
                // notice the device is gone; keep listening.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(self.io(e)),
            };
            let _ = self.accept(&buf[..n], from);
        }
    }

    /// ReadProperty: the property's value(s) (an array property without an index: all of
    /// its elements).
    pub async fn read_property(
        &mut self,
        object: ObjectId,
        property: u32,
        index: Option<u32>,
    ) -> Result<Vec<Value>, BacnetError> {
        let body = codec::read_property(object, property, index);
        let ack = self
            .request(codec::SERVICE_READ_PROPERTY, &body)
            .await?
            .ok_or_else(|| BacnetError::Malformed("a SimpleACK to ReadProperty".into()))?;
        let (o, p, values) = codec::decode_read_property_ack(&ack)?;
        if o != object || p != property {
            return Err(BacnetError::Malformed(format!(
                "the answer is for {o} {}, not {object} {}",
                codec::property_name(p),
                codec::property_name(property)
            )));
        }
        Ok(values)
    }

    /// ReadPropertyMultiple, as one request.
    pub async fn read_property_multiple(
        &mut self,
        specs: &[(ObjectId, Vec<u32>)],
    ) -> Result<Vec<AccessResult>, BacnetError> {
        let body = codec::read_property_multiple(specs);
        let ack = self
            .request(codec::SERVICE_READ_PROPERTY_MULTIPLE, &body)
            .await?
            .ok_or_else(|| BacnetError::Malformed("a SimpleACK to ReadPropertyMultiple".into()))?;
        let results = codec::decode_read_property_multiple_ack(&ack)?;
        let same = results.len() == specs.len()
            && results.iter().zip(specs).all(|(r, (o, props))| {
                r.object == *o
                    && r.results.len() == props.len()
                    && r.results.iter().zip(props).all(|(x, p)| x.property == *p)
            });
        if !same {
            return Err(BacnetError::Malformed(
                "the ReadPropertyMultiple answer is not for the objects asked for".into(),
            ));
        }
        Ok(results)
    }

    /// Reads `props` of every object: ReadPropertyMultiple in batches the device can
    /// answer unsegmented, or, once the device has said it does not do that service, one
    /// ReadProperty per property. A property the device has no value for is an error in
    /// its result; an error is the whole read's (no answer, a bad reply, a refusal of
    /// everything).
    pub async fn read_objects(
        &mut self,
        specs: &[(ObjectId, Vec<u32>)],
    ) -> Result<Vec<AccessResult>, BacnetError> {
        let mut out = Vec::with_capacity(specs.len());
        let mut rest = specs;
        while !rest.is_empty() {
            let ReadMode::Multiple(max) = self.mode else {
                for (object, props) in rest {
                    out.push(self.read_singly(*object, props).await?);
                }
                break;
            };
            let n = rest.len().min(max);
            match self.read_property_multiple(&rest[..n]).await {
                Ok(results) => {
                    out.extend(results);
                    rest = &rest[n..];
                }
                Err(BacnetError::Abort(r) | BacnetError::Reject(r))
                    if r == codec::ABORT_SEGMENTATION_NOT_SUPPORTED
                        || r == 1 /* buffer-overflow */ =>
                {
                    if n > 1 {
                        self.mode = ReadMode::Multiple(n / 2);
                        tracing::debug!(device = %self.device, objects = n / 2, "BACnet reply too large unsegmented; asking for fewer objects at once");
                    } else {
                        self.mode = ReadMode::Single;
                    }
                }
                Err(e) if e.unsupported_service() => {
                    self.mode = ReadMode::Single;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn read_singly(
        &mut self,
        object: ObjectId,
        props: &[u32],
    ) -> Result<AccessResult, BacnetError> {
        let mut results = Vec::with_capacity(props.len());
        for p in props {
            let value = match self.read_property(object, *p, None).await {
                Ok(v) => Ok(v),
                Err(BacnetError::Error(e)) => Err(e),
                Err(e) => return Err(e),
            };
            results.push(codec::PropertyResult {
                property: *p,
                index: None,
                value,
            });
        }
        Ok(AccessResult { object, results })
    }

    /// SubscribeCOV for `lifetime` seconds (renewing an existing subscription of the
    /// same process id), or a cancellation when `lifetime` is `None`.
    pub async fn subscribe_cov(
        &mut self,
        process_id: u32,
        object: ObjectId,
        confirmed: bool,
        lifetime: Option<u32>,
    ) -> Result<(), BacnetError> {
        let body = codec::subscribe_cov(process_id, object, lifetime.map(|_| confirmed), lifetime);
        self.request(codec::SERVICE_SUBSCRIBE_COV, &body)
            .await
            .map(|_| ())
    }
}
