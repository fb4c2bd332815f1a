//! Headless Chromium driven over WebDriver: starts Debian's `chromedriver` on an ephemeral
//! loopback port and opens sessions with fantoccini.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "apt-get install chromium chromium-driver";

pub struct ChromeDriver {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

fn find(program: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{program}` is not installed; install it with: {INSTALL}");
}

impl ChromeDriver {
    /// Starts chromedriver and waits until it answers `/status`.
    pub fn start(dir: &Path) -> ChromeDriver {
        let driver = find("chromedriver");
        find("chromium");
        let port = super::free_port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so the browsers it starts go down with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start chromedriver ({INSTALL}): {e}"));
        let mut me = ChromeDriver { child, port, log };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return me;
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("chromedriver exited ({status})\n{}", me.diagnostics());
            }
            assert!(
                Instant::now() < until,
                "chromedriver did not listen on {port}\n{}",
                me.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new headless browser session; `javascript: false` disables scripts in pages.
    pub async fn session(&self, profile: &Path, javascript: bool) -> fantoccini::Client {
        let mut options = serde_json::json!({
            "binary": find("chromium"),
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
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        format!(
            "--- chromedriver log (last lines) ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
