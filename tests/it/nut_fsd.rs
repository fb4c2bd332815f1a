//! The `nut_fsd` step through the real agent binary against a real upsd (dummy-ups) and a
//! real `upsmon`: a UPS on battery with too little runtime makes the zone critical, the
//! runbook sets FSD and upsmon runs its shutdown command; a wrong password fails the step
//! with ACCESS-DENIED at once; a drill reads `ups.status` and changes nothing; a second run
//! finds FSD set; check-config lists the source and the step.

use crate::support;

use firebreak::detect::Cause;
use firebreak::sources::nut::proto::{Status, StatusFlag};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::{post, Agent};
use support::events::{Event, LoggedEvent};
use support::nut::{Nut, Options, FIREBREAK, FSD_ONLY};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "nut-operator-token";

/// An agent config: the NUT source `ups-b3` (user `user`, password `password`), an
/// on-battery and a runtime sensor in zone `b3` (5 min reserve), and a runbook whose one
/// step is `nut_fsd` on that source.
fn write_config(dir: &Path, nut: &Nut, api: u16, user: &str, password: &str) -> (PathBuf, PathBuf) {
    let state = dir.join("state");
    let secret = dir.join("nut.password");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    let token = dir.join("api.token");
    std::fs::write(&token, TOKEN).unwrap();
    let text = format!(
        r#"
[agent]
name = "nut-test"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{api}"
token_file = "{token}"

[[sources]]
name = "ups-b3"
type = "nut"
url = "{url}"
ups = "ups"
username = "{user}"
password_file = "{secret}"
poll_interval = "250ms"

[[sensors]]
id = "ups-b3.on_battery"
zone = "b3"
kind = "on_battery"
source = "ups-b3"
variable = "ups.status"

[[sensors]]
id = "ups-b3.runtime"
zone = "b3"
kind = "runtime"
source = "ups-b3"
variable = "battery.runtime"

[[zones]]
id = "b3"
runbook = "evacuate-b3"
power_reserve = "5m"

[[runbooks]]
name = "evacuate-b3"
budget = "30s"

[[runbooks.steps]]
name = "shut down the hosts on ups-b3"
type = "nut_fsd"
source = "ups-b3"
timeout = "5s"
retries = 2
"#,
        state = state.display(),
        token = token.display(),
        url = nut.url(),
        secret = secret.display(),
    );
    let path = dir.join("firebreak.toml");
    std::fs::write(&path, text).unwrap();
    (path, state.join("events.jsonl"))
}

/// Runs the firebreak binary with `args` and `--config <config>`: (exit code, stdout).
fn firebreak(args: &[&str], config: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn nut_step(e: &LoggedEvent) -> bool {
    matches!(&e.event, Event::StepFinished { step_type, .. } if step_type == "nut_fsd")
}

fn fsd_set(nut: &Nut) -> bool {
    nut.get("ups.status")
        .is_some_and(|s| Status::parse(&s).has(StatusFlag::Fsd))
}

fn wait_until(what: &str, agent: &Agent, cond: impl Fn() -> bool) {
    let until = Instant::now() + WAIT;
    while !cond() {
        assert!(
            Instant::now() < until,
            "timed out after {WAIT:?} waiting for {what}\n{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_ups_running_out_on_battery_sets_fsd_and_a_real_upsmon_shuts_its_system_down() {
    let nut = Nut::start(Options::default());
    let mut upsmon = nut.start_upsmon();
    let dir = tempfile::tempdir().unwrap();
    let api = support::free_port();
    let (config, log) = write_config(dir.path(), &nut, api, FIREBREAK.0, FIREBREAK.1);
    let mut agent = Agent::start(&config, &log);
    agent.wait_for_api(api);

    // The mains fail and the battery has two minutes left: under the 5 min reserve.
    nut.set("battery.runtime", "120");
    nut.set("ups.status", "OB DISCHRG");
    let started = agent.wait_for("the runbook started by the zone", WAIT, |e| {
        matches!(e.event, Event::RunbookStarted { .. })
    });
    assert!(
        matches!(&started.event, Event::RunbookStarted { zone, cause: Cause::Power, dry_run: false, .. } if zone == "b3"),
        "{started:?}"
    );
    let step = agent.wait_for("the nut_fsd step", WAIT, nut_step);
    let Event::StepFinished {
        ok,
        verified,
        detail,
        attempts,
        ..
    } = &step.event
    else {
        unreachable!()
    };
    assert!(*ok && *verified, "{step:?}\n{}", agent.diagnostics());
    assert_eq!(*attempts, 1);
    let detail = detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("FSD set on ups @") && detail.contains("as its primary"),
        "{detail}"
    );
    agent.wait_for("safe to cut power", WAIT, |e| {
        matches!(e.event, Event::SafeToCutPower { .. })
    });
    assert!(fsd_set(&nut), "upsd shows FSD");

    // upsmon saw FSD on its UPS and ran its shutdown command.
    upsmon.wait_shut_down();
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn a_wrong_password_fails_the_step_with_access_denied_without_retrying() {
    let nut = Nut::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let api = support::free_port();
    let (config, log) = write_config(dir.path(), &nut, api, FIREBREAK.0, "not-the-password");
    let mut agent = Agent::start(&config, &log);
    agent.wait_for_api(api);
    assert_eq!(
        post(api, "/api/v1/zones/b3/failover", Some(TOKEN)).0,
        202,
        "manual failover accepted"
    );
    let step = agent.wait_for("the nut_fsd step", WAIT, nut_step);
    let Event::StepFinished {
        ok,
        attempts,
        error,
        ..
    } = &step.event
    else {
        unreachable!()
    };
    assert!(!ok);
    assert_eq!(*attempts, 1, "ACCESS-DENIED is not retried (retries = 2)");
    let error = error.as_deref().unwrap_or_default();
    assert!(
        error.contains("`FSD ups` refused: ACCESS-DENIED") && error.contains("wrong password"),
        "{error}"
    );
    assert!(!fsd_set(&nut), "no FSD on the UPS");
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| matches!(e.event, Event::SafeToCutPower { .. })),
        "not safe to cut"
    );
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn a_drill_reports_ups_status_and_changes_nothing() {
    let nut = Nut::start(Options::default());
    let mut upsmon = nut.start_upsmon();
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(
        dir.path(),
        &nut,
        support::free_port(),
        FIREBREAK.0,
        FIREBREAK.1,
    );
    let (code, out) = firebreak(&["drill", "--zone", "b3"], &config);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("PASS"), "{out}");
    assert!(
        out.contains(&format!(
            "dry run: ups.status of ups @ {} is \"OL\"; user `firebreak` may act as its primary; would set FSD (nothing changed)",
            nut.url()
        )),
        "{out}"
    );
    assert!(!fsd_set(&nut), "no FSD after a drill");
    assert!(upsmon.peer.is_running(), "upsmon still watching");
    assert!(!upsmon.has_shut_down(), "no shutdown");

    // A drill with a wrong password says so, and still changes nothing.
    let (config, _) = write_config(dir.path(), &nut, support::free_port(), FIREBREAK.0, "wrong");
    let (_, out) = firebreak(&["drill", "--zone", "b3"], &config);
    assert!(
        out.contains("PRIMARY refused for user `firebreak` (ACCESS-DENIED)"),
        "{out}"
    );
    assert!(!fsd_set(&nut));
}

#[test]
fn a_user_with_the_fsd_action_sets_fsd_and_a_second_run_finds_it_set() {
    let nut = Nut::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let api = support::free_port();
    let (config, log) = write_config(dir.path(), &nut, api, FSD_ONLY.0, FSD_ONLY.1);
    let mut agent = Agent::start(&config, &log);
    agent.wait_for_api(api);
    assert_eq!(post(api, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    let first = agent.wait_for("the first nut_fsd step", WAIT, nut_step);
    assert!(
        matches!(&first.event, Event::StepFinished { ok: true, verified: true, detail: Some(d), .. } if d.contains("with actions = FSD")),
        "{first:?}"
    );
    assert!(fsd_set(&nut));
    assert_eq!(post(api, "/api/v1/zones/b3/reset", Some(TOKEN)).0, 200);
    agent.wait_for("incident_reset", WAIT, |e| {
        matches!(e.event, Event::IncidentReset { .. })
    });
    assert_eq!(post(api, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    wait_until("a second nut_fsd step", &agent, || {
        agent.events().iter().filter(|e| nut_step(e)).count() == 2
    });
    let second = agent.events().into_iter().filter(nut_step).nth(1).unwrap();
    assert!(
        matches!(&second.event, Event::StepFinished { ok: true, verified: true, detail: Some(d), .. } if d.starts_with("FSD already set on ups @")),
        "{second:?}"
    );
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn check_config_lists_the_nut_source_and_the_fsd_step() {
    let nut = Nut::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(
        dir.path(),
        &nut,
        support::free_port(),
        FIREBREAK.0,
        FIREBREAK.1,
    );
    let (code, out) = firebreak(&["check-config"], &config);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "ups-b3           nut {} ups ups, every 250ms; 2 sensor(s)",
            nut.url()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "1. shut down the hosts on ups-b3: nut_fsd ups @ {} via ups-b3",
            nut.url()
        )),
        "{out}"
    );
}
