//! The BACnet/IP subset Firebreak speaks (ASHRAE 135 clauses 20 and 21, Annex J):
//! BVLC (unicast, forwarded, foreign-device registration), the NPDU header, the APDU types
//! (confirmed and unconfirmed requests, SimpleACK, ComplexACK, Error, Reject, Abort), the
//! tag encoding, and the services ReadProperty, ReadPropertyMultiple, SubscribeCOV and the
//! (un)confirmed COV notification, in both directions: the agent's client encodes requests
//! and decodes replies, the simulator's fire panel (hardware-sim) decodes requests and
//! encodes replies. A pure codec: no I/O, and the agent's configuration layer may use
//! [`ObjectId`]'s grammar (`analog-input,3`). Written by hand: the Design note in the agent's
//! `src/sources/bacnet/client.rs` says why no crate was used.
//!
//! Segmentation is not supported, on purpose: requests are small, and the client asks
//! for no more objects at once than fit one unsegmented reply (it halves the batch when a
//! device aborts with segmentation-not-supported).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

/// BVLC type of BACnet/IP (Annex J).
pub const BVLC_TYPE: u8 = 0x81;
pub const BVLC_RESULT: u8 = 0x00;
pub const BVLC_FORWARDED_NPDU: u8 = 0x04;
pub const BVLC_REGISTER_FOREIGN_DEVICE: u8 = 0x05;
pub const BVLC_ORIGINAL_UNICAST: u8 = 0x0a;
pub const BVLC_ORIGINAL_BROADCAST: u8 = 0x0b;

/// Confirmed service choices.
pub const SERVICE_CONFIRMED_COV_NOTIFICATION: u8 = 1;
pub const SERVICE_SUBSCRIBE_COV: u8 = 5;
pub const SERVICE_READ_PROPERTY: u8 = 12;
pub const SERVICE_READ_PROPERTY_MULTIPLE: u8 = 14;
/// Unconfirmed service choices.
pub const SERVICE_I_AM: u8 = 0;
pub const SERVICE_UNCONFIRMED_COV_NOTIFICATION: u8 = 2;

/// Property identifiers used here.
pub mod prop {
    pub const ACTIVE_TEXT: u32 = 4;
    pub const DESCRIPTION: u32 = 28;
    pub const EVENT_STATE: u32 = 36;
    pub const INACTIVE_TEXT: u32 = 46;
    pub const MODEL_NAME: u32 = 70;
    pub const NUMBER_OF_STATES: u32 = 74;
    pub const OBJECT_LIST: u32 = 76;
    pub const OBJECT_NAME: u32 = 77;
    pub const OUT_OF_SERVICE: u32 = 81;
    pub const PRESENT_VALUE: u32 = 85;
    pub const RELIABILITY: u32 = 103;
    pub const STATE_TEXT: u32 = 110;
    pub const STATUS_FLAGS: u32 = 111;
    pub const UNITS: u32 = 117;
    pub const VENDOR_NAME: u32 = 121;
}

/// Object type numbers used here.
pub mod object_type {
    pub const ANALOG_INPUT: u16 = 0;
    pub const BINARY_INPUT: u16 = 3;
    pub const DEVICE: u16 = 8;
    pub const MULTI_STATE_INPUT: u16 = 13;
}

/// BACnet's object type names (clause 21, BACnetObjectType), by number.
const OBJECT_TYPES: &[&str] = &[
    "analog-input",
    "analog-output",
    "analog-value",
    "binary-input",
    "binary-output",
    "binary-value",
    "calendar",
    "command",
    "device",
    "event-enrollment",
    "file",
    "group",
    "loop",
    "multi-state-input",
    "multi-state-output",
    "notification-class",
    "program",
    "schedule",
    "averaging",
    "multi-state-value",
    "trend-log",
    "life-safety-point",
    "life-safety-zone",
    "accumulator",
    "pulse-converter",
    "event-log",
    "global-group",
    "trend-log-multiple",
    "load-control",
    "structured-view",
    "access-door",
    "timer",
    "access-credential",
    "access-point",
    "access-rights",
    "access-user",
    "access-zone",
    "credential-data-input",
    "network-security",
    "bitstring-value",
    "characterstring-value",
    "date-pattern-value",
    "date-value",
    "datetime-pattern-value",
    "datetime-value",
    "integer-value",
    "large-analog-value",
    "octetstring-value",
    "positive-integer-value",
    "time-pattern-value",
    "time-value",
    "notification-forwarder",
    "alert-enrollment",
    "channel",
    "lighting-output",
    "binary-lighting-output",
    "network-port",
];

/// Why bytes are not the BACnet expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("unexpected tag at byte {0}: {1}")]
    UnexpectedTag(usize, &'static str),
    #[error("not BACnet/IP (BVLC type 0x{0:02x})")]
    NotBacnetIp(u8),
    #[error("BVLC length {said} but {got} bytes")]
    BadLength { said: usize, got: usize },
    #[error("NPDU version {0} (1 expected)")]
    NpduVersion(u8),
    #[error("unknown APDU type {0}")]
    ApduType(u8),
    #[error("value of {0} bytes does not fit")]
    TooLong(usize),
}

/// An object: its type number and instance (`analog-input,3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub kind: u16,
    pub instance: u32,
}

/// The largest instance number (22 bits); 4194303 itself means "none".
pub const MAX_INSTANCE: u32 = 0x3f_ffff;

impl ObjectId {
    pub const fn new(kind: u16, instance: u32) -> Self {
        ObjectId { kind, instance }
    }

    fn raw(self) -> u32 {
        (u32::from(self.kind) << 22) | (self.instance & MAX_INSTANCE)
    }

    fn from_raw(v: u32) -> Self {
        ObjectId {
            kind: (v >> 22) as u16,
            instance: v & MAX_INSTANCE,
        }
    }

    /// The type's name (`analog-input`), or its number for types not in the table.
    pub fn type_name(self) -> String {
        type_name(self.kind)
    }
}

/// An object type's name, or its number.
pub fn type_name(kind: u16) -> String {
    OBJECT_TYPES
        .get(usize::from(kind))
        .map_or_else(|| kind.to_string(), |n| (*n).to_string())
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", type_name(self.kind), self.instance)
    }
}

impl FromStr for ObjectId {
    type Err = String;

    /// `<object-type>,<instance>`: BACnet's type names (`analog-input`, also written
    /// `analogInput`) or a type number (proprietary types are 128 to 1023).
    fn from_str(s: &str) -> Result<Self, String> {
        let (t, i) = s
            .split_once(',')
            .ok_or("is not \"<object-type>,<instance>\" (e.g. \"analog-input,3\")")?;
        let t = t.trim();
        let kind = match t.parse::<u16>() {
            Ok(n) if n < 1024 => n,
            Ok(_) => return Err(format!("object type {t} is over 1023")),
            Err(_) => {
                let want = kebab(t);
                OBJECT_TYPES
                    .iter()
                    .position(|n| *n == want)
                    .ok_or_else(|| format!("unknown object type `{t}`"))? as u16
            }
        };
        let instance = i
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n < MAX_INSTANCE)
            .ok_or_else(|| format!("instance `{}` is not 0 to 4194302", i.trim()))?;
        Ok(ObjectId { kind, instance })
    }
}

/// `analogInput` → `analog-input` (bacpypes3 and many tools write the camel-case form).
fn kebab(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else if c == '_' {
            out.push('-');
        } else {
            out.push(c);
        }
    }
    out
}

/// A property's name for messages (the ones used here), else its number.
pub fn property_name(p: u32) -> String {
    let name = match p {
        prop::PRESENT_VALUE => "present-value",
        prop::STATUS_FLAGS => "status-flags",
        prop::RELIABILITY => "reliability",
        prop::OUT_OF_SERVICE => "out-of-service",
        prop::OBJECT_NAME => "object-name",
        prop::OBJECT_LIST => "object-list",
        prop::UNITS => "units",
        prop::DESCRIPTION => "description",
        prop::EVENT_STATE => "event-state",
        prop::NUMBER_OF_STATES => "number-of-states",
        prop::STATE_TEXT => "state-text",
        prop::ACTIVE_TEXT => "active-text",
        prop::INACTIVE_TEXT => "inactive-text",
        prop::VENDOR_NAME => "vendor-name",
        prop::MODEL_NAME => "model-name",
        _ => return p.to_string(),
    };
    name.to_string()
}

/// A property name (`present-value`, `presentValue`) or number.
pub fn parse_property(s: &str) -> Option<u32> {
    if let Ok(n) = s.trim().parse::<u32>() {
        return (n < 1 << 22).then_some(n);
    }
    let want = kebab(s.trim());
    [
        prop::PRESENT_VALUE,
        prop::STATUS_FLAGS,
        prop::RELIABILITY,
        prop::OUT_OF_SERVICE,
        prop::EVENT_STATE,
        prop::NUMBER_OF_STATES,
    ]
    .into_iter()
    .find(|p| property_name(*p) == want)
}

/// An application-tagged value (clause 20.2). Constructed values nested in context tags
/// are kept as [`Value::Constructed`] (their bytes are skipped).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Unsigned(u64),
    Signed(i64),
    Real(f32),
    Double(f64),
    OctetString(Vec<u8>),
    CharacterString(String),
    /// Bits in order (bit 0 first).
    BitString(Vec<bool>),
    Enumerated(u32),
    Date([u8; 4]),
    Time([u8; 4]),
    ObjectId(ObjectId),
    /// A context-tagged or constructed part of a value this client does not read.
    Constructed,
}

impl Value {
    /// The value as a reading: numbers, enumerations (a binary present-value: 1 active, 0
    /// inactive) and booleans; `None` for anything else.
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Boolean(b) => Some(f64::from(u8::from(*b))),
            Value::Unsigned(u) => Some(*u as f64),
            Value::Signed(i) => Some(*i as f64),
            Value::Real(r) => Some(f64::from(*r)),
            Value::Double(d) => Some(*d),
            Value::Enumerated(e) => Some(f64::from(*e)),
            _ => None,
        }
    }

    /// The application type's name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "Null",
            Value::Boolean(_) => "Boolean",
            Value::Unsigned(_) => "Unsigned",
            Value::Signed(_) => "Signed",
            Value::Real(_) => "Real",
            Value::Double(_) => "Double",
            Value::OctetString(_) => "OctetString",
            Value::CharacterString(_) => "CharacterString",
            Value::BitString(_) => "BitString",
            Value::Enumerated(_) => "Enumerated",
            Value::Date(_) => "Date",
            Value::Time(_) => "Time",
            Value::ObjectId(_) => "ObjectIdentifier",
            Value::Constructed => "constructed",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Unsigned(u) => write!(f, "{u}"),
            Value::Signed(i) => write!(f, "{i}"),
            Value::Real(r) => write!(f, "{r}"),
            Value::Double(d) => write!(f, "{d}"),
            Value::OctetString(b) => {
                for x in b {
                    write!(f, "{x:02x}")?;
                }
                Ok(())
            }
            Value::CharacterString(s) => write!(f, "{s:?}"),
            Value::BitString(bits) => {
                f.write_str("[")?;
                for (i, b) in bits.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}", u8::from(*b))?;
                }
                f.write_str("]")
            }
            Value::Enumerated(e) => write!(f, "{e}"),
            Value::Date(d) => write!(f, "date {d:?}"),
            Value::Time(t) => write!(f, "time {t:?}"),
            Value::ObjectId(o) => write!(f, "{o}"),
            Value::Constructed => f.write_str("(constructed)"),
        }
    }
}

/// An object's status-flags (in-alarm, fault, overridden, out-of-service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusFlags {
    pub in_alarm: bool,
    pub fault: bool,
    pub overridden: bool,
    pub out_of_service: bool,
}

impl StatusFlags {
    pub fn from_value(v: &Value) -> Option<StatusFlags> {
        let Value::BitString(bits) = v else {
            return None;
        };
        let bit = |i: usize| bits.get(i).copied().unwrap_or(false);
        Some(StatusFlags {
            in_alarm: bit(0),
            fault: bit(1),
            overridden: bit(2),
            out_of_service: bit(3),
        })
    }
}

impl fmt::Display for StatusFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.in_alarm, "in-alarm"),
            (self.fault, "fault"),
            (self.overridden, "overridden"),
            (self.out_of_service, "out-of-service"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() {
            f.write_str("normal")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// A BACnet error class and code (the Error PDU, or a property's access error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub class: u32,
    pub code: u32,
}

impl ErrorCode {
    pub const CLASS_OBJECT: u32 = 1;
    pub const CLASS_PROPERTY: u32 = 2;
    pub const CLASS_SERVICES: u32 = 5;
    pub const UNKNOWN_OBJECT: u32 = 31;
    pub const UNKNOWN_PROPERTY: u32 = 32;

    /// The device has no such object or property.
    pub fn is_unknown(self) -> bool {
        matches!(self.code, Self::UNKNOWN_OBJECT | Self::UNKNOWN_PROPERTY)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = match self.class {
            0 => "device",
            1 => "object",
            2 => "property",
            3 => "resources",
            4 => "security",
            5 => "services",
            6 => "vt",
            7 => "communication",
            _ => "",
        };
        let code = match self.code {
            0 => "other",
            2 => "configuration-in-progress",
            3 => "device-busy",
            9 => "invalid-data-type",
            25 => "operational-problem",
            27 => "read-access-denied",
            29 => "service-request-denied",
            30 => "timeout",
            31 => "unknown-object",
            32 => "unknown-property",
            42 => "invalid-array-index",
            43 => "cov-subscription-failed",
            44 => "not-cov-property",
            45 => "optional-functionality-not-supported",
            _ => "",
        };
        match (class, code) {
            ("", _) | (_, "") => write!(f, "class {} code {}", self.class, self.code),
            _ => write!(f, "{class}/{code}"),
        }
    }
}

/// A Reject PDU's reason's name.
pub fn reject_reason(r: u8) -> &'static str {
    match r {
        1 => "buffer-overflow",
        2 => "inconsistent-parameters",
        3 => "invalid-parameter-data-type",
        4 => "invalid-tag",
        5 => "missing-required-parameter",
        6 => "parameter-out-of-range",
        7 => "too-many-arguments",
        8 => "undefined-enumeration",
        9 => "unrecognized-service",
        _ => "other",
    }
}

pub const REJECT_UNRECOGNIZED_SERVICE: u8 = 9;
pub const ABORT_SEGMENTATION_NOT_SUPPORTED: u8 = 4;

/// An Abort PDU's reason's name.
pub fn abort_reason(r: u8) -> &'static str {
    match r {
        1 => "buffer-overflow",
        2 => "invalid-apdu-in-this-state",
        3 => "preempted-by-higher-priority-task",
        4 => "segmentation-not-supported",
        5 => "security-error",
        6 => "insufficient-security",
        7 => "window-size-out-of-range",
        8 => "application-exceeded-reply-time",
        9 => "out-of-resources",
        10 => "tsm-timeout",
        11 => "apdu-too-long",
        _ => "other",
    }
}

// ---------------------------------------------------------------- encoding

/// Builds tagged values.
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    fn tag(&mut self, number: u8, context: bool, len: usize) {
        let class = if context { 0x08 } else { 0 };
        let (first, ext) = if number < 15 {
            (number << 4, None)
        } else {
            (0xf0, Some(number))
        };
        if len < 5 {
            self.0.push(first | class | len as u8);
            self.0.extend(ext);
        } else {
            self.0.push(first | class | 5);
            self.0.extend(ext);
            if len < 254 {
                self.0.push(len as u8);
            } else if len <= 0xffff {
                self.0.push(254);
                self.0.extend((len as u16).to_be_bytes());
            } else {
                self.0.push(255);
                self.0.extend((len as u32).to_be_bytes());
            }
        }
    }

    fn unsigned_bytes(v: u64) -> Vec<u8> {
        let b = v.to_be_bytes();
        let skip = b.iter().take(7).take_while(|x| **x == 0).count();
        b[skip..].to_vec()
    }

    pub fn opening(&mut self, number: u8) {
        self.tag(number, true, 0);
        let at = self.0.len() - if number < 15 { 1 } else { 2 };
        self.0[at] |= 6;
    }

    pub fn closing(&mut self, number: u8) {
        self.tag(number, true, 0);
        let at = self.0.len() - if number < 15 { 1 } else { 2 };
        self.0[at] |= 7;
    }

    pub fn ctx_unsigned(&mut self, number: u8, v: u64) {
        let b = Self::unsigned_bytes(v);
        self.tag(number, true, b.len());
        self.0.extend(b);
    }

    /// An enumeration, context-tagged (encoded as an unsigned).
    pub fn ctx_enumerated(&mut self, number: u8, v: u32) {
        self.ctx_unsigned(number, u64::from(v));
    }

    pub fn ctx_boolean(&mut self, number: u8, v: bool) {
        self.tag(number, true, 1);
        self.0.push(u8::from(v));
    }

    pub fn ctx_object_id(&mut self, number: u8, o: ObjectId) {
        self.tag(number, true, 4);
        self.0.extend(o.raw().to_be_bytes());
    }

    /// An application-tagged value (what a device puts in a property).
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.tag(0, false, 0),
            Value::Boolean(b) => self.tag(1, false, usize::from(*b)),
            Value::Unsigned(u) => {
                let b = Self::unsigned_bytes(*u);
                self.tag(2, false, b.len());
                self.0.extend(b);
            }
            Value::Signed(i) => {
                let b = i.to_be_bytes();
                // Minimal two's complement: drop leading bytes that only repeat the sign.
                let mut skip = 0;
                while skip < 7 {
                    let (x, next) = (b[skip], b[skip + 1]);
                    if (x == 0 && next & 0x80 == 0) || (x == 0xff && next & 0x80 != 0) {
                        skip += 1;
                    } else {
                        break;
                    }
                }
                self.tag(3, false, 8 - skip);
                self.0.extend(&b[skip..]);
            }
            Value::Real(r) => {
                self.tag(4, false, 4);
                self.0.extend(r.to_be_bytes());
            }
            Value::Double(d) => {
                self.tag(5, false, 8);
                self.0.extend(d.to_be_bytes());
            }
            Value::OctetString(b) => {
                self.tag(6, false, b.len());
                self.0.extend(b);
            }
            Value::CharacterString(s) => {
                // Character set 0: UTF-8 (ANSI X3.4 in older editions).
                self.tag(7, false, s.len() + 1);
                self.0.push(0);
                self.0.extend(s.as_bytes());
            }
            Value::BitString(bits) => {
                let n = bits.len().div_ceil(8);
                self.tag(8, false, n + 1);
                self.0.push((n * 8 - bits.len()) as u8);
                for chunk in bits.chunks(8) {
                    let mut byte = 0u8;
                    for (i, b) in chunk.iter().enumerate() {
                        if *b {
                            byte |= 0x80 >> i;
                        }
                    }
                    self.0.push(byte);
                }
            }
            Value::Enumerated(e) => {
                let b = Self::unsigned_bytes(u64::from(*e));
                self.tag(9, false, b.len());
                self.0.extend(b);
            }
            Value::Date(d) => {
                self.tag(10, false, 4);
                self.0.extend(d);
            }
            Value::Time(t) => {
                self.tag(11, false, 4);
                self.0.extend(t);
            }
            Value::ObjectId(o) => {
                self.tag(12, false, 4);
                self.0.extend(o.raw().to_be_bytes());
            }
            Value::Constructed => self.tag(0, false, 0),
        }
    }
}

/// The BVLC header in front of an NPDU (`function`: original-unicast, ...).
fn bvlc(function: u8, npdu_apdu: &[u8]) -> Vec<u8> {
    let len = npdu_apdu.len() + 4;
    let mut out = Vec::with_capacity(len);
    out.extend([BVLC_TYPE, function]);
    out.extend((len as u16).to_be_bytes());
    out.extend(npdu_apdu);
    out
}

/// Max-APDU-length-accepted code 5: 1476 octets, the most a BACnet/IP datagram carries.
pub const MAX_APDU_CODE: u8 = 5;

/// A confirmed request, unsegmented and not accepting a segmented answer, in an
/// Original-Unicast-NPDU that expects a reply.
pub fn confirmed_request(invoke_id: u8, service: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0x01, 0x04, 0x00, MAX_APDU_CODE, invoke_id, service];
    m.extend(body);
    bvlc(BVLC_ORIGINAL_UNICAST, &m)
}

/// An unconfirmed request in an Original-Unicast-NPDU.
pub fn unconfirmed_request(service: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0x01, 0x00, 0x10, service];
    m.extend(body);
    bvlc(BVLC_ORIGINAL_UNICAST, &m)
}

/// The SimpleACK of a confirmed request (a confirmed COV notification).
pub fn simple_ack(invoke_id: u8, service: u8) -> Vec<u8> {
    bvlc(
        BVLC_ORIGINAL_UNICAST,
        &[0x01, 0x00, 0x20, invoke_id, service],
    )
}

/// A ComplexACK (the simulator's answers).
pub fn complex_ack(invoke_id: u8, service: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0x01, 0x00, 0x30, invoke_id, service];
    m.extend(body);
    bvlc(BVLC_ORIGINAL_UNICAST, &m)
}

/// An Error PDU (the simulator's answers).
pub fn error_pdu(invoke_id: u8, service: u8, e: ErrorCode) -> Vec<u8> {
    let mut w = Writer(vec![0x01, 0x00, 0x50, invoke_id, service]);
    w.value(&Value::Enumerated(e.class));
    w.value(&Value::Enumerated(e.code));
    bvlc(BVLC_ORIGINAL_UNICAST, &w.0)
}

/// A Reject PDU (the simulator's answers).
pub fn reject_pdu(invoke_id: u8, reason: u8) -> Vec<u8> {
    bvlc(
        BVLC_ORIGINAL_UNICAST,
        &[0x01, 0x00, 0x60, invoke_id, reason],
    )
}

/// Register-Foreign-Device with a BBMD, for `ttl` seconds (Annex J.5.2).
pub fn register_foreign_device(ttl: u16) -> Vec<u8> {
    let mut out = vec![BVLC_TYPE, BVLC_REGISTER_FOREIGN_DEVICE, 0, 6];
    out.extend(ttl.to_be_bytes());
    out
}

/// ReadProperty-Request.
pub fn read_property(object: ObjectId, property: u32, index: Option<u32>) -> Vec<u8> {
    let mut w = Writer::default();
    w.ctx_object_id(0, object);
    w.ctx_enumerated(1, property);
    if let Some(i) = index {
        w.ctx_unsigned(2, u64::from(i));
    }
    w.0
}

/// ReadPropertyMultiple-Request: each object with its properties.
pub fn read_property_multiple(specs: &[(ObjectId, Vec<u32>)]) -> Vec<u8> {
    let mut w = Writer::default();
    for (object, props) in specs {
        w.ctx_object_id(0, *object);
        w.opening(1);
        for p in props {
            w.ctx_enumerated(0, *p);
        }
        w.closing(1);
    }
    w.0
}

/// SubscribeCOV-Request; without `confirmed` and `lifetime` it cancels the subscription.
pub fn subscribe_cov(
    process_id: u32,
    object: ObjectId,
    confirmed: Option<bool>,
    lifetime: Option<u32>,
) -> Vec<u8> {
    let mut w = Writer::default();
    w.ctx_unsigned(0, u64::from(process_id));
    w.ctx_object_id(1, object);
    if let Some(c) = confirmed {
        w.ctx_boolean(2, c);
    }
    if let Some(l) = lifetime {
        w.ctx_unsigned(3, u64::from(l));
    }
    w.0
}

/// A COV notification's parameters (the same for the confirmed and the unconfirmed one).
pub fn cov_notification(n: &CovNotification) -> Vec<u8> {
    let mut w = Writer::default();
    w.ctx_unsigned(0, u64::from(n.process_id));
    w.ctx_object_id(1, n.device);
    w.ctx_object_id(2, n.object);
    w.ctx_unsigned(3, u64::from(n.time_remaining));
    w.opening(4);
    for (p, values) in &n.values {
        w.ctx_enumerated(0, *p);
        w.opening(2);
        for v in values {
            w.value(v);
        }
        w.closing(2);
    }
    w.closing(4);
    w.0
}

/// ReadProperty-ACK (the simulator's answers).
pub fn read_property_ack(object: ObjectId, property: u32, values: &[Value]) -> Vec<u8> {
    let mut w = Writer::default();
    w.ctx_object_id(0, object);
    w.ctx_enumerated(1, property);
    w.opening(3);
    for v in values {
        w.value(v);
    }
    w.closing(3);
    w.0
}

/// ReadPropertyMultiple-ACK (the simulator's answers).
pub fn read_property_multiple_ack(results: &[AccessResult]) -> Vec<u8> {
    let mut w = Writer::default();
    for r in results {
        w.ctx_object_id(0, r.object);
        w.opening(1);
        for p in &r.results {
            w.ctx_enumerated(2, p.property);
            if let Some(i) = p.index {
                w.ctx_unsigned(3, u64::from(i));
            }
            match &p.value {
                Ok(values) => {
                    w.opening(4);
                    for v in values {
                        w.value(v);
                    }
                    w.closing(4);
                }
                Err(e) => {
                    w.opening(5);
                    w.value(&Value::Enumerated(e.class));
                    w.value(&Value::Enumerated(e.code));
                    w.closing(5);
                }
            }
        }
        w.closing(1);
    }
    w.0
}

// ---------------------------------------------------------------- decoding

/// What a BVLC message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bvlc<'a> {
    /// An NPDU; `origin` is the original sender of a Forwarded-NPDU (from a BBMD).
    Npdu {
        origin: Option<SocketAddrV4>,
        npdu: &'a [u8],
    },
    /// BVLC-Result (the answer to a foreign-device registration): 0 is success.
    Result(u16),
    /// A BVLC function this client has no use for.
    Other(u8),
}

pub fn parse_bvlc(buf: &[u8]) -> Result<Bvlc<'_>, DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::Truncated(buf.len()));
    }
    if buf[0] != BVLC_TYPE {
        return Err(DecodeError::NotBacnetIp(buf[0]));
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if len != buf.len() {
        return Err(DecodeError::BadLength {
            said: len,
            got: buf.len(),
        });
    }
    match buf[1] {
        BVLC_ORIGINAL_UNICAST | BVLC_ORIGINAL_BROADCAST => Ok(Bvlc::Npdu {
            origin: None,
            npdu: &buf[4..],
        }),
        BVLC_FORWARDED_NPDU => {
            if buf.len() < 10 {
                return Err(DecodeError::Truncated(buf.len()));
            }
            let ip = Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
            let port = u16::from_be_bytes([buf[8], buf[9]]);
            Ok(Bvlc::Npdu {
                origin: Some(SocketAddrV4::new(ip, port)),
                npdu: &buf[10..],
            })
        }
        BVLC_RESULT => {
            if buf.len() < 6 {
                return Err(DecodeError::Truncated(buf.len()));
            }
            Ok(Bvlc::Result(u16::from_be_bytes([buf[4], buf[5]])))
        }
        other => Ok(Bvlc::Other(other)),
    }
}

/// The APDU of an NPDU; `None` for a network layer message (routers' business).
pub fn parse_npdu(buf: &[u8]) -> Result<Option<&[u8]>, DecodeError> {
    let need = |n: usize| {
        if buf.len() < n {
            Err(DecodeError::Truncated(buf.len()))
        } else {
            Ok(())
        }
    };
    need(2)?;
    if buf[0] != 1 {
        return Err(DecodeError::NpduVersion(buf[0]));
    }
    let control = buf[1];
    let mut at = 2;
    let dnet = control & 0x20 != 0;
    if dnet {
        need(at + 3)?;
        at += 3 + usize::from(buf[at + 2]);
    }
    if control & 0x08 != 0 {
        need(at + 3)?;
        at += 3 + usize::from(buf[at + 2]);
    }
    if dnet {
        at += 1; // hop count
    }
    if control & 0x80 != 0 {
        return Ok(None);
    }
    need(at)?;
    Ok(Some(&buf[at..]))
}

/// An APDU, as far as a client needs to tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apdu<'a> {
    ConfirmedRequest {
        invoke_id: u8,
        service: u8,
        segmented: bool,
        body: &'a [u8],
    },
    UnconfirmedRequest {
        service: u8,
        body: &'a [u8],
    },
    SimpleAck {
        invoke_id: u8,
        service: u8,
    },
    ComplexAck {
        invoke_id: u8,
        service: u8,
        segmented: bool,
        body: &'a [u8],
    },
    SegmentAck {
        invoke_id: u8,
    },
    Error {
        invoke_id: u8,
        service: u8,
        error: ErrorCode,
    },
    Reject {
        invoke_id: u8,
        reason: u8,
    },
    Abort {
        invoke_id: u8,
        server: bool,
        reason: u8,
    },
}

impl Apdu<'_> {
    /// The invoke id of a reply to a confirmed request.
    pub fn reply_to(&self) -> Option<u8> {
        match self {
            Apdu::SimpleAck { invoke_id, .. }
            | Apdu::ComplexAck { invoke_id, .. }
            | Apdu::Error { invoke_id, .. }
            | Apdu::Reject { invoke_id, .. }
            | Apdu::Abort { invoke_id, .. }
            | Apdu::SegmentAck { invoke_id } => Some(*invoke_id),
            _ => None,
        }
    }
}

pub fn parse_apdu(buf: &[u8]) -> Result<Apdu<'_>, DecodeError> {
    let need = |n: usize| {
        if buf.len() < n {
            Err(DecodeError::Truncated(buf.len()))
        } else {
            Ok(())
        }
    };
    need(1)?;
    let first = buf[0];
    match first >> 4 {
        0 => {
            need(4)?;
            let segmented = first & 0x08 != 0;
            // Segmented: sequence number and window size before the service choice.
            let at = if segmented { 5 } else { 3 };
            need(at + 1)?;
            Ok(Apdu::ConfirmedRequest {
                invoke_id: buf[2],
                service: buf[at],
                segmented,
                body: &buf[at + 1..],
            })
        }
        1 => {
            need(2)?;
            Ok(Apdu::UnconfirmedRequest {
                service: buf[1],
                body: &buf[2..],
            })
        }
        2 => {
            need(3)?;
            Ok(Apdu::SimpleAck {
                invoke_id: buf[1],
                service: buf[2],
            })
        }
        3 => {
            let segmented = first & 0x08 != 0;
            let at = if segmented { 4 } else { 2 };
            need(at + 1)?;
            Ok(Apdu::ComplexAck {
                invoke_id: buf[1],
                service: buf[at],
                segmented,
                body: &buf[at + 1..],
            })
        }
        4 => {
            need(2)?;
            Ok(Apdu::SegmentAck { invoke_id: buf[1] })
        }
        5 => {
            need(3)?;
            let mut r = Reader::new(&buf[3..]);
            // Most services' errors are the plain class and code; a few wrap them in
            // context tag 0 (with more after it, which is skipped).
            let wrapped = r.is_opening(0);
            if wrapped {
                r.opening(0)?;
            }
            let class = r.app_enumerated()?;
            let code = r.app_enumerated()?;
            Ok(Apdu::Error {
                invoke_id: buf[1],
                service: buf[2],
                error: ErrorCode { class, code },
            })
        }
        6 => {
            need(3)?;
            Ok(Apdu::Reject {
                invoke_id: buf[1],
                reason: buf[2],
            })
        }
        7 => {
            need(3)?;
            Ok(Apdu::Abort {
                invoke_id: buf[1],
                server: first & 0x01 != 0,
                reason: buf[2],
            })
        }
        t => Err(DecodeError::ApduType(t)),
    }
}

/// A decoded tag header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag {
    number: u8,
    context: bool,
    /// Length of the content (or the value of an application boolean).
    lvt: u32,
    opening: bool,
    closing: bool,
    header: usize,
}

/// Reads tagged values from a buffer, front to back.
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, at: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.at >= self.buf.len()
    }

    fn peek(&self) -> Result<Tag, DecodeError> {
        let b = self.buf;
        let mut at = self.at;
        let first = *b.get(at).ok_or(DecodeError::Truncated(at))?;
        at += 1;
        let mut number = first >> 4;
        if number == 15 {
            number = *b.get(at).ok_or(DecodeError::Truncated(at))?;
            at += 1;
        }
        let context = first & 0x08 != 0;
        let lvt = first & 0x07;
        if context && (lvt == 6 || lvt == 7) {
            return Ok(Tag {
                number,
                context,
                lvt: 0,
                opening: lvt == 6,
                closing: lvt == 7,
                header: at - self.at,
            });
        }
        let len = if lvt == 5 {
            let ext = *b.get(at).ok_or(DecodeError::Truncated(at))?;
            at += 1;
            match ext {
                254 => {
                    let v = b.get(at..at + 2).ok_or(DecodeError::Truncated(at))?;
                    at += 2;
                    u32::from(u16::from_be_bytes([v[0], v[1]]))
                }
                255 => {
                    let v = b.get(at..at + 4).ok_or(DecodeError::Truncated(at))?;
                    at += 4;
                    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
                }
                n => u32::from(n),
            }
        } else {
            u32::from(lvt)
        };
        Ok(Tag {
            number,
            context,
            lvt: len,
            opening: false,
            closing: false,
            header: at - self.at,
        })
    }

    /// The content of a primitive tag just read (`tag`), advancing past it.
    fn content(&mut self, tag: Tag) -> Result<&'a [u8], DecodeError> {
        let start = self.at + tag.header;
        let end = start
            .checked_add(tag.lvt as usize)
            .ok_or(DecodeError::TooLong(tag.lvt as usize))?;
        let c = self
            .buf
            .get(start..end)
            .ok_or(DecodeError::Truncated(start))?;
        self.at = end;
        Ok(c)
    }

    pub fn is_opening(&self, n: u8) -> bool {
        self.peek()
            .is_ok_and(|t| t.context && t.opening && t.number == n)
    }

    pub fn is_closing(&self, n: u8) -> bool {
        self.peek()
            .is_ok_and(|t| t.context && t.closing && t.number == n)
    }

    /// Whether the next tag is the primitive context tag `n`.
    pub fn is_context(&self, n: u8) -> bool {
        self.peek()
            .is_ok_and(|t| t.context && !t.opening && !t.closing && t.number == n)
    }

    pub fn opening(&mut self, n: u8) -> Result<(), DecodeError> {
        let t = self.peek()?;
        if !(t.context && t.opening && t.number == n) {
            return Err(DecodeError::UnexpectedTag(self.at, "an opening tag"));
        }
        self.at += t.header;
        Ok(())
    }

    pub fn closing(&mut self, n: u8) -> Result<(), DecodeError> {
        let t = self.peek()?;
        if !(t.context && t.closing && t.number == n) {
            return Err(DecodeError::UnexpectedTag(self.at, "a closing tag"));
        }
        self.at += t.header;
        Ok(())
    }

    fn context_primitive(&mut self, n: u8) -> Result<&'a [u8], DecodeError> {
        let t = self.peek()?;
        let primitive = t.context && !t.opening && !t.closing;
        if !primitive || t.number != n {
            return Err(DecodeError::UnexpectedTag(self.at, "a context tag"));
        }
        self.content(t)
    }

    pub fn ctx_unsigned(&mut self, n: u8) -> Result<u64, DecodeError> {
        let at = self.at;
        let c = self.context_primitive(n)?;
        unsigned(c).ok_or(DecodeError::TooLong(at))
    }

    pub fn ctx_u32(&mut self, n: u8) -> Result<u32, DecodeError> {
        let at = self.at;
        u32::try_from(self.ctx_unsigned(n)?).map_err(|_| DecodeError::TooLong(at))
    }

    pub fn ctx_boolean(&mut self, n: u8) -> Result<bool, DecodeError> {
        let c = self.context_primitive(n)?;
        Ok(c.first().is_some_and(|b| *b != 0))
    }

    pub fn ctx_object_id(&mut self, n: u8) -> Result<ObjectId, DecodeError> {
        let at = self.at;
        let c = self.context_primitive(n)?;
        let raw: [u8; 4] = c.try_into().map_err(|_| DecodeError::TooLong(at))?;
        Ok(ObjectId::from_raw(u32::from_be_bytes(raw)))
    }

    fn app_enumerated(&mut self) -> Result<u32, DecodeError> {
        let at = self.at;
        match self.value()? {
            Value::Enumerated(e) => Ok(e),
            _ => Err(DecodeError::UnexpectedTag(at, "an enumerated value")),
        }
    }

    /// One application-tagged value, or a context-tagged (possibly constructed) one
    /// skipped as [`Value::Constructed`].
    pub fn value(&mut self) -> Result<Value, DecodeError> {
        let start = self.at;
        let t = self.peek()?;
        if t.context {
            if t.closing {
                return Err(DecodeError::UnexpectedTag(start, "a value"));
            }
            if t.opening {
                self.at += t.header;
                while !self.is_closing(t.number) {
                    self.value()?;
                }
                self.closing(t.number)?;
            } else {
                self.content(t)?;
            }
            return Ok(Value::Constructed);
        }
        if t.number == 1 {
            // Boolean: the value is in the tag.
            self.at += t.header;
            return Ok(Value::Boolean(t.lvt != 0));
        }
        let c = self.content(t)?;
        let fixed = |n: usize| -> Result<&[u8], DecodeError> {
            if c.len() == n {
                Ok(c)
            } else {
                Err(DecodeError::UnexpectedTag(
                    start,
                    "a value of the right length",
                ))
            }
        };
        Ok(match t.number {
            0 => Value::Null,
            2 => Value::Unsigned(unsigned(c).ok_or(DecodeError::TooLong(start))?),
            3 => Value::Signed(signed(c).ok_or(DecodeError::TooLong(start))?),
            4 => {
                let b = fixed(4)?;
                Value::Real(f32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            5 => {
                let b = fixed(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Double(f64::from_be_bytes(a))
            }
            6 => Value::OctetString(c.to_vec()),
            7 => Value::CharacterString(character_string(c)),
            8 => {
                let (unused, bytes) = c.split_first().map_or((0, &[][..]), |(u, r)| (*u, r));
                let total = (bytes.len() * 8).saturating_sub(usize::from(unused));
                Value::BitString(
                    (0..total)
                        .map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0)
                        .collect(),
                )
            }
            9 => Value::Enumerated(
                u32::try_from(unsigned(c).ok_or(DecodeError::TooLong(start))?)
                    .map_err(|_| DecodeError::TooLong(start))?,
            ),
            10 => Value::Date(fixed(4)?.try_into().unwrap_or_default()),
            11 => Value::Time(fixed(4)?.try_into().unwrap_or_default()),
            12 => {
                let b = fixed(4)?;
                Value::ObjectId(ObjectId::from_raw(u32::from_be_bytes([
                    b[0], b[1], b[2], b[3],
                ])))
            }
            _ => Value::Constructed,
        })
    }

    /// Values up to the closing tag `n`, which is consumed.
    pub fn values_until_closing(&mut self, n: u8) -> Result<Vec<Value>, DecodeError> {
        let mut out = Vec::new();
        while !self.is_closing(n) {
            out.push(self.value()?);
        }
        self.closing(n)?;
        Ok(out)
    }
}

fn unsigned(c: &[u8]) -> Option<u64> {
    if c.is_empty() || c.len() > 8 {
        return None;
    }
    Some(c.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
}

fn signed(c: &[u8]) -> Option<i64> {
    if c.is_empty() || c.len() > 8 {
        return None;
    }
    let fill = if c[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut b = [fill; 8];
    b[8 - c.len()..].copy_from_slice(c);
    Some(i64::from_be_bytes(b))
}

/// A CharacterString's text: UTF-8 (set 0) as is; ISO 8859-1 (set 5) mapped; others
/// lossily.
fn character_string(c: &[u8]) -> String {
    match c.split_first() {
        Some((5, rest)) => rest.iter().map(|b| char::from(*b)).collect(),
        Some((_, rest)) => String::from_utf8_lossy(rest).into_owned(),
        None => String::new(),
    }
}

/// ReadProperty-ACK: the object, property and value(s).
pub fn decode_read_property_ack(body: &[u8]) -> Result<(ObjectId, u32, Vec<Value>), DecodeError> {
    let mut r = Reader::new(body);
    let object = r.ctx_object_id(0)?;
    let property = r.ctx_u32(1)?;
    if r.is_context(2) {
        r.ctx_unsigned(2)?;
    }
    r.opening(3)?;
    let values = r.values_until_closing(3)?;
    Ok((object, property, values))
}

/// One property's result in a ReadPropertyMultiple-ACK.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyResult {
    pub property: u32,
    pub index: Option<u32>,
    pub value: Result<Vec<Value>, ErrorCode>,
}

/// One object's results in a ReadPropertyMultiple-ACK.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessResult {
    pub object: ObjectId,
    pub results: Vec<PropertyResult>,
}

pub fn decode_read_property_multiple_ack(body: &[u8]) -> Result<Vec<AccessResult>, DecodeError> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    while !r.is_empty() {
        let object = r.ctx_object_id(0)?;
        r.opening(1)?;
        let mut results = Vec::new();
        while !r.is_closing(1) {
            let property = r.ctx_u32(2)?;
            let index = if r.is_context(3) {
                Some(r.ctx_u32(3)?)
            } else {
                None
            };
            let value = if r.is_opening(4) {
                r.opening(4)?;
                Ok(r.values_until_closing(4)?)
            } else {
                r.opening(5)?;
                let class = r.app_enumerated()?;
                let code = r.app_enumerated()?;
                r.closing(5)?;
                Err(ErrorCode { class, code })
            };
            results.push(PropertyResult {
                property,
                index,
                value,
            });
        }
        r.closing(1)?;
        out.push(AccessResult { object, results });
    }
    Ok(out)
}

/// A ReadPropertyMultiple-Request as the device reads it (the simulator's side).
pub fn decode_read_property_multiple(
    body: &[u8],
) -> Result<Vec<(ObjectId, Vec<u32>)>, DecodeError> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    while !r.is_empty() {
        let object = r.ctx_object_id(0)?;
        r.opening(1)?;
        let mut props = Vec::new();
        while !r.is_closing(1) {
            props.push(r.ctx_u32(0)?);
            if r.is_context(1) {
                r.ctx_unsigned(1)?;
            }
        }
        r.closing(1)?;
        out.push((object, props));
    }
    Ok(out)
}

/// A ReadProperty-Request as the device reads it (the simulator's side).
pub fn decode_read_property(body: &[u8]) -> Result<(ObjectId, u32, Option<u32>), DecodeError> {
    let mut r = Reader::new(body);
    let object = r.ctx_object_id(0)?;
    let property = r.ctx_u32(1)?;
    let index = if r.is_context(2) {
        Some(r.ctx_u32(2)?)
    } else {
        None
    };
    Ok((object, property, index))
}

/// A SubscribeCOV-Request as the device reads it (the simulator's side): process id,
/// object, confirmed, lifetime (both `None`: a cancellation).
pub fn decode_subscribe_cov(
    body: &[u8],
) -> Result<(u32, ObjectId, Option<bool>, Option<u32>), DecodeError> {
    let mut r = Reader::new(body);
    let process_id = r.ctx_u32(0)?;
    let object = r.ctx_object_id(1)?;
    let confirmed = if r.is_context(2) {
        Some(r.ctx_boolean(2)?)
    } else {
        None
    };
    let lifetime = if r.is_context(3) {
        Some(r.ctx_u32(3)?)
    } else {
        None
    };
    Ok((process_id, object, confirmed, lifetime))
}

/// A COV notification (confirmed or not).
#[derive(Debug, Clone, PartialEq)]
pub struct CovNotification {
    pub process_id: u32,
    pub device: ObjectId,
    pub object: ObjectId,
    /// Seconds the subscription has left.
    pub time_remaining: u32,
    /// Each property reported, with its value(s).
    pub values: Vec<(u32, Vec<Value>)>,
}

impl CovNotification {
    pub fn value_of(&self, property: u32) -> Option<&Value> {
        self.values
            .iter()
            .find(|(p, _)| *p == property)
            .and_then(|(_, v)| v.first())
    }
}

pub fn decode_cov_notification(body: &[u8]) -> Result<CovNotification, DecodeError> {
    let mut r = Reader::new(body);
    let process_id = r.ctx_u32(0)?;
    let device = r.ctx_object_id(1)?;
    let object = r.ctx_object_id(2)?;
    let time_remaining = r.ctx_u32(3)?;
    r.opening(4)?;
    let mut values = Vec::new();
    while !r.is_closing(4) {
        let property = r.ctx_u32(0)?;
        if r.is_context(1) {
            r.ctx_unsigned(1)?;
        }
        r.opening(2)?;
        let v = r.values_until_closing(2)?;
        if r.is_context(3) {
            r.ctx_unsigned(3)?;
        }
        values.push((property, v));
    }
    r.closing(4)?;
    Ok(CovNotification {
        process_id,
        device,
        object,
        time_remaining,
        values,
    })
}

/// The NPDU and APDU of a datagram: its APDU when it is one (not a network message, not a
/// BVLC function without an NPDU), and the original sender when a BBMD forwarded it.
pub fn apdu_of(datagram: &[u8]) -> Result<Option<(Option<SocketAddrV4>, Apdu<'_>)>, DecodeError> {
    let Bvlc::Npdu { origin, npdu } = parse_bvlc(datagram)? else {
        return Ok(None);
    };
    let Some(apdu) = parse_npdu(npdu)? else {
        return Ok(None);
    };
    Ok(Some((origin, parse_apdu(apdu)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn object_ids_read_as_bacnet_names_them() {
        let o: ObjectId = "analog-input,3".parse().unwrap();
        assert_eq!(o, ObjectId::new(0, 3));
        assert_eq!(o.to_string(), "analog-input,3");
        assert_eq!(
            "multiStateInput,12".parse::<ObjectId>().unwrap(),
            ObjectId::new(13, 12)
        );
        assert_eq!(
            "life-safety-zone, 7".parse::<ObjectId>().unwrap(),
            ObjectId::new(22, 7)
        );
        assert_eq!("130,1".parse::<ObjectId>().unwrap(), ObjectId::new(130, 1));
        assert!("analog-inptu,3".parse::<ObjectId>().is_err());
        assert!("analog-input,4194303".parse::<ObjectId>().is_err());
        assert!("analog-input".parse::<ObjectId>().is_err());
    }

    // The service parameters below are the bytes bacpypes3 0.0.110 encodes for the same
    // requests and answers (its apdu and basetypes classes, `.encode().pduData`), so the
    // two agree on the wire before any test talks to a bacpypes3 device.

    #[test]
    fn a_read_property_request_is_encoded_as_bacpypes3_encodes_it() {
        let body = read_property(ObjectId::new(0, 3), prop::PRESENT_VALUE, None);
        assert_eq!(
            confirmed_request(7, SERVICE_READ_PROPERTY, &body),
            hex("810a0011 0104 0005070c 0c00000003 1955")
        );
    }

    #[test]
    fn a_read_property_multiple_request_is_encoded_as_bacpypes3_encodes_it() {
        let body = read_property_multiple(&[
            (
                ObjectId::new(0, 3),
                vec![prop::PRESENT_VALUE, prop::STATUS_FLAGS],
            ),
            (ObjectId::new(13, 12), vec![prop::PRESENT_VALUE]),
        ]);
        assert_eq!(
            body,
            hex("0c00000003 1e 0955 096f 1f 0c0340000c 1e 0955 1f")
        );
    }

    #[test]
    fn a_subscribe_cov_request_is_encoded_as_bacpypes3_encodes_it() {
        let body = subscribe_cov(17, ObjectId::new(3, 40), Some(true), Some(300));
        assert_eq!(body, hex("0911 1c00c00028 2901 3a012c"));
        let cancel = subscribe_cov(17, ObjectId::new(3, 40), None, None);
        assert_eq!(cancel, hex("0911 1c00c00028"));
        assert_eq!(
            decode_subscribe_cov(&body).unwrap(),
            (17, ObjectId::new(3, 40), Some(true), Some(300))
        );
    }

    #[test]
    fn a_read_property_multiple_ack_with_values_and_errors_decodes() {
        let results = vec![
            AccessResult {
                object: ObjectId::new(0, 3),
                results: vec![
                    PropertyResult {
                        property: prop::PRESENT_VALUE,
                        index: None,
                        value: Ok(vec![Value::Real(0.25)]),
                    },
                    PropertyResult {
                        property: prop::STATUS_FLAGS,
                        index: None,
                        value: Ok(vec![Value::BitString(vec![false, true, false, false])]),
                    },
                    PropertyResult {
                        property: prop::RELIABILITY,
                        index: None,
                        value: Err(ErrorCode { class: 2, code: 32 }),
                    },
                ],
            },
            AccessResult {
                object: ObjectId::new(3, 40),
                results: vec![PropertyResult {
                    property: prop::PRESENT_VALUE,
                    index: None,
                    value: Ok(vec![Value::Enumerated(1)]),
                }],
            },
        ];
        let body = read_property_multiple_ack(&results);
        assert_eq!(
            body,
            hex(
                "0c00000003 1e 2955 4e 443e800000 4f 296f 4e 82 0440 4f 2967 5e 9102 9120 5f 1f
                 0c00c00028 1e 2955 4e 9101 4f 1f"
            )
        );
        assert_eq!(decode_read_property_multiple_ack(&body).unwrap(), results);
        let flags = results[0].results[1].value.as_ref().unwrap()[0].clone();
        assert_eq!(
            StatusFlags::from_value(&flags).unwrap(),
            StatusFlags {
                fault: true,
                ..StatusFlags::default()
            }
        );
    }

    #[test]
    fn a_cov_notification_round_trips_with_its_values() {
        let n = CovNotification {
            process_id: 9,
            device: ObjectId::new(8, 3101),
            object: ObjectId::new(13, 12),
            time_remaining: 299,
            values: vec![
                (prop::PRESENT_VALUE, vec![Value::Unsigned(3)]),
                (
                    prop::STATUS_FLAGS,
                    vec![Value::BitString(vec![true, false, false, false])],
                ),
            ],
        };
        let body = cov_notification(&n);
        assert_eq!(
            body,
            hex("0909 1c02000c1d 2c0340000c 3a012b 4e 0955 2e 2103 2f 096f 2e 820480 2f 4f")
        );
        assert_eq!(decode_cov_notification(&body).unwrap(), n);
        assert_eq!(n.value_of(prop::PRESENT_VALUE), Some(&Value::Unsigned(3)));
    }

    #[test]
    fn headers_and_replies_are_told_apart() {
        // SimpleACK of SubscribeCOV, invoke id 4.
        let ack = hex("810a0009 0100 200405");
        assert_eq!(
            apdu_of(&ack).unwrap().unwrap().1,
            Apdu::SimpleAck {
                invoke_id: 4,
                service: SERVICE_SUBSCRIBE_COV
            }
        );
        // Error: object/unknown-object to ReadProperty.
        let err = hex("810a000d 0100 50070c 9101 911f");
        assert_eq!(
            apdu_of(&err).unwrap().unwrap().1,
            Apdu::Error {
                invoke_id: 7,
                service: SERVICE_READ_PROPERTY,
                error: ErrorCode { class: 1, code: 31 }
            }
        );
        // Reject unrecognized-service, through a BBMD (Forwarded-NPDU from 10.0.0.5:47808).
        let rej = hex("8104000f 0a000005bac0 0100 600909");
        let (origin, apdu) = apdu_of(&rej).unwrap().unwrap();
        assert_eq!(origin, Some("10.0.0.5:47808".parse().unwrap()));
        assert_eq!(
            apdu,
            Apdu::Reject {
                invoke_id: 9,
                reason: REJECT_UNRECOGNIZED_SERVICE
            }
        );
        // A routed reply: SNET/SADR present before the APDU.
        let routed = hex("810a000f 0108 0005 01 2a 30070c 0102");
        assert!(matches!(
            apdu_of(&routed).unwrap().unwrap().1,
            Apdu::ComplexAck { invoke_id: 7, .. }
        ));
        assert_eq!(apdu_of(&hex("810000060000")).unwrap(), None);
        assert!(apdu_of(&hex("810a0005")).is_err());
        assert!(apdu_of(&hex("820a000601")).is_err());
    }

    #[test]
    fn values_round_trip_through_their_tags() {
        let values = [
            Value::Null,
            Value::Boolean(true),
            Value::Boolean(false),
            Value::Unsigned(0),
            Value::Unsigned(300),
            Value::Unsigned(u64::from(u32::MAX) + 1),
            Value::Signed(-1),
            Value::Signed(-129),
            Value::Signed(127),
            Value::Signed(128),
            Value::Real(-12.5),
            Value::Double(1e-9),
            Value::OctetString(vec![1, 2, 3, 4, 5, 6]),
            Value::CharacterString("Zone 3 — battery room".into()),
            Value::BitString(vec![
                true, false, true, true, false, false, false, false, true,
            ]),
            Value::Enumerated(62),
            Value::ObjectId(ObjectId::new(8, 3101)),
        ];
        for v in values {
            let mut w = Writer::default();
            w.value(&v);
            let mut r = Reader::new(&w.0);
            assert_eq!(r.value().unwrap(), v, "{:02x?}", w.0);
            assert!(r.is_empty());
        }
        let mut w = Writer::default();
        w.value(&Value::CharacterString("x".repeat(300)));
        assert_eq!(&w.0[..4], &[0x75, 0xfe, 0x01, 0x2d]);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let body = read_property_multiple_ack(&[AccessResult {
            object: ObjectId::new(0, 1),
            results: vec![PropertyResult {
                property: prop::PRESENT_VALUE,
                index: None,
                value: Ok(vec![Value::Real(1.0)]),
            }],
        }]);
        for n in 0..body.len() {
            let _ = decode_read_property_multiple_ack(&body[..n]);
        }
        for n in 0..body.len() {
            assert!(
                n == 0 || decode_read_property_multiple_ack(&body[..n]).is_err(),
                "{n}"
            );
        }
    }
}
