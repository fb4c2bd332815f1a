//! The config contract: the reference file passes verbatim, a broken file is reported in
//! full (every problem, with its key path and line), and the CLI exits as documented.

use firebreak::config::{load_str, Problem};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn manifest(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

#[test]
fn the_documented_example_passes_and_matches_the_contract() {
    let text = std::fs::read_to_string(manifest("config/firebreak.toml")).unwrap();
    let loaded = load_str(&text, "config/firebreak.toml", no_env())
        .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    assert_eq!(loaded.config.agent.name, "pangyo-b3");
    assert_eq!(loaded.config.sources.len(), 3);
    assert_eq!(loaded.config.sensors.len(), 7);
    assert_eq!(loaded.config.runbooks[0].steps.len(), 5);
    // The shared contract sits beside the checkout (as in CI); the copy must not drift.
    let shared = manifest("../shared/contract/firebreak.toml");
    if let Ok(contract) = std::fs::read_to_string(&shared) {
        assert_eq!(
            text,
            contract,
            "config/firebreak.toml differs from {}",
            shared.display()
        );
    } else {
        eprintln!("note: {} not found; compared nothing", shared.display());
    }
}

/// The integrations contract's `modbus_write` steps, as written there: its `bms-b3`
/// source and its `protect-b3` runbook (with the zone keys that use it) load verbatim.
/// The rest of that file (NUT, SNMP, BGP, PowerDNS, paging steps) is other work.
#[test]
fn the_integrations_contract_modbus_write_steps_load_as_written() {
    let shared = manifest("../shared/contract/integrations.toml");
    let Ok(text) = std::fs::read_to_string(&shared) else {
        eprintln!("note: {} not found; compared nothing", shared.display());
        return;
    };
    let doc: toml_edit::DocumentMut = text.parse().expect("the contract is TOML");
    let mut out = toml_edit::DocumentMut::new();
    out["agent"] = doc["agent"].clone();
    let pick = |key: &str, keep: &dyn Fn(&toml_edit::Table) -> bool| {
        let mut a = toml_edit::ArrayOfTables::new();
        for t in doc[key].as_array_of_tables().expect(key).iter() {
            if keep(t) {
                a.push(t.clone());
            }
        }
        toml_edit::Item::ArrayOfTables(a)
    };
    out["sources"] = pick("sources", &|t| t["name"].as_str() == Some("bms-b3"));
    out["runbooks"] = pick("runbooks", &|t| t["name"].as_str() == Some("protect-b3"));
    let zone = &doc["zones"][0];
    let text = format!(
        r#"{out}
[[sensors]]
id = "b3.temp.bms"
zone = "b3-battery-room"
kind = "temperature"
source = "bms-b3"
register = {{ table = "input", address = 22, type = "i16" }}

[[zones]]
id = "b3-battery-room"
runbook = "evacuate-b3"
prepare_runbook = {prepare}
prepare_cooldown = {cooldown}

[[runbooks]]
name = "evacuate-b3"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"
"#,
        prepare = zone["prepare_runbook"].as_value().unwrap(),
        cooldown = zone["prepare_cooldown"].as_value().unwrap(),
    );
    let loaded = load_str(&text, "integrations.toml", no_env())
        .unwrap_or_else(|e| panic!("{:#?}\n{text}", e.errors));
    let summary = firebreak::agent::summary(Path::new("integrations.toml"), &loaded.config);
    for line in [
        "    prepare protect-b3 -> stop charging the B3 strings: write coil 12 := 0 on bms-b3 (verify discrete 12 == 0)",
        "    undo protect-b3 -> resume charging: write coil 12 := 1 on bms-b3 (verify by reading it back)",
    ] {
        assert!(summary.contains(line), "missing `{line}`:\n{summary}");
    }
}

#[test]
fn the_integrations_contract_is_accepted_as_written_and_its_copy_matches() {
    let text = std::fs::read_to_string(manifest("config/integrations.toml")).unwrap();
    let loaded = load_str(&text, "config/integrations.toml", no_env())
        .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    let types: Vec<&str> = loaded
        .config
        .sources
        .iter()
        .map(|s| s.spec.type_name())
        .collect();
    assert_eq!(types, ["modbus", "nut", "snmp", "snmp"]);
    assert_eq!(loaded.config.feeds.len(), 1);
    let steps: Vec<&str> = loaded
        .config
        .runbooks
        .iter()
        .flat_map(|r| r.steps.iter().chain(&r.undo_steps))
        .map(|s| s.action.type_name())
        .collect();
    for t in [
        "modbus_write",
        "bgp_withdraw",
        "powerdns",
        "alertmanager",
        "pagerduty",
        "nut_fsd",
    ] {
        assert!(steps.contains(&t), "{t} in {steps:?}");
    }
    let shared = manifest("../shared/contract/integrations.toml");
    if let Ok(contract) = std::fs::read_to_string(&shared) {
        assert_eq!(
            text,
            contract,
            "config/integrations.toml differs from {}",
            shared.display()
        );
    } else {
        eprintln!("note: {} not found; compared nothing", shared.display());
    }
    // check-config: exit 0, the summary names what the file configures, missing secret
    // files are warnings.
    let out = firebreak(&[
        "check-config",
        "--config",
        manifest("config/integrations.toml").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "nut-b3           nut nut://10.20.0.31:3493 ups ups-b3-1",
        "snmp-ups-b3-3    snmp v3 user firebreak (sha256, priv aes128)",
        "b3-pdu-a (B3 PDU A, breaker 3-14 in panel LV-B3): zones b3-battery-room",
        "prepare protect-b3 -> stop charging the B3 strings: write coil 12 := 0 on bms-b3 (verify discrete 12 == 0)",
        "warning: sources[1].password_file: secret file /etc/firebreak/nut.password",
    ] {
        assert!(stdout.contains(line), "{line:?} in\n{stdout}");
    }
}

/// The BACnet contract extension: `config/bacnet.toml` is the shared contract verbatim and
/// loads as its comments say (a confirmed panel zone, a pre-alarm relay, a polled BMS).
#[test]
fn the_bacnet_example_passes_and_matches_the_contract() {
    use firebreak::config::{Kind, SensorInput, SourceSpec};
    let text = std::fs::read_to_string(manifest("config/bacnet.toml")).unwrap();
    let loaded = load_str(&text, "config/bacnet.toml", no_env())
        .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    let c = &loaded.config;
    assert_eq!(c.sources.len(), 2);
    assert!(c
        .sources
        .iter()
        .all(|s| matches!(s.spec, SourceSpec::Bacnet(_))));
    assert_eq!(c.sensors.len(), 4);
    let zone3 = c.sensors.iter().find(|s| s.id == "b3.panel.zone3").unwrap();
    assert_eq!(zone3.kind, Kind::AlarmInput);
    assert_eq!(zone3.detect.alarm_above, Some(0.5));
    assert_eq!(zone3.detect.critical_above, Some(0.5));
    let SensorInput::Bacnet(input) = &zone3.input else {
        panic!("a bacnet sensor")
    };
    assert_eq!(input.object.to_string(), "multi-state-input,12");
    assert_eq!(input.equals, Some(3.0));
    let relay = c
        .sensors
        .iter()
        .find(|s| s.id == "b3.panel.prealarm")
        .unwrap();
    assert_eq!(relay.detect.critical_above, None);
    // 3 x the panel's 5 s liveness read.
    assert_eq!(relay.detect.stale_after, std::time::Duration::from_secs(15));
    let shared = manifest("../shared/contract/bacnet.toml");
    if let Ok(contract) = std::fs::read_to_string(&shared) {
        assert_eq!(
            text,
            contract,
            "config/bacnet.toml differs from {}",
            shared.display()
        );
    } else {
        eprintln!("note: {} not found; compared nothing", shared.display());
    }
    // check-config accepts it as written (its secret files are only warnings).
    let out = Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["check-config", "--config"])
        .arg(manifest("config/bacnet.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("bacnet 10.20.0.60:47808 device 3101, COV (confirmed"),
        "{stdout}"
    );
}

#[test]
fn the_demo_config_is_valid() {
    let text = std::fs::read_to_string(manifest("config/demo.toml")).unwrap();
    load_str(&text, "config/demo.toml", no_env()).unwrap_or_else(|e| panic!("{:#?}", e.errors));
}

#[test]
fn the_traffic_example_in_the_runbook_docs_is_valid_and_describes_each_step() {
    let doc = std::fs::read_to_string(manifest("docs/runbooks.md")).unwrap();
    let section = doc
        .split("### Example: moving a service by anycast, PowerDNS and HAProxy")
        .nth(1)
        .expect("the example section in docs/runbooks.md");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|t| t.split("```").next())
        .expect("a toml block in the example section");
    let text = format!(
        "[agent]\nname = \"b3\"\n\n[[sources]]\nname = \"env\"\ntype = \"modbus\"\n\
         url = \"tcp://127.0.0.1:502\"\nunit = 1\n\n[[sensors]]\nid = \"t\"\n\
         zone = \"b3-battery-room\"\nkind = \"temperature\"\nsource = \"env\"\n\
         register = {{ table = \"input\", address = 0, type = \"i16\" }}\n\n{example}"
    );
    let config = load_str(&text, "docs/runbooks.md", no_env())
        .unwrap_or_else(|e| panic!("{:#?}", e.errors))
        .config;
    let described: Vec<String> = config
        .runbooks
        .iter()
        .flat_map(|r| r.steps.iter().chain(r.undo_steps.iter()))
        .map(|s| s.action.describe())
        .collect();
    let quoted = "bgp_withdraw withdraw 203.0.113.0/24: disable protocol anycast_b3 @ \
                  unix:///run/bird/bird.ctl; verified on unix:///run/bird-edge/bird.ctl \
                  (routes from 10.20.0.1)";
    assert!(described.iter().any(|d| d == quoted), "{described:#?}");
    assert!(
        described
            .iter()
            .any(|d| d
                .starts_with("bgp_withdraw announce 198.51.100.128/25: enable protocol bulk_b3")),
        "{described:#?}"
    );
    assert!(
        described.iter().any(|d| d
            == "powerdns api.example.com. A -> 198.51.100.21 (ttl 30) via \
                http://10.20.0.54:8081 server localhost zone example.com. only if \
                [192.0.2.21]; verified @ 10.20.0.54:53, 10.30.0.54:53"),
        "{described:#?}"
    );
}

const BROKEN: &str = r#"
[agent]
name = "x"
colour = "red"

[[sources]]
name = "env"
type = "modbus"
url = "tcp://127.0.0.1:502"
poll_interval = "5"

[[sources]]
name = "env"
type = "modbus"
url = "tcp://127.0.0.1:503"

[[sensors]]
id = "t1"
zone = "z"
kind = "temperature"
source = "env"
register = { table = "input", address = 65535, type = "u32" }

[[sensors]]
id = "t2"
zone = "z"
kind = "temperature"
source = "ghost"
register = { table = "input", address = 0, type = "f32", bit = 3 }
warn_above = 60.0
alarm_above = 50.0

[[sensors]]
id = "t3"
zone = "z"
kind = "smoke"
source = "env"
register = { table = "input", address = 4, type = "u32", bit = 32 }

[[zones]]
id = "z"

[[zones]]
id = "y"
runbook = "missing"

[[runbooks]]
name = "rb"
[[runbooks.steps]]
name = "s"
type = "dns_update"
server = "127.0.0.1:53"
zone = "example.com"
record = "app.example.com"
rtype = "A"
values = ["1.2.3.4"]
timeout = "soon"
[[runbooks.steps]]
name = "hook"
type = "http"
url = "https://hooks.example.com/{{nope}}"
"#;

fn problems() -> Vec<Problem> {
    load_str(BROKEN, "broken.toml", no_env())
        .expect_err("the broken config must be refused")
        .errors
}

fn assert_problem(problems: &[Problem], path: &str, needle: &str, line: usize) {
    let found = problems
        .iter()
        .find(|p| p.path == path && p.message.contains(needle));
    let p = found.unwrap_or_else(|| {
        panic!("no problem at `{path}` mentioning `{needle}`; got:\n{problems:#?}")
    });
    assert_eq!(p.line, Some(line), "line of {p}");
}

#[test]
fn every_problem_in_a_broken_file_is_listed_with_its_path_and_line() {
    let p = problems();
    assert_problem(&p, "agent.colour", "unknown key", 4);
    assert_problem(&p, "sources[0].poll_interval", "no unit", 10);
    assert_problem(&p, "sources[1].name", "duplicate source name", 13);
    assert_problem(&p, "sensors[0].register.address", "runs past 65535", 22);
    assert_problem(&p, "sensors[1].source", "unknown source `ghost`", 28);
    assert_problem(&p, "sensors[1].register.bit", "f32", 29);
    assert_problem(&p, "sensors[1].alarm_above", "warn < alarm < critical", 31);
    assert_problem(&p, "sensors[2].register.bit", "out of range", 38);
    assert_problem(&p, "zones[0].runbook", "has no runbook", 40);
    assert_problem(&p, "zones[1].runbook", "unknown runbook `missing`", 45);
    assert_problem(&p, "runbooks[0].steps[0].timeout", "not a duration", 57);
    assert_problem(&p, "runbooks[0].steps[1].url", "unknown placeholder", 61);
    assert_eq!(p.len(), 12, "exactly these problems, no noise:\n{p:#?}");
}

#[test]
fn environment_overrides_the_file() {
    let text = std::fs::read_to_string(manifest("config/firebreak.toml")).unwrap();
    let env = HashMap::from([("FIREBREAK__AGENT__DRY_RUN".to_string(), "true".to_string())]);
    let loaded = load_str(&text, "config/firebreak.toml", env).unwrap();
    assert!(loaded.config.agent.dry_run);
}

#[test]
fn a_toml_syntax_error_names_its_line() {
    let err = load_str(
        "[agent]\nname = \"x\"\ndry_run = tru\n",
        "bad.toml",
        no_env(),
    )
    .unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert_eq!(err.errors[0].line, Some(3), "{:?}", err.errors);
}

#[test]
fn a_wrongly_typed_value_names_its_path() {
    let err = load_str(
        "[agent]\nname = \"x\"\ndry_run = \"maybe\"\n",
        "bad.toml",
        no_env(),
    )
    .unwrap_err();
    assert_eq!(err.errors[0].path, "agent.dry_run", "{:?}", err.errors);
    assert_eq!(err.errors[0].line, Some(3));
}

fn firebreak(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_config_exits_0_on_the_contract_and_64_on_a_broken_file() {
    let ok = firebreak(&[
        "check-config",
        "--config",
        manifest("config/firebreak.toml").to_str().unwrap(),
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("evacuate-b3") && out.contains("b3-battery-room"),
        "summary: {out}"
    );
    assert!(
        out.contains("warning: runbooks[0].steps[0].tsig_secret_file"),
        "missing secrets are warnings: {out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, BROKEN).unwrap();
    let bad = firebreak(&["check-config", "--config", broken.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(64));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        12,
        "{err}"
    );
    assert!(
        err.contains("error: sensors[0].register.address: "),
        "{err}"
    );
}

#[test]
fn run_refuses_to_start_when_a_secret_file_is_missing() {
    let out = firebreak(&[
        "run",
        "--allow-root",
        "--config",
        manifest("config/firebreak.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runbooks[0].steps[0].tsig_secret_file"),
        "{err}"
    );
}

#[test]
fn help_explains_each_command() {
    let out = String::from_utf8_lossy(&firebreak(&["--help"]).stdout).to_string();
    for cmd in ["run", "check-config", "demo"] {
        assert!(out.contains(cmd), "--help lists {cmd}: {out}");
    }
}

#[test]
fn version_names_the_package_version_and_the_git_commit_it_was_built_from() {
    let out = String::from_utf8_lossy(&firebreak(&["--version"]).stdout).to_string();
    // The tests run from the checkout the binary was built from, so its HEAD is the commit.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let want = format!("firebreak {} (commit {head})", env!("CARGO_PKG_VERSION"));
    assert_eq!(out.trim(), want);
}

/// The build script (src/build.rs) as cargo built it for this test run.
fn build_script() -> std::path::PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_firebreak"));
    let build = bin.parent().unwrap().join("build");
    std::fs::read_dir(&build)
        .unwrap()
        .filter_map(|e| {
            let script = e.ok()?.path().join("build-script-build");
            let modified = script.metadata().ok()?.modified().ok()?;
            script
                .parent()?
                .file_name()?
                .to_str()?
                .starts_with("firebreak-")
                .then_some((modified, script))
        })
        .max()
        .map(|(_, script)| script)
        .unwrap_or_else(|| panic!("no firebreak-*/build-script-build in {}", build.display()))
}

#[test]
fn outside_a_git_checkout_or_without_git_the_commit_is_unknown_and_the_build_goes_on() {
    let script = build_script();
    let dir = tempfile::tempdir().unwrap();
    for path in [std::env::var("PATH").unwrap(), String::new()] {
        let out = Command::new(&script)
            .current_dir(dir.path())
            .env("PATH", &path)
            .env_remove("FIREBREAK_GIT_COMMIT")
            .env("GIT_CEILING_DIRECTORIES", dir.path().parent().unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "PATH={path:?}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout
                .lines()
                .any(|l| l == "cargo:rustc-env=FIREBREAK_GIT_COMMIT=unknown"),
            "PATH={path:?}: {stdout}"
        );
    }
}
