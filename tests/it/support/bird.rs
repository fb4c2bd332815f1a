//! Two real BIRD 2 daemons peering over BGP on loopback, each in its own temp dir with
//! its own control socket: A (127.0.0.1, AS 65001) announces [`PREFIX`] from the static
//! protocol [`STATIC_A`] over the BGP session [`TO_B`]; B (127.0.0.2, AS 65002) learns it.
//! Neither has `protocol kernel`: as root it would change the host's routes. `birdc`, a
//! client we did not write, checks what the step's own client did.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::peer::{self, Peer};

const INSTALL: &str = "apt-get install -y bird2";

/// The anycast prefix A announces.
pub const PREFIX: &str = "203.0.113.0/24";
/// A's static protocol that originates [`PREFIX`].
pub const STATIC_A: &str = "static_a";
/// A's BGP session to B.
pub const TO_B: &str = "to_b";

/// How long B may take to learn the route (~1.1 s with the short timers below).
const ROUTE_DEADLINE: Duration = Duration::from_secs(15);
/// Attempts with fresh ports when the session does not come up (a port taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// One BIRD daemon, killed (and its directory removed) on drop.
pub struct Bird {
    peer: Peer,
    socket: PathBuf,
    birdc: PathBuf,
}

/// A announcing, B learning; see the module's comment.
pub struct BirdPair {
    pub a: Bird,
    pub b: Bird,
}

/// What B originates itself, besides what it learns from A.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum B {
    /// Nothing: every route B holds for the prefix comes from A.
    LearnsOnly,
    /// The same prefix too (another site of the anycast service).
    AlsoOriginates,
}

impl BirdPair {
    /// Starts both and waits until B holds [`PREFIX`] from A.
    pub fn start(b: B) -> BirdPair {
        let bird = peer::require("bird", INSTALL);
        let birdc = peer::require("birdc", INSTALL);
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let (pa, pb) = (super::free_port(), super::free_port());
            let timers =
                "multihop; connect delay time 1; connect retry time 2; error wait time 1, 5;";
            let a_conf = format!(
                "log stderr all;\nrouter id 192.0.2.1;\nprotocol device {{}}\n\
                 protocol static {STATIC_A} {{ ipv4; route {PREFIX} blackhole; }}\n\
                 protocol bgp {TO_B} {{ local 127.0.0.1 port {pa} as 65001; \
                 neighbor 127.0.0.2 port {pb} as 65002; {timers} \
                 ipv4 {{ import all; export where proto = \"{STATIC_A}\"; }}; }}\n"
            );
            let b_static = match b {
                B::LearnsOnly => String::new(),
                B::AlsoOriginates => {
                    format!("protocol static static_b {{ ipv4; route {PREFIX} blackhole; }}\n")
                }
            };
            let b_conf = format!(
                "log stderr all;\nrouter id 192.0.2.2;\nprotocol device {{}}\n{b_static}\
                 protocol bgp to_a {{ local 127.0.0.2 port {pb} as 65002; \
                 neighbor 127.0.0.1 port {pa} as 65001; {timers} \
                 ipv4 {{ import all; export none; }}; }}\n"
            );
            let a = Bird::start(&bird, &birdc, "bird-a", &a_conf);
            let mut b = Bird::start(&bird, &birdc, "bird-b", &b_conf);
            match b.try_wait(ROUTE_DEADLINE, |b| b.holds_from(PREFIX, "127.0.0.1")) {
                Ok(()) => return BirdPair { a, b },
                Err(e) => {
                    last = format!(
                        "attempt {attempt} (ports {pa}, {pb}): B did not learn {PREFIX} from A: \
                         {e}\n{}\n{}",
                        a.peer.log_tail(30),
                        b.peer.log_tail(30)
                    );
                }
            }
        }
        panic!("{last}");
    }
}

impl Bird {
    fn start(bird: &Path, birdc: &Path, name: &str, conf: &str) -> Bird {
        let mut peer = Peer::new(name);
        let dir = peer.dir().to_path_buf();
        let conf_path = dir.join("bird.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let socket = dir.join("bird.ctl");
        let mut cmd = Command::new(bird);
        cmd.arg("-f")
            .arg("-c")
            .arg(&conf_path)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.join("bird.pid"));
        peer.start(cmd);
        let mut bird = Bird {
            peer,
            socket,
            birdc: birdc.to_path_buf(),
        };
        let probe_socket = bird.socket.clone();
        bird.peer.wait_ready(
            &format!("control socket {}", probe_socket.display()),
            Duration::from_secs(10),
            || std::os::unix::net::UnixStream::connect(&probe_socket).is_ok(),
        );
        bird
    }

    /// The control socket as a step names it (`unix:///...`).
    pub fn socket_url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// `birdc -s SOCKET <args>`: its output, without the greeting.
    pub fn birdc(&self, args: &str) -> String {
        let out = Command::new(&self.birdc)
            .arg("-s")
            .arg(&self.socket)
            .args(args.split_whitespace())
            .output()
            .unwrap_or_else(|e| panic!("cannot run birdc: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .filter(|l| !l.starts_with("BIRD ") || !l.ends_with("ready."))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The state column of `show protocols <name>` (`up`, `down`, `start`, ...).
    pub fn protocol_state(&self, name: &str) -> String {
        let out = self.birdc(&format!("show protocols {name}"));
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|c| c.first() == Some(&name) && c.len() > 3)
            .map(|c| c[3].to_string())
            .unwrap_or_else(|| panic!("no protocol {name} in:\n{out}"))
    }

    /// Whether this BIRD holds a route for exactly `prefix`.
    pub fn holds(&self, prefix: &str) -> bool {
        let out = self.birdc(&format!("show route {prefix}"));
        out.lines().any(|l| l.trim_start().starts_with(prefix))
    }

    /// Whether this BIRD holds a route for `prefix` learned from `from`.
    pub fn holds_from(&self, prefix: &str, from: &str) -> bool {
        let out = self.birdc(&format!("show route {prefix} where from = {from}"));
        out.lines().any(|l| l.trim_start().starts_with(prefix))
    }

    /// Polls `cond` until it holds, or the deadline passes (the error says so).
    pub fn try_wait(
        &mut self,
        deadline: Duration,
        cond: impl Fn(&Bird) -> bool,
    ) -> Result<(), String> {
        let until = Instant::now() + deadline;
        loop {
            if cond(self) {
                return Ok(());
            }
            if let Some(status) = self.peer.exited() {
                return Err(format!("{} exited ({status})", self.peer.name()));
            }
            if Instant::now() > until {
                return Err(format!("not within {deadline:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// As [`Bird::try_wait`], panicking with `what` and the log.
    pub fn wait(&mut self, what: &str, deadline: Duration, cond: impl Fn(&Bird) -> bool) {
        if let Err(e) = self.try_wait(deadline, cond) {
            panic!("{what}: {e}\n{}", self.peer.log_tail(40));
        }
    }

    pub fn log(&self) -> String {
        self.peer.log()
    }
}
