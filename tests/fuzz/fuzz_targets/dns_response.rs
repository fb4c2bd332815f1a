//! DNS response handling: any bytes as the reply to the agent's query or signed UPDATE go
//! through the same checks as a reply off the wire (`check_query_reply` /
//! `check_update_reply`: length, id, hickory's decode, QR, question, opcode, TSIG error,
//! signature and time, rcode) and give an answer or an error, never a crash. A reply to
//! a signed update is never taken as success: the fuzzer cannot produce a valid HMAC over
//! a request MAC it never saw.
#![no_main]

use firebreak::dns::{
    check_query_reply, check_update_reply, RecordKind, TsigAlgorithm, TsigKey,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, reply)) = data.split_first() else {
        return;
    };
    // Mostly the reply's own id (so the parse and later checks run), sometimes another.
    let id = match (selector & 0x80, reply) {
        (0, [a, b, ..]) => u16::from_be_bytes([*a, *b]),
        _ => 0x1234,
    };
    let kind = match (selector >> 1) & 3 {
        0 => RecordKind::A,
        1 => RecordKind::Aaaa,
        2 => RecordKind::Cname,
        _ => RecordKind::Txt,
    };
    if selector & 1 == 0 {
        let server = "127.0.0.1:53".parse().unwrap();
        if let Ok((values, ttl)) = check_query_reply(reply, id, server, "app.example.test", kind) {
            assert_eq!(values.is_empty(), ttl.is_none());
            let mut sorted = values.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(values, sorted, "values are sorted and unique");
        }
    } else {
        let algorithm = match (selector >> 3) & 3 {
            0 => TsigAlgorithm::HmacSha256,
            1 => TsigAlgorithm::HmacSha512,
            _ => TsigAlgorithm::HmacSha384,
        };
        let key = TsigKey {
            name: "firebreak".into(),
            algorithm,
            secret: b"firebreak-test-secret-32-bytes!!".to_vec(),
        };
        let request_mac = [0x5au8; 32];
        let signed = check_update_reply(reply, id, "example.test", Some(&key), &request_mac);
        assert!(
            signed.is_err(),
            "a forged reply was taken as success: {signed:?}"
        );
        if let Ok((_, verified)) = check_update_reply(reply, id, "example.test", None, &[]) {
            assert!(!verified, "an unsigned exchange cannot verify a TSIG");
        }
    }
});
