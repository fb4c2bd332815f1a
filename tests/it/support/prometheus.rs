//! A real Prometheus in a throwaway directory on a free 127.0.0.1 port, scraping the given
//! targets every second. Killed on drop. Prometheus answers `/-/ready` at once but starts
//! scraping only ~6 s later (a fixed delay), so wait for data, not for readiness.

use std::process::Command;
use std::time::Duration;

use super::peer::{self, Peer};

pub struct Prometheus {
    peer: Peer,
    pub port: u16,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) every second.
    pub fn start(targets: &[String]) -> Prometheus {
        let bin = peer::require("prometheus", "apt-get install -y prometheus");
        let mut peer = Peer::new("prometheus").stderr_only();
        let dir = peer.dir().to_path_buf();
        let port = super::free_port();
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let conf = dir.join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: firebreak\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        peer.start(cmd);
        peer.wait_ready("GET /-/ready", Duration::from_secs(20), || {
            matches!(
                peer::http_get(port, "/-/ready", Duration::from_secs(10)),
                Some((200, _))
            )
        });
        Prometheus { peer, port }
    }

    pub fn log(&self) -> String {
        self.peer.log()
    }

    /// A plain HTTP/1.0 GET on loopback: (status, body).
    pub fn get(&self, path_and_query: &str) -> Option<(u16, String)> {
        peer::http_get(self.port, path_and_query, Duration::from_secs(10))
    }

    /// `/api/v1/query?query=EXPR`: the `data.result` vector (empty when no series matched).
    pub fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let Some((200, body)) = self.get(&format!("/api/v1/query?query={q}")) else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// `/api/v1/targets`, for diagnostics.
    pub fn targets(&self) -> String {
        self.get("/api/v1/targets").map(|r| r.1).unwrap_or_default()
    }
}
