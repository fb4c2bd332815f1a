//! A real Mosquitto broker for tests: its own temp dir, free loopback ports, optional
//! password auth and TLS listeners (throwaway CA made with `openssl`), stopped by PID.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::free_port;
use super::peer::{self, Peer};

const INSTALL: &str = "apt-get install -y mosquitto mosquitto-clients";

#[derive(Debug, Default, Clone)]
pub struct Options {
    /// (user, password) pairs; when set, anonymous clients are refused.
    pub users: Vec<(String, String)>,
    /// Adds a TLS listener (server certificate signed by a throwaway CA) and a second TLS
    /// listener that requires a client certificate signed by the same CA.
    pub tls: bool,
}

pub struct Mosquitto {
    peer: Peer,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: Option<u16>,
    pub mtls_port: Option<u16>,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn world_readable(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Makes `ca.crt`, `server.crt/key` (SAN DNS:localhost, IP:127.0.0.1) and `client.crt/key`
/// in `dir` with openssl.
pub fn make_certs(dir: &Path) {
    make_certs_with(dir, "serverAuth")
}

/// As `make_certs`, with the server certificate's extended key usage `server_usage`
/// (etcd's JSON gateway also uses the server certificate as a client certificate).
pub fn make_certs_with(dir: &Path, server_usage: &str) {
    let openssl = peer::require("openssl", "apt-get install -y openssl");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new(&openssl)
        .current_dir(dir)
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"])
        .args(["-subj", "/CN=firebreak test CA"]));
    let server = format!(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage={server_usage}\n"
    );
    for (name, ext) in [
        ("server", server.as_str()),
        (
            "client",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        run(Command::new(&openssl)
            .current_dir(dir)
            .arg("req")
            .args(ec)
            .args(["-keyout", &format!("{name}.key")])
            .args(["-out", &format!("{name}.csr")])
            .args(["-subj", &format!("/CN=firebreak-{name}")]));
        run(Command::new(&openssl)
            .current_dir(dir)
            .args(["x509", "-req", "-in", &format!("{name}.csr")])
            .args(["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"])
            .args(["-out", &format!("{name}.crt"), "-days", "2"])
            .args(["-extfile", &format!("{name}.ext")]));
    }
    for f in [
        "ca.crt",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        world_readable(&dir.join(f), 0o644);
    }
}

impl Mosquitto {
    pub fn start(opts: Options) -> Mosquitto {
        let bin = peer::require("mosquitto", INSTALL);
        let dir = tempfile::tempdir().expect("temp dir");
        // Started as root, mosquitto drops to its own user before reading its files.
        world_readable(dir.path(), 0o755);
        let port = free_port();
        let mut conf = format!(
            "per_listener_settings false\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlistener {port} 127.0.0.1\n"
        );
        if opts.users.is_empty() {
            conf.push_str("allow_anonymous true\n");
        } else {
            let pw = dir.path().join("passwd");
            for (i, (user, pass)) in opts.users.iter().enumerate() {
                let mut cmd = Command::new(peer::require("mosquitto_passwd", INSTALL));
                if i == 0 {
                    cmd.arg("-c");
                }
                run(cmd.arg("-b").arg(&pw).args([user, pass]));
            }
            world_readable(&pw, 0o644);
            conf.push_str(&format!(
                "allow_anonymous false\npassword_file {}\n",
                pw.display()
            ));
        }
        let (mut tls_port, mut mtls_port) = (None, None);
        if opts.tls {
            make_certs(dir.path());
            let d = dir.path().display();
            let (p1, mut p2) = (free_port(), free_port());
            while p2 == p1 || p2 == port {
                p2 = free_port();
            }
            conf.push_str(&format!(
                "listener {p1} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n\
                 listener {p2} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\nrequire_certificate true\n"
            ));
            tls_port = Some(p1);
            mtls_port = Some(p2);
        }
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        world_readable(&conf_path, 0o644);
        let mut peer = Peer::with_log("mosquitto", &dir.path().join("mosquitto.log")).stderr_only();
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&conf_path);
        peer.start(cmd);
        let mut m = Mosquitto {
            peer,
            port,
            tls_port,
            mtls_port,
            dir,
        };
        m.wait_ready();
        m
    }

    /// Waits until every listener accepts connections.
    fn wait_ready(&mut self) {
        let ports: Vec<u16> = [Some(self.port), self.tls_port, self.mtls_port]
            .into_iter()
            .flatten()
            .collect();
        self.peer.wait_ready(
            &format!("listening on {ports:?}"),
            Duration::from_secs(10),
            || {
                ports
                    .iter()
                    .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
            },
        );
    }

    pub fn log_text(&self) -> String {
        self.peer.log()
    }

    /// Kills the broker (SIGKILL, as a crash or power loss would).
    pub fn kill(&mut self) {
        self.peer.stop();
    }

    /// Starts the broker again with the same config and ports.
    pub fn restart(&mut self) {
        self.peer.restart();
        self.wait_ready();
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Publishes one QoS 1 message with `mosquitto_pub` (a client we did not write).
    /// What the broker holds retained under `filter` right now, as (topic, payload), read
    /// with `mosquitto_sub` (a client we did not write).
    pub fn retained(&self, filter: &str) -> Vec<(String, String)> {
        let sub = peer::require("mosquitto_sub", "apt-get install -y mosquitto-clients");
        let out = std::process::Command::new(sub)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", filter, "-F", "%t|%p"])
            .args(["--retained-only", "-W", "1"])
            .output()
            .expect("run mosquitto_sub");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect()
    }

    pub fn publish(&self, topic: &str, payload: &[u8], auth: Option<(&str, &str)>) {
        let file = self
            .dir
            .path()
            .join(format!("payload-{}", std::process::id()));
        std::fs::write(&file, payload).unwrap();
        let mut cmd = Command::new(peer::require("mosquitto_pub", INSTALL));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1"])
            .args(["-t", topic, "-f"])
            .arg(&file);
        if let Some((u, p)) = auth {
            cmd.args(["-u", u, "-P", p]);
        }
        run(&mut cmd);
    }
}
