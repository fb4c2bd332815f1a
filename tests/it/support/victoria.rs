//! A real VictoriaMetrics (it receives the InfluxDB v2 write API) in a throwaway directory
//! on a free 127.0.0.1 port. It can be stopped and started again on the same port with the
//! same storage, for outage tests. Killed on drop.
//!
//! Reading back: `export()` forces a flush and returns every `firebreak_*` series with its
//! exact samples. VictoriaMetrics keeps duplicate samples, so a point written twice shows
//! up twice. It names series `<measurement>_<field>`, ignores string fields, and keeps about
//! 15 significant digits of a float (1039.0430000000001 comes back as 1039.043).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NOT_FOUND: &str = "victoria-metrics not found: install it with `apt-get install -y victoria-metrics` (or run scripts/test)";

pub struct Victoria {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
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

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Victoria {
    pub fn start() -> Victoria {
        Self::start_on(super::free_port())
    }

    /// Starts on a given port (for a test that first needs the port closed).
    pub fn start_on(port: u16) -> Victoria {
        let bin = find_program("victoria-metrics").unwrap_or_else(|| panic!("{NOT_FOUND}"));
        let dir = tempfile::Builder::new()
            .prefix("victoria-test-")
            .tempdir()
            .expect("temp dir for victoria-metrics");
        let mut vm = Victoria {
            child: None,
            dir,
            port,
            bin,
        };
        vm.restart();
        vm
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn storage(&self) -> &Path {
        self.dir.path()
    }

    /// Starts it again (after `stop`) on the same port with the same storage.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("victoria.log"))
            .expect("victoria log");
        let child = Command::new(&self.bin)
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!(
                "-storageDataPath={}",
                self.dir.path().join("data").display()
            ))
            .args([
                "-retentionPeriod=1d",
                "-search.latencyOffset=0s",
                "-search.disableCache",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if matches!(self.get("/health"), Some((200, _))) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "victoria-metrics exited ({status}) on start\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < until,
                "victoria-metrics did not answer /health within 20 s\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it gracefully (SIGTERM: it flushes its storage) and waits for the exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > until {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("victoria.log")).unwrap_or_default()
    }

    /// A plain HTTP/1.0 GET on loopback: (status, body).
    pub fn get(&self, path_and_query: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
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

impl Drop for Victoria {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
