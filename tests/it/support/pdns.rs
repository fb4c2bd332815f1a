//! A real PowerDNS Authoritative server (`pdns_server`, sqlite3 backend, HTTP API on) in a
//! temp dir, answering DNS on a free 127.0.0.1 port and the API on another, with one
//! zone. `kdig`, a client we did not write, checks what it answers over DNS; the API is
//! read with plain HTTP requests.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::peer::{self, Peer};

const INSTALL: &str = "apt-get install -y pdns-server pdns-backend-sqlite3 sqlite3";
const SCHEMA: &str = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";
/// The API key the server is started with.
pub const KEY: &str = "firebreak-test-api-key";
const START_ATTEMPTS: usize = 3;

/// A running pdns_server, killed (and its directory removed) on drop.
pub struct Pdns {
    peer: Peer,
    dns_port: u16,
    api_port: u16,
    kdig: std::path::PathBuf,
}

/// One RRset of the zone at start: (name, type, ttl, contents as the API writes them).
pub type RrSet<'a> = (&'a str, &'a str, u32, &'a [&'a str]);

impl Pdns {
    /// Starts pdns_server with `zone` (Native, `ns1.<zone>`) holding `rrsets`, and waits
    /// until the API answers and the zone is served over DNS.
    pub fn start(zone: &str, rrsets: &[RrSet]) -> Pdns {
        let pdns = peer::require("pdns_server", INSTALL);
        let sqlite3 = peer::require("sqlite3", INSTALL);
        let kdig = peer::require("kdig", "apt-get install -y knot-dnsutils");
        if !std::path::Path::new(SCHEMA).is_file() {
            panic!("{}", peer::missing(SCHEMA, INSTALL));
        }
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let mut peer = Peer::new("pdns");
            let dir = peer.dir().to_path_buf();
            for d in ["empty", "run"] {
                std::fs::create_dir_all(dir.join(d)).unwrap();
            }
            let db = dir.join("pdns.sqlite3");
            let status = Command::new(&sqlite3)
                .arg(&db)
                .stdin(Stdio::from(std::fs::File::open(SCHEMA).unwrap()))
                .status()
                .unwrap();
            assert!(status.success(), "sqlite3 could not load {SCHEMA}");
            let dns_port = super::free_tcp_udp_port().unwrap();
            let api_port = super::free_port();
            let d = dir.display();
            let mut cmd = Command::new(&pdns);
            cmd.args([
                format!("--config-dir={d}/empty"),
                "--daemon=no".into(),
                "--guardian=no".into(),
                "--disable-syslog".into(),
                "--local-address=127.0.0.1".into(),
                format!("--local-port={dns_port}"),
                "--launch=gsqlite3".into(),
                format!("--gsqlite3-database={}", db.display()),
                "--api=yes".into(),
                format!("--api-key={KEY}"),
                "--webserver=yes".into(),
                "--webserver-address=127.0.0.1".into(),
                format!("--webserver-port={api_port}"),
                "--webserver-allow-from=127.0.0.0/8".into(),
                format!("--socket-dir={d}/run"),
                "--security-poll-suffix=".into(),
                "--cache-ttl=0".into(),
                "--query-cache-ttl=0".into(),
                "--negquery-cache-ttl=0".into(),
                "--zone-cache-refresh-interval=0".into(),
            ]);
            peer.start(cmd);
            let mut p = Pdns {
                peer,
                dns_port,
                api_port,
                kdig: kdig.clone(),
            };
            let ready = p.peer.try_wait_ready(Duration::from_secs(10), || {
                matches!(
                    api(api_port, KEY, "GET", "/api/v1/servers/localhost", None),
                    Some((200, _))
                )
            });
            if let Err(e) = ready {
                last = format!(
                    "attempt {attempt}: API not ready: {e}\n{}",
                    p.peer.log_tail(30)
                );
                continue;
            }
            p.create_zone(zone, rrsets);
            let zone_abs = format!("{}.", zone.trim_end_matches('.'));
            let kdig_ok = |p: &Pdns| !p.try_dig(&zone_abs, "SOA").is_empty();
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while !kdig_ok(&p) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            if kdig_ok(&p) {
                return p;
            }
            last = format!(
                "attempt {attempt}: zone {zone} not served on DNS port {dns_port}\n{}",
                p.peer.log_tail(30)
            );
        }
        panic!("pdns_server did not come up: {last}");
    }

    fn create_zone(&self, zone: &str, rrsets: &[RrSet]) {
        let zone = format!("{}.", zone.trim_end_matches('.'));
        let body = serde_json::json!({
            "name": zone,
            "kind": "Native",
            "nameservers": [format!("ns1.{zone}")],
        });
        let (status, text) = self.api("POST", "/api/v1/servers/localhost/zones", Some(&body));
        assert_eq!(status, 201, "creating zone {zone}: {text}");
        let sets: Vec<serde_json::Value> = rrsets
            .iter()
            .map(|(name, rtype, ttl, contents)| {
                serde_json::json!({
                    "name": name,
                    "type": rtype,
                    "ttl": ttl,
                    "changetype": "REPLACE",
                    "records": contents.iter().map(|c| serde_json::json!({"content": c, "disabled": false})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let (status, text) = self.api(
            "PATCH",
            &format!("/api/v1/servers/localhost/zones/{zone}"),
            Some(&serde_json::json!({ "rrsets": sets })),
        );
        assert_eq!(status, 204, "adding records to {zone}: {text}");
    }

    /// The API's base URL, as a step names it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// Where it answers DNS.
    pub fn dns_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.dns_port))
    }

    /// One API request with the right key: (status, body).
    pub fn api(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, String) {
        let body = body.map(|b| b.to_string());
        api(self.api_port, KEY, method, path, body.as_deref()).unwrap_or_else(|| {
            panic!(
                "no HTTP answer to {method} {path}\n{}",
                self.peer.log_tail(30)
            )
        })
    }

    /// The RRset's TTL and contents as the API holds them (`None`: no such RRset).
    pub fn rrset(&self, zone: &str, name: &str, rtype: &str) -> Option<(u32, Vec<String>)> {
        let (status, text) = self.api(
            "GET",
            &format!("/api/v1/servers/localhost/zones/{zone}."),
            None,
        );
        assert_eq!(status, 200, "{text}");
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["rrsets"].as_array()?.iter().find_map(|r| {
            (r["name"] == name && r["type"] == rtype).then(|| {
                let mut contents: Vec<String> = r["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["content"].as_str().unwrap().to_string())
                    .collect();
                contents.sort();
                (r["ttl"].as_u64().unwrap() as u32, contents)
            })
        })
    }

    /// `kdig @127.0.0.1 -p PORT +short NAME TYPE`, sorted; panics when kdig fails.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = self.kdig_output(name, rtype);
        assert!(out.status.success(), "kdig {name} {rtype} failed");
        lines(&out.stdout)
    }

    fn try_dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = self.kdig_output(name, rtype);
        if out.status.success() {
            lines(&out.stdout)
        } else {
            Vec::new()
        }
    }

    fn kdig_output(&self, name: &str, rtype: &str) -> std::process::Output {
        Command::new(&self.kdig)
            .arg("@127.0.0.1")
            .arg("-p")
            .arg(self.dns_port.to_string())
            .args([
                "+timeout=1",
                "+retry=1",
                "+norecurse",
                "+short",
                name,
                rtype,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run kdig: {e}"))
    }

    pub fn log(&self) -> String {
        self.peer.log()
    }
}

fn lines(stdout: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(";;"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// One HTTP/1.1 request (`Connection: close`) to 127.0.0.1:`port`: (status, body); `None`
/// when it cannot connect or the answer is not HTTP.
fn api(
    port: u16,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
