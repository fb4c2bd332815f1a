//! A real Prometheus Alertmanager in a throwaway directory on a free 127.0.0.1 port, gossip
//! off (`--cluster.listen-address=` empty: otherwise it binds *:9094), one route to a
//! webhook with short timers: `group_by` alertname, zone and incident, `group_wait` and
//! `group_interval` 1 s, `repeat_interval` 1 h (so a second notification of one group
//! within a test is a duplicate, not a reminder), `send_resolved`. Killed on drop.

use std::process::Command;
use std::time::{Duration, Instant};

use super::peer::{self, Peer};

const INSTALL: &str = "apt-get install -y prometheus-alertmanager";

pub struct Alertmanager {
    peer: Peer,
    pub port: u16,
}

impl Alertmanager {
    /// Starts Alertmanager sending every alert group to `webhook` (a URL).
    pub fn start(webhook: &str) -> Alertmanager {
        let bin = peer::require("prometheus-alertmanager", INSTALL);
        let mut peer = Peer::new("alertmanager");
        let dir = peer.dir().to_path_buf();
        let port = super::free_port();
        let conf = dir.join("alertmanager.yml");
        std::fs::write(
            &conf,
            format!(
                "route:\n  receiver: hook\n  group_by: ['alertname', 'zone', 'incident']\n  \
                 group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: hook\n    webhook_configs:\n      - url: '{webhook}'\n        \
                 send_resolved: true\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", conf.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        peer.start(cmd);
        peer.wait_ready("GET /-/ready", Duration::from_secs(20), || {
            matches!(
                peer::http_get(port, "/-/ready", Duration::from_secs(5)),
                Some((200, _))
            )
        });
        Alertmanager { peer, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        self.peer.log_tail(40)
    }

    /// The alerts Alertmanager lists (firing, silenced, inhibited or not yet routed) for
    /// the incident `incident`.
    pub fn alerts(&self, incident: &str) -> Vec<serde_json::Value> {
        let filter = format!("incident=\"{incident}\"");
        let q: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        let (status, body) = peer::http_get(
            self.port,
            &format!("/api/v2/alerts?filter={q}"),
            Duration::from_secs(5),
        )
        .expect("Alertmanager answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<serde_json::Value>>(&body).expect("a list of alerts")
    }

    /// The alert groups Alertmanager holds for the incident.
    pub fn groups(&self, incident: &str) -> Vec<serde_json::Value> {
        let filter = format!("incident=\"{incident}\"");
        let q: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        let (status, body) = peer::http_get(
            self.port,
            &format!("/api/v2/alerts/groups?filter={q}"),
            Duration::from_secs(5),
        )
        .expect("Alertmanager answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<serde_json::Value>>(&body).expect("a list of groups")
    }

    /// A counter or gauge from `/metrics` (the sum of its series), 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        let Some((200, body)) = peer::http_get(self.port, "/metrics", Duration::from_secs(5))
        else {
            return 0.0;
        };
        body.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until the notification log has been asked `n` more times than `from`: each
    /// flush of an alert group asks it once, before deciding whether to notify. After two
    /// more flushes of a group, Alertmanager has decided about everything posted before
    /// the first of them: a duplicate would have been sent by then.
    pub fn wait_for_flushes(&self, from: f64, n: f64, deadline: Duration) {
        let until = Instant::now() + deadline;
        while self.metric("alertmanager_nflog_queries_total") < from + n {
            assert!(
                Instant::now() < until,
                "Alertmanager did not flush its groups {n} more time(s) within {deadline:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
