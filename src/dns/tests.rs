//! Unit tests of the DNS module (no network).

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
