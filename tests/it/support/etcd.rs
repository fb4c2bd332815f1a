//! A real single-node etcd on 127.0.0.1 (ephemeral client and peer ports, temp data dir)
//! for the `[cluster]` tests, and `etcdctl` to set it up or look into it. Missing binary:
//! the test fails naming the package.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::peer::{self, Peer};

/// Debian's etcd 3.4.
const INSTALL: &str = "apt-get install etcd-server";
const CTL_INSTALL: &str = "apt-get install etcd-client";
const START_ATTEMPTS: usize = 3;
const READY_DEADLINE: Duration = Duration::from_secs(30);

pub struct Etcd {
    peer: Peer,
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
        let binary = peer::require("etcd", INSTALL);
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
            peer: Peer::new("etcd"),
            client_port: super::free_port(),
            peer_port: super::free_port(),
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
        let binary = peer::require("etcd", INSTALL);
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
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.peer.dir().join("data"))
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
            .args(&self.args);
        self.peer.start(cmd);
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let port = self.metrics_port;
        self.peer.try_wait_ready(READY_DEADLINE, || healthy(port))
    }

    /// The client URL for `[cluster] etcd`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Runs `etcdctl` (v3 API) against this etcd, as `user` (`name:password`) when given;
    /// its output. Panics with etcdctl's error when it fails.
    pub fn ctl(&self, user: Option<&str>, args: &[&str]) -> Vec<u8> {
        let etcdctl = peer::require("etcdctl", CTL_INSTALL);
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
        self.peer.dir()
    }

    pub fn log(&self) -> String {
        self.peer.log()
    }

    /// Kills etcd (its data and ports are kept for `restart`).
    pub fn stop(&mut self) {
        self.peer.stop();
    }

    /// Starts etcd again on the same data dir and ports after `stop`.
    pub fn restart(&mut self) {
        self.peer.restart();
        if let Err(e) = self.wait_ready() {
            panic!("etcd did not come back: {e}\n{}", self.log());
        }
    }
}

/// True when etcd's metrics listener on `port` says `/health` is true.
fn healthy(port: u16) -> bool {
    peer::http_get(port, "/health", Duration::from_secs(2))
        .is_some_and(|(_, body)| body.contains("\"health\":\"true\""))
}
