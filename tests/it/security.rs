//! Security behaviour of the agent binary: secrets never reach logs or API answers, secret
//! files that others can read are reported, operator actions are rate-limited, and the
//! agent will not run as root unless told to.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::agent::{get, post, post_full, Agent};
use support::events::Event;

fn firebreak(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A value no log line would contain by accident.
fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    getrandom(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("read /dev/urandom");
}

fn write_secret(dir: &Path, name: &str, value: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

struct Secrets {
    api: String,
    mqtt: String,
    influx: String,
    tsig: String,
}

/// The contract's example config, pointed at closed loopback ports and a temp dir, with
/// every secret file it names holding a fresh value. Returns (config, event log, api port).
fn contract_config(dir: &Path, secrets: &Secrets) -> (PathBuf, PathBuf, u16) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(manifest.join("config/firebreak.toml")).unwrap();
    let api_port = support::free_port();
    let closed = support::free_port();
    let state = dir.join("state");
    let replacements = [
        ("/var/lib/firebreak", state.display().to_string()),
        ("127.0.0.1:9410", format!("127.0.0.1:{api_port}")),
        ("/etc/firebreak", dir.display().to_string()),
        ("10.20.0.21:502", format!("127.0.0.1:{closed}")),
        ("10.20.0.30:502", format!("127.0.0.1:{closed}")),
        ("10.20.0.5:1883", format!("127.0.0.1:{closed}")),
        ("10.20.0.53:53", format!("127.0.0.1:{closed}")),
        ("10.20.0.80:9999", format!("127.0.0.1:{closed}")),
        ("10.20.0.60:8086", format!("127.0.0.1:{closed}")),
        (
            "https://hooks.example.com/firebreak",
            format!("http://127.0.0.1:{closed}/hook"),
        ),
        ("timeout = \"3s\"", "timeout = \"300ms\"".to_string()),
        ("retries = 3", "retries = 1".to_string()),
    ];
    for (from, to) in replacements {
        assert!(text.contains(from), "the contract config names {from}");
        text = text.replace(from, &to);
    }
    write_secret(dir, "api.token", &secrets.api, 0o600);
    write_secret(dir, "mqtt.password", &secrets.mqtt, 0o600);
    write_secret(dir, "influx.token", &secrets.influx, 0o600);
    write_secret(dir, "tsig.secret", &secrets.tsig, 0o600);
    let path = dir.join("firebreak.toml");
    std::fs::write(&path, text).unwrap();
    (path, state.join("events.jsonl"), api_port)
}

/// Everything under `dir`, read as text (event log, journal, spool, stderr log).
fn all_text_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}

#[test]
fn secrets_never_appear_in_logs_state_or_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = Secrets {
        api: unique("api-token-"),
        mqtt: unique("mqtt-password-"),
        influx: unique("influx-token-"),
        // Base64, as a TSIG secret is.
        tsig: {
            use base64::Engine as _;
            let mut key = [0u8; 32];
            getrandom(&mut key);
            base64::engine::general_purpose::STANDARD.encode(key)
        },
    };
    let (config, log, port) = contract_config(dir.path(), &secrets);
    let mut agent = Agent::start_with_log_level(&config, &log, "debug");
    agent.wait_for_api(port);

    // Every peer is unreachable: connection errors, failed steps, a spooling sink, all of
    // which are logged in detail.
    let (status, body) = post(
        port,
        "/api/v1/zones/b3-battery-room/failover",
        Some(&secrets.api),
    );
    assert_eq!(status, 202, "{body}");
    agent.wait_for("runbook_finished", Duration::from_secs(60), |e| {
        matches!(e.event, Event::RunbookFinished { .. })
    });
    let (status, body) = post(
        port,
        "/api/v1/zones/b3-battery-room/drill",
        Some(&secrets.api),
    );
    assert!(status < 500, "drill answered {status}: {body}");
    // A wrong token is logged as a refusal; the right one must not be echoed either.
    assert_eq!(
        post(port, "/api/v1/zones/b3-battery-room/reset", Some("nope")).0,
        401
    );
    let mut answers = vec![
        ("/metrics".to_string(), get(port, "/metrics").1),
        ("/api/v1/status".to_string(), get(port, "/api/v1/status").1),
        (
            "/api/v1/incidents".to_string(),
            get(port, "/api/v1/incidents").1,
        ),
    ];
    assert_eq!(agent.stop(), Some(0));

    let files = all_text_under(dir.path());
    let stderr = files
        .iter()
        .find(|(p, _)| p.extension().is_some_and(|e| e == "log"))
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    assert!(
        stderr.contains("DEBUG") || stderr.contains("debug"),
        "the agent logged at debug level:\n{stderr}"
    );
    assert!(
        files.iter().any(|(p, _)| p == &log),
        "the event log was written"
    );
    answers.extend(
        files
            .into_iter()
            // The secret files themselves and the config that names them are the only
            // places the values may be.
            .filter(|(p, _)| {
                !matches!(
                    p.file_name().and_then(|n| n.to_str()),
                    Some("api.token" | "mqtt.password" | "influx.token" | "tsig.secret")
                )
            })
            .map(|(p, t)| (p.display().to_string(), t)),
    );
    for (name, secret) in [
        ("API token", &secrets.api),
        ("MQTT password", &secrets.mqtt),
        ("InfluxDB token", &secrets.influx),
        ("TSIG secret", &secrets.tsig),
    ] {
        for (place, text) in &answers {
            assert!(
                !text.contains(secret.as_str()),
                "the {name} leaked into {place}"
            );
        }
    }
}

#[test]
fn check_config_warns_when_others_can_read_a_secret_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secrets = Secrets {
        api: unique("a"),
        mqtt: unique("m"),
        influx: unique("i"),
        tsig: "c2VjcmV0".into(),
    };
    let (config, _, _) = contract_config(dir.path(), &secrets);
    let token = dir.path().join("api.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();

    let (code, out, _) = firebreak(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let warning = out
        .lines()
        .find(|l| l.contains("api.token_file"))
        .unwrap_or_else(|| panic!("no warning about api.token_file:\n{out}"));
    assert!(
        warning.contains("readable by group or others (mode 644)")
            && warning.contains(&format!("chmod 600 {}", token.display())),
        "{warning}"
    );

    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, _) = firebreak(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("readable by group or others"), "{out}");
}

#[test]
fn operator_actions_are_rate_limited_even_with_the_right_token() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = Secrets {
        api: unique("api-"),
        mqtt: unique("m"),
        influx: unique("i"),
        tsig: "c2VjcmV0".into(),
    };
    let (config, log, port) = contract_config(dir.path(), &secrets);
    let agent = Agent::start(&config, &log);
    agent.wait_for_api(port);
    // Someone guessing the token: a burst of wrong guesses is answered 401 ...
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            post(
                port,
                "/api/v1/zones/b3-battery-room/failover",
                Some("guess"),
            )
            .0,
        );
    }
    assert_eq!(statuses, vec![401; 10]);
    // ... then everything is refused for a while, the right token too, with a hint.
    let (status, headers, body) = post_full(
        port,
        "/api/v1/zones/b3-battery-room/failover",
        Some(&secrets.api),
    );
    assert_eq!(status, 429, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    assert!(body.contains("too many operator requests"), "{body}");
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| matches!(e.event, Event::RunbookStarted { .. })),
        "nothing ran"
    );
}

#[test]
fn run_refuses_root_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("none.toml");
    let (code, _, err) = firebreak(&["run", "--config", config.to_str().unwrap()]);
    if nix::unistd::geteuid().is_root() {
        assert_eq!(code, Some(77), "{err}");
        assert!(
            err.contains("refusing to run as root") && err.contains("--allow-root"),
            "{err}"
        );
        // With the flag it goes on (and fails on the missing config instead).
        let (code, _, err) =
            firebreak(&["run", "--allow-root", "--config", config.to_str().unwrap()]);
        assert_eq!(code, Some(64), "{err}");
        assert!(!err.contains("refusing to run as root"), "{err}");
    } else {
        // Not root: the check does not get in the way.
        assert_eq!(code, Some(64), "{err}");
        assert!(!err.contains("refusing to run as root"), "{err}");
    }
}
