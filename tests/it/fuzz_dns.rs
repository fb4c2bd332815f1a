//! DNS response handling under fuzzing: a loopback server answers the agent's queries and
//! signed updates with mangled replies (random bytes under the right ID, the query echoed
//! back with bits flipped, cut short, or marked truncated so the client falls back to TCP,
//! with garbage length prefixes there). Every exchange must end in a result or an error
//! within its timeout: no panic, no hang. No real server sends such replies, so this one is
//! written here.

use firebreak::dns::{
    query_rrset_ttl, send_update, RecordKind, TsigAlgorithm, TsigKey, UpdateSpec,
};
use proptest::prelude::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CASES: u32 = 300;
/// The client's bound per exchange; short, since most replies are rejected and the
/// client then waits for a valid one until this runs out.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(40);

#[derive(Debug, Clone)]
enum Reply {
    /// Random bytes, with the query's ID in front when `keep_id`.
    Random { bytes: Vec<u8>, keep_id: bool },
    /// The query turned into a response (QR set, RCODE), then damaged.
    Echo {
        rcode: u8,
        flips: Vec<(usize, u8)>,
        cut: Option<usize>,
        truncated: bool,
        extra: Vec<u8>,
    },
}

impl Reply {
    fn answer(&self, query: &[u8]) -> Vec<u8> {
        match self {
            Reply::Random { bytes, keep_id } => {
                let mut out = bytes.clone();
                if *keep_id && query.len() >= 2 {
                    out.splice(0..out.len().min(2), query[..2].iter().copied());
                }
                out
            }
            Reply::Echo {
                rcode,
                flips,
                cut,
                truncated,
                extra,
            } => {
                let mut out = query.to_vec();
                if out.len() >= 4 {
                    out[2] |= 0x80; // QR
                    if *truncated {
                        out[2] |= 0x02; // TC
                    }
                    out[3] = (out[3] & 0xf0) | (rcode & 0x0f);
                }
                out.extend_from_slice(extra);
                for &(at, x) in flips {
                    if !out.is_empty() {
                        let i = at % out.len();
                        out[i] ^= x;
                    }
                }
                if let Some(n) = cut {
                    out.truncate(*n % (out.len() + 1));
                }
                out
            }
        }
    }
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (prop::collection::vec(any::<u8>(), 0..600), any::<bool>())
            .prop_map(|(bytes, keep_id)| Reply::Random { bytes, keep_id }),
        (
            0u8..16,
            prop::collection::vec((any::<usize>(), 1u8..=255), 0..6),
            prop::option::of(any::<usize>()),
            prop::bool::weighted(0.2),
            prop::collection::vec(any::<u8>(), 0..80),
        )
            .prop_map(|(rcode, flips, cut, truncated, extra)| Reply::Echo {
                rcode,
                flips,
                cut,
                truncated,
                extra
            }),
    ]
}

struct Fuzzer {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
}

/// One server for all cases (UDP and TCP on the same port), answering with the current
/// `reply`.
fn fuzzer() -> &'static Fuzzer {
    static F: OnceLock<Fuzzer> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let reply = Arc::new(Mutex::new(Reply::Random {
            bytes: vec![],
            keep_id: true,
        }));
        let addr = rt.block_on(async {
            // Bind TCP first, then UDP on its port (retry on the rare clash).
            loop {
                let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = tcp.local_addr().unwrap();
                let Ok(udp) = tokio::net::UdpSocket::bind(addr).await else {
                    continue;
                };
                let r = reply.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                        let out = r.lock().unwrap().answer(&buf[..n]);
                        let _ = udp.send_to(&out, peer).await;
                    }
                });
                let r = reply.clone();
                tokio::spawn(async move {
                    while let Ok((mut s, _)) = tcp.accept().await {
                        let r = r.clone();
                        tokio::spawn(async move {
                            let mut len = [0u8; 2];
                            if s.read_exact(&mut len).await.is_err() {
                                return;
                            }
                            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                            if s.read_exact(&mut q).await.is_err() {
                                return;
                            }
                            let out = r.lock().unwrap().answer(&q);
                            // Sometimes a length prefix that lies.
                            let claimed = if out.len() % 3 == 0 {
                                out.len() as u16 + 7
                            } else {
                                out.len() as u16
                            };
                            let _ = s.write_all(&claimed.to_be_bytes()).await;
                            let _ = s.write_all(&out).await;
                        });
                    }
                });
                break addr;
            }
        });
        Fuzzer { rt, addr, reply }
    })
}

fn spec(addr: SocketAddr) -> UpdateSpec {
    UpdateSpec {
        server: addr,
        zone: "example.test".into(),
        record: "app.example.test".into(),
        kind: RecordKind::A,
        ttl: 30,
        values: vec!["198.51.100.20".into()],
        key: Some(TsigKey {
            name: "firebreak".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: b"firebreak-test-secret-32-bytes!!".to_vec(),
        }),
        timeout: CLIENT_TIMEOUT,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn mangled_dns_replies_give_an_error_never_a_crash_or_a_hang(r in reply()) {
        let f = fuzzer();
        *f.reply.lock().unwrap() = r.clone();
        // Each exchange is bounded by CLIENT_TIMEOUT (UDP, then TCP when truncated); the
        // outer bound only catches a hang.
        let bound = Duration::from_secs(5);
        let (query, update) = f.rt.block_on(async {
            let q = tokio::time::timeout(
                bound,
                query_rrset_ttl(f.addr, "app.example.test", RecordKind::A, CLIENT_TIMEOUT),
            )
            .await;
            let u = tokio::time::timeout(bound, send_update(&spec(f.addr), None)).await;
            (q, u)
        });
        prop_assert!(query.is_ok(), "query hung on {r:?}");
        prop_assert!(update.is_ok(), "update hung on {r:?}");
        // An unsigned or badly signed reply can never count as a successful signed update.
        prop_assert!(update.unwrap().is_err(), "a mangled reply was taken as success: {r:?}");
    }
}
