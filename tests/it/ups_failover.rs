//! A utility loss read from the UPS however it speaks: the same room, zone and runbook, the
//! UPS's "on battery" and runtime read over SNMP UPS-MIB (net-snmp's `snmpd`) or NUT
//! (`upsd` with `dummy-ups`) instead of Modbus, and the same failover happens: nothing on
//! mains, a power incident once the UPS is on battery with less runtime than
//! `power_reserve` + the runbook's `budget`, then the runbook and `safe_to_cut_power`.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::agent::Agent;
use support::events::{count, Event};

const DEADLINE: Duration = Duration::from_secs(30);

/// A secret file only its owner reads.
fn secret(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Runs the agent on a room whose UPS is `source` (a `[[sources]]` table named "ups") with
/// the sensors `sensors` (an on_battery and a runtime sensor on it), checks that nothing
/// happens on mains, calls `lose_mains`, and checks the power failover.
fn utility_loss_fails_over(dir: &Path, source: &str, sensors: &str, lose_mains: impl FnOnce()) {
    let state = dir.join("state");
    let config = dir.join("firebreak.toml");
    let api_port = support::free_port();
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
name = "ups-e2e"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{api_port}"

[[sources]]
name = "ups"
{source}

{sensors}

[[zones]]
id = "b3-battery-room"
runbook = "evacuate-b3"
confirm = 2
power_reserve = "5m"

[[runbooks]]
name = "evacuate-b3"
budget = "90s"

[[runbooks.steps]]
name = "let sessions drain"
type = "wait"
duration = "200ms"
"#,
            state = state.display(),
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&config, &state.join("events.jsonl"));
    // On mains, with the UPS read a few times: no incident.
    agent.wait_for_api(api_port);
    let samples = || {
        let (_, text) = support::agent::get(api_port, "/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(r#"firebreak_samples_total{source="ups"} "#))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let until = std::time::Instant::now() + DEADLINE;
    while samples() < 10.0 {
        assert!(
            std::time::Instant::now() < until,
            "the UPS is not read
{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let events = agent.events();
    assert_eq!(
        count(&events, |e| matches!(e.event, Event::RunbookStarted { .. })),
        0,
        "no failover on mains\n{}",
        agent.diagnostics()
    );
    lose_mains();
    let started = agent.wait_for("a power failover", DEADLINE, |e| {
        matches!(e.event, Event::RunbookStarted { .. })
    });
    let Event::RunbookStarted { cause, zone, .. } = &started.event else {
        unreachable!()
    };
    assert_eq!(zone, "b3-battery-room");
    assert_eq!(cause.as_str(), "power", "{started:?}");
    agent.wait_for("safe to cut power", DEADLINE, |e| {
        matches!(e.event, Event::SafeToCutPower { .. })
    });
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
}

#[test]
fn a_utility_loss_read_over_snmp_ups_mib_fails_over_for_power() {
    use support::snmpd::{oids, Options, Snmpd};
    let d = Snmpd::start(
        Options::default(),
        &[
            (oids::OUTPUT_SOURCE, "integer", "3"),
            (oids::MINUTES_REMAINING, "integer", "42"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let community = secret(dir.path(), "community", "public");
    let source = format!(
        "type = \"snmp\"\nurl = \"{}\"\nversion = \"2c\"\ncommunity_file = \"{}\"\npoll_interval = \"200ms\"\ntimeout = \"300ms\"",
        d.url(),
        community.display()
    );
    let sensors = format!(
        r#"
[[sensors]]
id = "ups-b3-2.on_battery"
zone = "b3-battery-room"
kind = "on_battery"
source = "ups"
oid = "{}"
equals = 5

[[sensors]]
id = "ups-b3-2.runtime"
zone = "b3-battery-room"
kind = "runtime"
source = "ups"
oid = "{}"
scale = 60.0
"#,
        oids::OUTPUT_SOURCE,
        oids::MINUTES_REMAINING
    );
    utility_loss_fails_over(dir.path(), &source, &sensors, || {
        // battery(5) with 3 minutes left: less than power_reserve (5 min) + budget (90 s).
        d.set_values(&[
            (oids::OUTPUT_SOURCE, "integer", "5"),
            (oids::MINUTES_REMAINING, "integer", "3"),
        ]);
    });
}

#[test]
fn a_utility_loss_read_over_nut_fails_over_for_power() {
    use support::nut::{Nut, Options};
    let nut = Nut::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "type = \"nut\"\nurl = \"{}\"\nups = \"{}\"\npoll_interval = \"200ms\"\ntimeout = \"500ms\"",
        nut.url(),
        support::nut::UPS
    );
    let sensors = r#"
[[sensors]]
id = "ups-b3-1.on_battery"
zone = "b3-battery-room"
kind = "on_battery"
source = "ups"
variable = "ups.status"
status_flag = "OB"

[[sensors]]
id = "ups-b3-1.runtime"
zone = "b3-battery-room"
kind = "runtime"
source = "ups"
variable = "battery.runtime"
"#;
    utility_loss_fails_over(dir.path(), &source, sensors, || {
        // On battery with 3 minutes left: less than power_reserve (5 min) + budget (90 s).
        nut.set("battery.runtime", "180");
        nut.set("ups.status", "OB DISCHRG");
    });
}
