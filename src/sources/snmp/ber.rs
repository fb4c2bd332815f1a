//! The BER (X.690) subset SNMP messages use: definite lengths, INTEGER, OCTET STRING, NULL,
//! OBJECT IDENTIFIER, SEQUENCE and the SMI application types (RFC 2578, RFC 3416). A pure
//! codec: no I/O, and the configuration layer may use [`Oid`]'s grammar.
//!
//! Design: written here rather than taken from an ASN.1 crate (rasn): USM signs the whole
//! encoded message with a placeholder at a known offset and checks a reply's digest over
//! the bytes as received, so the codec has to say where each field sits in the buffer, which
//! typed ASN.1 models do not; and the subset is small enough to test exhaustively below.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OBJECT_ID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;
pub const IP_ADDRESS: u8 = 0x40;
pub const COUNTER32: u8 = 0x41;
pub const GAUGE32: u8 = 0x42;
pub const TIME_TICKS: u8 = 0x43;
pub const OPAQUE: u8 = 0x44;
pub const COUNTER64: u8 = 0x46;
pub const NO_SUCH_OBJECT: u8 = 0x80;
pub const NO_SUCH_INSTANCE: u8 = 0x81;
pub const END_OF_MIB_VIEW: u8 = 0x82;

/// Why bytes are not the BER expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("indefinite or reserved length at byte {0}")]
    BadLength(usize),
    #[error("expected tag 0x{expected:02x}, found 0x{found:02x} at byte {at}")]
    UnexpectedTag { expected: u8, found: u8, at: usize },
    #[error("integer of {len} bytes at byte {at} does not fit")]
    IntegerTooLarge { len: usize, at: usize },
    #[error("malformed object identifier at byte {0}")]
    BadOid(usize),
    #[error("{0} unexpected byte(s) after the value")]
    TrailingBytes(usize),
}

/// A numeric object identifier (`1.3.6.1.2.1.33.1.4.1.0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oid(Vec<u32>);

impl Oid {
    pub fn arcs(&self) -> &[u32] {
        &self.0
    }

    /// An identifier from its arcs; `None` unless they can be encoded (two arcs at least,
    /// the first 0 to 2, the second under 40 below 2).
    pub fn from_arcs(arcs: &[u32]) -> Option<Oid> {
        let ok = arcs.len() >= 2
            && arcs[0] <= 2
            && (arcs[0] == 2 || arcs[1] < 40)
            && u64::from(arcs[0]) * 40 + u64::from(arcs[1]) <= u64::from(u32::MAX);
        ok.then(|| Oid(arcs.to_vec()))
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl FromStr for Oid {
    type Err = String;

    /// Dotted decimal, the leading dot optional (`.1.3.6.1...` as net-snmp prints it).
    fn from_str(s: &str) -> Result<Oid, String> {
        let body = s.strip_prefix('.').unwrap_or(s);
        if body.is_empty() {
            return Err("is empty".into());
        }
        let mut arcs = Vec::new();
        for part in body.split('.') {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "`{part}` is not a number: an OID is numeric, dotted (1.3.6.1.2.1.33.1.4.1.0)"
                ));
            }
            let arc = part
                .parse::<u32>()
                .map_err(|_| format!("arc {part} is over 4294967295"))?;
            arcs.push(arc);
        }
        if arcs.len() > 128 {
            return Err("has more than 128 arcs (RFC 2578)".into());
        }
        Oid::from_arcs(&arcs).ok_or_else(|| {
            "must start with 0, 1 or 2 and have two arcs at least (the second under 40 after 0 or 1)"
                .to_string()
        })
    }
}

/// A varbind's value as the agent sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    OctetString(Vec<u8>),
    Null,
    ObjectId(Oid),
    IpAddress(Vec<u8>),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Opaque(Vec<u8>),
    Counter64(u64),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
    /// A tag this codec does not know, kept so that one odd varbind faults alone.
    Other(u8),
}

impl Value {
    /// The SMI name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Integer(_) => "INTEGER",
            Value::OctetString(_) => "OCTET STRING",
            Value::Null => "NULL",
            Value::ObjectId(_) => "OBJECT IDENTIFIER",
            Value::IpAddress(_) => "IpAddress",
            Value::Counter32(_) => "Counter32",
            Value::Gauge32(_) => "Gauge32",
            Value::TimeTicks(_) => "TimeTicks",
            Value::Opaque(_) => "Opaque",
            Value::Counter64(_) => "Counter64",
            Value::NoSuchObject => "noSuchObject",
            Value::NoSuchInstance => "noSuchInstance",
            Value::EndOfMibView => "endOfMibView",
            Value::Other(_) => "unknown type",
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Integer(v) => put_int(out, INTEGER, *v),
            Value::OctetString(b) => put_tlv(out, OCTET_STRING, b),
            Value::Null => put_tlv(out, NULL, &[]),
            Value::ObjectId(o) => put_oid(out, o),
            Value::IpAddress(b) => put_tlv(out, IP_ADDRESS, b),
            Value::Counter32(v) => put_uint(out, COUNTER32, u64::from(*v)),
            Value::Gauge32(v) => put_uint(out, GAUGE32, u64::from(*v)),
            Value::TimeTicks(v) => put_uint(out, TIME_TICKS, u64::from(*v)),
            Value::Opaque(b) => put_tlv(out, OPAQUE, b),
            Value::Counter64(v) => put_uint(out, COUNTER64, *v),
            Value::NoSuchObject => put_tlv(out, NO_SUCH_OBJECT, &[]),
            Value::NoSuchInstance => put_tlv(out, NO_SUCH_INSTANCE, &[]),
            Value::EndOfMibView => put_tlv(out, END_OF_MIB_VIEW, &[]),
            Value::Other(tag) => put_tlv(out, *tag, &[]),
        }
    }

    /// Reads one value of any type; an unknown tag is [`Value::Other`], not an error.
    pub fn decode(r: &mut Reader<'_>) -> Result<Value, BerError> {
        let at = r.pos();
        let (tag, mut body) = r.any()?;
        let v = match tag {
            INTEGER => Value::Integer(signed(body.rest(), at)?),
            OCTET_STRING => Value::OctetString(body.rest().to_vec()),
            NULL => Value::Null,
            OBJECT_ID => Value::ObjectId(oid_of(body.rest(), at)?),
            IP_ADDRESS => Value::IpAddress(body.rest().to_vec()),
            COUNTER32 => Value::Counter32(unsigned32(body.rest(), at)?),
            GAUGE32 => Value::Gauge32(unsigned32(body.rest(), at)?),
            TIME_TICKS => Value::TimeTicks(unsigned32(body.rest(), at)?),
            OPAQUE => Value::Opaque(body.rest().to_vec()),
            COUNTER64 => Value::Counter64(unsigned(body.rest(), at)?),
            NO_SUCH_OBJECT => Value::NoSuchObject,
            NO_SUCH_INSTANCE => Value::NoSuchInstance,
            END_OF_MIB_VIEW => Value::EndOfMibView,
            other => Value::Other(other),
        };
        body.consume_all();
        Ok(v)
    }
}

// ---------------------------------------------------------------- writing

pub fn put_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = (len as u64).to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (8 - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// The number of bytes a tag and a length of `len` take.
pub fn header_len(len: usize) -> usize {
    let mut v = Vec::with_capacity(9);
    put_len(&mut v, len);
    1 + v.len()
}

pub fn put_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    put_len(out, content.len());
    out.extend_from_slice(content);
}

/// A constructed value (SEQUENCE, a PDU) whose content `f` writes.
pub fn put_constructed(out: &mut Vec<u8>, tag: u8, f: impl FnOnce(&mut Vec<u8>)) {
    let mut content = Vec::new();
    f(&mut content);
    put_tlv(out, tag, &content);
}

/// A two's-complement integer in the fewest bytes.
pub fn put_int(out: &mut Vec<u8>, tag: u8, v: i64) {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        let redundant = (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    put_tlv(out, tag, &bytes[start..]);
}

/// An unsigned application integer (Counter64 may need a ninth byte for its sign bit).
pub fn put_uint(out: &mut Vec<u8>, tag: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut content = Vec::with_capacity(9);
    if bytes[skip] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(&bytes[skip..]);
    put_tlv(out, tag, &content);
}

pub fn put_oid(out: &mut Vec<u8>, oid: &Oid) {
    let arcs = oid.arcs();
    let mut content = Vec::with_capacity(arcs.len() + 4);
    let first = u64::from(arcs[0]) * 40 + u64::from(arcs[1]);
    put_subid(&mut content, first as u32);
    for a in &arcs[2..] {
        put_subid(&mut content, *a);
    }
    put_tlv(out, OBJECT_ID, &content);
}

fn put_subid(out: &mut Vec<u8>, v: u32) {
    let mut groups = [0u8; 5];
    let mut n = 0;
    let mut v = v;
    loop {
        groups[n] = (v & 0x7f) as u8;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(groups[i] | if i > 0 { 0x80 } else { 0 });
    }
}

// ---------------------------------------------------------------- reading

/// Reads TLVs from a slice of a message, keeping absolute offsets (so that a caller can
/// find a field in the bytes as received).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    /// Offset of `buf[0]` in the whole message.
    base: usize,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            base: 0,
            pos: 0,
        }
    }

    /// Absolute offset of the next byte.
    pub fn pos(&self) -> usize {
        self.base + self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    fn consume_all(&mut self) {
        self.pos = self.buf.len();
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), BerError> {
        match self.buf.len().saturating_sub(self.pos) {
            0 => Ok(()),
            n => Err(BerError::TrailingBytes(n)),
        }
    }

    fn byte(&mut self) -> Result<u8, BerError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(BerError::Truncated(self.pos()))?;
        self.pos += 1;
        Ok(b)
    }

    /// The next TLV: its tag and a reader over its content.
    pub fn any(&mut self) -> Result<(u8, Reader<'a>), BerError> {
        let tag = self.byte()?;
        if tag & 0x1f == 0x1f {
            // High tag numbers: no SNMP type uses them.
            return Err(BerError::UnexpectedTag {
                expected: SEQUENCE,
                found: tag,
                at: self.pos() - 1,
            });
        }
        let at = self.pos();
        let first = self.byte()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(BerError::BadLength(at));
            }
            let mut len = 0usize;
            for _ in 0..n {
                len = len << 8 | usize::from(self.byte()?);
            }
            len
        };
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or(BerError::Truncated(self.base + self.buf.len()))?;
        self.pos = end;
        Ok((
            tag,
            Reader {
                buf: &self.buf[start..end],
                base: self.base + start,
                pos: 0,
            },
        ))
    }

    /// The next TLV, which must have tag `expected`.
    pub fn expect(&mut self, expected: u8) -> Result<Reader<'a>, BerError> {
        let at = self.pos();
        let (found, body) = self.any()?;
        if found != expected {
            return Err(BerError::UnexpectedTag {
                expected,
                found,
                at,
            });
        }
        Ok(body)
    }

    pub fn integer(&mut self) -> Result<i64, BerError> {
        let at = self.pos();
        signed(self.expect(INTEGER)?.rest(), at)
    }

    pub fn octets(&mut self) -> Result<&'a [u8], BerError> {
        Ok(self.expect(OCTET_STRING)?.rest())
    }

    /// An OCTET STRING and where its content sits in the whole message.
    pub fn octets_at(&mut self) -> Result<(&'a [u8], Range<usize>), BerError> {
        let body = self.expect(OCTET_STRING)?;
        let start = body.pos();
        Ok((body.rest(), start..start + body.rest().len()))
    }

    pub fn oid(&mut self) -> Result<Oid, BerError> {
        let at = self.pos();
        oid_of(self.expect(OBJECT_ID)?.rest(), at)
    }
}

fn signed(b: &[u8], at: usize) -> Result<i64, BerError> {
    if b.is_empty() {
        return Err(BerError::Truncated(at));
    }
    if b.len() > 8 {
        return Err(BerError::IntegerTooLarge { len: b.len(), at });
    }
    let mut v: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
    for x in b {
        v = v << 8 | i64::from(*x);
    }
    Ok(v)
}

/// Unsigned application integers. Lenient on one common agent bug: a 32-bit counter sent
/// without the leading zero its top bit needs (`ff ff ff ff`) reads as unsigned.
fn unsigned(b: &[u8], at: usize) -> Result<u64, BerError> {
    if b.is_empty() {
        return Err(BerError::Truncated(at));
    }
    let b = match b {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => b,
    };
    if b.len() > 8 {
        return Err(BerError::IntegerTooLarge { len: b.len(), at });
    }
    Ok(b.iter().fold(0u64, |v, x| v << 8 | u64::from(*x)))
}

fn unsigned32(b: &[u8], at: usize) -> Result<u32, BerError> {
    u32::try_from(unsigned(b, at)?).map_err(|_| BerError::IntegerTooLarge { len: b.len(), at })
}

fn oid_of(b: &[u8], at: usize) -> Result<Oid, BerError> {
    let mut subids = Vec::with_capacity(b.len() + 1);
    let mut v: u64 = 0;
    let mut in_progress = false;
    for x in b {
        if !in_progress && *x == 0x80 {
            // A leading 0x80 pads a subidentifier: not minimal, not BER.
            return Err(BerError::BadOid(at));
        }
        v = v << 7 | u64::from(x & 0x7f);
        if v > u64::from(u32::MAX) {
            return Err(BerError::BadOid(at));
        }
        in_progress = x & 0x80 != 0;
        if !in_progress {
            subids.push(v as u32);
            v = 0;
        }
    }
    if in_progress || subids.is_empty() {
        return Err(BerError::BadOid(at));
    }
    let first = subids[0];
    let (a, b0) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut arcs = Vec::with_capacity(subids.len() + 1);
    arcs.push(a);
    arcs.push(b0);
    arcs.extend_from_slice(&subids[1..]);
    Ok(Oid(arcs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out);
        out
    }

    fn dec(b: &[u8]) -> Result<Value, BerError> {
        let mut r = Reader::new(b);
        let v = Value::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    #[test]
    fn integers_take_the_fewest_twos_complement_bytes() {
        for (v, bytes) in [
            (0i64, vec![0x02, 0x01, 0x00]),
            (127, vec![0x02, 0x01, 0x7f]),
            (128, vec![0x02, 0x02, 0x00, 0x80]),
            (256, vec![0x02, 0x02, 0x01, 0x00]),
            (-1, vec![0x02, 0x01, 0xff]),
            (-128, vec![0x02, 0x01, 0x80]),
            (-129, vec![0x02, 0x02, 0xff, 0x7f]),
            (i64::MIN, vec![0x02, 0x08, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ] {
            assert_eq!(enc(&Value::Integer(v)), bytes, "{v}");
            assert_eq!(dec(&bytes), Ok(Value::Integer(v)), "{v}");
        }
    }

    #[test]
    fn unsigned_types_keep_their_top_bit_with_a_leading_zero() {
        let max32 = enc(&Value::Counter32(u32::MAX));
        assert_eq!(max32, [0x41, 0x05, 0x00, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(dec(&max32), Ok(Value::Counter32(u32::MAX)));
        let max64 = enc(&Value::Counter64(u64::MAX));
        assert_eq!(max64.len(), 11);
        assert_eq!(dec(&max64), Ok(Value::Counter64(u64::MAX)));
        assert_eq!(enc(&Value::Gauge32(0)), [0x42, 0x01, 0x00]);
        assert_eq!(dec(&[0x43, 0x02, 0x01, 0x00]), Ok(Value::TimeTicks(256)));
    }

    #[test]
    fn a_counter_sent_without_its_leading_zero_still_reads_unsigned() {
        assert_eq!(
            dec(&[0x42, 0x04, 0xff, 0xff, 0xff, 0xfe]),
            Ok(Value::Gauge32(u32::MAX - 1))
        );
    }

    #[test]
    fn a_32_bit_type_over_32_bits_is_an_error() {
        assert!(matches!(
            dec(&[0x41, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00]),
            Err(BerError::IntegerTooLarge { .. })
        ));
        assert!(matches!(
            dec(&[0x02, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(BerError::IntegerTooLarge { .. })
        ));
    }

    #[test]
    fn long_lengths_use_the_long_form_and_read_back() {
        let long = Value::OctetString(vec![7; 300]);
        let b = enc(&long);
        assert_eq!(&b[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(dec(&b), Ok(long));
        let b = enc(&Value::OctetString(vec![1; 128]));
        assert_eq!(&b[..3], &[0x04, 0x81, 0x80]);
        assert_eq!(header_len(127), 2);
        assert_eq!(header_len(128), 3);
        assert_eq!(header_len(300), 4);
    }

    #[test]
    fn truncated_or_indefinite_input_is_an_error_not_a_panic() {
        assert_eq!(dec(&[]), Err(BerError::Truncated(0)));
        assert_eq!(dec(&[0x02]), Err(BerError::Truncated(1)));
        assert!(matches!(
            dec(&[0x04, 0x05, 1, 2]),
            Err(BerError::Truncated(_))
        ));
        assert_eq!(dec(&[0x30, 0x80, 0, 0]), Err(BerError::BadLength(1)));
        assert_eq!(
            dec(&[0x04, 0x85, 0, 0, 0, 0, 1]),
            Err(BerError::BadLength(1))
        );
        assert!(matches!(
            dec(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(BerError::Truncated(_))
        ));
        assert_eq!(dec(&[0x02, 0x00]), Err(BerError::Truncated(0)));
        assert_eq!(dec(&[0x05, 0x00, 0x00]), Err(BerError::TrailingBytes(1)));
    }

    #[test]
    fn oids_encode_the_first_two_arcs_together_and_large_arcs_in_groups_of_seven() {
        let oid: Oid = "1.3.6.1.2.1.33.1.4.1.0".parse().unwrap();
        let mut b = Vec::new();
        put_oid(&mut b, &oid);
        assert_eq!(b, [0x06, 0x0a, 0x2b, 6, 1, 2, 1, 33, 1, 4, 1, 0]);
        let big: Oid = "2.999.4294967295.128".parse().unwrap();
        let mut b = Vec::new();
        put_oid(&mut b, &big);
        assert_eq!(
            b,
            [0x06, 0x09, 0x88, 0x37, 0x8f, 0xff, 0xff, 0xff, 0x7f, 0x81, 0x00]
        );
        let mut r = Reader::new(&b);
        assert_eq!(r.oid(), Ok(big));
    }

    #[test]
    fn malformed_oids_are_errors() {
        // Unterminated subidentifier, padded subidentifier, one over 32 bits.
        for b in [
            &[0x06, 0x02, 0x2b, 0x86][..],
            &[0x06, 0x03, 0x2b, 0x80, 0x01][..],
            &[0x06, 0x06, 0x2b, 0x90, 0x80, 0x80, 0x80, 0x00][..],
            &[0x06, 0x00][..],
        ] {
            assert!(
                matches!(Reader::new(b).oid(), Err(BerError::BadOid(_))),
                "{b:x?}"
            );
        }
    }

    #[test]
    fn oid_text_is_dotted_numbers_with_an_optional_leading_dot() {
        let a: Oid = ".1.3.6.1.2.1.33.1.2.3.0".parse().unwrap();
        let b: Oid = "1.3.6.1.2.1.33.1.2.3.0".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "1.3.6.1.2.1.33.1.2.3.0");
        for bad in [
            "",
            ".",
            "1",
            "1..3",
            "1.3.",
            "upsOutputSource.0",
            "1.3.6.-1",
            "3.1",
            "1.40",
            "1.3.6.4294967296",
        ] {
            assert!(bad.parse::<Oid>().is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_and_exception_tags_are_values_so_one_varbind_faults_alone() {
        assert_eq!(dec(&[0x80, 0x00]), Ok(Value::NoSuchObject));
        assert_eq!(dec(&[0x81, 0x00]), Ok(Value::NoSuchInstance));
        assert_eq!(dec(&[0x82, 0x00]), Ok(Value::EndOfMibView));
        assert_eq!(dec(&[0x47, 0x01, 0x00]), Ok(Value::Other(0x47)));
        assert_eq!(
            dec(&[0x40, 0x04, 127, 0, 0, 1]),
            Ok(Value::IpAddress(vec![127, 0, 0, 1]))
        );
    }

    #[test]
    fn readers_report_absolute_offsets_inside_nested_values() {
        let mut msg = Vec::new();
        put_constructed(&mut msg, SEQUENCE, |s| {
            put_int(s, INTEGER, 3);
            put_tlv(s, OCTET_STRING, b"abc");
        });
        let mut r = Reader::new(&msg);
        let mut seq = r.expect(SEQUENCE).unwrap();
        assert_eq!(seq.integer(), Ok(3));
        let (bytes, at) = seq.octets_at().unwrap();
        assert_eq!(bytes, b"abc");
        assert_eq!(&msg[at], b"abc");
        assert!(seq.is_empty());
    }
}
