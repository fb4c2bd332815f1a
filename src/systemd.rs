//! systemd integration without a dependency: `sd_notify` over the `NOTIFY_SOCKET`
//! datagram socket (READY, WATCHDOG, STOPPING, STATUS). Without systemd it does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (set by systemd for `Type=notify` and
    /// `WatchdogSec=`). Abstract sockets (`@name`) are not supported by std; they are
    /// skipped with a warning.
    pub fn from_env() -> Self {
        let path = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|p| !p.is_empty());
        let socket = match path {
            Some(p) if p.starts_with('@') => {
                tracing::warn!(socket = %p, "abstract NOTIFY_SOCKET is not supported; no sd_notify");
                None
            }
            Some(p) => UnixDatagram::unbound().ok().map(|s| (s, p)),
            None => None,
        };
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// How often to ping the watchdog (half its timeout), if systemd asked for it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref().and(self.watchdog.map(|w| w / 2))
    }

    fn send(&self, msg: &str) {
        if let Some((s, path)) = &self.socket {
            if let Err(e) = s.send_to(msg.as_bytes(), path) {
                tracing::debug!(error = %e, "sd_notify failed");
            }
        }
    }

    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=watching");
    }

    /// Called from the detection loop: a hung loop stops pinging and systemd restarts us.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket_systemd_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), path.display().to_string())),
            watchdog: Some(Duration::from_secs(10)),
        };
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
        n.ready();
        n.watchdog();
        let mut buf = [0u8; 128];
        let len = server.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..len])
            .unwrap()
            .starts_with("READY=1"));
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn without_systemd_nothing_happens() {
        let n = Notifier {
            socket: None,
            watchdog: Some(Duration::from_secs(10)),
        };
        assert_eq!(n.watchdog_interval(), None);
        n.ready();
    }
}
