//! The event log against its public contract (`../shared/contract/events.md`, or the file
//! `FIREBREAK_EVENTS_CONTRACT` names), read as the raw JSON lines a tool or an operator
//! would read: the contract's envelope, events, fields and values, from a real agent that
//! detects a fire, fails over, declares safe to cut power and is reset.
//!
//! This is the one test that reads event lines as JSON by key; every other test reads them
//! as `firebreak::events::LoggedEvent` (tests/it/support/events.rs).

use crate::support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};
use support::agent::{post, start_sim, Agent};
use support::events::Event;

const TOKEN: &str = "contract-test-token-0123456789";
const AGENT: &str = "contract-b3";

/// One field of a contract event.
#[derive(Debug, Default)]
struct Field {
    name: String,
    /// Written only in some cases (`error` (when not ok)).
    conditional: bool,
    /// The values the contract lists for it (`cause` (`fire`, `power`, ...)).
    values: Vec<String>,
    /// The keys of each item of a list (`evidence`: list of `{sensor, ...}`).
    item_keys: Vec<String>,
}

#[derive(Debug, Default)]
struct Contract {
    /// The keys every line has.
    envelope: Vec<String>,
    /// Each event's fields, and the values its `from`/`to` may take (the "when" column).
    events: BTreeMap<String, (Vec<Field>, Vec<String>)>,
}

fn contract_path() -> PathBuf {
    std::env::var_os("FIREBREAK_EVENTS_CONTRACT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/contract/events.md")
        })
}

/// The backticked words of `text`, in order.
fn ticked(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, w)| w.to_string())
        .collect()
}

/// Splits at the commas outside backticks and parentheses.
fn items(cell: &str) -> Vec<String> {
    let (mut out, mut cur) = (Vec::new(), String::new());
    let (mut depth, mut tick) = (0, false);
    for c in cell.chars() {
        match c {
            '`' => tick = !tick,
            '(' if !tick => depth += 1,
            ')' if !tick => depth -= 1,
            ',' if !tick && depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The text inside the first parentheses of `s`.
fn parenthesised(s: &str) -> Option<&str> {
    let open = s.find('(')?;
    let close = s[open..].find(')')? + open;
    Some(&s[open + 1..close])
}

fn read_contract(path: &Path) -> Contract {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "the event log contract {}: {e} (set FIREBREAK_EVENTS_CONTRACT to its path)",
            path.display()
        )
    });
    let mut contract = Contract::default();
    let mut in_envelope = false;
    for line in text.lines() {
        if line.starts_with("Every line has") {
            in_envelope = true;
            continue;
        }
        if in_envelope {
            match line.strip_prefix("- ") {
                Some(item) => contract.envelope.push(ticked(item).remove(0)),
                None => in_envelope = false,
            }
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        let name = ticked(cells[1]).remove(0);
        let mut fields = Vec::new();
        for item in items(cells[2]) {
            let words = ticked(&item);
            let mut field = Field {
                name: words[0].clone(),
                ..Field::default()
            };
            if let Some(inner) = parenthesised(&item) {
                field.conditional = inner.starts_with("when");
                field.values = ticked(inner);
            }
            if let Some(list) = words.iter().find(|w| w.starts_with('{')) {
                field.item_keys = list
                    .trim_matches(|c| c == '{' || c == '}')
                    .split(',')
                    .map(|k| k.trim().to_string())
                    .collect();
            }
            fields.push(field);
        }
        let states: Vec<String> = parenthesised(cells[3])
            .map(|s| s.split(',').map(|w| w.trim().to_string()).collect())
            .unwrap_or_default();
        contract.events.insert(name, (fields, states));
    }
    assert_eq!(
        contract.envelope,
        ["ts", "event", "agent"],
        "the contract's envelope, as read from {}",
        path.display()
    );
    assert!(
        contract.events.len() >= 8,
        "the contract's events, as read from {}: {:?}",
        path.display(),
        contract.events.keys()
    );
    contract
}

/// `2026-11-25T10:31:02.417Z`: RFC 3339, UTC, milliseconds.
fn is_contract_ts(ts: &str) -> bool {
    ts.len() == "2026-11-25T10:31:02.417Z".len()
        && ts.ends_with('Z')
        && ts.as_bytes()[19] == b'.'
        && time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok()
}

/// A short, machine-readable `reason`: `stale`, `above:alarm_above`, `fault:frozen`.
fn is_machine_reason(r: &str) -> bool {
    !r.is_empty()
        && r.split(':').count() <= 2
        && r.split(':')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
}

/// Checks one line of a contract event against its fields; returns what is wrong.
fn check_fields(line: &Value, fields: &[Field], states: &[String]) -> Vec<String> {
    let mut wrong = Vec::new();
    for f in fields {
        let v = &line[f.name.as_str()];
        let present = line.get(&f.name).is_some();
        if f.conditional {
            // `error` (when not ok): written exactly when the step failed.
            if f.name == "error" && present != (line["ok"] == false) {
                wrong.push(format!("`error` present: {present}, ok: {}", line["ok"]));
            }
            continue;
        }
        if !present {
            wrong.push(format!("no `{}`", f.name));
            continue;
        }
        if !f.values.is_empty() && !f.values.iter().any(|a| v == a.as_str()) {
            wrong.push(format!("`{}` = {v}, not one of {:?}", f.name, f.values));
        }
        if (f.name == "from" || f.name == "to")
            && !states.is_empty()
            && !states.iter().any(|s| v == s.as_str())
        {
            wrong.push(format!("`{}` = {v}, not one of {states:?}", f.name));
        }
        if f.name == "value" && !(v.is_number() || v.is_null()) {
            wrong.push(format!("`value` = {v}: a number or null"));
        }
        if f.name == "reason" && !v.as_str().is_some_and(is_machine_reason) {
            wrong.push(format!("`reason` = {v} is not short and machine-readable"));
        }
        for item in v
            .as_array()
            .filter(|_| !f.item_keys.is_empty())
            .into_iter()
            .flatten()
        {
            for k in &f.item_keys {
                if item.get(k).is_none() {
                    wrong.push(format!("an item of `{}` has no `{k}`: {item}", f.name));
                }
            }
        }
    }
    wrong
}

fn room_config(dir: &Path, sim: &hardware_sim::PlayHandle, api_port: u16) -> PathBuf {
    let token_file = dir.join("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let text = format!(
        r#"
[agent]
name = "{AGENT}"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{api_port}"
token_file = "{token}"

{sensors}

[[zones]]
id = "b3-battery-room"
runbook = "evacuate-b3"
confirm = 2

[[runbooks]]
name = "evacuate-b3"

[[runbooks.steps]]
name = "announce failover"
type = "command"
argv = ["/bin/echo", "failed over {{{{zone}}}}"]
timeout = "5s"
"#,
        state = dir.join("state").display(),
        token = token_file.display(),
        sensors =
            support::room::room_sensors(sim.addr("env-b3").unwrap(), sim.addr("ups-b3-1").unwrap()),
    );
    let path = dir.join("firebreak.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_fire_failover_and_reset_write_every_contract_event_as_the_contract_says() {
    let contract = read_contract(&contract_path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt, "offgas-then-heat.toml", 2.0);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = room_config(dir.path(), &sim, port);
    let log = dir.path().join("state/events.jsonl");
    let mut agent = Agent::start(&config, &log);
    agent.wait_for_api(port);
    agent.wait_for("safe_to_cut_power", Duration::from_secs(90), |e| {
        matches!(e.event, Event::SafeToCutPower { .. })
    });
    let (code, body) = post(port, "/api/v1/zones/b3-battery-room/reset", Some(TOKEN));
    assert_eq!(code, 200, "{body}\n{}", agent.diagnostics());
    agent.wait_for("incident_reset", Duration::from_secs(10), |e| {
        matches!(e.event, Event::IncidentReset { .. })
    });
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
    rt.block_on(sim.shutdown());
    let d = agent.diagnostics();

    // The raw lines, as any reader of the file sees them.
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let extensions: BTreeSet<&str> = Event::names().iter().copied().collect();
    let mut seen = BTreeSet::new();
    // The incident ids up to the first reset (the fire burns on: a new incident may open
    // after it).
    let mut incidents = BTreeSet::new();
    let mut reset = false;
    for line in &lines {
        for key in &contract.envelope {
            assert!(line.get(key).is_some(), "no `{key}`: {line}");
        }
        let ts = line["ts"].as_str().unwrap_or_default();
        assert!(
            is_contract_ts(ts),
            "`ts` {ts}: RFC 3339 UTC with milliseconds"
        );
        assert_eq!(line["agent"], AGENT, "{line}");
        let name = line["event"].as_str().unwrap_or_default();
        match contract.events.get(name) {
            Some((fields, states)) => {
                let wrong = check_fields(line, fields, states);
                assert!(wrong.is_empty(), "{name}: {wrong:?}\n{line}\n{d}");
                seen.insert(name.to_string());
                if let Some(i) = line.get("incident").and_then(Value::as_str) {
                    if !reset {
                        incidents.insert(i.to_string());
                    }
                }
                reset |= name == "incident_reset";
                if let Some(resumed) = line.get("resumed") {
                    assert_eq!(resumed, true, "`resumed` is written only when true: {line}");
                }
            }
            // The project may add event types: they are the agent's own, never unknown.
            None => assert!(extensions.contains(name), "unknown event: {line}"),
        }
    }
    let missing: Vec<&String> = contract
        .events
        .keys()
        .filter(|n| !seen.contains(*n))
        .collect();
    assert!(missing.is_empty(), "not written: {missing:?}\n{d}");
    assert_eq!(
        incidents.len(),
        1,
        "one incident id from runbook_started through incident_reset: {incidents:?}\n{d}"
    );
}

#[test]
fn the_contract_is_read_whole() {
    // What the checks above rely on, as read from the document: if its layout changes,
    // this says so rather than the checks passing on nothing.
    let contract = read_contract(&contract_path());
    let field = |event: &str, name: &str| {
        let (fields, _) = &contract.events[event];
        fields
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{event}.{name}: {fields:?}"))
    };
    assert_eq!(
        field("runbook_started", "cause").values,
        ["fire", "power", "manual", "drill"]
    );
    assert!(field("step_finished", "error").conditional);
    assert!(!field("step_finished", "verified").conditional);
    assert_eq!(
        field("zone_level", "evidence").item_keys,
        ["sensor", "state", "value", "reason"]
    );
    assert_eq!(contract.events["sensor_state"].1.len(), 6);
    assert_eq!(contract.events["zone_level"].1.len(), 4);
    assert_eq!(contract.events["incident_reset"].0.len(), 3);
}

#[test]
fn every_contract_event_is_one_the_agent_knows() {
    let contract = read_contract(&contract_path());
    let names: BTreeSet<&str> = Event::names().iter().copied().collect();
    for event in contract.events.keys() {
        assert!(
            names.contains(event.as_str()),
            "{event} is in the contract but not in firebreak::events::Event"
        );
    }
}

#[test]
fn a_line_carries_ts_event_and_agent_as_the_contract_says() {
    let ts = UNIX_EPOCH + Duration::from_millis(1_795_689_062_417);
    let line = firebreak::events::render(
        "pangyo-b3",
        ts,
        &Event::SafeToCutPower {
            zone: "b3".into(),
            incident: "b3-1".into(),
            dry_run_steps: Vec::new(),
        },
    );
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "safe_to_cut_power");
    assert_eq!(v["agent"], "pangyo-b3");
    assert_eq!(v["zone"], "b3");
    assert_eq!(v["incident"], "b3-1");
    let ts = v["ts"].as_str().unwrap();
    assert!(is_contract_ts(ts), "{ts}");
    assert!(ts.contains(".417Z"), "{ts}");
}
