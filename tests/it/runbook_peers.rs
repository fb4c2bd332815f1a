//! The runbook engine against real peers started by the tests: Knot (DNS), HAProxy, a
//! local HTTP receiver, a command; manual failover through the API, resume after kill -9,
//! drills that change nothing, and the API's token rules.

use crate::support;

use base64::Engine as _;
use firebreak::detect::{Cause, ZoneLevel};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::agent::{post, rt, status_of, Agent};
use support::events::{count, Event, LoggedEvent};
use support::haproxy::Haproxy;
use support::knot::Knot;
use support::receiver::Receiver;

const TOKEN: &str = "s3cret-operator-token";

fn secret_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(b"firebreak-test-secret-32-bytes!!")
}

fn knot() -> Knot {
    Knot::start(
        "example.test",
        &[("app", "A", "192.0.2.10")],
        Some(("firebreak", "hmac-sha256", &secret_b64())),
    )
}

struct Peers {
    knot: Knot,
    haproxy: Haproxy,
    receiver: Receiver,
}

fn peers(status: u16) -> Peers {
    Peers {
        knot: knot(),
        haproxy: Haproxy::start("app", &["b3-web-1", "b3-web-2"]),
        receiver: Receiver::start(status),
    }
}

fn dns_step(p: &Peers, dir: &Path) -> String {
    let secret = dir.join("tsig.secret");
    std::fs::write(&secret, secret_b64()).unwrap();
    format!(
        r#"
[[runbooks.steps]]
name = "move app to the DR site"
type = "dns_update"
server = "{}"
zone = "example.test"
record = "app.example.test"
rtype = "A"
ttl = 30
values = ["198.51.100.20"]
tsig_key = "firebreak"
tsig_algorithm = "hmac-sha256"
tsig_secret_file = "{}"
timeout = "3s"
retries = 3
"#,
        p.knot.addr(),
        secret.display()
    )
}

fn haproxy_step(p: &Peers) -> String {
    format!(
        r#"
[[runbooks.steps]]
name = "drain the b3 backends"
type = "haproxy"
socket = "{}"
backend = "app"
servers = ["b3-web-1", "b3-web-2"]
state = "drain"
"#,
        p.haproxy.socket_url()
    )
}

fn http_step(p: &Peers) -> String {
    format!(
        r#"
[[runbooks.steps]]
name = "tell the incident channel"
type = "http"
method = "POST"
url = "{}"
headers = {{ "Content-Type" = "application/json" }}
body = '{{"agent":"{{{{agent}}}}","zone":"{{{{zone}}}}","level":"{{{{level}}}}","incident":"{{{{incident}}}}"}}'
expect_status = [200, 201, 202, 204]
retries = 0
"#,
        p.receiver.url("/firebreak")
    )
}

const COMMAND_STEP: &str = r#"
[[runbooks.steps]]
name = "stop batch writers"
type = "command"
argv = ["/bin/sh", "-c", "echo stopping batch in $1", "sh", "{{zone}}"]
timeout = "5s"
"#;

/// Writes a config whose only zone `b3` runs `steps`; returns (config path, event log).
fn write_config(dir: &Path, api_port: u16, with_token: bool, steps: &str) -> (PathBuf, PathBuf) {
    let state = dir.join("state");
    let token_line = if with_token {
        let f = dir.join("api.token");
        std::fs::write(&f, format!("{TOKEN}\n")).unwrap();
        format!("token_file = \"{}\"", f.display())
    } else {
        String::new()
    };
    let text = format!(
        r#"
[agent]
name = "runbook-test"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{api_port}"
{token_line}

[[zones]]
id = "b3"
runbook = "evacuate-b3"

[[runbooks]]
name = "evacuate-b3"
budget = "90s"
{steps}
"#,
        state = state.display()
    );
    let path = dir.join("firebreak.toml");
    std::fs::write(&path, text).unwrap();
    (path, state.join("events.jsonl"))
}

/// Runs the firebreak binary with `args` and `--config <config>`: (exit code, stdout, stderr).
fn firebreak(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts the agent and waits until its API answers.
fn start_agent(config: &Path, log: &Path, port: u16) -> Agent {
    let agent = Agent::start(config, log);
    agent.wait_for_api(port);
    agent
}

fn is_safe(e: &LoggedEvent) -> bool {
    matches!(e.event, Event::SafeToCutPower { .. })
}

/// A finished step of the type `step_type`.
fn is_step_of_type(e: &LoggedEvent, step_type: &str) -> bool {
    matches!(&e.event, Event::StepFinished { step_type: t, .. } if t == step_type)
}

/// A finished step named `name`.
fn is_step_named(e: &LoggedEvent, name: &str) -> bool {
    matches!(&e.event, Event::StepFinished { step, .. } if step == name)
}

fn is_resumed(e: &LoggedEvent) -> bool {
    matches!(e.event, Event::RunbookStarted { resumed: true, .. })
}

/// The incident an event names (panics for one that names none).
fn incident(e: &LoggedEvent) -> String {
    e.event
        .incident()
        .unwrap_or_else(|| panic!("no incident: {e:?}"))
        .to_string()
}

#[test]
fn manual_failover_runs_every_step_type_against_real_peers_and_declares_safe() {
    let p = peers(200);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let steps = format!(
        "{}{}{}{}",
        dns_step(&p, dir.path()),
        haproxy_step(&p),
        http_step(&p),
        COMMAND_STEP
    );
    let (config, log) = write_config(dir.path(), port, true, &steps);
    let mut agent = start_agent(&config, &log, port);

    let (status, body) = post(port, "/api/v1/zones/b3/failover", Some(TOKEN));
    assert_eq!(status, 202, "{body}");
    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(60), is_safe);
    let incident = incident(&safe);

    assert_eq!(p.knot.dig("app.example.test", "A"), vec!["198.51.100.20"]);
    for server in ["b3-web-1", "b3-web-2"] {
        assert_ne!(
            p.haproxy.admin_state("app", server) & 0x08,
            0,
            "{server} drained"
        );
    }
    let posts = p.receiver.posts();
    assert_eq!(posts.len(), 1, "exactly one webhook per incident");
    assert_eq!(
        posts[0].header("Idempotency-Key"),
        Some(format!("{incident}/tell the incident channel").as_str())
    );
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(body["zone"], "b3");
    assert_eq!(body["incident"], incident.as_str());
    assert_eq!(body["agent"], "runbook-test");

    let events = agent.events();
    let started = events
        .iter()
        .find(|e| matches!(e.event, Event::RunbookStarted { .. }))
        .unwrap();
    assert!(matches!(
        started.event,
        Event::RunbookStarted {
            cause: Cause::Manual,
            ..
        }
    ));
    let steps: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.event, Event::StepFinished { .. }))
        .collect();
    assert_eq!(steps.len(), 4);
    assert!(
        steps.iter().all(|s| matches!(
            s.event,
            Event::StepFinished {
                ok: true,
                verified: true,
                ..
            }
        )),
        "{steps:#?}"
    );
    let cmd = steps
        .iter()
        .find(|s| is_step_of_type(s, "command"))
        .unwrap();
    let Event::StepFinished { detail, .. } = &cmd.event else {
        unreachable!()
    };
    assert!(
        detail.as_deref().unwrap().contains("stopping batch in b3"),
        "command output in the event: {cmd:?}"
    );

    // A second failover while the incident is open is refused; reset ends the incident.
    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 409);
    let (status, body) = post(port, "/api/v1/zones/b3/reset", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let reset = agent.wait_for("incident_reset", Duration::from_secs(5), |e| {
        matches!(e.event, Event::IncidentReset { .. })
    });
    assert_eq!(self::incident(&reset), incident);
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn killed_agent_resumes_the_runbook_without_repeating_finished_steps() {
    let p = peers(200);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let wait =
        "\n[[runbooks.steps]]\nname = \"let the TTL expire\"\ntype = \"wait\"\nduration = \"4s\"\n";
    let steps = format!("{}{}{}", dns_step(&p, dir.path()), wait, http_step(&p));
    let (config, log) = write_config(dir.path(), port, true, &steps);
    let serial_before = p.knot.soa_serial();

    let mut agent = start_agent(&config, &log, port);
    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    agent.wait_for("the DNS step", Duration::from_secs(30), |e| {
        is_step_of_type(e, "dns_update")
    });
    agent.kill9(); // in the middle of the wait step
    let serial_after_update = p.knot.soa_serial();
    assert_eq!(serial_after_update, serial_before + 1);

    let mut agent = Agent::start(&config, &log);
    let resumed = agent.wait_for("resumed runbook", Duration::from_secs(20), is_resumed);
    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(30), is_safe);
    assert_eq!(
        incident(&resumed),
        incident(&safe),
        "the same incident across the restart"
    );

    let events = agent.events();
    assert_eq!(
        count(&events, |e| is_step_of_type(e, "dns_update")),
        1,
        "DNS step not repeated"
    );
    assert_eq!(
        p.knot.soa_serial(),
        serial_after_update,
        "no second UPDATE reached the server"
    );
    assert_eq!(p.receiver.posts().len(), 1, "the webhook ran once");
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn a_failed_step_means_not_safe_to_cut_power_even_with_on_failure_continue() {
    let p = peers(500);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let steps = format!(
        "{}\non_failure = \"continue\"\n{}",
        http_step(&p).trim_end(),
        dns_step(&p, dir.path())
    );
    let (config, log) = write_config(dir.path(), port, true, &steps);
    let mut agent = start_agent(&config, &log, port);
    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    let verdict = agent.wait_for("verdict", Duration::from_secs(30), |e| {
        matches!(e.event, Event::NotSafeToCutPower { .. })
    });
    let Event::NotSafeToCutPower { reasons, .. } = &verdict.event else {
        unreachable!()
    };
    let reasons = reasons.join("\n");
    assert!(
        reasons.contains("tell the incident channel") && reasons.contains("500"),
        "{reasons}"
    );
    // The DNS step after it still ran (continue).
    assert_eq!(p.knot.dig("app.example.test", "A"), vec!["198.51.100.20"]);
    assert_eq!(count(&agent.events(), is_safe), 0);
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn drill_checks_every_peer_and_changes_nothing() {
    let p = peers(200);
    let dir = tempfile::tempdir().unwrap();
    let serial = p.knot.soa_serial();
    let steps = format!(
        "{}{}{}{}",
        dns_step(&p, dir.path()),
        haproxy_step(&p),
        http_step(&p),
        COMMAND_STEP
    );
    let (config, _) = write_config(dir.path(), support::free_port(), true, &steps);
    let (code, stdout, stderr) = firebreak(&["drill", "--zone", "b3"], &config);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("PASS").count(), 4, "{stdout}");
    assert!(stdout.contains("4 of 4 step(s) pass"), "{stdout}");

    assert_eq!(
        p.knot.dig("app.example.test", "A"),
        vec!["192.0.2.10"],
        "DNS untouched"
    );
    assert_eq!(p.knot.soa_serial(), serial);
    for server in ["b3-web-1", "b3-web-2"] {
        assert_eq!(
            p.haproxy.admin_state("app", server),
            0,
            "{server} untouched"
        );
    }
    assert!(p.receiver.posts().is_empty(), "no webhook sent by a drill");
}

#[test]
fn drill_fails_a_step_whose_peer_is_wrong() {
    let p = peers(200);
    let dir = tempfile::tempdir().unwrap();
    let bad_haproxy = haproxy_step(&p).replace("b3-web-2", "no-such-server");
    let (config, _) = write_config(dir.path(), support::free_port(), true, &bad_haproxy);
    let (code, stdout, _) = firebreak(&["drill", "--zone", "b3"], &config);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("no-such-server"),
        "{stdout}"
    );
}

#[test]
fn api_actions_need_the_right_token_and_are_off_without_a_token_file() {
    let p = peers(200);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let (config, log) = write_config(dir.path(), port, true, &http_step(&p));
    let mut agent = start_agent(&config, &log, port);
    assert_eq!(post(port, "/api/v1/zones/b3/failover", None).0, 401);
    assert_eq!(
        post(port, "/api/v1/zones/b3/failover", Some("wrong")).0,
        401
    );
    assert_eq!(
        post(port, "/api/v1/zones/nowhere/failover", Some(TOKEN)).0,
        404
    );
    assert!(
        p.receiver.posts().is_empty(),
        "nothing ran without the token"
    );
    assert_eq!(agent.stop(), Some(0));

    let dir2 = tempfile::tempdir().unwrap();
    let port2 = support::free_port();
    let (config2, log2) = write_config(dir2.path(), port2, false, &http_step(&p));
    let mut agent2 = start_agent(&config2, &log2, port2);
    assert_eq!(post(port2, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 403);
    assert_eq!(agent2.stop(), Some(0));
}

#[test]
fn status_shows_zones_sensors_and_the_incident() {
    let p = peers(200);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let (config, log) = write_config(dir.path(), port, true, &http_step(&p));
    let mut agent = start_agent(&config, &log, port);
    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    agent.wait_for("safe", Duration::from_secs(20), is_safe);
    let status = status_of(&rt().block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/api/v1/status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }));
    assert!(status.event_log_writable);
    let ready = rt().block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(ready, 200);
    let zone = &status.zones[0];
    assert_eq!(zone.id, "b3");
    assert_eq!(zone.level, ZoneLevel::Critical);
    assert!(zone.safe_to_cut_power);
    assert!(zone.incident.is_some());
    let incidents: serde_json::Value = rt().block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/api/v1/incidents"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(incidents["incidents"].as_array().unwrap().len(), 1);
    let metrics = rt().block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    for line in [
        "firebreak_zone_level{zone=\"b3\"} 3",
        "firebreak_safe_to_cut_power{zone=\"b3\"} 1",
        "firebreak_incident_active{zone=\"b3\"} 1",
        "firebreak_runbook_steps_total{outcome=\"ok\",runbook=\"evacuate-b3\",step=\"tell the incident channel\"} 1",
        "firebreak_events_total{event=\"safe_to_cut_power\"} 1",
        "firebreak_build_info{version=",
        "firebreak_runbook_duration_seconds_count{runbook=\"evacuate-b3\"} 1",
    ] {
        assert!(metrics.contains(line), "/metrics lacks `{line}`:\n{metrics}");
    }
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn drill_proves_the_dns_server_accepts_our_tsig_key_and_fails_on_a_wrong_one() {
    let p = peers(200);
    let dir = tempfile::tempdir().unwrap();
    let serial = p.knot.soa_serial();
    let (config, _) = write_config(
        dir.path(),
        support::free_port(),
        true,
        &dns_step(&p, dir.path()),
    );
    let drill = |config: &Path| {
        let (code, stdout, _) = firebreak(&["drill", "--zone", "b3"], config);
        (code, stdout)
    };
    let (code, stdout) = drill(&config);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("accepts our TSIG key"), "{stdout}");

    // The same drill with a wrong secret: the signed probe is refused, the step fails.
    std::fs::write(
        dir.path().join("tsig.secret"),
        base64::engine::general_purpose::STANDARD.encode(b"a-wrong-secret-of-32-bytes-long!"),
    )
    .unwrap();
    let (code, stdout) = drill(&config);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("NOTAUTH"),
        "{stdout}"
    );
    assert_eq!(p.knot.soa_serial(), serial, "no drill changed the zone");
    assert_eq!(p.knot.dig("app.example.test", "A"), vec!["192.0.2.10"]);
}

#[test]
fn mqtt_publish_step_leaves_a_retained_failover_flag_on_a_real_broker() {
    use support::mosquitto::{Mosquitto, Options};
    let broker = Mosquitto::start(Options {
        users: vec![("firebreak".into(), "pw-123".into())],
        tls: false,
    });
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("mqtt.password");
    std::fs::write(&password, "pw-123\n").unwrap();
    let port = support::free_port();
    let (config, log) = write_config(
        dir.path(),
        port,
        true,
        r#"
[[runbooks.steps]]
name = "raise the failover flag for other sites"
type = "mqtt_publish"
source = "site-broker"
topic = "dc1/failover/{{zone}}"
payload = '{"incident":"{{incident}}","state":"failed_over"}'
qos = 1
retain = true
"#,
    );
    // The source goes before the zones: append it to the config's top-level tables.
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[[zones]]",
        &format!(
            "[[sources]]\nname = \"site-broker\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\nusername = \"firebreak\"\npassword_file = \"{}\"\n\n[[zones]]",
            broker.port,
            password.display()
        ),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut agent = start_agent(&config, &log, port);
    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    let safe = agent.wait_for("safe", Duration::from_secs(20), is_safe);
    let step = agent
        .events()
        .into_iter()
        .find(|e| matches!(e.event, Event::StepFinished { .. }))
        .unwrap();
    assert!(
        matches!(step.event, Event::StepFinished { verified: true, .. }),
        "QoS 1 publish acknowledged: {step:?}"
    );

    // A client we did not write sees the retained flag.
    let mosquitto_sub =
        support::peer::require("mosquitto_sub", "apt-get install -y mosquitto-clients");
    let out = std::process::Command::new(mosquitto_sub)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-u",
            "firebreak",
            "-P",
            "pw-123",
        ])
        .args(["-t", "dc1/failover/b3", "-C", "1", "-W", "5"])
        .output()
        .expect("mosquitto_sub");
    let msg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "retained message: {e}: {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(msg["incident"], incident(&safe));
    assert_eq!(msg["state"], "failed_over");
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn cli_failover_drill_and_reset_reach_the_running_agent() {
    let p = peers(200);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let (config, log) = write_config(dir.path(), port, true, &http_step(&p));
    let mut agent = start_agent(&config, &log, port);
    let cli = |args: &[&str]| {
        let (code, stdout, stderr) = firebreak(args, &config);
        (code, stdout + &stderr)
    };

    // A drill through the API: dry run, nothing sent, reported in the event log.
    let (status, body) = post(port, "/api/v1/zones/b3/drill", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let drill: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(drill["pass"], true, "{body}");
    assert!(p.receiver.posts().is_empty(), "a drill sends no webhook");
    agent.wait_for("drill events", Duration::from_secs(10), |e| {
        matches!(
            e.event,
            Event::RunbookStarted {
                cause: Cause::Drill,
                ..
            }
        )
    });

    let (code, out) = cli(&["failover", "--zone", "b3"]);
    assert_eq!(code, Some(0), "{out}");
    let safe = agent.wait_for("safe", Duration::from_secs(20), is_safe);
    assert_eq!(p.receiver.posts().len(), 1);

    let (code, out) = cli(&["reset", "--zone", "b3", "--by", "operator-kim"]);
    assert_eq!(code, Some(0), "{out}");
    let reset = agent.wait_for("reset", Duration::from_secs(10), |e| {
        matches!(e.event, Event::IncidentReset { .. })
    });
    assert_eq!(incident(&reset), incident(&safe));
    assert!(matches!(&reset.event, Event::IncidentReset { by, .. } if by == "operator-kim"));

    let (code, out) = cli(&["reset", "--zone", "b3"]);
    assert_eq!(code, Some(1), "nothing left to reset: {out}");
    assert!(out.contains("409"), "{out}");
    assert_eq!(agent.stop(), Some(0));
}

/// A step that takes a while and leaves a trace of every time it ran; declared idempotent,
/// so one interrupted by a crash is run again (a non-idempotent one fails the runbook
/// instead, see `incident.rs`).
fn slow_command_step(name: &str, trace: &Path, seconds: &str) -> String {
    format!(
        r#"
[[runbooks.steps]]
name = "{name}"
type = "command"
argv = ["/bin/sh", "-c", "sleep $1; echo ran >> $2", "sh", "{seconds}", "{}"]
timeout = "10s"
idempotent = true
"#,
        trace.display()
    )
}

#[test]
fn killed_again_and_again_at_random_points_the_runbook_still_finishes_each_step_once() {
    let p = peers(200);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let traces: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("trace{i}")))
        .collect();
    let steps = format!(
        "{}{}{}{}{}",
        slow_command_step("prepare", &traces[0], "0.4"),
        dns_step(&p, dir.path()),
        slow_command_step("quiesce", &traces[1], "0.6"),
        http_step(&p),
        slow_command_step("confirm", &traces[2], "0.3"),
    );
    let (config, log) = write_config(dir.path(), port, true, &steps);

    // Kill points from a fixed seed, printed so that a failure can be replayed.
    let seed: u64 = std::env::var("KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    println!("KILL_SEED={seed}");
    let mut x = seed;
    let mut next_delay = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Duration::from_millis(100 + (x >> 33) % 700)
    };

    let mut agent = start_agent(&config, &log, port);
    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    let mut kills = 0;
    for _ in 0..8 {
        std::thread::sleep(next_delay());
        if agent.events().iter().any(is_safe) {
            break;
        }
        agent.kill9();
        kills += 1;
        agent = Agent::start(&config, &log);
    }
    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(60), is_safe);
    assert!(
        kills >= 3,
        "the runbook was interrupted several times ({kills})"
    );

    let events = agent.events();
    let names = [
        "prepare",
        "move app to the DR site",
        "quiesce",
        "tell the incident channel",
        "confirm",
    ];
    for name in names {
        assert_eq!(
            count(&events, |e| is_step_named(e, name)),
            1,
            "step {name} finished exactly once\n{}",
            agent.diagnostics()
        );
    }
    assert!(
        events
            .iter()
            .filter(|e| matches!(e.event, Event::RunbookStarted { .. }))
            .all(|e| incident(e) == incident(&safe)),
        "one incident throughout"
    );
    assert!(count(&events, is_resumed) >= 1, "the runbook was resumed");
    // A step killed before its result was logged runs again (at least once); one whose
    // result was logged never does. So each action ran at least once and at most once
    // per interruption.
    for t in &traces {
        let runs = std::fs::read_to_string(t)
            .unwrap_or_default()
            .lines()
            .count();
        assert!(
            (1..=kills + 1).contains(&runs),
            "{}: {runs} runs",
            t.display()
        );
    }
    assert_eq!(p.knot.dig("app.example.test", "A"), vec!["198.51.100.20"]);
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn dns_server_down_fails_the_runbook_clearly_and_a_second_failover_completes_it_later() {
    let mut p = peers(200);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let trace = dir.path().join("trace");
    // The DNS step gives up quickly (one retry, 300 ms) so the test does not wait long.
    let dns = dns_step(&p, dir.path())
        .replace("timeout = \"3s\"", "timeout = \"300ms\"")
        .replace("retries = 3", "retries = 1");
    let steps = format!(
        "{}{}{}",
        slow_command_step("stop batch writers", &trace, "0"),
        dns,
        http_step(&p)
    );
    let (config, log) = write_config(dir.path(), port, true, &steps);
    let mut agent = start_agent(&config, &log, port);

    p.knot.stop();
    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    let not_safe = agent.wait_for("not_safe_to_cut_power", Duration::from_secs(30), |e| {
        matches!(e.event, Event::NotSafeToCutPower { .. })
    });
    let Event::NotSafeToCutPower { reasons, .. } = &not_safe.event else {
        unreachable!()
    };
    let reasons = reasons.join("\n");
    assert!(
        reasons.contains("move app to the DR site"),
        "the reason names the DNS step: {reasons}"
    );
    let dns_failed = agent.wait_for("the DNS step's failure", Duration::from_secs(5), |e| {
        is_step_of_type(e, "dns_update")
    });
    let Event::StepFinished { ok, attempts, .. } = &dns_failed.event else {
        unreachable!()
    };
    assert!(!*ok);
    assert!(*attempts >= 2, "retried: {dns_failed:?}");
    assert_eq!(count(&agent.events(), is_safe), 0);

    // Once the server is back, the operator's second failover finishes the incident.
    p.knot.restart();
    let (status, body) = post(port, "/api/v1/zones/b3/failover", Some(TOKEN));
    assert_eq!(status, 202, "{body}");
    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(30), is_safe);
    assert_eq!(incident(&safe), incident(&not_safe), "the same incident");
    assert_eq!(p.knot.dig("app.example.test", "A"), vec!["198.51.100.20"]);

    let events = agent.events();
    assert_eq!(
        count(&events, |e| is_step_named(e, "stop batch writers")),
        1,
        "the step that had succeeded did not run again"
    );
    assert_eq!(
        std::fs::read_to_string(&trace).unwrap().lines().count(),
        1,
        "its command ran once"
    );
    assert_eq!(
        p.receiver.posts().len(),
        1,
        "the webhook ran once, in the retry"
    );
    assert!(
        count(&events, is_resumed) == 1,
        "the retry is logged as a resumed runbook"
    );
    // Once safe, another failover is refused.
    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 409);
    assert_eq!(agent.stop(), Some(0));
}
