//! Headless Chromium driven over WebDriver: starts Debian's `chromedriver` on an ephemeral
//! loopback port and opens sessions with fantoccini.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::peer::{self, Peer};

const INSTALL: &str = "apt-get install chromium chromium-driver";

pub struct ChromeDriver {
    peer: Peer,
    pub port: u16,
    pub log: PathBuf,
}

impl ChromeDriver {
    /// Starts chromedriver and waits until it answers `/status`.
    pub fn start(dir: &Path) -> ChromeDriver {
        let driver = peer::require("chromedriver", INSTALL);
        peer::require("chromium", INSTALL);
        let port = super::free_port();
        let log = dir.join("chromedriver.log");
        // Its own process group, so the browsers it starts go down with it. Its stdout
        // and stderr go to chromedriver.out; its log proper to chromedriver.log.
        let mut peer = Peer::with_log("chromedriver", &dir.join("chromedriver.out")).own_group();
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()));
        peer.start(cmd);
        let mut me = ChromeDriver { peer, port, log };
        if let Err(e) = me.peer.try_wait_ready(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }) {
            panic!(
                "{e}: chromedriver did not listen on {port}\n{}",
                me.diagnostics()
            );
        }
        me
    }

    /// A new headless browser session; `javascript: false` disables scripts in pages.
    pub async fn session(&self, profile: &Path, javascript: bool) -> fantoccini::Client {
        let mut options = serde_json::json!({
            "binary": peer::require("chromium", INSTALL),
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1280,1400",
                format!("--user-data-dir={}", profile.display()),
            ],
        });
        if !javascript {
            options["prefs"] = serde_json::json!({
                "profile.managed_default_content_settings.javascript": 2
            });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert("goog:chromeOptions".into(), options);
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "open a Chromium session ({INSTALL}): {e}\n{}",
                    self.diagnostics()
                )
            })
    }

    pub fn diagnostics(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!(
            "--- chromedriver log (last lines) ---\n{}\n{}",
            peer::tail(&log, 40),
            self.peer.log_tail(40)
        )
    }
}
