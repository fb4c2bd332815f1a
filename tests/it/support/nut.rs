//! A real Network UPS Tools server for tests: the `dummy-ups` driver serving one UPS (`ups`)
//! from a `.dev` file, and `upsd` on a free loopback port, in a temp dir; a real `upsmon`
//! on demand. Values change through `upsrw` (a client we did not write) or the `.dev` file.
//!
//! - The binaries in /lib/nut are the real ones: Debian's /usr/sbin/upsd and upsmon are
//!   wrappers that exit 0 unless /etc/nut/nut.conf says otherwise.
//! - The driver starts before upsd and stops before it: a dummy-ups whose upsd dies spins
//!   on its socket (an upstream bug), so [`Nut::kill_upsd`] stops both, driver first, and
//!   [`Nut::restart`] starts both again.
//! - `Options::tls` gives upsd a certificate for STARTTLS in an NSS database (Debian builds
//!   upsd with NSS), made from the same throwaway CA as the other TLS tests.
//! - Users in upsd.users: `admin` (SET and FSD, for `upsrw`), `firebreak` (`upsmon
//!   primary`, the agent's FSD user), `fsdonly` (`actions = FSD` only), `monitor` (`upsmon
//!   primary`, for a real upsmon).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::free_port;
use super::peer::{self, Peer};

const INSTALL: &str = "apt-get install -y nut-server nut-client";

/// The UPS's name in upsd.
pub const UPS: &str = "ups";
pub const ADMIN: (&str, &str) = ("admin", "admin-secret");
pub const FIREBREAK: (&str, &str) = ("firebreak", "fb-secret");
pub const FSD_ONLY: (&str, &str) = ("fsdonly", "fsd-secret");
pub const MONITOR: (&str, &str) = ("monitor", "mon-secret");

const READY: Duration = Duration::from_secs(20);

/// The real NUT program `name`: /lib/nut or /usr/lib/nut first (the daemons), then PATH
/// (`upsc`, `upsrw`); a panic naming the install command when missing.
pub fn program(name: &str) -> PathBuf {
    ["/lib/nut", "/usr/lib/nut"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .or_else(|| peer::find_program(name))
        .unwrap_or_else(|| panic!("{}", peer::missing(name, INSTALL)))
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The `.dev` file's variables (`ups.status: OL`, ...).
    pub vars: Vec<(String, String)>,
    /// upsd's `MAXAGE`: seconds without a driver update before `ERR DATA-STALE`.
    pub maxage: Option<u32>,
    /// A server certificate for `STARTTLS` (signed by a throwaway CA, [`Nut::ca_file`]).
    pub tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            vars: [
                ("ups.status", "OL"),
                ("battery.runtime", "1800"),
                ("battery.charge", "100"),
                ("ups.temperature", "25.5"),
                ("input.voltage", "230.0"),
                ("ups.load", "35"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            maxage: None,
            tls: false,
        }
    }
}

pub struct Nut {
    // Dropped in this order: the driver before upsd (see the module's notes), then the
    // directory.
    driver: Peer,
    upsd: Peer,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl Nut {
    pub fn start(opts: Options) -> Nut {
        let (driver_bin, upsd_bin) = (program("dummy-ups"), program("upsd"));
        // The probes below need it; fail now rather than time out.
        program("upsc");
        let dir = tempfile::Builder::new()
            .prefix("nut-test-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let port = free_port();
        write_dev(&d.join("ups.dev"), &opts.vars);
        std::fs::write(
            d.join("ups.conf"),
            format!(
                "[{UPS}]\n  driver = dummy-ups\n  port = {}\n  desc = \"firebreak test UPS\"\n",
                d.join("ups.dev").display()
            ),
        )
        .unwrap();
        let mut conf = format!("LISTEN 127.0.0.1 {port}\n");
        if let Some(age) = opts.maxage {
            conf.push_str(&format!("MAXAGE {age}\n"));
        }
        if opts.tls {
            conf.push_str(&format!(
                "CERTPATH {}\nCERTIDENT \"upsd\" \"\"\nDISABLE_WEAK_SSL true\n",
                nss_db(d).display()
            ));
        }
        std::fs::write(d.join("upsd.conf"), conf).unwrap();
        std::fs::write(
            d.join("upsd.users"),
            format!(
                "[{}]\n  password = {}\n  actions = SET FSD\n  instcmds = ALL\n\
                 [{}]\n  password = {}\n  upsmon primary\n\
                 [{}]\n  password = {}\n  actions = FSD\n\
                 [{}]\n  password = {}\n  upsmon primary\n",
                ADMIN.0,
                ADMIN.1,
                FIREBREAK.0,
                FIREBREAK.1,
                FSD_ONLY.0,
                FSD_ONLY.1,
                MONITOR.0,
                MONITOR.1
            ),
        )
        .unwrap();
        std::fs::write(d.join("nut.conf"), "MODE=netserver\n").unwrap();
        let mut driver = Peer::with_log("dummy-ups", &d.join("dummy-ups.log"));
        let mut cmd = Command::new(driver_bin);
        cmd.args(["-a", UPS, "-F"]);
        if as_root() {
            // Else the driver drops to `nut` and cannot make its socket in the temp dir.
            cmd.args(["-u", "root"]);
        }
        env(&mut cmd, d);
        let mut upsd = Peer::with_log("upsd", &d.join("upsd.log"));
        let mut ucmd = Command::new(upsd_bin);
        ucmd.arg("-F");
        if as_root() {
            ucmd.args(["-u", "root"]);
        }
        env(&mut ucmd, d);
        fresh_state(d);
        driver.start(cmd);
        upsd.start(ucmd);
        let mut nut = Nut {
            driver,
            upsd,
            port,
            dir,
        };
        nut.wait_ready();
        nut
    }

    /// Until upsd answers and the driver has read its file (`ups.status` is no longer
    /// dummy-ups' initial `WAIT`).
    fn wait_ready(&mut self) {
        let port = self.port;
        self.upsd.wait_ready(
            &format!("upsd listening on 127.0.0.1:{port}"),
            READY,
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        let target = self.target();
        let until = Instant::now() + READY;
        loop {
            if upsc(&target, "ups.status").is_some_and(|s| !s.contains("WAIT")) {
                return;
            }
            assert!(
                self.driver.is_running(),
                "dummy-ups exited\n{}",
                self.driver.log_tail(40)
            );
            assert!(
                Instant::now() < until,
                "the UPS was not served within {READY:?}\n{}\n{}",
                self.driver.log_tail(40),
                self.upsd.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ups@127.0.0.1:PORT`, as NUT's own clients name the UPS.
    pub fn target(&self) -> String {
        format!("{UPS}@127.0.0.1:{}", self.port)
    }

    /// The source URL.
    pub fn url(&self) -> String {
        format!("nut://127.0.0.1:{}", self.port)
    }

    /// The source URL with STARTTLS.
    pub fn tls_url(&self) -> String {
        format!("nuts://127.0.0.1:{}", self.port)
    }

    /// The CA of upsd's certificate ([`Options::tls`]).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A variable as `upsc` reads it; `None` when upsc fails (upsd down, no data).
    pub fn get(&self, var: &str) -> Option<String> {
        upsc(&self.target(), var)
    }

    /// Sets a variable with `upsrw` as `admin` (dummy-ups takes the variables of its file).
    pub fn set(&self, var: &str, value: &str) {
        let out = Command::new(program("upsrw"))
            .args(["-s", &format!("{var}={value}")])
            .args(["-u", ADMIN.0, "-p", ADMIN.1])
            .arg(self.target())
            .output()
            .expect("run upsrw");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !text.contains("Unexpected response"),
            "upsrw -s {var}={value}: {text}\n{}",
            self.upsd.log_tail(20)
        );
    }

    /// Sets a variable and waits until upsc reads it back.
    pub fn set_and_wait(&self, var: &str, value: &str) {
        self.set(var, value);
        self.wait_for(&format!("{var} = {value}"), |n| {
            n.get(var).as_deref() == Some(value)
        });
    }

    /// Waits (20 s at most) until `pred` holds, panicking with the peers' logs.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Nut) -> bool) {
        let until = Instant::now() + READY;
        while !pred(self) {
            assert!(
                Instant::now() < until,
                "NUT: no {what} within {READY:?}\n{}\n{}",
                self.driver.log_tail(20),
                self.upsd.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The clients upsd counts as powered by the UPS (`LOGIN`s), as `upsc -c` lists them.
    pub fn logged_in_clients(&self) -> Vec<String> {
        let out = Command::new(program("upsc"))
            .arg("-c")
            .arg(self.target())
            .output()
            .expect("run upsc -c");
        assert!(
            out.status.success(),
            "upsc -c: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Kills the driver, then upsd (SIGKILL, as a crash would; driver first, see the
    /// module's notes).
    pub fn kill_upsd(&mut self) {
        self.driver.stop();
        self.upsd.stop();
    }

    /// Starts the driver and upsd again, same files and port, and waits until served.
    pub fn restart(&mut self) {
        self.kill_upsd();
        fresh_state(self.dir.path());
        self.driver.restart();
        self.upsd.restart();
        self.wait_ready();
    }

    /// Freezes the driver (SIGSTOP): upsd keeps answering, with its data ageing.
    pub fn pause_driver(&self) {
        self.driver
            .signal(nix::sys::signal::Signal::SIGSTOP)
            .expect("SIGSTOP dummy-ups");
    }

    pub fn resume_driver(&self) {
        self.driver
            .signal(nix::sys::signal::Signal::SIGCONT)
            .expect("SIGCONT dummy-ups");
    }

    pub fn upsd_log(&self) -> String {
        self.upsd.log()
    }

    /// Starts a real `upsmon` as the UPS's primary (user `monitor`) whose shutdown command
    /// creates a file ([`Upsmon::has_shut_down`]); returns once upsd lists it as a client.
    ///
    /// As root it runs as `nobody`: a root upsmon keeps its PID file in /run/nut whatever
    /// the environment says, so two tests' upsmons would take each other for "a previous
    /// instance already running"; as another user it cannot read that file and goes on
    /// (it logs that it cannot write its own PID file there).
    pub fn start_upsmon(&self) -> Upsmon {
        let d = self.dir.path().join("upsmon");
        std::fs::create_dir_all(&d).expect("upsmon dir");
        let flag = d.join("shutdown-ran");
        let conf = d.join("upsmon.conf");
        std::fs::write(
            &conf,
            format!(
                "MONITOR {} 1 {} {} primary\nMINSUPPLIES 1\nSHUTDOWNCMD \"/bin/touch {}\"\n\
                 POWERDOWNFLAG {}\nPOLLFREQ 1\nPOLLFREQALERT 1\nHOSTSYNC 2\nFINALDELAY 0\n\
                 DEADTIME 15\n",
                self.target(),
                MONITOR.0,
                MONITOR.1,
                flag.display(),
                d.join("killpower").display()
            ),
        )
        .unwrap();
        restrict(&conf);
        let mut cmd = Command::new(program("upsmon"));
        // -p: one process (no split into a root parent and an unprivileged child).
        cmd.args(["-F", "-p"])
            .env("NUT_CONFPATH", &d)
            .env("NUT_STATEPATH", &d)
            .env("NUT_ALTPIDPATH", &d);
        if as_root() {
            use std::os::unix::fs::PermissionsExt;
            use std::os::unix::process::CommandExt as _;
            std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod the NUT dir");
            for p in [&d, &conf] {
                std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
            }
            // std drops the supplementary groups when a root parent sets a uid.
            cmd.uid(NOBODY).gid(NOBODY);
        }
        let mut peer = Peer::with_log("upsmon", &self.dir.path().join("upsmon.log"));
        peer.start(cmd);
        peer.wait_ready("upsmon logged in to upsd (upsc -c lists it)", READY, || {
            !self.logged_in_clients().is_empty()
        });
        Upsmon { peer, flag }
    }
}

/// `nobody` and `nogroup` on Debian.
const NOBODY: u32 = 65534;

/// A running `upsmon` (killed on drop).
pub struct Upsmon {
    pub peer: Peer,
    flag: PathBuf,
}

impl Upsmon {
    /// Whether its SHUTDOWNCMD has run.
    pub fn has_shut_down(&self) -> bool {
        self.flag.exists()
    }

    /// Waits (30 s at most) for its SHUTDOWNCMD, panicking with its log.
    pub fn wait_shut_down(&mut self) {
        let flag = self.flag.clone();
        self.peer.wait_ready(
            &format!("upsmon's SHUTDOWNCMD to create {}", flag.display()),
            Duration::from_secs(30),
            || flag.exists(),
        );
    }
}

/// Debian's upsd is built with NSS: its certificate and key live in an NSS database, made
/// here from the PEM files the other TLS tests use (CA, server certificate for 127.0.0.1).
fn nss_db(dir: &Path) -> PathBuf {
    const TOOLS: &str = "apt-get install -y libnss3-tools";
    super::mosquitto::make_certs(dir);
    let db = dir.join("nssdb");
    std::fs::create_dir_all(&db).expect("NSS db dir");
    let sql = format!("sql:{}", db.display());
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new(peer::require("openssl", "apt-get install -y openssl"))
            .current_dir(dir)
            .args([
                "pkcs12",
                "-export",
                "-in",
                "server.crt",
                "-inkey",
                "server.key",
            ])
            .args(["-name", "upsd", "-out", "server.p12", "-passout", "pass:"]),
    );
    let certutil = peer::require("certutil", TOOLS);
    run(Command::new(&certutil).args(["-N", "-d", &sql, "--empty-password"]));
    run(Command::new(&certutil)
        .args(["-A", "-d", &sql, "-n", "ca", "-t", "CT,,", "-i"])
        .arg(dir.join("ca.crt")));
    run(Command::new(peer::require("pk12util", TOOLS))
        .args(["-d", &sql, "-W", "", "-i"])
        .arg(dir.join("server.p12")));
    db
}

/// NUT's programs find their files through these.
fn env(cmd: &mut Command, dir: &Path) {
    cmd.env("NUT_CONFPATH", dir)
        .env("NUT_STATEPATH", dir.join("state"))
        .env("NUT_ALTPIDPATH", dir.join("state"));
}

/// An empty state directory: a driver socket or PID file left by a killed run would be
/// taken for a live one.
fn fresh_state(dir: &Path) {
    let state = dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("state dir");
}

fn restrict(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Writes a dummy-ups `.dev` file (re-read by the driver when its mtime changes).
pub fn write_dev(path: &Path, vars: &[(String, String)]) {
    let text: String = vars.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    std::fs::write(path, text).expect("write the .dev file");
}

/// `upsc TARGET VAR`; `None` when it fails.
fn upsc(target: &str, var: &str) -> Option<String> {
    let out = Command::new(program("upsc"))
        .args([target, var])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
