//! Redundant agents (`[cluster]`) with a real etcd: two real `firebreak` binaries watch
//! the same simulated room; a fire runs the zone's runbook once, a killed leader is
//! replaced without repeating a step, and a lost etcd follows `on_cluster_loss`.

use crate::support;

use firebreak::api::status::{Cluster, Status};
use firebreak::cluster::Role;
use firebreak::config::OnClusterLoss;
use firebreak::incident::Stage;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::{get, post, start_sim, status, Agent};
use support::etcd::Etcd;
use support::events::{count, Event, LoggedEvent};
use support::receiver::Receiver;
use support::room::{knot, room_config_with};

const ZONE: &str = "b3-battery-room";
const TOKEN: &str = "cluster-operator-token";

struct Node {
    agent: Agent,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Writes a room config for node `name` (its own state dir and API port) with the room's
/// DNS step, `steps` after it, and `[cluster]` pointing at `etcd` (plus `cluster_keys`);
/// starts the agent.
fn start_node(
    name: &str,
    sim: &hardware_sim::PlayHandle,
    dns: std::net::SocketAddr,
    etcd: &str,
    steps: &str,
    cluster_keys: &str,
) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    // A 4 s lease: takeovers come quickly, and a loaded CI machine does not lose a
    // live leader's lease (2 s did, once). A test may set its own.
    let ttl = if cluster_keys.contains("lease_ttl") {
        ""
    } else {
        "lease_ttl = \"4s\""
    };
    let extra = format!(
        r#"{steps}
[cluster]
etcd = ["{etcd}"]
node = "{name}"
{ttl}
namespace = "/firebreak-test"
{cluster_keys}
"#
    );
    let config: PathBuf = room_config_with(
        dir.path(),
        sim.addr("env-b3").unwrap(),
        sim.addr("ups-b3-1").unwrap(),
        dns,
        port,
        &extra,
    );
    // Every node takes the operator token (POSTs need it).
    let token = dir.path().join("api.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap().replacen(
        "[api]\n",
        &format!("[api]\ntoken_file = \"{}\"\n", token.display()),
        1,
    );
    // `steps` that define the runbook `prepare-b3` make it the zone's prepare runbook.
    if steps.contains("name = \"prepare-b3\"") {
        text = text.replacen(
            "power_reserve = \"5m\"\n",
            "power_reserve = \"5m\"\nprepare_runbook = \"prepare-b3\"\n",
            1,
        );
    }
    std::fs::write(&config, text).unwrap();
    let agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));
    agent.wait_for_api(port);
    Node {
        agent,
        port,
        _dir: dir,
    }
}

fn http_step(name: &str, url: &str) -> String {
    format!(
        r#"
[[runbooks.steps]]
name = "{name}"
type = "http"
method = "POST"
url = "{url}"
body = '{{"incident":"{{{{incident}}}}"}}'
expect_status = [200]
retries = 0
"#
    )
}

/// `runbook_started` lines that open a run (not a resume: a leader whose lease ran out
/// under load and that won the zone again resumes the same incident, `resumed: true`).
fn fresh_starts(events: &[LoggedEvent]) -> usize {
    count(events, |e| {
        matches!(e.event, Event::RunbookStarted { resumed: false, .. })
    })
}

/// The incident ids of every `runbook_started` line.
fn incidents(events: &[LoggedEvent]) -> std::collections::BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::RunbookStarted { incident, .. } => Some(incident.clone()),
            _ => None,
        })
        .collect()
}

/// A `cluster_role` line with the role `role`.
fn is_role(e: &LoggedEvent, role: Role) -> bool {
    matches!(&e.event, Event::ClusterRole { role: r, .. } if *r == role)
}

/// A finished step of the type `step_type`.
fn is_step_of_type(e: &LoggedEvent, step_type: &str) -> bool {
    matches!(&e.event, Event::StepFinished { step_type: t, .. } if t == step_type)
}

fn is_safe(e: &LoggedEvent) -> bool {
    matches!(e.event, Event::SafeToCutPower { .. })
}

/// The incident an event names (panics for one that names none).
fn incident(e: &LoggedEvent) -> &str {
    e.event
        .incident()
        .unwrap_or_else(|| panic!("no incident: {e:?}"))
}

/// The status's `[cluster]` part (panics for an agent without one).
fn cluster(s: &Status) -> &Cluster {
    s.cluster
        .as_ref()
        .unwrap_or_else(|| panic!("no cluster: {s:?}"))
}

/// Waits until one of the agents writes an event matching `pred`; returns its index.
fn first_to(
    nodes: &mut [&mut Node],
    what: &str,
    deadline: Duration,
    pred: impl Fn(&LoggedEvent) -> bool,
) -> usize {
    let until = Instant::now() + deadline;
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if n.agent.events().iter().any(&pred) {
                return i;
            }
        }
        if Instant::now() > until {
            let logs: Vec<String> = nodes.iter().map(|n| n.agent.diagnostics()).collect();
            panic!(
                "timed out after {deadline:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn posts_to(receiver: &Receiver, path: &str) -> usize {
    receiver.posts().iter().filter(|p| p.path == path).count()
}

/// A single-member etcd, Knot, an HTTP receiver answering `status`, and the simulator
/// playing the off-gas-then-heat fire at 2x.
struct Fire {
    etcd: Etcd,
    knot: support::knot::Knot,
    receiver: Receiver,
    rt: tokio::runtime::Runtime,
    sim: hardware_sim::PlayHandle,
}

fn fire(status: u16) -> Fire {
    let etcd = Etcd::start();
    let knot = knot();
    let receiver = Receiver::start(status);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt, "offgas-then-heat.toml", 2.0);
    Fire {
        etcd,
        knot,
        receiver,
        rt,
        sim,
    }
}

/// Stops every node (each must exit 0), then the simulator.
fn shut_down(rt: tokio::runtime::Runtime, sim: hardware_sim::PlayHandle, nodes: &mut [&mut Node]) {
    for n in nodes.iter_mut() {
        let diagnostics = n.agent.diagnostics();
        assert_eq!(n.agent.stop(), Some(0), "{diagnostics}");
    }
    rt.block_on(sim.shutdown());
}

fn diagnose(a: &Node, b: &Node) -> String {
    format!("{}\n{}", a.agent.diagnostics(), b.agent.diagnostics())
}

fn all_events(nodes: &[&Node]) -> Vec<LoggedEvent> {
    nodes.iter().flat_map(|n| n.agent.events()).collect()
}

#[test]
fn two_agents_one_fire_run_the_runbook_exactly_once() {
    let Fire {
        etcd,
        knot,
        receiver,
        rt,
        sim,
    } = fire(200);
    let steps = http_step("tell the incident channel", &receiver.url("/incident"));
    let serial_before = knot.soa_serial();
    let mut a = start_node(
        "a",
        &sim,
        knot.addr(),
        &etcd.url(),
        &steps,
        r#"on_cluster_loss = "act""#,
    );
    let mut b = start_node(
        "b",
        &sim,
        knot.addr(),
        &etcd.url(),
        &steps,
        r#"on_cluster_loss = "act""#,
    );

    let leader = first_to(
        &mut [&mut a, &mut b],
        "safe_to_cut_power",
        Duration::from_secs(120),
        is_safe,
    );
    let (lead, other) = if leader == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    // The other agent has seen the finished incident and stood down.
    other.agent.wait_for(
        "the follower's cluster_role done",
        Duration::from_secs(30),
        |e| is_role(e, Role::Done),
    );

    let events = all_events(&[lead, other]);
    let diag = || {
        format!(
            "{}\n{}",
            lead.agent.diagnostics(),
            other.agent.diagnostics()
        )
    };
    assert_eq!(
        fresh_starts(&events),
        1,
        "one runbook run across both agents\n{}",
        diag()
    );
    assert_eq!(incidents(&events).len(), 1, "one incident\n{}", diag());
    assert_eq!(
        count(&events, |e| is_step_of_type(e, "dns_update")),
        1,
        "{}",
        diag()
    );
    assert_eq!(
        posts_to(&receiver, "/incident"),
        1,
        "the receiver counts one"
    );
    assert_eq!(
        knot.soa_serial(),
        serial_before + 1,
        "one DNS UPDATE reached Knot"
    );
    assert_eq!(
        knot.dig("app.example.test", "A"),
        vec!["198.51.100.20".to_string()]
    );
    assert_eq!(count(&lead.agent.events(), |e| is_role(e, Role::Leader)), 1);
    assert_eq!(
        count(&other.agent.events(), |e| is_role(e, Role::Leader)),
        0,
        "the follower never led\n{}",
        diag()
    );

    // The leader's fencing revision went out with the webhook.
    let fence = receiver.posts()[0]
        .header("Firebreak-Fence")
        .expect("Firebreak-Fence header")
        .parse::<i64>()
        .expect("a revision");
    assert!(fence > 0);

    // Status: role and peers.
    for n in [&*lead, &*other] {
        let s = status(n.port);
        let cluster = cluster(&s);
        assert!(cluster.reachable, "{s:?}");
        assert_eq!(cluster.zones[ZONE].role, Role::Done, "{s:?}");
        let peers: Vec<&str> = cluster.peers.iter().map(String::as_str).collect();
        assert!(
            peers.contains(&"a") && peers.contains(&"b"),
            "both agents are listed as peers: {s:?}"
        );
    }
    let (_, metrics) = get(lead.port, "/metrics");
    assert!(
        metrics.contains("firebreak_cluster_leader{role=\"done\",zone=\"b3-battery-room\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("firebreak_cluster_peers 2"), "{metrics}");

    shut_down(rt, sim, &mut [&mut a, &mut b]);
    drop(etcd);
}

#[test]
fn a_three_member_etcd_with_one_member_down_still_elects_one_leader() {
    let mut members = Etcd::start_cluster(3);
    let urls: Vec<String> = members.iter().map(Etcd::url).collect();
    // One member gone before the fire: the other two keep the quorum.
    members[0].stop();
    let knot = knot();
    let receiver = Receiver::start(200);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt, "offgas-then-heat.toml", 2.0);
    let steps = http_step("tell the incident channel", &receiver.url("/incident"));
    // `start_node` takes one URL; the list goes in as the TOML array's inside.
    let etcd = urls.join("\", \"");
    // The default lease: this test is about the quorum, not about a quick takeover.
    let ttl = r#"lease_ttl = "5s""#;
    let mut a = start_node("a", &sim, knot.addr(), &etcd, &steps, ttl);
    let mut b = start_node("b", &sim, knot.addr(), &etcd, &steps, ttl);

    let leader = first_to(
        &mut [&mut a, &mut b],
        "safe_to_cut_power",
        Duration::from_secs(120),
        is_safe,
    );
    let other = if leader == 0 { &mut b } else { &mut a };
    other.agent.wait_for(
        "the follower's cluster_role done",
        Duration::from_secs(30),
        |e| is_role(e, Role::Done),
    );
    let events = all_events(&[&a, &b]);
    let diag = || format!("{}\n{}", a.agent.diagnostics(), b.agent.diagnostics());
    assert_eq!(fresh_starts(&events), 1, "{}", diag());
    assert_eq!(incidents(&events).len(), 1, "one incident\n{}", diag());
    // Every step ran once, whatever leadership changes there were.
    assert_eq!(
        count(&events, |e| matches!(e.event, Event::StepFinished { .. })),
        2,
        "the DNS step and the HTTP step, once each\n{}",
        diag()
    );
    assert_eq!(
        count(&events, |e| matches!(e.event, Event::ClusterLost { .. })),
        0,
        "{}",
        diag()
    );
    assert_eq!(posts_to(&receiver, "/incident"), 1);

    shut_down(rt, sim, &mut [&mut a, &mut b]);
}

/// Two agents run a fire whose incident channel (an HTTP step) answers 503: the
/// runbook ends not safe to cut power. Returns (leader, follower) and the receiver's
/// first failed call counted.
fn unsafe_first_run(a: &mut Node, b: &mut Node, receiver: &Receiver) -> usize {
    let leader = first_to(
        &mut [&mut *a, &mut *b],
        "the first run's end",
        Duration::from_secs(120),
        |e| matches!(e.event, Event::RunbookFinished { .. }),
    );
    let other = if leader == 0 { &mut *b } else { &mut *a };
    other.agent.wait_for(
        "the follower's cluster_role done",
        Duration::from_secs(30),
        |e| is_role(e, Role::Done),
    );
    assert_eq!(posts_to(receiver, "/incident"), 1);
    leader
}

/// Waits until the agent's status says the zone is safe to cut power with no runbook
/// running.
fn wait_safe(n: &Node) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status(n.port);
        let zone = &st.zones[0];
        if zone.safe_to_cut_power && !zone.runbook_running {
            return;
        }
        assert!(Instant::now() < until, "{st:?}\n{}", n.agent.diagnostics());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_manual_failover_asked_of_one_agent_shows_safe_on_both() {
    let Fire {
        etcd,
        knot,
        receiver,
        rt,
        sim,
    } = fire(503);
    let steps = http_step("tell the incident channel", &receiver.url("/incident"));
    let mut a = start_node("a", &sim, knot.addr(), &etcd.url(), &steps, "");
    let mut b = start_node("b", &sim, knot.addr(), &etcd.url(), &steps, "");
    let leader = unsafe_first_run(&mut a, &mut b, &receiver);
    for n in [&a, &b] {
        assert!(!status(n.port).zones[0].safe_to_cut_power);
    }
    // The operator asks the agent that did not run the first time.
    receiver.set_status(200);
    let asked = if leader == 0 { &mut b } else { &mut a };
    let (code, body) = post(
        asked.port,
        &format!("/api/v1/zones/{ZONE}/failover"),
        Some(TOKEN),
    );
    assert_eq!(code, 202, "{body}");
    asked.agent.wait_for(
        "safe to cut power on the agent asked",
        Duration::from_secs(60),
        is_safe,
    );
    // The other agent was not asked: it learns the result from etcd.
    wait_safe(&a);
    wait_safe(&b);
    assert_eq!(posts_to(&receiver, "/incident"), 2);
    let metrics = get(if leader == 0 { a.port } else { b.port }, "/metrics").1;
    assert!(
        metrics.contains(&format!("firebreak_safe_to_cut_power{{zone=\"{ZONE}\"}} 1")),
        "{metrics}"
    );

    shut_down(rt, sim, &mut [&mut a, &mut b]);
}

#[test]
fn a_manual_failover_asked_of_both_agents_reruns_the_failed_step_once() {
    // The incident channel is down at first: the runbook ends without safe to cut.
    let Fire {
        etcd,
        knot,
        receiver,
        rt,
        sim,
    } = fire(503);
    let steps = http_step("tell the incident channel", &receiver.url("/incident"));
    let serial_before = knot.soa_serial();
    let mut a = start_node("a", &sim, knot.addr(), &etcd.url(), &steps, "");
    let mut b = start_node("b", &sim, knot.addr(), &etcd.url(), &steps, "");
    unsafe_first_run(&mut a, &mut b, &receiver);
    assert_eq!(knot.soa_serial(), serial_before + 1);

    // The channel is back; an operator asks both agents, one after the other.
    receiver.set_status(200);
    let path = format!("/api/v1/zones/{ZONE}/failover");
    for n in [&a, &b] {
        let (code, body) = post(n.port, &path, Some(TOKEN));
        assert_eq!(code, 202, "{body}\n{}", n.agent.diagnostics());
    }
    first_to(
        &mut [&mut a, &mut b],
        "safe to cut power after the re-run",
        Duration::from_secs(60),
        is_safe,
    );
    // Both agents end safe: the one that ran the step, and the one that adopted its
    // result.
    wait_safe(&a);
    wait_safe(&b);
    let events = all_events(&[&a, &b]);
    let diag = || format!("{}\n{}", a.agent.diagnostics(), b.agent.diagnostics());
    assert_eq!(fresh_starts(&events), 1, "{}", diag());
    assert_eq!(incidents(&events).len(), 1, "one incident\n{}", diag());
    assert_eq!(
        posts_to(&receiver, "/incident"),
        2,
        "the failed call and one re-run, for two requests\n{}",
        diag()
    );
    assert_eq!(
        knot.soa_serial(),
        serial_before + 1,
        "the DNS step succeeded the first time and is not repeated"
    );
    assert_eq!(count(&events, is_safe), 1, "{}", diag());

    shut_down(rt, sim, &mut [&mut a, &mut b]);
}

/// A room whose off-gas rises past alarm and stays there: the prepare runbook's cue,
/// never a failover (one sensor, `confirm = 2`).
fn offgas_alarm_only(dir: &Path) -> PathBuf {
    let path = dir.join("offgas-alarm.toml");
    let flat = |signal: &str, table: &str, address: u16, ty: &str, extra: &str, v: f64| {
        format!(
            "[[devices.registers]]\nsignal = \"{signal}\"\ntable = \"{table}\"\naddress = {address}\ntype = \"{ty}\"\n{extra}timeline = [{{ at = \"0s\", set = {v:?} }}]\n"
        )
    };
    let text = format!(
        "[scenario]\nname = \"offgas-alarm\"\ndescription = \"off-gas past alarm, nothing else\"\nduration = \"600s\"\n\n\
         [[devices]]\nname = \"env-b3\"\nprotocol = \"modbus-tcp\"\nlisten = \"127.0.0.1:0\"\nunit = 1\n\n{}{}\
         [[devices.registers]]\nsignal = \"offgas.1\"\ntable = \"holding\"\naddress = 10\ntype = \"u16\"\n\
         timeline = [{{ at = \"0s\", set = 0.0 }}, {{ at = \"2s\", ramp = 30.0, over = \"2s\" }}]\n\n\
         [[devices]]\nname = \"ups-b3-1\"\nprotocol = \"modbus-tcp\"\nlisten = \"127.0.0.1:0\"\nunit = 1\n\n{}{}",
        flat("temp.row1", "input", 0, "i16", "scale = 0.1\n", 23.0),
        flat("temp.row2", "input", 1, "i16", "scale = 0.1\n", 23.0),
        flat("status", "holding", 0, "u32", "word_order = \"high_first\"\n", 2.0),
        flat("runtime", "holding", 128, "u32", "word_order = \"high_first\"\n", 900.0),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_prepare_runbook_runs_and_is_undone_once_on_the_zones_leader() {
    let etcd = Etcd::start();
    let knot = knot();
    let receiver = Receiver::start(200);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = hardware_sim::Scenario::from_file(offgas_alarm_only(dir.path())).unwrap();
    let sim = rt
        .block_on(hardware_sim::play(
            scenario,
            hardware_sim::PlayOptions {
                speed: 1.0,
                host: None,
            },
        ))
        .expect("start the simulator");
    // The zone's prepare runbook: one call at alarm, one to undo it.
    let steps = format!(
        "{}\n[[runbooks]]\nname = \"prepare-b3\"\n{}\n{}",
        http_step("tell the incident channel", &receiver.url("/incident")),
        http_step("warm the standby site", &receiver.url("/prepare")),
        http_step("cool the standby site", &receiver.url("/undo"))
            .replace("[[runbooks.steps]]", "[[runbooks.undo_steps]]"),
    );
    let mut a = start_node("a", &sim, knot.addr(), &etcd.url(), &steps, "");
    let mut b = start_node("b", &sim, knot.addr(), &etcd.url(), &steps, "");
    let leader = first_to(
        &mut [&mut a, &mut b],
        "the prepare's end",
        Duration::from_secs(60),
        |e| matches!(e.event, Event::RunbookFinished { .. }),
    );
    let (lead, other) = if leader == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    other
        .agent
        .wait_for("the other agent follows", Duration::from_secs(30), |e| {
            is_role(e, Role::Follower)
        });
    let events = all_events(&[lead, other]);
    assert_eq!(
        count(&events, |e| matches!(
            e.event,
            Event::RunbookStarted {
                stage: Stage::Prepare,
                ..
            }
        )),
        1,
        "{}",
        diagnose(lead, other)
    );
    assert_eq!(
        posts_to(&receiver, "/prepare"),
        1,
        "{}",
        diagnose(lead, other)
    );
    let ran_here = |n: &Node| status(n.port).zones[0].prepare.as_ref().unwrap().ran_here;
    assert!(!ran_here(other));
    assert!(ran_here(lead));

    // The operator resets the zone on both agents: the leader undoes its prepare.
    let path = format!("/api/v1/zones/{ZONE}/reset");
    for n in [&*other, &*lead] {
        let (code, body) = post(n.port, &path, Some(TOKEN));
        assert_eq!(code, 200, "{body}\n{}", n.agent.diagnostics());
    }
    lead.agent.wait_for(
        "the leader's prepare_undone",
        Duration::from_secs(30),
        |e| matches!(e.event, Event::PrepareUndone { .. }),
    );
    // Undone, the leadership is given up.
    lead.agent.wait_for(
        "the leader's cluster_role idle",
        Duration::from_secs(30),
        |e| is_role(e, Role::Idle),
    );
    assert_eq!(posts_to(&receiver, "/undo"), 1, "{}", diagnose(lead, other));
    assert_eq!(posts_to(&receiver, "/incident"), 0, "no failover");
    let events = all_events(&[lead, other]);
    assert_eq!(
        count(&events, |e| matches!(e.event, Event::PrepareUndone { .. })),
        1,
        "{}",
        diagnose(lead, other)
    );
    assert_eq!(
        count(&events, |e| matches!(e.event, Event::IncidentReset { .. })),
        2
    );

    shut_down(rt, sim, &mut [&mut a, &mut b]);
}

#[test]
fn in_a_fire_the_leader_runs_prepare_and_failover_in_one_incident_and_the_follower_neither() {
    let Fire {
        etcd,
        knot,
        receiver,
        rt,
        sim,
    } = fire(200);
    let steps = format!(
        "{}\n[[runbooks]]\nname = \"prepare-b3\"\n{}",
        http_step("tell the incident channel", &receiver.url("/incident")),
        http_step("warm the standby site", &receiver.url("/prepare")),
    );
    let mut a = start_node("a", &sim, knot.addr(), &etcd.url(), &steps, "");
    let mut b = start_node("b", &sim, knot.addr(), &etcd.url(), &steps, "");
    let leader = first_to(
        &mut [&mut a, &mut b],
        "safe_to_cut_power",
        Duration::from_secs(120),
        is_safe,
    );
    let (lead, other) = if leader == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    other.agent.wait_for(
        "the follower's cluster_role done",
        Duration::from_secs(30),
        |e| is_role(e, Role::Done),
    );
    let started = |n: &Node, stage: Stage| -> Vec<String> {
        n.agent
            .events()
            .iter()
            .filter_map(|e| match &e.event {
                Event::RunbookStarted {
                    stage: s, incident, ..
                } if *s == stage => Some(incident.clone()),
                _ => None,
            })
            .collect()
    };
    let prepare = started(lead, Stage::Prepare);
    assert_eq!(prepare.len(), 1, "{}", diagnose(lead, other));
    assert_eq!(
        started(lead, Stage::Failover),
        prepare,
        "the failover continues the prepare's incident\n{}",
        diagnose(lead, other)
    );
    assert!(
        started(other, Stage::Prepare).is_empty(),
        "{}",
        diagnose(lead, other)
    );
    assert!(
        started(other, Stage::Failover).is_empty(),
        "{}",
        diagnose(lead, other)
    );
    assert_eq!(posts_to(&receiver, "/prepare"), 1);
    assert_eq!(posts_to(&receiver, "/incident"), 1);

    shut_down(rt, sim, &mut [&mut a, &mut b]);
}

#[test]
fn killed_leader_is_replaced_and_no_step_runs_twice() {
    let Fire {
        etcd,
        knot,
        receiver,
        rt,
        sim,
    } = fire(200);
    let steps = format!(
        "{}\n[[runbooks.steps]]\nname = \"hold the line\"\ntype = \"wait\"\nduration = \"10s\"\n{}",
        http_step("first call", &receiver.url("/first")),
        http_step("last call", &receiver.url("/last")),
    );
    let serial_before = knot.soa_serial();
    let mut a = start_node(
        "a",
        &sim,
        knot.addr(),
        &etcd.url(),
        &steps,
        r#"on_cluster_loss = "act""#,
    );
    let mut b = start_node(
        "b",
        &sim,
        knot.addr(),
        &etcd.url(),
        &steps,
        r#"on_cluster_loss = "act""#,
    );

    let leader = first_to(
        &mut [&mut a, &mut b],
        "the first webhook step",
        Duration::from_secs(120),
        |e| matches!(&e.event, Event::StepFinished { step, .. } if step == "first call"),
    );
    let (lead, other) = if leader == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let started = lead
        .agent
        .events()
        .into_iter()
        .find(|e| matches!(e.event, Event::RunbookStarted { .. }))
        .unwrap();
    // The other agent follows (it detected the same fire) and knows who leads.
    let follows = other
        .agent
        .wait_for("the follower role", Duration::from_secs(30), |e| {
            is_role(e, Role::Follower)
        });
    let lead_name = if leader == 0 { "a" } else { "b" };
    assert!(
        matches!(&follows.event, Event::ClusterRole { leader: Some(l), .. } if l == lead_name),
        "{follows:?}"
    );
    let s = status(other.port);
    assert_eq!(cluster(&s).zones[ZONE].role, Role::Follower, "{s:?}");
    assert_eq!(
        cluster(&s).zones[ZONE].leader.as_deref(),
        Some(lead_name),
        "{s:?}"
    );
    assert_eq!(cluster(&status(lead.port)).zones[ZONE].role, Role::Leader);
    lead.agent.kill9(); // during the wait step

    let resumed = other
        .agent
        .wait_for("the takeover", Duration::from_secs(60), |e| {
            matches!(e.event, Event::RunbookStarted { .. })
        });
    let safe = other
        .agent
        .wait_for("safe_to_cut_power", Duration::from_secs(60), |e| {
            matches!(e.event, Event::SafeToCutPower { .. })
        });
    assert!(
        matches!(resumed.event, Event::RunbookStarted { resumed: true, .. }),
        "{}",
        other.agent.diagnostics()
    );
    assert_eq!(
        incident(&resumed),
        incident(&started),
        "the successor finishes the same incident"
    );
    assert_eq!(incident(&safe), incident(&started));

    let events = all_events(&[lead, other]);
    assert_eq!(
        count(&events, |e| is_step_of_type(e, "dns_update")),
        1,
        "the DNS step ran once"
    );
    assert_eq!(knot.soa_serial(), serial_before + 1, "one DNS UPDATE");
    assert_eq!(posts_to(&receiver, "/first"), 1, "first webhook once");
    assert_eq!(posts_to(&receiver, "/last"), 1, "last webhook once");
    let fences: Vec<i64> = receiver
        .posts()
        .iter()
        .map(|p| p.header("Firebreak-Fence").unwrap().parse().unwrap())
        .collect();
    assert!(
        fences[1] > fences[0],
        "the successor's fencing revision is newer: {fences:?}"
    );
    assert_eq!(
        count(&other.agent.events(), |e| is_role(e, Role::Leader)),
        1
    );

    shut_down(rt, sim, &mut [other]);
    drop(etcd);
}

#[test]
fn lost_etcd_acts_alone_under_act_and_holds_under_hold_until_it_is_back() {
    let mut etcd = Etcd::start();
    let knot = knot();
    let receiver = Receiver::start(200);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let steps = http_step("tell the incident channel", &receiver.url("/incident"));
    etcd.stop();
    let sim = start_sim(&rt, "offgas-then-heat.toml", 2.0);
    let mut act = start_node(
        "act",
        &sim,
        knot.addr(),
        &etcd.url(),
        &steps,
        r#"on_cluster_loss = "act""#,
    );
    let mut hold = start_node(
        "hold",
        &sim,
        knot.addr(),
        &etcd.url(),
        &steps,
        r#"on_cluster_loss = "hold""#,
    );

    let lost = act
        .agent
        .wait_for("cluster_lost (act)", Duration::from_secs(120), |e| {
            matches!(e.event, Event::ClusterLost { .. })
        });
    assert!(matches!(
        lost.event,
        Event::ClusterLost {
            policy: OnClusterLoss::Act,
            ..
        }
    ));
    assert_eq!(lost.event.zone(), Some(ZONE));
    act.agent
        .wait_for("safe_to_cut_power", Duration::from_secs(60), |e| {
            matches!(e.event, Event::SafeToCutPower { .. })
        });

    let lost = hold
        .agent
        .wait_for("cluster_lost (hold)", Duration::from_secs(60), |e| {
            matches!(e.event, Event::ClusterLost { .. })
        });
    assert!(matches!(
        lost.event,
        Event::ClusterLost {
            policy: OnClusterLoss::Hold,
            ..
        }
    ));
    let s = status(hold.port);
    assert_eq!(cluster(&s).zones[ZONE].role, Role::Holding, "{s:?}");
    assert!(!cluster(&s).reachable, "{s:?}");
    assert_eq!(
        count(&hold.agent.events(), |e| matches!(
            e.event,
            Event::RunbookStarted { .. }
        )),
        0,
        "hold runs nothing while etcd is away\n{}",
        hold.agent.diagnostics()
    );
    assert_eq!(
        posts_to(&receiver, "/incident"),
        1,
        "only the act agent ran"
    );
    let (_, metrics) = get(hold.port, "/metrics");
    assert!(
        metrics.contains("firebreak_cluster_lost_total{policy=\"hold\"} 1"),
        "{metrics}"
    );

    // etcd back: the holding agent leads and runs the runbook (the act agent's solo run
    // never reached etcd, which is what `act` trades for not waiting).
    etcd.restart();
    hold.agent.wait_for(
        "safe_to_cut_power after etcd",
        Duration::from_secs(60),
        is_safe,
    );
    assert_eq!(posts_to(&receiver, "/incident"), 2);

    shut_down(rt, sim, &mut [&mut act, &mut hold]);
}

#[test]
fn an_agent_authenticates_to_etcd_with_username_and_password_file() {
    let etcd = Etcd::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let password = "correct horse battery staple";
    etcd.enable_auth(password);
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("etcd.password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let knot = knot();
    let receiver = Receiver::start(200);
    let sim = start_sim(&rt, "offgas-then-heat.toml", 2.0);
    let steps = http_step("tell the incident channel", &receiver.url("/incident"));
    let keys = format!(
        "username = \"root\"\npassword_file = \"{}\"",
        password_file.display()
    );
    let mut n = start_node("auth", &sim, knot.addr(), &etcd.url(), &steps, &keys);
    let safe = n
        .agent
        .wait_for("safe_to_cut_power", Duration::from_secs(120), |e| {
            matches!(e.event, Event::SafeToCutPower { .. })
        });
    assert_eq!(
        count(&n.agent.events(), |e| matches!(
            e.event,
            Event::ClusterLost { .. }
        )),
        0,
        "{}",
        n.agent.diagnostics()
    );
    // The journal in etcd (read with the same credentials) has the finished incident.
    let stored = etcd.ctl(
        Some(&format!("root:{password}")),
        &[
            "get",
            "--print-value-only",
            &format!("/firebreak-test/zones/{ZONE}/incident"),
        ],
    );
    let inc: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(inc["incident"], incident(&safe));
    assert_eq!(inc["finished"], true);
    assert_eq!(inc["safe_to_cut_power"], true);
    assert_eq!(cluster(&status(n.port)).peers[0], "auth");

    shut_down(rt, sim, &mut [&mut n]);
}

#[test]
fn an_agent_talks_to_etcd_over_tls_with_a_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let etcd = Etcd::start_tls(certs.path());
    assert!(etcd.url().starts_with("https://"));
    let knot = knot();
    let receiver = Receiver::start(200);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt, "offgas-then-heat.toml", 2.0);
    let steps = http_step("tell the incident channel", &receiver.url("/incident"));
    let d = certs.path().display();
    let keys = format!(
        "ca_file = \"{d}/ca.crt\"\ncert_file = \"{d}/client.crt\"\nkey_file = \"{d}/client.key\""
    );
    let mut n = start_node("tls", &sim, knot.addr(), &etcd.url(), &steps, &keys);
    n.agent
        .wait_for("safe_to_cut_power", Duration::from_secs(120), |e| {
            matches!(e.event, Event::SafeToCutPower { .. })
        });
    let events = n.agent.events();
    assert_eq!(
        count(&events, |e| matches!(e.event, Event::ClusterLost { .. })),
        0,
        "{}",
        n.agent.diagnostics()
    );
    assert_eq!(
        count(&events, |e| is_role(e, Role::Leader)),
        1,
        "it won the election over TLS"
    );
    let s = status(n.port);
    assert!(cluster(&s).reachable, "{s:?}");
    assert_eq!(cluster(&s).peers[0], "tls", "{s:?}");

    shut_down(rt, sim, &mut [&mut n]);
}

#[test]
fn the_cluster_example_is_the_contract_plus_a_valid_cluster_section() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let text = std::fs::read_to_string(dir.join("cluster.toml")).unwrap();
    let contract = std::fs::read_to_string(dir.join("firebreak.toml")).unwrap();
    assert!(text.contains(&contract), "the contract is kept verbatim");
    let loaded = firebreak::config::load_str(&text, "config/cluster.toml", Default::default())
        .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    let c = loaded.config.cluster.expect("[cluster]");
    assert_eq!(c.etcd.len(), 3);
    assert_eq!(c.node, "pangyo-b3-room");
    assert_eq!(c.lease_ttl, Duration::from_secs(5));
    assert_eq!(c.on_cluster_loss, firebreak::config::OnClusterLoss::Act);
    let alone = firebreak::config::load_str(&contract, "firebreak.toml", Default::default())
        .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    assert!(alone.config.cluster.is_none(), "no [cluster]: runs alone");
}

/// The room's DNS step against `knot`, moving the record to `value`.
fn dns_step(knot: &support::knot::Knot, dir: &Path, value: &str) -> firebreak::config::DnsStep {
    let secret = dir.join("tsig.secret");
    std::fs::write(&secret, support::room::secret_b64()).unwrap();
    firebreak::config::DnsStep {
        server: knot.addr(),
        zone: "example.test".into(),
        record: "app.example.test".into(),
        rtype: firebreak::dns::RecordKind::A,
        ttl: 30,
        values: vec![value.into()],
        prerequisite: None,
        tsig: Some(firebreak::config::TsigRef {
            key: "firebreak".into(),
            algorithm: firebreak::dns::TsigAlgorithm::HmacSha256,
            secret_file: secret,
        }),
        verify_servers: vec![],
    }
}

#[test]
fn a_deposed_leaders_dns_update_is_refused_by_the_fencing_record() {
    use firebreak::dns;
    use firebreak::runbook::steps::dns_update::run::run_fenced;
    let knot = knot();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let timeout = Duration::from_secs(3);

    // The current leader (revision 20) moves the record; the fence now says 20.
    rt.block_on(run_fenced(
        &dns_step(&knot, dir.path(), "198.51.100.20"),
        timeout,
        false,
        Some(20),
    ))
    .expect("the leader's update");
    assert_eq!(
        knot.dig("_firebreak-fence.app.example.test", "TXT"),
        vec!["\"20\"".to_string()]
    );
    let serial = knot.soa_serial();

    // A deposed leader (revision 7) wakes up with an older decision: refused, unchanged.
    let err = rt
        .block_on(run_fenced(
            &dns_step(&knot, dir.path(), "192.0.2.99"),
            timeout,
            false,
            Some(7),
        ))
        .expect_err("a deposed leader is fenced off");
    assert!(err.to_string().contains("fencing revision 20"), "{err}");
    assert_eq!(knot.dig("app.example.test", "A"), vec!["198.51.100.20"]);
    assert_eq!(knot.soa_serial(), serial, "nothing reached the zone");

    // The race the read cannot see: the deposed leader read the fence before the new
    // leader wrote it. The server's prerequisite refuses the stale compare-and-swap.
    let spec = firebreak::runbook::steps::dns_update::run::spec(
        &dns_step(&knot, dir.path(), "192.0.2.99"),
        timeout,
    )
    .unwrap();
    let stale = dns::Fence {
        name: dns::fence_name("app.example.test"),
        current: Some("7".into()),
        new: "7".into(),
    };
    let refused = rt.block_on(dns::send_update_fenced(&spec, None, Some(&stale)));
    assert!(
        matches!(refused, Err(dns::DnsError::PrerequisiteFailed { .. })),
        "{refused:?}"
    );
    let absent = dns::Fence {
        current: None,
        ..stale
    };
    let refused = rt.block_on(dns::send_update_fenced(&spec, None, Some(&absent)));
    assert!(
        matches!(refused, Err(dns::DnsError::PrerequisiteFailed { .. })),
        "{refused:?}"
    );
    assert_eq!(knot.dig("app.example.test", "A"), vec!["198.51.100.20"]);

    // A newer leader (revision 31) goes through and takes the fence.
    rt.block_on(run_fenced(
        &dns_step(&knot, dir.path(), "198.51.100.31"),
        timeout,
        false,
        Some(31),
    ))
    .expect("a newer leader's update");
    assert_eq!(knot.dig("app.example.test", "A"), vec!["198.51.100.31"]);
    assert_eq!(
        knot.dig("_firebreak-fence.app.example.test", "TXT"),
        vec!["\"31\"".to_string()]
    );
}

#[test]
fn cluster_keys_have_documented_defaults() {
    let contract = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/firebreak.toml"),
    )
    .unwrap();
    let text = format!("{contract}\n[cluster]\netcd = [\"http://127.0.0.1:2379/\"]\n");
    let loaded = firebreak::config::load_str(&text, "t.toml", Default::default())
        .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    let c = loaded.config.cluster.expect("[cluster]");
    assert_eq!(c.etcd, vec!["http://127.0.0.1:2379".to_string()]);
    assert_eq!(c.node, "pangyo-b3", "node defaults to agent.name");
    assert_eq!(c.namespace, "/firebreak");
    assert_eq!(c.lease_ttl, Duration::from_secs(5));
    assert_eq!(c.on_cluster_loss, firebreak::config::OnClusterLoss::Act);
    assert!(c.ca_file.is_none() && c.username.is_none());

    let tls_over_http = format!(
        "{contract}\n[cluster]\netcd = [\"http://127.0.0.1:2379\"]\nca_file = \"/etc/ca.pem\"\n"
    );
    let Err(refused) = firebreak::config::load_str(&tls_over_http, "t.toml", Default::default())
    else {
        panic!("TLS keys with an http:// URL are refused");
    };
    let errors = refused.errors;
    assert!(
        errors
            .iter()
            .any(|p| p.to_string().contains("cluster.etcd") && p.to_string().contains("https://")),
        "{errors:#?}"
    );
}

/// The gateway client itself against a real etcd: the calls `[cluster]` makes, a first
/// endpoint that refuses connections, authentication, and a token that expires between
/// two requests.
#[test]
fn the_etcd_client_moves_past_a_dead_endpoint_and_authenticates_again_when_its_token_expires() {
    use firebreak::cluster::etcd::{Client, Compare, Credentials, Op, Options, Txn};
    // Simple tokens that expire 1 s after their last use.
    let etcd = Etcd::start_args(&["--auth-token", "simple", "--auth-token-ttl", "1"]);
    etcd.enable_auth("s3cret");
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let client = Client::new(Options {
        endpoints: vec![dead, etcd.url()],
        timeout: Duration::from_secs(2),
        credentials: Some(Credentials {
            user: "root".into(),
            password: "s3cret".into(),
        }),
        ..Options::default()
    })
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A leadership: a lease, and the key created only if absent.
        let lease = client.lease_grant(5).await.unwrap();
        let campaign = |node: &'static str| {
            Txn::new()
                .when([Compare::create_revision_is("/t/leader", 0)])
                .and_then([Op::put("/t/leader", node, lease)])
                .or_else([Op::get("/t/leader")])
        };
        let won = client.txn(&campaign("a")).await.unwrap();
        assert!(won.succeeded);
        let rev = won.header.unwrap().revision;
        let lost = client.txn(&campaign("b")).await.unwrap();
        assert!(!lost.succeeded);
        assert_eq!(
            lost.kvs().map(|kv| kv.value_str()).collect::<Vec<_>>(),
            vec![Some("a")]
        );
        let kv = client.get("/t/leader").await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.lease), (rev, lease));
        assert!(client.lease_keep_alive(lease).await.unwrap() > 0);

        // The token expires; the next request authenticates again.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let fenced = Txn::new()
            .when([Compare::create_revision_is("/t/leader", rev)])
            .and_then([Op::put("/t/journal", "step 1", 0)]);
        assert!(client.txn(&fenced).await.unwrap().succeeded);
        client.put("/t/nodes/a", "a", lease).await.unwrap();
        client.put("/t/nodes/b", "b", 0).await.unwrap();
        client.put("/t/nodesx", "not a node", 0).await.unwrap();
        let nodes: Vec<_> = client
            .get_prefix("/t/nodes/")
            .await
            .unwrap()
            .into_iter()
            .map(|kv| kv.value)
            .collect();
        assert_eq!(nodes, [b"a".to_vec(), b"b".to_vec()]);

        // The lease ends: its keys go, and a keep-alive says it is gone.
        client.lease_revoke(lease).await.unwrap();
        assert_eq!(client.lease_keep_alive(lease).await.unwrap(), 0);
        assert!(client.get("/t/leader").await.unwrap().is_none());
        assert!(!client.txn(&fenced).await.unwrap().succeeded, "deposed");
    });
    assert!(
        etcd.log().contains("invalid auth token"),
        "the token did expire: {}",
        etcd.log()
    );
}
