//! A real single-node etcd on 127.0.0.1 (ephemeral client and peer ports, temp data dir)
//! for the `[cluster]` tests, and `etcdctl` to set it up or look into it. Missing binary:
//! the test fails naming the package.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NOT_FOUND: &str =
    "etcd not found: install it with `apt-get install etcd-server` (Debian's etcd 3.4)";
const CTL_NOT_FOUND: &str =
    "etcdctl not found: install it with `apt-get install etcd-client` (Debian's etcd 3.4)";
const START_ATTEMPTS: usize = 3;
const READY_DEADLINE: Duration = Duration::from_secs(30);

pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    binary: PathBuf,
    name: String,
    /// `--initial-cluster`: `name=peer-url,...`.
    initial_cluster: String,
    /// `/health` is asked here (plain HTTP even when clients must use TLS).
    metrics_port: u16,
    /// TLS for clients: a dir with `ca.crt`, `server.crt/key` (`mosquitto::make_certs`);
    /// clients must show a certificate signed by the CA.
    tls: Option<PathBuf>,
    /// More etcd flags (`start_args`).
    args: Vec<String>,
}

fn find(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn find_etcd() -> Option<PathBuf> {
    find("etcd")
}

impl Etcd {
    /// Starts etcd and waits until it answers `/health`; panics with its log otherwise.
    pub fn start() -> Etcd {
        Etcd::start_with(None, &[])
    }

    /// As `start`, with more etcd flags (e.g. `--auth-token-ttl`).
    pub fn start_args(args: &[&str]) -> Etcd {
        Etcd::start_with(None, args)
    }

    /// Starts etcd whose clients must use TLS with a client certificate: certificates are
    /// made in `certs` (`ca.crt`, `server.*`, `client.*`); `url()` is `https://`.
    pub fn start_tls(certs: &Path) -> Etcd {
        // etcd's JSON gateway passes each request on to etcd's own gRPC server with the
        // server certificate as its client certificate: under `--client-cert-auth` that
        // certificate must allow client authentication too (etcd-io/etcd#9785, #16590).
        super::mosquitto::make_certs_with(certs, "serverAuth,clientAuth");
        Etcd::start_with(Some(certs.to_path_buf()), &[])
    }

    fn start_with(tls: Option<PathBuf>, args: &[&str]) -> Etcd {
        let binary = find_etcd().unwrap_or_else(|| panic!("{NOT_FOUND}"));
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let mut etcd = Etcd::member(&binary, "test");
            etcd.tls = tls.clone();
            etcd.args = args.iter().map(|a| a.to_string()).collect();
            etcd.initial_cluster = format!("test={}", etcd.peer_url());
            etcd.spawn();
            match etcd.wait_ready() {
                Ok(()) => return etcd,
                Err(e) => {
                    last = format!(
                        "etcd (attempt {attempt}) did not come up: {e}\n--- etcd log ---\n{}",
                        etcd.log()
                    );
                }
            }
        }
        panic!("{last}");
    }

    fn member(binary: &Path, name: &str) -> Etcd {
        Etcd {
            child: None,
            client_port: super::free_port(),
            peer_port: super::free_port(),
            dir: tempfile::Builder::new()
                .prefix("etcd-test-")
                .tempdir()
                .expect("temp dir for etcd"),
            binary: binary.to_path_buf(),
            name: name.to_string(),
            initial_cluster: String::new(),
            metrics_port: super::free_port(),
            tls: None,
            args: Vec::new(),
        }
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Starts a cluster of `n` members (each its own process, ports and data dir) and
    /// waits until every member answers `/health` (which needs a quorum).
    pub fn start_cluster(n: usize) -> Vec<Etcd> {
        let binary = find_etcd().unwrap_or_else(|| panic!("{NOT_FOUND}"));
        let mut members: Vec<Etcd> = (0..n)
            .map(|i| Etcd::member(&binary, &format!("m{i}")))
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = initial.clone();
            m.spawn();
        }
        for m in &mut members {
            if let Err(e) = m.wait_ready() {
                panic!("etcd member {} did not come up: {e}\n{}", m.name, m.log());
            }
        }
        members
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log");
        let log2 = log.try_clone().expect("etcd log handle");
        let client = self.url();
        let peer = self.peer_url();
        let mut cmd = Command::new(&self.binary);
        if let Some(d) = &self.tls {
            cmd.arg("--cert-file")
                .arg(d.join("server.crt"))
                .arg("--key-file")
                .arg(d.join("server.key"))
                .arg("--trusted-ca-file")
                .arg(d.join("ca.crt"))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--listen-metrics-urls")
            .arg(format!("http://127.0.0.1:{}", self.metrics_port))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        self.child = Some(child);
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("etcd exited: {status}"));
                }
            }
            if self.healthy() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not healthy after {READY_DEADLINE:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!(
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.metrics_port
        );
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }

    /// The client URL for `[cluster] etcd`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Runs `etcdctl` (v3 API) against this etcd, as `user` (`name:password`) when given;
    /// its output. Panics with etcdctl's error when it fails.
    pub fn ctl(&self, user: Option<&str>, args: &[&str]) -> Vec<u8> {
        let etcdctl = find("etcdctl").unwrap_or_else(|| panic!("{CTL_NOT_FOUND}"));
        let mut cmd = Command::new(etcdctl);
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.url())
            .arg("--command-timeout=10s");
        if let Some(d) = &self.tls {
            cmd.arg("--cacert")
                .arg(d.join("ca.crt"))
                .arg("--cert")
                .arg(d.join("client.crt"))
                .arg("--key")
                .arg(d.join("client.key"));
        }
        if let Some(u) = user {
            cmd.arg("--user").arg(u);
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run etcdctl: {e}"));
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Creates the user `root` with `password` and turns authentication on.
    pub fn enable_auth(&self, password: &str) {
        self.ctl(None, &["user", "add", &format!("root:{password}")]);
        self.ctl(None, &["user", "grant-role", "root", "root"]);
        self.ctl(None, &["auth", "enable"]);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills etcd (its data and ports are kept for `restart`).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts etcd again on the same data dir and ports after `stop`.
    pub fn restart(&mut self) {
        self.spawn();
        if let Err(e) = self.wait_ready() {
            panic!("etcd did not come back: {e}\n{}", self.log());
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
