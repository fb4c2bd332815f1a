//! SNMP messages: the v2c community message (RFC 1901) and the v3 message with its USM
//! security parameters (RFC 3412, RFC 3414), built from and read into plain structs. Pure:
//! signing and encryption are `usm`'s, sending is `client`'s.

use super::ber::{self, BerError, Oid, Reader, Value};
use std::ops::Range;

pub const GET_REQUEST: u8 = 0xa0;
pub const RESPONSE: u8 = 0xa2;
pub const REPORT: u8 = 0xa8;

/// `msgVersion` values.
pub const VERSION_2C: i64 = 1;
pub const VERSION_3: i64 = 3;

/// `msgFlags` bits.
pub const FLAG_AUTH: u8 = 0x01;
pub const FLAG_PRIV: u8 = 0x02;
pub const FLAG_REPORTABLE: u8 = 0x04;

/// The User-based Security Model's number (`msgSecurityModel`).
pub const USM: i64 = 3;

/// A PDU (the same in v2c and v3).
#[derive(Debug, Clone, PartialEq)]
pub struct Pdu {
    pub tag: u8,
    pub request_id: i32,
    pub error_status: i64,
    pub error_index: i64,
    pub varbinds: Vec<(Oid, Value)>,
}

impl Pdu {
    /// A GetRequest for `oids` (values NULL, as RFC 3416 asks).
    pub fn get(request_id: i32, oids: &[Oid]) -> Pdu {
        Pdu {
            tag: GET_REQUEST,
            request_id,
            error_status: 0,
            error_index: 0,
            varbinds: oids.iter().map(|o| (o.clone(), Value::Null)).collect(),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        ber::put_constructed(out, self.tag, |p| {
            ber::put_int(p, ber::INTEGER, i64::from(self.request_id));
            ber::put_int(p, ber::INTEGER, self.error_status);
            ber::put_int(p, ber::INTEGER, self.error_index);
            ber::put_constructed(p, ber::SEQUENCE, |list| {
                for (oid, value) in &self.varbinds {
                    ber::put_constructed(list, ber::SEQUENCE, |vb| {
                        ber::put_oid(vb, oid);
                        value.encode(vb);
                    });
                }
            });
        });
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Pdu, BerError> {
        let (tag, mut p) = r.any()?;
        let at = p.pos();
        let request_id = p.integer()?;
        let request_id =
            i32::try_from(request_id).map_err(|_| BerError::IntegerTooLarge { len: 8, at })?;
        let error_status = p.integer()?;
        let error_index = p.integer()?;
        let mut list = p.expect(ber::SEQUENCE)?;
        p.finish()?;
        let mut varbinds = Vec::new();
        while !list.is_empty() {
            let mut vb = list.expect(ber::SEQUENCE)?;
            let oid = vb.oid()?;
            let value = Value::decode(&mut vb)?;
            vb.finish()?;
            varbinds.push((oid, value));
        }
        Ok(Pdu {
            tag,
            request_id,
            error_status,
            error_index,
            varbinds,
        })
    }
}

/// A v2c message: community and PDU.
pub fn encode_v2c(community: &[u8], pdu: &Pdu) -> Vec<u8> {
    let mut out = Vec::new();
    ber::put_constructed(&mut out, ber::SEQUENCE, |m| {
        ber::put_int(m, ber::INTEGER, VERSION_2C);
        ber::put_tlv(m, ber::OCTET_STRING, community);
        pdu.encode(m);
    });
    out
}

/// `msgVersion` of any message, to tell v2c from v3 before reading the rest.
pub fn version_of(msg: &[u8]) -> Result<i64, BerError> {
    let mut r = Reader::new(msg);
    r.expect(ber::SEQUENCE)?.integer()
}

/// Reads a v2c message: its community and PDU.
pub fn decode_v2c(msg: &[u8]) -> Result<(Vec<u8>, Pdu), BerError> {
    let mut r = Reader::new(msg);
    let mut m = r.expect(ber::SEQUENCE)?;
    r.finish()?;
    let _version = m.integer()?;
    let community = m.octets()?.to_vec();
    let pdu = Pdu::decode(&mut m)?;
    m.finish()?;
    Ok((community, pdu))
}

/// `UsmSecurityParameters` (RFC 3414 section 2.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsmParams {
    pub engine_id: Vec<u8>,
    pub boots: i64,
    pub time: i64,
    pub user: Vec<u8>,
    pub auth: Vec<u8>,
    pub privacy: Vec<u8>,
}

/// `ScopedPDU`: the context and the PDU (plaintext, or what `encryptedPDU` decrypts to).
#[derive(Debug, Clone, PartialEq)]
pub struct ScopedPdu {
    pub context_engine_id: Vec<u8>,
    pub context_name: Vec<u8>,
    pub pdu: Pdu,
}

impl ScopedPdu {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ber::put_constructed(&mut out, ber::SEQUENCE, |s| {
            ber::put_tlv(s, ber::OCTET_STRING, &self.context_engine_id);
            ber::put_tlv(s, ber::OCTET_STRING, &self.context_name);
            self.pdu.encode(s);
        });
        out
    }

    /// Reads a scoped PDU. Bytes after its SEQUENCE are ignored: a privacy protocol with
    /// block padding (DES) leaves some after decryption.
    pub fn decode(bytes: &[u8]) -> Result<ScopedPdu, BerError> {
        let mut r = Reader::new(bytes);
        let mut s = r.expect(ber::SEQUENCE)?;
        let context_engine_id = s.octets()?.to_vec();
        let context_name = s.octets()?.to_vec();
        let pdu = Pdu::decode(&mut s)?;
        s.finish()?;
        Ok(ScopedPdu {
            context_engine_id,
            context_name,
            pdu,
        })
    }
}

/// What a v3 message carries: a scoped PDU in the clear or encrypted.
#[derive(Debug, Clone, PartialEq)]
pub enum MsgData {
    Plain(ScopedPdu),
    Encrypted(Vec<u8>),
}

/// A v3 message as read, with where its authentication parameters sit (to check the
/// digest over the bytes as received).
#[derive(Debug, Clone, PartialEq)]
pub struct V3Message {
    pub msg_id: i32,
    pub max_size: i64,
    pub flags: u8,
    pub security_model: i64,
    pub usm: UsmParams,
    /// Byte range of `msgAuthenticationParameters`' content in the whole message.
    pub auth_range: Range<usize>,
    pub data: MsgData,
}

/// Builds a v3 message. `usm.auth` is the placeholder to sign over (zeros of the digest's
/// length, or empty); `data` is a scoped PDU's BER or the encrypted one's bytes. Returns the
/// message and the byte range where the digest goes.
pub fn encode_v3(
    msg_id: i32,
    max_size: i64,
    flags: u8,
    usm: &UsmParams,
    data: &MsgDataRef<'_>,
) -> (Vec<u8>, Range<usize>) {
    let mut header = Vec::new();
    ber::put_constructed(&mut header, ber::SEQUENCE, |h| {
        ber::put_int(h, ber::INTEGER, i64::from(msg_id));
        ber::put_int(h, ber::INTEGER, max_size);
        ber::put_tlv(h, ber::OCTET_STRING, &[flags]);
        ber::put_int(h, ber::INTEGER, USM);
    });
    // The security parameters, and where the auth placeholder sits within them.
    let mut sec_fields = Vec::new();
    ber::put_tlv(&mut sec_fields, ber::OCTET_STRING, &usm.engine_id);
    ber::put_int(&mut sec_fields, ber::INTEGER, usm.boots);
    ber::put_int(&mut sec_fields, ber::INTEGER, usm.time);
    ber::put_tlv(&mut sec_fields, ber::OCTET_STRING, &usm.user);
    let auth_in_fields = sec_fields.len() + ber::header_len(usm.auth.len());
    ber::put_tlv(&mut sec_fields, ber::OCTET_STRING, &usm.auth);
    ber::put_tlv(&mut sec_fields, ber::OCTET_STRING, &usm.privacy);
    let mut sec = Vec::new();
    ber::put_tlv(&mut sec, ber::SEQUENCE, &sec_fields);
    let auth_in_sec = ber::header_len(sec_fields.len()) + auth_in_fields;

    let mut body = Vec::new();
    ber::put_int(&mut body, ber::INTEGER, VERSION_3);
    body.extend_from_slice(&header);
    let auth_in_body = body.len() + ber::header_len(sec.len()) + auth_in_sec;
    ber::put_tlv(&mut body, ber::OCTET_STRING, &sec);
    match data {
        MsgDataRef::Plain(scoped) => body.extend_from_slice(scoped),
        MsgDataRef::Encrypted(bytes) => ber::put_tlv(&mut body, ber::OCTET_STRING, bytes),
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    ber::put_tlv(&mut out, ber::SEQUENCE, &body);
    let start = ber::header_len(body.len()) + auth_in_body;
    (out, start..start + usm.auth.len())
}

/// The data part of a message being built: a scoped PDU's BER, or encrypted bytes.
pub enum MsgDataRef<'a> {
    Plain(&'a [u8]),
    Encrypted(&'a [u8]),
}

/// Reads a v3 message (the scoped PDU only when in the clear).
pub fn decode_v3(msg: &[u8]) -> Result<V3Message, BerError> {
    let mut r = Reader::new(msg);
    let mut m = r.expect(ber::SEQUENCE)?;
    r.finish()?;
    let _version = m.integer()?;
    let mut h = m.expect(ber::SEQUENCE)?;
    let at = h.pos();
    let msg_id =
        i32::try_from(h.integer()?).map_err(|_| BerError::IntegerTooLarge { len: 8, at })?;
    let max_size = h.integer()?;
    let flags = h.octets()?.first().copied().unwrap_or(0);
    let security_model = h.integer()?;
    h.finish()?;
    let mut auth_range = 0..0;
    let mut usm = UsmParams::default();
    let mut sec = m.expect(ber::OCTET_STRING)?;
    if security_model == USM {
        let mut s = sec.expect(ber::SEQUENCE)?;
        usm.engine_id = s.octets()?.to_vec();
        usm.boots = s.integer()?;
        usm.time = s.integer()?;
        usm.user = s.octets()?.to_vec();
        let (auth, range) = s.octets_at()?;
        usm.auth = auth.to_vec();
        auth_range = range;
        usm.privacy = s.octets()?.to_vec();
        s.finish()?;
        sec.finish()?;
    }
    let data = if flags & FLAG_PRIV != 0 {
        MsgData::Encrypted(m.octets()?.to_vec())
    } else {
        let start = m.pos();
        let (_, scoped) = m.any()?;
        let end = scoped.pos() + scoped.rest().len();
        MsgData::Plain(ScopedPdu::decode(&msg[start..end])?)
    };
    m.finish()?;
    Ok(V3Message {
        msg_id,
        max_size,
        flags,
        security_model,
        usm,
        auth_range,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(s: &str) -> Oid {
        s.parse().unwrap()
    }

    #[test]
    fn a_v2c_get_is_the_bytes_net_snmp_sends() {
        // `snmpget -v2c -c public ... .1.3.6.1.2.1.33.1.4.1.0` with request-id 0x1234.
        let msg = encode_v2c(
            b"public",
            &Pdu::get(0x1234, &[oid("1.3.6.1.2.1.33.1.4.1.0")]),
        );
        let expected = [
            0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0,
            0x1c, 0x02, 0x02, 0x12, 0x34, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x10, 0x30,
            0x0e, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x21, 0x01, 0x04, 0x01, 0x00, 0x05,
            0x00,
        ];
        assert_eq!(msg, expected);
        let (community, pdu) = decode_v2c(&msg).unwrap();
        assert_eq!(community, b"public");
        assert_eq!(pdu.request_id, 0x1234);
        assert_eq!(pdu.varbinds[0].1, Value::Null);
        assert_eq!(version_of(&msg), Ok(VERSION_2C));
    }

    #[test]
    fn a_discovery_report_from_snmpd_reads_with_its_engine_and_counters() {
        // The report net-snmp 5.9.3 answered an empty v3 request with.
        let report = [
            0x30, 0x71, 0x02, 0x01, 0x03, 0x30, 0x11, 0x02, 0x04, 0x5c, 0x77, 0xba, 0x31, 0x02,
            0x03, 0x00, 0xff, 0xe3, 0x04, 0x01, 0x00, 0x02, 0x01, 0x03, 0x04, 0x21, 0x30, 0x1f,
            0x04, 0x11, 0x80, 0x00, 0x1f, 0x88, 0x80, 0x62, 0xe6, 0x49, 0x5d, 0x15, 0xec, 0x14,
            0x6b, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x01, 0x02, 0x01, 0x03, 0x04, 0x00, 0x04,
            0x00, 0x04, 0x00, 0x30, 0x36, 0x04, 0x11, 0x80, 0x00, 0x1f, 0x88, 0x80, 0x62, 0xe6,
            0x49, 0x5d, 0x15, 0xec, 0x14, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0xa8, 0x1f,
            0x02, 0x04, 0x09, 0x0c, 0xfa, 0xc3, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x11,
            0x30, 0x0f, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x06, 0x03, 0x0f, 0x01, 0x01, 0x04, 0x00,
            0x41, 0x01, 0x02,
        ];
        let m = decode_v3(&report).unwrap();
        assert_eq!(m.msg_id, 0x5c77ba31);
        assert_eq!(m.flags, 0);
        assert_eq!(m.usm.engine_id.len(), 17);
        assert_eq!((m.usm.boots, m.usm.time), (1, 3));
        let MsgData::Plain(scoped) = m.data else {
            panic!("a report is in the clear")
        };
        assert_eq!(scoped.pdu.tag, REPORT);
        assert_eq!(
            scoped.pdu.varbinds,
            [(oid("1.3.6.1.6.3.15.1.1.4.0"), Value::Counter32(2))]
        );
    }

    #[test]
    fn a_v3_message_reads_back_with_its_auth_placeholder_where_encode_put_it() {
        let scoped = ScopedPdu {
            context_engine_id: vec![0x80, 0, 0x1f, 0x88, 1],
            context_name: Vec::new(),
            pdu: Pdu::get(7, &[oid("1.3.6.1.2.1.33.1.2.3.0")]),
        }
        .encode();
        let usm = UsmParams {
            engine_id: vec![0x80, 0, 0x1f, 0x88, 1],
            boots: 2,
            time: 70000,
            user: b"firebreak".to_vec(),
            auth: vec![0; 24],
            privacy: Vec::new(),
        };
        let (msg, range) = encode_v3(
            7,
            65507,
            FLAG_AUTH | FLAG_REPORTABLE,
            &usm,
            &MsgDataRef::Plain(&scoped),
        );
        assert_eq!(&msg[range.clone()], &[0u8; 24]);
        let m = decode_v3(&msg).unwrap();
        assert_eq!(m.auth_range, range);
        assert_eq!(m.usm, usm);
        assert_eq!(m.msg_id, 7);
        assert!(matches!(m.data, MsgData::Plain(ref s) if s.pdu.request_id == 7));

        // A long user name pushes the security parameters past 127 bytes: long-form lengths.
        let long = UsmParams {
            user: vec![b'u'; 200],
            ..usm
        };
        let (msg, range) = encode_v3(
            8,
            65507,
            FLAG_AUTH | FLAG_PRIV,
            &long,
            &MsgDataRef::Encrypted(&[9; 40]),
        );
        let m = decode_v3(&msg).unwrap();
        assert_eq!(m.auth_range, range);
        assert_eq!(m.data, MsgData::Encrypted(vec![9; 40]));
    }

    #[test]
    fn a_pdu_with_extra_fields_or_a_bad_varbind_is_an_error() {
        let mut bad = Vec::new();
        ber::put_constructed(&mut bad, RESPONSE, |p| {
            ber::put_int(p, ber::INTEGER, 1);
            ber::put_int(p, ber::INTEGER, 0);
            ber::put_int(p, ber::INTEGER, 0);
            ber::put_constructed(p, ber::SEQUENCE, |l| {
                ber::put_constructed(l, ber::SEQUENCE, |vb| {
                    ber::put_int(vb, ber::INTEGER, 5); // an INTEGER where the OID goes
                    ber::put_tlv(vb, ber::NULL, &[]);
                });
            });
        });
        assert!(Pdu::decode(&mut Reader::new(&bad)).is_err());
        let mut extra = Vec::new();
        Pdu::get(1, &[]).encode(&mut extra);
        extra[1] += 3;
        extra.extend_from_slice(&[0x05, 0x00, 0x00]);
        assert!(Pdu::decode(&mut Reader::new(&extra)).is_err());
    }
}
