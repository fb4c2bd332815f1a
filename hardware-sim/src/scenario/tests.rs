use std::time::Duration;

use super::*;
use crate::registers::{DataType, Table, WordOrder};
use crate::timeline::{GoneMode, Presence};

const GOOD: &str = r#"
[scenario]
name = "offgas-then-heat"
description = "test"
duration = "60s"

[[devices]]
name = "env-b3"
protocol = "modbus-tcp"
listen = "127.0.0.1:0"
unit = 1

[[devices.registers]]
signal = "temp.row1"
table = "input"
address = 0
type = "i16"
word_order = "high_first"
scale = 0.1
offset = 0.0
timeline = [
  { at = "0s",  set = 23.0 },
  { at = "10s", ramp = 80.0, over = "20s" },
  { at = "40s", spike = 95.0, for = "300ms" },
  { at = "45s", fault = "exception" },
  { at = "50s", fault = "none" },
  { at = "50s", noise = 0.2, seed = 7 },
  { at = "55s", exponential = 150.0, tau = "20s" },
]

[[devices.events]]
at = "20s"
gone = true

[[devices.events]]
at = "30s"
gone = false
"#;

fn issues_of(text: &str) -> Vec<String> {
    match Scenario::from_toml_str(text) {
        Err(ScenarioError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
        Err(other) => panic!("expected validation issues, got {other}"),
        Ok(_) => panic!("expected validation issues, got a valid scenario"),
    }
}

#[test]
fn the_documented_example_is_valid() {
    let s = Scenario::from_toml_str(GOOD).unwrap();
    assert_eq!(s.duration, Duration::from_secs(60));
    let dev = &s.devices[0];
    assert_eq!(dev.unit, 1);
    assert_eq!(dev.listen, "127.0.0.1:0".parse().unwrap());
    let reg = &dev.registers[0];
    assert_eq!(reg.table, Table::Input);
    assert_eq!(reg.encoding.data_type, DataType::I16);
    assert_eq!(reg.timeline.segments().len(), 7);
    assert_eq!(
        dev.events.presence_at(Duration::from_secs(25)),
        Presence::Gone(GoneMode::Silent)
    );
}

#[test]
fn defaults_fill_protocol_listen_unit_scale_and_word_order() {
    let s = Scenario::from_toml_str(
        r#"
[scenario]
name = "x"
duration = "1s"
[[devices]]
name = "d"
[[devices.registers]]
signal = "s"
table = "holding"
address = 3
type = "u32"
timeline = [{ at = "0s", set = 1 }]
"#,
    )
    .unwrap();
    let d = &s.devices[0];
    assert_eq!(d.protocol, Protocol::ModbusTcp);
    assert_eq!(d.listen, "127.0.0.1:0".parse().unwrap());
    assert_eq!(d.unit, 1);
    let e = d.registers[0].encoding;
    assert_eq!(
        (e.scale, e.offset, e.word_order),
        (1.0, 0.0, WordOrder::HighFirst)
    );
}

#[test]
fn unknown_keys_are_parse_errors() {
    let text = GOOD.replace("unit = 1", "unit = 1\ncolour = \"red\"");
    match Scenario::from_toml_str(&text) {
        Err(ScenarioError::Parse(e)) => assert!(e.to_string().contains("colour")),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let text = r#"
[scenario]
name = ""
duration = "1 minute"

[[devices]]
name = "env"
protocol = "modbus-ascii"
listen = "localhost"
unit = 0

[[devices.registers]]
signal = "a"
table = "input"
address = 0
type = "i32"
timeline = [{ at = "0s", set = 1 }]

[[devices.registers]]
signal = "b"
table = "input"
address = 1
type = "u16"
timeline = [{ at = "0s", set = 1 }]

[[devices.registers]]
signal = "c"
table = "holding"
address = 65535
type = "u32"
scale = 0.0
timeline = [{ at = "0s", set = 1 }]

[[devices.registers]]
signal = "d"
table = "bogus"
address = 70000
type = "u17"
word_order = "middle"
timeline = [
  { at = "0s", set = 1 },
  { at = "10s", ramp = 5 },
  { at = "5s", set = 2 },
  { at = "6s", set = 2, spike = 3, for = "1s" },
  { at = "7s" },
  { at = "8s", fault = "smoke" },
  { at = "9s", set = 1, tau = "1s" },
]

[[devices.registers]]
signal = "a"
table = "holding"
address = 20
type = "u16"
timeline = [{ at = "1s", ramp = 4, over = "0s" }]

[[devices.events]]
at = "5s"
gone = true
mode = "explode"
"#;
    let issues = issues_of(text);
    let expected = [
        "scenario.name: must not be empty",
        "scenario.duration: `1 minute` has an unknown unit `minute` (use ns, us, ms, s, m, h or d)",
        "devices[0].protocol: unknown protocol `modbus-ascii` (expected modbus-tcp, modbus-rtu or mqtt)",
        "devices[0].listen: `localhost` is not an IP:port address like \"127.0.0.1:0\"",
        "devices[0].unit: 0 is not a unit id (1..=255)",
        "devices[0].registers[1].address: input 1..=1 overlaps devices[0].registers[0] (`a`, input 0..=1)",
        "devices[0].registers[2].scale: must be a finite number other than 0",
        "devices[0].registers[2].address: u32 at 65535 needs 2 registers and runs past 65535",
        "devices[0].registers[3].table: unknown table `bogus` (expected holding, input, coil or discrete)",
        "devices[0].registers[3].type: unknown type `u17` (expected u16, i16, u32, i32 or f32)",
        "devices[0].registers[3].word_order: unknown word order `middle` (expected high_first or low_first)",
        "devices[0].registers[3].address: 70000 is not a register address (0..=65535)",
        "devices[0].registers[3].timeline[1].over: `ramp` needs `over`",
        "devices[0].registers[3].timeline[3]: has more than one kind (set, spike): write one entry per kind",
        "devices[0].registers[3].timeline[4]: says nothing: expected one of set, ramp, exponential, spike, noise, fault, freeze, dropout, silence",
        "devices[0].registers[3].timeline[5].fault: unknown fault `smoke` (expected none, exception, busy, ffff, zeros, timeout)",
        "devices[0].registers[3].timeline[6].tau: `tau` only goes with `exponential`",
        "devices[0].registers[4].signal: signal `a` is used twice on this device",
        "devices[0].registers[4].timeline[0]: must start with a `set` at 0s so that every instant has a value",
        "devices[0].registers[4].timeline[0].over: must be greater than 0",
        "devices[0].events[0].mode: unknown mode `explode` (expected silent or refuse)",
    ];
    for e in &expected {
        assert!(
            issues.contains(&e.to_string()),
            "missing {e:?} in\n{}",
            issues.join("\n")
        );
    }
    assert_eq!(issues.len(), expected.len(), "{}", issues.join("\n"));
}

#[test]
fn segments_out_of_time_order_or_after_the_end_are_listed() {
    let text = r#"
[scenario]
name = "x"
duration = "30s"
[[devices]]
name = "d"
[[devices.registers]]
signal = "s"
table = "holding"
address = 0
type = "u16"
timeline = [
  { at = "0s", set = 1 },
  { at = "20s", set = 2 },
  { at = "10s", set = 3 },
  { at = "40s", fault = "busy" },
]
[[devices.events]]
at = "10s"
gone = true
[[devices.events]]
at = "5s"
gone = false
"#;
    assert_eq!(
        issues_of(text),
        vec![
            "devices[0].registers[0].timeline[3].at: 40s is after the end of the scenario (30s)",
            "devices[0].events[1].at: 5s is earlier than the entry before it (10s): entries must be in time order",
        ]
    );
    // fix the one above and the timeline check itself reports order
    let text = text.replace("\n  { at = \"40s\", fault = \"busy\" },", "");
    assert_eq!(
        issues_of(&text)[0],
        "devices[0].registers[0].timeline[2].at: 10s is earlier than the entry before it (20s): entries must be in time order"
    );
}

#[test]
fn duplicate_devices_and_ports_are_listed() {
    let dev = r#"
[[devices]]
name = "d"
listen = "127.0.0.1:15020"
[[devices.registers]]
signal = "s"
table = "holding"
address = 0
type = "u16"
timeline = [{ at = "0s", set = 1 }]
"#;
    let text = format!("[scenario]\nname = \"x\"\nduration = \"1s\"\n{dev}{dev}");
    assert_eq!(
        issues_of(&text),
        vec![
            "devices[1].name: device name `d` is used twice",
            "devices[1].listen: 127.0.0.1:15020 is already used by devices[0]",
        ]
    );
}

#[test]
fn a_scenario_without_devices_is_invalid() {
    assert_eq!(
        issues_of("[scenario]\nname = \"x\"\nduration = \"0s\"\n"),
        vec![
            "scenario.duration: must be greater than 0",
            "devices: a scenario needs at least one device"
        ]
    );
}

#[test]
fn a_seed_changes_the_noise_and_seed_zero_changes_nothing() {
    let text = r#"
[scenario]
name = "n"
duration = "60s"
[[devices]]
name = "d"
[[devices.registers]]
signal = "s"
table = "holding"
address = 0
type = "u16"
timeline = [{ at = "0s", set = 100 }, { at = "0s", noise = 10, seed = 7 }]
"#;
    let base = Scenario::from_toml_str(text).unwrap();
    let at = Duration::from_secs(3);
    let v = |s: &Scenario| s.devices[0].registers[0].timeline.value_at(at);
    assert_eq!(v(&base.clone().reseeded(0)), v(&base));
    assert_eq!(v(&base.clone().reseeded(42)), v(&base.clone().reseeded(42)));
    assert_ne!(v(&base.clone().reseeded(42)), v(&base));
}

#[test]
fn replicas_get_names_and_consecutive_ports() {
    let s = Scenario::from_toml_str(GOOD).unwrap();
    let r = s.clone().replicated(3, Some(15000)).unwrap();
    let names: Vec<_> = r.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["env-b3", "env-b3-2", "env-b3-3"]);
    let ports: Vec<_> = r.devices.iter().map(|d| d.listen.port()).collect();
    assert_eq!(ports, [15000, 15001, 15002]);
    assert!(s.clone().replicated(0, None).is_err());
    assert_eq!(s.replicated(2, None).unwrap().devices.len(), 2);
}

const ROOMY: &str = r#"
[scenario]
name = "room"
duration = "10m"

[room]
ambient = 23.0
offgas_at = "1m"
runaway_at = "5m"
ups_in_room = ["ups"]
ups_lost_after = "1m"

[[devices]]
name = "env"
[[devices.registers]]
signal = "air"
table = "input"
address = 0
type = "i16"
scale = 0.1
timeline = [{ at = "0s", room = "air" }, { at = "0s", noise = 0.1, seed = 3 }, { at = "2m", spike = 90.0, for = "1s" }]

[[devices]]
name = "ups"
[[devices.registers]]
signal = "cell"
table = "holding"
address = 0
type = "i16"
timeline = [{ at = "0s", room = "cell" }]
"#;

#[test]
fn room_entries_follow_the_model_and_the_ups_in_the_room_is_lost() {
    let s = Scenario::from_toml_str(ROOMY).unwrap();
    let air = &s.devices[0].registers[0].timeline;
    // Spikes and noise still lay over the model's values.
    assert_eq!(air.value_at(Duration::from_secs(120)), 90.0);
    let at_six = air.base_value_at(Duration::from_secs(360));
    assert!((at_six - (23.0 + 13.0)).abs() < 0.01, "{at_six}");
    let cell = &s.devices[1].registers[0].timeline;
    assert_eq!(cell.value_at(Duration::from_secs(60)), 25.0);
    assert!(cell.value_at(Duration::from_secs(400)) > 150.0);
    let gone = s.devices[1].events.events();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].at, Duration::from_secs(360));
}

#[test]
fn room_entries_are_checked() {
    let start = ROOMY.find("[room]").unwrap();
    let end = ROOMY.find("[[devices]]").unwrap();
    let no_room = format!("{}{}", &ROOMY[..start], &ROOMY[end..]);
    let err = Scenario::from_toml_str(&no_room).unwrap_err().to_string();
    assert!(
        err.contains("devices[0].registers[0].timeline[0].room: needs a [room] section"),
        "{err}"
    );
    let bad_role = ROOMY.replace(r#"room = "cell""#, r#"room = "lava""#);
    let err = Scenario::from_toml_str(&bad_role).unwrap_err().to_string();
    assert!(
        err.contains("devices[1].registers[0].timeline[0].room: unknown role `lava`"),
        "{err}"
    );
    let mixed = ROOMY.replace(
        r#"[{ at = "0s", room = "cell" }]"#,
        r#"[{ at = "0s", room = "cell" }, { at = "1m", set = 1 }]"#,
    );
    let err = Scenario::from_toml_str(&mixed).unwrap_err().to_string();
    assert!(
        err.contains("takes no other room, set, ramp or exponential"),
        "{err}"
    );
    let stranger = ROOMY.replace(r#"ups_in_room = ["ups"]"#, r#"ups_in_room = ["nobody"]"#);
    let err = Scenario::from_toml_str(&stranger).unwrap_err().to_string();
    assert!(
        err.contains("room.ups_in_room[0]: no device named `nobody`"),
        "{err}"
    );
}

#[test]
fn durations_read_like_the_agents_and_a_bad_one_names_its_key() {
    let text = r#"
[scenario]
name = "x"
duration = "1d"
[[devices]]
name = "d"
[[devices.registers]]
signal = "s"
table = "holding"
address = 0
type = "u16"
timeline = [{ at = "0", set = 1 }, { at = "1h", ramp = 2, over = "0.5d" }]
"#;
    let s = Scenario::from_toml_str(text).unwrap();
    assert_eq!(s.duration, Duration::from_secs(86_400));
    let timeline = &s.devices[0].registers[0].timeline;
    assert_eq!(timeline.value_at(Duration::from_secs(3600 + 6 * 3600)), 1.5);

    let bad = text.replace(r#"over = "0.5d""#, r#"over = "5""#);
    assert_eq!(
        issues_of(&bad),
        vec![
            "devices[0].registers[0].timeline[1].over: `5` has no unit (write e.g. \"5s\" or \"5ms\"; only 0 goes without one)"
        ]
    );
}
