//! A real VictoriaMetrics (it receives the InfluxDB v2 write API) in a throwaway directory
//! on a free 127.0.0.1 port. It can be stopped and started again on the same port with the
//! same storage, for outage tests. Killed on drop.
//!
//! Reading back: `export()` forces a flush and returns every `firebreak_*` series with its
//! exact samples. VictoriaMetrics keeps duplicate samples, so a point written twice shows
//! up twice. It names series `<measurement>_<field>`, ignores string fields, and keeps about
//! 15 significant digits of a float (1039.0430000000001 comes back as 1039.043).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::peer::{self, Peer};

pub struct Victoria {
    peer: Peer,
    pub port: u16,
}

/// One series from `/api/v1/export`.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub values: Vec<f64>,
    pub timestamps: Vec<i64>,
}

impl Series {
    pub fn name(&self) -> &str {
        self.labels.get("__name__").map_or("", |s| s.as_str())
    }
    pub fn label(&self, k: &str) -> &str {
        self.labels.get(k).map_or("", |s| s.as_str())
    }
    /// (timestamp, value), sorted by time.
    pub fn points(&self) -> Vec<(i64, f64)> {
        let mut p: Vec<(i64, f64)> = self
            .timestamps
            .iter()
            .copied()
            .zip(self.values.iter().copied())
            .collect();
        p.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        p
    }
}

impl Victoria {
    pub fn start() -> Victoria {
        Self::start_on(super::free_port())
    }

    /// Starts on a given port (for a test that first needs the port closed).
    pub fn start_on(port: u16) -> Victoria {
        let bin = peer::require("victoria-metrics", "apt-get install -y victoria-metrics");
        let mut peer = Peer::new("victoria-metrics").stderr_only();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!(
                "-storageDataPath={}",
                peer.dir().join("data").display()
            ))
            .args([
                "-retentionPeriod=1d",
                "-search.latencyOffset=0s",
                "-search.disableCache",
            ]);
        peer.start(cmd);
        let mut vm = Victoria { peer, port };
        vm.wait_ready();
        vm
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn storage(&self) -> &Path {
        self.peer.dir()
    }

    /// Starts it again (after `stop`) on the same port with the same storage.
    pub fn restart(&mut self) {
        assert!(!self.peer.is_running(), "already running");
        self.peer.restart();
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let port = self.port;
        self.peer
            .wait_ready("GET /health", Duration::from_secs(20), || {
                matches!(
                    peer::http_get(port, "/health", Duration::from_secs(30)),
                    Some((200, _))
                )
            });
    }

    /// Stops it gracefully (SIGTERM: it flushes its storage) and waits for the exit.
    pub fn stop(&mut self) {
        self.peer.terminate(Duration::from_secs(20));
    }

    pub fn log(&self) -> String {
        self.peer.log()
    }

    /// A plain HTTP/1.0 GET on loopback: (status, body).
    pub fn get(&self, path_and_query: &str) -> Option<(u16, String)> {
        peer::http_get(self.port, path_and_query, Duration::from_secs(30))
    }

    /// Every `firebreak_*` series with its samples, after forcing a flush.
    pub fn export(&self) -> Vec<Series> {
        let (status, _) = self
            .get("/internal/force_flush")
            .expect("victoria-metrics force_flush");
        assert_eq!(status, 200, "force_flush");
        let (status, body) = self
            .get("/api/v1/export?match%5B%5D=%7B__name__%3D~%22firebreak_.*%22%7D")
            .expect("victoria-metrics export");
        assert_eq!(status, 200, "export: {body}");
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("export line is not JSON ({e}): {l}"));
                Series {
                    labels: v["metric"]
                        .as_object()
                        .expect("metric")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect(),
                    values: v["values"]
                        .as_array()
                        .expect("values")
                        .iter()
                        .map(|x| x.as_f64().expect("number"))
                        .collect(),
                    timestamps: v["timestamps"]
                        .as_array()
                        .expect("timestamps")
                        .iter()
                        .map(|x| x.as_i64().expect("integer"))
                        .collect(),
                }
            })
            .collect()
    }

    /// Waits until `export()` satisfies `pred`, or panics after `deadline`.
    pub fn wait_for(
        &self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&[Series]) -> bool,
    ) -> Vec<Series> {
        let until = Instant::now() + deadline;
        loop {
            let got = self.export();
            if pred(&got) {
                return got;
            }
            if Instant::now() > until {
                let n: usize = got.iter().map(|s| s.values.len()).sum();
                panic!(
                    "timed out after {deadline:?} waiting for {what}; {} series, {n} samples",
                    got.len()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
