//! DNS failover against a real Knot DNS server (knotd) started per test, checked with
//! kdig, an independent client.

use crate::support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use base64::Engine as _;
use firebreak::dns::{self, DnsError, RecordKind, Transport, TsigAlgorithm, TsigKey, UpdateSpec};
use support::knot::{self, Knot};

const ZONE: &str = "example.test";
const KEY_NAME: &str = "firebreak";
const TIMEOUT: Duration = Duration::from_secs(3);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A fixed 32-byte secret (tests must not depend on randomness).
fn secret(seed: u8) -> Vec<u8> {
    (0..32u8)
        .map(|i| i.wrapping_mul(29).wrapping_add(seed))
        .collect()
}

fn key(algorithm: TsigAlgorithm, secret: Vec<u8>) -> TsigKey {
    TsigKey {
        name: KEY_NAME.into(),
        algorithm,
        secret,
    }
}

fn start_keyed(records: &[(&str, &str, &str)], algorithm: TsigAlgorithm, secret: &[u8]) -> Knot {
    let s = b64(secret);
    Knot::start(ZONE, records, Some((KEY_NAME, algorithm.as_str(), &s)))
}

fn spec(
    knot: &Knot,
    record: &str,
    kind: RecordKind,
    values: &[&str],
    key: Option<TsigKey>,
) -> UpdateSpec {
    UpdateSpec {
        server: knot.addr(),
        zone: ZONE.into(),
        record: record.into(),
        kind,
        ttl: 60,
        values: values.iter().map(|v| v.to_string()).collect(),
        key,
        timeout: TIMEOUT,
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Against knotd
// ---------------------------------------------------------------------------

#[tokio::test]
async fn signed_update_replaces_a_rrset_and_verify_and_kdig_agree() {
    let sec = secret(1);
    let knot = start_keyed(
        &[("app", "A", "192.0.2.10"), ("app", "A", "192.0.2.11")],
        TsigAlgorithm::HmacSha256,
        &sec,
    );
    assert_eq!(
        sorted(knot.dig("app.example.test", "A")),
        strings(&["192.0.2.10", "192.0.2.11"])
    );

    let s = spec(
        &knot,
        "app.example.test",
        RecordKind::A,
        &["198.51.100.8", "198.51.100.7"],
        Some(key(TsigAlgorithm::HmacSha256, sec)),
    );
    assert!(
        !dns::verify(&s).await.unwrap(),
        "verify must be false before the update"
    );

    let out = dns::send_update(&s, None).await.expect("signed update");
    assert_eq!(out.rcode, "NOERROR");
    assert!(out.tsig_verified, "response TSIG must be verified");
    assert_eq!(out.transport, Transport::Udp);
    assert!(out.rtt < TIMEOUT);

    assert!(dns::verify(&s).await.unwrap());
    assert_eq!(
        dns::query_rrset(knot.addr(), "app.example.test", RecordKind::A, TIMEOUT)
            .await
            .unwrap(),
        strings(&["198.51.100.7", "198.51.100.8"])
    );
    assert_eq!(
        sorted(knot.dig("app.example.test", "A")),
        strings(&["198.51.100.7", "198.51.100.8"])
    );
    // The TTL was applied too.
    let full = knot.kdig(&["app.example.test", "A", "+noall", "+answer"]);
    assert!(
        full.iter()
            .all(|l| l.split_whitespace().nth(1) == Some("60")),
        "{full:?}"
    );
}

#[tokio::test]
async fn soa_serial_increases_by_one_per_update() {
    let sec = secret(2);
    let knot = start_keyed(
        &[("app", "A", "192.0.2.10")],
        TsigAlgorithm::HmacSha256,
        &sec,
    );
    let s0 = knot.soa_serial();
    let k = Some(key(TsigAlgorithm::HmacSha256, sec));

    dns::send_update(
        &spec(
            &knot,
            "app.example.test",
            RecordKind::A,
            &["198.51.100.1"],
            k.clone(),
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(knot.soa_serial(), s0 + 1);

    dns::send_update(
        &spec(
            &knot,
            "app.example.test",
            RecordKind::A,
            &["198.51.100.2"],
            k,
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(knot.soa_serial(), s0 + 2);
}

#[tokio::test]
async fn wrong_secret_is_notauth_with_badsig_and_zone_unchanged() {
    let knot = start_keyed(
        &[("app", "A", "192.0.2.10")],
        TsigAlgorithm::HmacSha256,
        &secret(3),
    );
    let serial = knot.soa_serial();
    let s = spec(
        &knot,
        "app.example.test",
        RecordKind::A,
        &["198.51.100.9"],
        Some(key(TsigAlgorithm::HmacSha256, secret(99))),
    );
    let err = dns::send_update(&s, None).await.unwrap_err();
    match &err {
        DnsError::NotAuth { tsig_error, signed } => {
            assert_eq!(tsig_error.as_deref(), Some("BADSIG"));
            assert!(*signed);
        }
        other => panic!("expected NotAuth, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("BADSIG") && msg.contains("secret"), "{msg}");
    assert!(!err.is_retryable());
    assert_eq!(knot.dig("app.example.test", "A"), strings(&["192.0.2.10"]));
    assert_eq!(knot.soa_serial(), serial);
}

#[tokio::test]
async fn unknown_key_name_is_notauth_with_badkey() {
    let sec = secret(4);
    let knot = start_keyed(
        &[("app", "A", "192.0.2.10")],
        TsigAlgorithm::HmacSha256,
        &sec,
    );
    let mut k = key(TsigAlgorithm::HmacSha256, sec);
    k.name = "someone-else".into();
    let err = dns::send_update(
        &spec(
            &knot,
            "app.example.test",
            RecordKind::A,
            &["198.51.100.9"],
            Some(k),
        ),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, DnsError::NotAuth { tsig_error: Some(e), .. } if e == "BADKEY"),
        "{err:?}"
    );
    assert_eq!(knot.dig("app.example.test", "A"), strings(&["192.0.2.10"]));
}

#[tokio::test]
async fn wrong_algorithm_is_rejected_as_notauth() {
    let sec = secret(5);
    let knot = start_keyed(
        &[("app", "A", "192.0.2.10")],
        TsigAlgorithm::HmacSha256,
        &sec,
    );
    let err = dns::send_update(
        &spec(
            &knot,
            "app.example.test",
            RecordKind::A,
            &["198.51.100.9"],
            Some(key(TsigAlgorithm::HmacSha512, sec)),
        ),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            DnsError::NotAuth {
                tsig_error: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(knot.dig("app.example.test", "A"), strings(&["192.0.2.10"]));
}

#[tokio::test]
async fn unsigned_update_to_zone_requiring_key_is_rejected_and_zone_unchanged() {
    let knot = start_keyed(
        &[("app", "A", "192.0.2.10")],
        TsigAlgorithm::HmacSha256,
        &secret(6),
    );
    let serial = knot.soa_serial();
    let err = dns::send_update(
        &spec(
            &knot,
            "app.example.test",
            RecordKind::A,
            &["198.51.100.9"],
            None,
        ),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            DnsError::NotAuth { signed: false, .. } | DnsError::Refused { .. }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("TSIG"), "{err}");
    assert_eq!(knot.dig("app.example.test", "A"), strings(&["192.0.2.10"]));
    assert_eq!(knot.soa_serial(), serial);
}

#[tokio::test]
async fn unsigned_update_works_when_zone_allows_it() {
    let knot = Knot::start(ZONE, &[("app", "A", "192.0.2.10")], None);
    let s = spec(
        &knot,
        "app.example.test",
        RecordKind::A,
        &["198.51.100.3"],
        None,
    );
    let out = dns::send_update(&s, None).await.unwrap();
    assert!(!out.tsig_verified);
    assert!(dns::verify(&s).await.unwrap());
    assert_eq!(
        knot.dig("app.example.test", "A"),
        strings(&["198.51.100.3"])
    );
}

#[tokio::test]
async fn prerequisite_mismatch_fails_and_zone_unchanged() {
    let sec = secret(7);
    let knot = start_keyed(
        &[("app", "A", "192.0.2.10")],
        TsigAlgorithm::HmacSha256,
        &sec,
    );
    let serial = knot.soa_serial();
    let s = spec(
        &knot,
        "app.example.test",
        RecordKind::A,
        &["198.51.100.9"],
        Some(key(TsigAlgorithm::HmacSha256, sec)),
    );
    // Someone else already moved it: we expected 192.0.2.99.
    let err = dns::send_update(&s, Some(&strings(&["192.0.2.99"])))
        .await
        .unwrap_err();
    match &err {
        DnsError::PrerequisiteFailed { rcode } => assert_eq!(rcode, "NXRRSET"),
        other => panic!("expected PrerequisiteFailed, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("another agent or operator"),
        "{err}"
    );
    // A superset of the current values does not match either.
    let err = dns::send_update(&s, Some(&strings(&["192.0.2.10", "192.0.2.11"])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DnsError::PrerequisiteFailed { .. }),
        "{err:?}"
    );
    assert_eq!(knot.dig("app.example.test", "A"), strings(&["192.0.2.10"]));
    assert_eq!(knot.soa_serial(), serial);
}

#[tokio::test]
async fn prerequisite_match_applies_update() {
    let sec = secret(8);
    let knot = start_keyed(
        &[("app", "A", "192.0.2.10"), ("app", "A", "192.0.2.11")],
        TsigAlgorithm::HmacSha256,
        &sec,
    );
    let s = spec(
        &knot,
        "app.example.test",
        RecordKind::A,
        &["198.51.100.9"],
        Some(key(TsigAlgorithm::HmacSha256, sec)),
    );
    // Order does not matter.
    let out = dns::send_update(&s, Some(&strings(&["192.0.2.11", "192.0.2.10"])))
        .await
        .unwrap();
    assert!(out.tsig_verified);
    assert_eq!(
        knot.dig("app.example.test", "A"),
        strings(&["198.51.100.9"])
    );
}

#[tokio::test]
async fn empty_prerequisite_means_rrset_must_not_exist() {
    let sec = secret(9);
    let knot = start_keyed(
        &[("app", "A", "192.0.2.10")],
        TsigAlgorithm::HmacSha256,
        &sec,
    );
    let k = Some(key(TsigAlgorithm::HmacSha256, sec));
    let exists = spec(
        &knot,
        "app.example.test",
        RecordKind::A,
        &["198.51.100.9"],
        k.clone(),
    );
    let err = dns::send_update(&exists, Some(&[])).await.unwrap_err();
    assert!(
        matches!(&err, DnsError::PrerequisiteFailed { rcode } if rcode == "YXRRSET"),
        "{err:?}"
    );

    let fresh = spec(
        &knot,
        "new.example.test",
        RecordKind::A,
        &["198.51.100.9"],
        k,
    );
    dns::send_update(&fresh, Some(&[])).await.unwrap();
    assert_eq!(
        knot.dig("new.example.test", "A"),
        strings(&["198.51.100.9"])
    );
}

#[tokio::test]
async fn hmac_sha512_and_sha384_keys_work() {
    for (i, alg) in [TsigAlgorithm::HmacSha512, TsigAlgorithm::HmacSha384]
        .into_iter()
        .enumerate()
    {
        let sec: Vec<u8> = (0..64u8).map(|b| b ^ (0x5a + i as u8)).collect();
        let knot = start_keyed(&[("app", "A", "192.0.2.10")], alg, &sec);
        let s = spec(
            &knot,
            "app.example.test",
            RecordKind::A,
            &["203.0.113.5"],
            Some(key(alg, sec)),
        );
        let out = dns::send_update(&s, None)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert!(out.tsig_verified, "{alg}");
        assert!(dns::verify(&s).await.unwrap(), "{alg}");
        assert_eq!(
            knot.dig("app.example.test", "A"),
            strings(&["203.0.113.5"]),
            "{alg}"
        );
    }
}

#[tokio::test]
async fn cname_replace_works() {
    let sec = secret(10);
    let knot = start_keyed(
        &[("www", "CNAME", "app.example.test.")],
        TsigAlgorithm::HmacSha256,
        &sec,
    );
    let s = spec(
        &knot,
        "www.example.test",
        RecordKind::Cname,
        &["DR.Example.NET."],
        Some(key(TsigAlgorithm::HmacSha256, sec)),
    );
    dns::send_update(&s, None).await.unwrap();
    assert!(dns::verify(&s).await.unwrap());
    assert_eq!(
        dns::query_rrset(knot.addr(), "www.example.test", RecordKind::Cname, TIMEOUT)
            .await
            .unwrap(),
        strings(&["dr.example.net"])
    );
    assert_eq!(
        knot.dig("www.example.test", "CNAME"),
        strings(&["dr.example.net."])
    );
}

#[tokio::test]
async fn txt_replace_works() {
    let sec = secret(11);
    let knot = start_keyed(
        &[("app", "TXT", "site=primary")],
        TsigAlgorithm::HmacSha256,
        &sec,
    );
    let long = format!("failover to dr; {}", "x".repeat(300)); // > 255: split into two strings
    let s = spec(
        &knot,
        "app.example.test",
        RecordKind::Txt,
        &["site=dr \"quoted\" text", &long],
        Some(key(TsigAlgorithm::HmacSha256, sec)),
    );
    dns::send_update(&s, None).await.unwrap();
    assert!(dns::verify(&s).await.unwrap());
    let seen = knot.dig("app.example.test", "TXT");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.contains(&r#""site=dr \"quoted\" text""#.to_string()),
        "{seen:?}"
    );
    let long_seen = seen.iter().find(|l| l.contains("failover")).unwrap();
    // kdig prints the two character-strings separately.
    let joined: String = long_seen.split("\" \"").collect::<Vec<_>>().join("");
    assert_eq!(joined.trim_matches('"'), long);
}

#[tokio::test]
async fn aaaa_replace_works() {
    let sec = secret(12);
    let knot = start_keyed(
        &[("app", "AAAA", "2001:db8::10")],
        TsigAlgorithm::HmacSha256,
        &sec,
    );
    let s = spec(
        &knot,
        "app.example.test",
        RecordKind::Aaaa,
        &["2001:DB8:0:0:0:0:0:20", "2001:db8::21"],
        Some(key(TsigAlgorithm::HmacSha256, sec)),
    );
    dns::send_update(&s, None).await.unwrap();
    assert!(dns::verify(&s).await.unwrap());
    assert_eq!(
        sorted(knot.dig("app.example.test", "AAAA")),
        strings(&["2001:db8::20", "2001:db8::21"])
    );
}

#[tokio::test]
async fn large_update_goes_over_tcp_and_truncated_answer_is_retried_over_tcp() {
    let sec = secret(13);
    let knot = start_keyed(&[("big", "TXT", "old")], TsigAlgorithm::HmacSha256, &sec);
    let values: Vec<String> = (0..12)
        .map(|i| format!("{i:02}-{}", "v".repeat(200)))
        .collect();
    let mut s = spec(
        &knot,
        "big.example.test",
        RecordKind::Txt,
        &[],
        Some(key(TsigAlgorithm::HmacSha256, sec)),
    );
    s.values = values.clone();
    let out = dns::send_update(&s, None).await.unwrap();
    assert_eq!(
        out.transport,
        Transport::Tcp,
        "a >512 byte update must go over TCP"
    );
    assert!(out.tsig_verified);
    // ~2.5 kB answer: over the 1232 EDNS size, so Knot truncates over UDP.
    let tc = knot.kdig(&["big.example.test", "TXT", "+ignore", "+bufsize=1232"]);
    assert!(
        tc.iter().any(|l| l.contains("tc")),
        "expected a truncated UDP answer: {tc:?}"
    );
    assert!(dns::verify(&s).await.unwrap());
    assert_eq!(knot.dig("big.example.test", "TXT").len(), 12);
}

#[tokio::test]
async fn update_for_zone_the_server_does_not_serve_is_not_retryable() {
    let sec = secret(14);
    let knot = start_keyed(&[], TsigAlgorithm::HmacSha256, &sec);
    let mut s = spec(
        &knot,
        "app.other.test",
        RecordKind::A,
        &["198.51.100.1"],
        Some(key(TsigAlgorithm::HmacSha256, sec)),
    );
    s.zone = "other.test".into();
    let err = dns::send_update(&s, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            DnsError::NotAuth { .. } | DnsError::Refused { .. } | DnsError::NotZone { .. }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn secret_from_real_keymgr_output_works() {
    let Some(keymgr) = knot::find_program("keymgr") else {
        panic!("keymgr not found: install it with `apt-get install -y knot knot-dnsutils`");
    };
    let out = std::process::Command::new(keymgr)
        .args(["-t", KEY_NAME, "hmac-sha256"])
        .output()
        .expect("run keymgr -t");
    assert!(out.status.success(), "keymgr failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed = dns::parse_tsig_key_file(&text).unwrap();
    assert_eq!(parsed.name.as_deref(), Some(KEY_NAME));
    assert_eq!(parsed.algorithm, Some(TsigAlgorithm::HmacSha256));
    let knot = start_keyed(
        &[("app", "A", "192.0.2.10")],
        TsigAlgorithm::HmacSha256,
        &parsed.secret,
    );
    let s = spec(
        &knot,
        "app.example.test",
        RecordKind::A,
        &["198.51.100.44"],
        Some(key(TsigAlgorithm::HmacSha256, parsed.secret)),
    );
    dns::send_update(&s, None).await.unwrap();
    assert_eq!(
        knot.dig("app.example.test", "A"),
        strings(&["198.51.100.44"])
    );
}

#[tokio::test]
async fn query_of_missing_name_is_empty() {
    let knot = Knot::start(ZONE, &[], None);
    assert!(
        dns::query_rrset(knot.addr(), "nope.example.test", RecordKind::A, TIMEOUT)
            .await
            .unwrap()
            .is_empty()
    );
    // A name that exists with another type: empty too.
    assert!(
        dns::query_rrset(knot.addr(), "ns1.example.test", RecordKind::Aaaa, TIMEOUT)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------
// Transport behaviour without knotd
// ---------------------------------------------------------------------------

#[tokio::test]
async fn timeout_when_nothing_answers_on_udp() {
    // Holds the port so nothing else answers, and never replies.
    let hole = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let server = hole.local_addr().unwrap();
    let timeout = Duration::from_millis(400);
    let s = UpdateSpec {
        server,
        zone: ZONE.into(),
        record: "app.example.test".into(),
        kind: RecordKind::A,
        ttl: 60,
        values: strings(&["198.51.100.1"]),
        key: Some(key(TsigAlgorithm::HmacSha256, secret(15))),
        timeout,
    };
    let started = Instant::now();
    let err = dns::send_update(&s, None).await.unwrap_err();
    let took = started.elapsed();
    match &err {
        DnsError::Timeout { server: srv, after } => {
            assert_eq!(*srv, server);
            assert_eq!(*after, timeout);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(500),
        "took {took:?}"
    );

    let started = Instant::now();
    let err = dns::query_rrset(server, "app.example.test", RecordKind::A, timeout)
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < timeout + Duration::from_millis(500));
    drop(hole);
}

/// A reply to `query` (question copied) with one A answer, id overridden.
fn fake_answer(query: &[u8], id: u16, ip: [u8; 4]) -> Vec<u8> {
    // Question ends after the qname's zero byte + type + class.
    let mut i = 12;
    while query[i] != 0 {
        i += 1 + query[i] as usize;
    }
    let qend = i + 1 + 4;
    let mut r = Vec::new();
    r.extend_from_slice(&id.to_be_bytes());
    r.extend_from_slice(&[0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 0]); // QR AA, 1 question, 1 answer
    r.extend_from_slice(&query[12..qend]);
    r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
    r.extend_from_slice(&ip);
    r
}

#[tokio::test]
async fn stray_datagrams_wrong_ids_and_garbage_are_ignored() {
    let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr: SocketAddr = server.local_addr().unwrap();
    let fake = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (n, client) = server.recv_from(&mut buf).unwrap();
        let q = buf[..n].to_vec();
        let id = u16::from_be_bytes([q[0], q[1]]);
        // From another address (port): must be ignored even with the right id.
        let other = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        other
            .send_to(&fake_answer(&q, id, [6, 6, 6, 6]), client)
            .unwrap();
        // Wrong id, then garbage with the right id, then the real answer.
        server
            .send_to(&fake_answer(&q, id.wrapping_add(1), [7, 7, 7, 7]), client)
            .unwrap();
        let mut garbage = id.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0x80, 0, 0, 5, 0xff]);
        server.send_to(&garbage, client).unwrap();
        server
            .send_to(&fake_answer(&q, id, [192, 0, 2, 77]), client)
            .unwrap();
    });
    let got = dns::query_rrset(addr, "app.example.test", RecordKind::A, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(got, strings(&["192.0.2.77"]));
    fake.join().unwrap();
}

#[tokio::test]
async fn garbled_reply_and_silence_is_bad_response_not_panic() {
    let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = server.local_addr().unwrap();
    let fake = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (n, client) = server.recv_from(&mut buf).unwrap();
        let mut garbage = buf[..n][..2].to_vec();
        garbage.extend_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a']); // qname runs off the end
        server.send_to(&garbage, client).unwrap();
    });
    let err = dns::query_rrset(
        addr,
        "app.example.test",
        RecordKind::A,
        Duration::from_millis(400),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, DnsError::BadResponse(m) if m.contains("malformed")),
        "{err:?}"
    );
    fake.join().unwrap();
}

#[tokio::test]
async fn truncated_udp_reply_falls_back_to_tcp() {
    use std::io::{Read, Write};
    let tcp = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = tcp.local_addr().unwrap();
    let udp = UdpSocket::bind(addr).expect("UDP on the same port as TCP");
    let fake = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (n, client) = udp.recv_from(&mut buf).unwrap();
        let id = [buf[0], buf[1]];
        // TC set and a body that does not even parse: the client must still go to TCP.
        udp.send_to(&[id[0], id[1], 0x86, 0, 0, 1, 0, 9, 0, 0, 0, 0, 3], client)
            .unwrap();
        let (mut conn, _) = tcp.accept().unwrap();
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).unwrap();
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut q).unwrap();
        assert_eq!(&q[..], &buf[..n], "the same query is re-sent over TCP");
        let a = fake_answer(&q, u16::from_be_bytes(id), [192, 0, 2, 99]);
        conn.write_all(&(a.len() as u16).to_be_bytes()).unwrap();
        conn.write_all(&a).unwrap();
    });
    let got = dns::query_rrset(addr, "app.example.test", RecordKind::A, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(got, strings(&["192.0.2.99"]));
    fake.join().unwrap();
}

/// Fake server answering one signed UPDATE with NOERROR, signed the way `sign` says.
fn fake_update_server(sign: Option<Vec<u8>>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HAlg;
    use hickory_proto::rr::Name;
    use hickory_proto::rr::TSigner;

    let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = server.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (n, client) = server.recv_from(&mut buf).unwrap();
        let req = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(
            req.signature().iter().count(),
            1,
            "the update must carry a TSIG record"
        );
        let mut resp = Message::new(req.id, MessageType::Response, OpCode::Update);
        resp.add_queries(req.queries.clone());
        if let Some(secret) = sign {
            // Signed like a request (no request MAC chained in): must not verify.
            let signer = TSigner::new(
                secret,
                HAlg::HmacSha256,
                Name::from_ascii(KEY_NAME).unwrap(),
                300,
            )
            .unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            resp.finalize(&signer, now).unwrap();
        }
        server.send_to(&resp.to_vec().unwrap(), client).unwrap();
    });
    (addr, handle)
}

#[tokio::test]
async fn unsigned_or_badly_signed_noerror_reply_to_signed_update_is_rejected() {
    for (case, sign) in [
        ("unsigned", None),
        ("wrong key", Some(secret(31))),
        ("unchained", Some(secret(30))),
    ] {
        let (addr, fake) = fake_update_server(sign);
        let s = UpdateSpec {
            server: addr,
            zone: ZONE.into(),
            record: "app.example.test".into(),
            kind: RecordKind::A,
            ttl: 60,
            values: strings(&["198.51.100.1"]),
            key: Some(key(TsigAlgorithm::HmacSha256, secret(30))),
            timeout: TIMEOUT,
        };
        let err = dns::send_update(&s, None).await.unwrap_err();
        assert!(matches!(err, DnsError::BadResponse(_)), "{case}: {err:?}");
        fake.join().unwrap();
    }
}

// ---------------------------------------------------------------------------
// Secret files and validation (no network)
// ---------------------------------------------------------------------------

#[test]
fn parse_tsig_secret_accepts_bare_bind_and_knot_formats() {
    let raw = secret(20);
    let s = b64(&raw);

    assert_eq!(dns::parse_tsig_secret(&format!("{s}\n")).unwrap(), raw);
    assert_eq!(
        dns::parse_tsig_secret(&format!("# generated by hand\n  {s}  \n\n")).unwrap(),
        raw
    );
    assert_eq!(
        dns::parse_tsig_secret(&format!("hmac-sha256:firebreak:{s}")).unwrap(),
        raw
    );

    let bind = format!(
        "// tsig-keygen -a hmac-sha256 firebreak\nkey \"firebreak\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{s}\";\n}};\n"
    );
    assert_eq!(dns::parse_tsig_secret(&bind).unwrap(), raw);
    let parsed = dns::parse_tsig_key_file(&bind).unwrap();
    assert_eq!(parsed.name.as_deref(), Some("firebreak"));
    assert_eq!(parsed.algorithm, Some(TsigAlgorithm::HmacSha256));
    let one_line = format!("key secret-key {{ algorithm HMAC-SHA512; secret \"{s}\"; }};");
    let parsed = dns::parse_tsig_key_file(&one_line).unwrap();
    assert_eq!(parsed.secret, raw);
    assert_eq!(parsed.name.as_deref(), Some("secret-key"));
    assert_eq!(parsed.algorithm, Some(TsigAlgorithm::HmacSha512));

    let knot = format!(
        "# hmac-sha384:firebreak:{s}\nkey:\n  - id: firebreak\n    algorithm: hmac-sha384\n    secret: {s}\n"
    );
    let parsed = dns::parse_tsig_key_file(&knot).unwrap();
    assert_eq!(parsed.secret, raw);
    assert_eq!(parsed.name.as_deref(), Some("firebreak"));
    assert_eq!(parsed.algorithm, Some(TsigAlgorithm::HmacSha384));
    let quoted = format!("key:\n- id: \"k\"\n  secret: \"{s}\"\n  algorithm: hmac-sha256\n");
    assert_eq!(dns::parse_tsig_secret(&quoted).unwrap(), raw);
}

#[test]
fn parse_tsig_secret_rejects_empty_and_garbage() {
    for text in ["", "   \n\n", "# only a comment\n"] {
        let err = dns::parse_tsig_secret(text).unwrap_err();
        assert!(matches!(err, DnsError::BadSecret(_)), "{text:?}: {err:?}");
    }
    for text in [
        "not base64 at all!",
        "key \"k\" { algorithm hmac-sha256; secret \"%%%\"; };",
        "key:\n  - id: k\n    algorithm: hmac-sha256\n    secret: \"\"\n",
        "two\nlines of junk\n",
        "key \"k\" { algorithm hmac-md5; secret \"AAAA\"; };",
    ] {
        let err = dns::parse_tsig_secret(text).unwrap_err();
        assert!(matches!(err, DnsError::BadSecret(_)), "{text:?}: {err:?}");
        assert!(!err.to_string().is_empty());
    }
    let err = dns::parse_tsig_secret("not base64 at all!").unwrap_err();
    assert!(err.to_string().contains("base64"), "{err}");
}

fn offline_spec() -> UpdateSpec {
    UpdateSpec {
        server: "127.0.0.1:53".parse().unwrap(),
        zone: "example.com.".into(),
        record: "app.example.com".into(),
        kind: RecordKind::A,
        ttl: 60,
        values: strings(&["192.0.2.1"]),
        key: Some(key(TsigAlgorithm::HmacSha256, secret(21))),
        timeout: Duration::from_secs(2),
    }
}

#[test]
fn validate_accepts_a_good_spec() {
    dns::validate(&offline_spec()).unwrap();
}

#[test]
fn validate_rejects_record_outside_zone() {
    let mut s = offline_spec();
    s.record = "app.example.net".into();
    let err = dns::validate(&s).unwrap_err();
    assert!(matches!(err, DnsError::InvalidSpec(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("not inside zone") && msg.contains("app.example.net"),
        "{msg}"
    );
    // A relative-looking name is not silently completed.
    s.record = "app".into();
    assert!(dns::validate(&s).is_err());
    // Suffix match is not enough: notexample.com is not in example.com.
    s.record = "app.notexample.com".into();
    assert!(dns::validate(&s).is_err());
}

#[test]
fn validate_rejects_bad_ipv4() {
    for bad in [
        "192.0.2.256",
        "192.0.2",
        "2001:db8::1",
        "app.example.com",
        "",
    ] {
        let mut s = offline_spec();
        s.values = strings(&[bad]);
        let err = dns::validate(&s).unwrap_err();
        assert!(err.to_string().contains("IPv4"), "{bad}: {err}");
    }
}

#[test]
fn validate_rejects_bad_names_and_kind_mismatches() {
    let mut s = offline_spec();
    s.kind = RecordKind::Cname;
    s.values = strings(&["dr..example.net"]);
    assert!(dns::validate(&s).is_err());
    let mut s = offline_spec();
    s.kind = RecordKind::Aaaa;
    assert!(dns::validate(&s).unwrap_err().to_string().contains("IPv6"));
    let mut s = offline_spec();
    s.zone = "exa mple.com".into();
    assert!(dns::validate(&s).is_err());
    let mut s = offline_spec();
    s.key.as_mut().unwrap().secret.clear();
    assert!(matches!(dns::validate(&s), Err(DnsError::BadSecret(_))));
    let mut s = offline_spec();
    s.server = "127.0.0.1:0".parse().unwrap();
    assert!(dns::validate(&s).is_err());
}
