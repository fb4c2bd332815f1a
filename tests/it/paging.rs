//! Paging that never pages twice: the `alertmanager` step against a real Alertmanager (its
//! webhook notifications counted by a local receiver) and the `pagerduty` step against a
//! schema-checking stand-in for PagerDuty's Events API v2 (`support/pagerduty.rs`: the real
//! service is unreachable from CI). One incident is one page, whether one agent, a
//! restarted agent or the successor of a killed cluster leader sends it; a reset resolves
//! it; a drill pages nobody.

use crate::support;

use firebreak::cluster::Role;
use firebreak::runbook::{self, StepContext, TemplateVars};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::{post, Agent};
use support::alertmanager::Alertmanager;
use support::etcd::Etcd;
use support::events::{count, Event, LoggedEvent};
use support::gate::Gate;
use support::pagerduty::{self as pd, PagerDuty};
use support::receiver::Receiver;

const TOKEN: &str = "paging-operator-token";
const ZONE: &str = "b3";
/// A routing key of the documented shape (32 characters).
const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdefABCDEF";

/// Writes a config for agent `name` whose zone `b3` runs `steps` (and `extra` after them);
/// returns (config path, event log).
fn write_config(dir: &Path, name: &str, port: u16, steps: &str, extra: &str) -> (PathBuf, PathBuf) {
    let state = dir.join("state");
    let token = dir.join("api.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let text = format!(
        r#"
[agent]
name = "{name}"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{port}"
token_file = "{token}"

[[zones]]
id = "{ZONE}"
runbook = "evacuate-b3"

[[runbooks]]
name = "evacuate-b3"
{steps}
{extra}
"#,
        state = state.display(),
        token = token.display()
    );
    let path = dir.join("firebreak.toml");
    std::fs::write(&path, text).unwrap();
    (path, state.join("events.jsonl"))
}

fn alertmanager_step(url: &str) -> String {
    format!(
        r#"
[[runbooks.steps]]
name = "page through Alertmanager"
type = "alertmanager"
url = "{url}"
labels = {{ severity = "critical", team = "dc-ops" }}
annotations = {{ runbook_url = "https://wiki.example/runbooks/{{{{runbook}}}}" }}
on_failure = "continue"
timeout = "5s"
"#
    )
}

/// A routing key file (mode 600) in `dir`.
fn key_file(dir: &Path, key: &str) -> PathBuf {
    let f = dir.join("pagerduty.key");
    std::fs::write(&f, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    f
}

fn pagerduty_step(url: &str, key: &Path, timeout: &str) -> String {
    format!(
        r#"
[[runbooks.steps]]
name = "page the on-call"
type = "pagerduty"
url = "{url}"
routing_key_file = "{}"
severity = "critical"
component = "battery room {{{{zone}}}}"
on_failure = "continue"
timeout = "{timeout}"
"#,
        key.display()
    )
}

fn start_agent(config: &Path, log: &Path, port: u16) -> Agent {
    let agent = Agent::start(config, log);
    agent.wait_for_api(port);
    agent
}

fn is_safe(e: &LoggedEvent) -> bool {
    matches!(e.event, Event::SafeToCutPower { .. })
}

fn incident_of(e: &LoggedEvent) -> String {
    e.event.incident().expect("an incident").to_string()
}

/// The `step_finished` of the step of type `t`.
fn finished_of_type<'a>(events: &'a [LoggedEvent], t: &str) -> Vec<&'a Event> {
    events
        .iter()
        .map(|e| &e.event)
        .filter(|e| matches!(e, Event::StepFinished { step_type, .. } if step_type == t))
        .collect()
}

fn is_page_resolved(e: &LoggedEvent) -> bool {
    matches!(e.event, Event::PageResolved { .. })
}

/// Polls `cond` until it holds, or panics after `deadline` naming `what`.
fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !cond() {
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Alertmanager's webhook notifications with `status` (`firing` or `resolved`).
fn notifications(receiver: &Receiver, status: &str) -> Vec<Value> {
    receiver
        .posts()
        .iter()
        .filter(|p| p.path == "/hook")
        .map(|p| serde_json::from_str::<Value>(&p.body).expect("webhook JSON"))
        .filter(|v| v["status"] == status)
        .collect()
}

/// The label set the step gives the incident's alert, posted by agent `agent`.
fn expected_labels(agent: &str, incident: &str) -> Value {
    serde_json::json!({
        "agent": agent,
        "alertname": "FirebreakIncident",
        "severity": "critical",
        "team": "dc-ops",
        "zone": ZONE,
        "incident": incident,
        "level": "critical",
    })
}

#[test]
fn alertmanager_step_posts_the_incident_alert_reads_it_back_and_a_reset_resolves_it() {
    let receiver = Receiver::start(200);
    let am = Alertmanager::start(&receiver.url("/hook"));
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let (config, log) = write_config(
        dir.path(),
        "paging-a",
        port,
        &alertmanager_step(&am.url()),
        "",
    );
    let mut agent = start_agent(&config, &log, port);

    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(30), is_safe);
    let incident = incident_of(&safe);
    let events = agent.events();
    let steps = finished_of_type(&events, "alertmanager");
    assert_eq!(steps.len(), 1, "{}", agent.diagnostics());
    let Event::StepFinished {
        ok,
        verified,
        detail,
        ..
    } = steps[0]
    else {
        unreachable!()
    };
    assert!(*ok && *verified, "{:?}", steps[0]);
    assert!(
        detail.as_deref().unwrap().contains("active"),
        "read back from Alertmanager: {detail:?}"
    );

    // Alertmanager holds one alert with the incident's labels and the evidence.
    let alerts = am.alerts(&incident);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["labels"], expected_labels("paging-a", &incident));
    let notes = &alerts[0]["annotations"];
    assert_eq!(notes["agent"], "paging-a");
    assert_eq!(notes["cause"], "manual");
    assert_eq!(notes["runbook"], "evacuate-b3");
    assert_eq!(
        notes["runbook_url"],
        "https://wiki.example/runbooks/evacuate-b3"
    );
    assert!(
        notes["summary"].as_str().unwrap().contains(&incident),
        "{notes}"
    );

    // One notification reaches the receiver, about this alert.
    wait_until("the firing notification", Duration::from_secs(20), || {
        !notifications(&receiver, "firing").is_empty()
    });
    let firing = notifications(&receiver, "firing");
    assert_eq!(firing.len(), 1, "{firing:#?}");
    assert_eq!(
        firing[0]["alerts"][0]["labels"],
        expected_labels("paging-a", &incident)
    );

    // The reset resolves it: `page_resolved`, gone from Alertmanager, and the receiver
    // hears that it is resolved.
    assert_eq!(post(port, "/api/v1/zones/b3/reset", Some(TOKEN)).0, 200);
    let resolved = agent.wait_for("page_resolved", Duration::from_secs(20), is_page_resolved);
    let Event::PageResolved {
        ok,
        step_type,
        incident: resolved_incident,
        ..
    } = &resolved.event
    else {
        unreachable!()
    };
    assert!(*ok, "{resolved:?}");
    assert_eq!(step_type, "alertmanager");
    assert_eq!(resolved_incident, &incident);
    let reset_at = support::events::index_of(&agent.events(), |e| {
        matches!(e.event, Event::IncidentReset { .. })
    });
    let resolved_at = support::events::index_of(&agent.events(), is_page_resolved);
    assert!(reset_at < resolved_at, "incident_reset comes first");
    assert!(
        am.alerts(&incident).is_empty(),
        "{:#?}",
        am.alerts(&incident)
    );
    wait_until("the resolved notification", Duration::from_secs(20), || {
        !notifications(&receiver, "resolved").is_empty()
    });
    assert_eq!(notifications(&receiver, "resolved").len(), 1);
    assert_eq!(
        notifications(&receiver, "firing").len(),
        1,
        "no second page"
    );
    assert_eq!(agent.stop(), Some(0));
}

/// Writes and starts cluster node `name` (etcd at `etcd`, lease 4 s) running `steps`.
fn start_node(name: &str, etcd: &str, steps: &str) -> (Agent, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cluster = format!(
        r#"
[cluster]
etcd = ["{etcd}"]
node = "{name}"
lease_ttl = "4s"
namespace = "/firebreak-paging"
"#
    );
    // The agents of one cluster run the same file: one `[agent] name`, their own `node`
    // (config/cluster.toml); the name is one of the alert's labels.
    let (config, log) = write_config(dir.path(), "paging-cluster", port, steps, &cluster);
    (start_agent(&config, &log, port), port, dir)
}

#[test]
fn a_cluster_leader_killed_mid_page_is_succeeded_by_a_peer_and_alertmanager_notifies_once() {
    let etcd = Etcd::start();
    let receiver = Receiver::start(200);
    let am = Alertmanager::start(&receiver.url("/hook"));
    // The leader's read-back of its alert is held: it is killed after Alertmanager has the
    // alert, before the step is recorded as done.
    let gate = Gate::start(&am.url(), "GET");
    gate.hold(true);
    let steps = alertmanager_step(&gate.url());
    let (mut a, a_port, _a_dir) = start_node("a", &etcd.url(), &steps);
    let (mut b, b_port, _b_dir) = start_node("b", &etcd.url(), &steps);

    assert_eq!(
        post(a_port, "/api/v1/zones/b3/failover", Some(TOKEN)).0,
        202
    );
    gate.wait_for("POST", "/api/v2/alerts", 1, Duration::from_secs(30));
    // The other agent is asked too: it follows the leader, ready to take over.
    assert_eq!(
        post(b_port, "/api/v1/zones/b3/failover", Some(TOKEN)).0,
        202
    );
    b.wait_for("b follows a", Duration::from_secs(30), |e| {
        matches!(&e.event, Event::ClusterRole { role: Role::Follower, leader: Some(l), .. } if l == "a")
    });
    let started = a.wait_for("a's runbook", Duration::from_secs(5), |e| {
        matches!(e.event, Event::RunbookStarted { .. })
    });
    let incident = incident_of(&started);
    wait_until(
        "the leader's page notified",
        Duration::from_secs(20),
        || notifications(&receiver, "firing").len() == 1,
    );

    a.kill9();
    gate.hold(false);
    let resumed = b.wait_for("b takes the incident over", Duration::from_secs(60), |e| {
        matches!(e.event, Event::RunbookStarted { resumed: true, .. })
    });
    assert_eq!(incident_of(&resumed), incident, "the same incident");
    let safe = b.wait_for("safe_to_cut_power on b", Duration::from_secs(60), is_safe);
    assert_eq!(incident_of(&safe), incident);

    // Both agents posted the incident's alert: Alertmanager has one alert (the last
    // post's annotations), in one group.
    assert_eq!(
        gate.count("POST", "/api/v2/alerts"),
        2,
        "both agents posted"
    );
    let alerts = am.alerts(&incident);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(
        alerts[0]["labels"],
        expected_labels("paging-cluster", &incident)
    );
    assert_eq!(alerts[0]["annotations"]["node"], "b");
    assert_eq!(am.groups(&incident).len(), 1, "one alert group");
    // Two more flushes of the group after b's post: a second notification would be out.
    let flushes = am.metric("alertmanager_nflog_queries_total");
    am.wait_for_flushes(flushes, 2.0, Duration::from_secs(20));
    assert_eq!(
        notifications(&receiver, "firing").len(),
        1,
        "exactly one notification for the incident\n{}",
        b.diagnostics()
    );

    // The follower-turned-leader's reset resolves the alert the dead leader raised.
    assert_eq!(post(b_port, "/api/v1/zones/b3/reset", Some(TOKEN)).0, 200);
    let resolved = b.wait_for("page_resolved", Duration::from_secs(20), is_page_resolved);
    assert!(
        matches!(resolved.event, Event::PageResolved { ok: true, .. }),
        "{resolved:?}"
    );
    assert!(am.alerts(&incident).is_empty());
    wait_until("the resolved notification", Duration::from_secs(20), || {
        notifications(&receiver, "resolved").len() == 1
    });
    assert_eq!(b.stop(), Some(0));
    drop(etcd);
}

/// The library's step engine with the contexts two agents would run the step with.
fn config_with(step: &str) -> firebreak::config::Config {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_config(dir.path(), "lib", support::free_port(), step, "");
    let text = std::fs::read_to_string(path).unwrap();
    firebreak::config::load_str(&text, "paging.toml", Default::default())
        .unwrap_or_else(|e| panic!("{e:?}"))
        .config
}

fn vars(agent: &str, incident: &str) -> TemplateVars {
    TemplateVars {
        agent: agent.into(),
        zone: ZONE.into(),
        level: "critical".into(),
        incident: incident.into(),
        cause: "fire".into(),
        runbook: "evacuate-b3".into(),
    }
}

fn run_as(config: &firebreak::config::Config, agent: &str, incident: &str) -> runbook::StepReport {
    let vars = vars(agent, incident);
    let ctx = StepContext {
        config,
        vars: &vars,
        dry_run: false,
        fence: None,
        modbus: None,
    };
    support::agent::rt().block_on(runbook::run_step(&config.runbooks[0].steps[0], &ctx))
}

#[test]
fn two_agents_posting_one_incident_make_one_alertmanager_group_and_one_notification() {
    let receiver = Receiver::start(200);
    let am = Alertmanager::start(&receiver.url("/hook"));
    let config = config_with(&alertmanager_step(&am.url()));
    let incident = "b3-20261125T103102417Z-1";

    // Two agents of one cluster: one `[agent] name` (config/cluster.toml).
    let first = run_as(&config, "pangyo-b3", incident);
    assert!(first.ok && first.verified, "{first:?}");
    wait_until("the first notification", Duration::from_secs(20), || {
        notifications(&receiver, "firing").len() == 1
    });
    let second = run_as(&config, "pangyo-b3", incident);
    assert!(second.ok && second.verified, "{second:?}");
    let flushes = am.metric("alertmanager_nflog_queries_total");
    am.wait_for_flushes(flushes, 2.0, Duration::from_secs(20));

    assert_eq!(
        notifications(&receiver, "firing").len(),
        1,
        "one notification"
    );
    let alerts = am.alerts(incident);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["labels"]["agent"], "pangyo-b3");
    assert_eq!(am.groups(incident).len(), 1);

    // Another incident is another page.
    let other = run_as(&config, "pangyo-b3", "b3-20261125T113102417Z-2");
    assert!(other.ok, "{other:?}");
    wait_until(
        "the other incident's notification",
        Duration::from_secs(20),
        || notifications(&receiver, "firing").len() == 2,
    );
}

#[test]
fn a_drill_posts_nothing_to_alertmanager_or_pagerduty_and_reports_that_they_answer() {
    let receiver = Receiver::start(200);
    let am = Alertmanager::start(&receiver.url("/hook"));
    let pd = PagerDuty::start();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), ROUTING_KEY);
    let steps = format!(
        "{}{}",
        alertmanager_step(&am.url()),
        pagerduty_step(&pd.url(), &key, "5s")
    );
    let (config, _) = write_config(dir.path(), "paging-a", support::free_port(), &steps, "");
    let drill = |config: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
            .args(["drill", "--zone", ZONE, "--config"])
            .arg(config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = drill(&config);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(stdout.matches("PASS").count(), 2, "{stdout}");
    assert!(
        stdout.contains("Alertmanager 0.2"),
        "GET /api/v2/status: {stdout}"
    );
    assert!(stdout.contains("routing key is well formed"), "{stdout}");
    let (_, all) = support::peer::http_get(am.port, "/api/v2/alerts", Duration::from_secs(5))
        .expect("Alertmanager answers");
    assert_eq!(all.trim(), "[]", "a drill posts no alert");
    assert!(
        pd.accepted().is_empty() && pd.refused().is_empty(),
        "a drill sends no event"
    );
    assert!(receiver.posts().is_empty());

    // Nothing listening, or a malformed key: the drill fails and says why.
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    std::fs::create_dir_all(dir.path().join("bad")).unwrap();
    let bad_key = key_file(&dir.path().join("bad"), "short");
    let steps = format!(
        "{}{}",
        alertmanager_step(&dead),
        pagerduty_step(&pd.url(), &bad_key, "5s")
    );
    let (config, _) = write_config(dir.path(), "paging-a", support::free_port(), &steps, "");
    let (code, stdout) = drill(&config);
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(stdout.matches("FAIL").count(), 2, "{stdout}");
    assert!(stdout.contains("unreachable"), "{stdout}");
    assert!(
        stdout.contains("not a PagerDuty integration key"),
        "{stdout}"
    );
}

#[test]
fn pagerduty_step_triggers_with_the_incident_as_dedup_key_and_a_reset_resolves_it() {
    let pd = PagerDuty::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let key = key_file(dir.path(), ROUTING_KEY);
    let (config, log) = write_config(
        dir.path(),
        "paging-a",
        port,
        &pagerduty_step(&pd.url(), &key, "5s"),
        "",
    );
    let mut agent = start_agent(&config, &log, port);

    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(30), is_safe);
    let incident = incident_of(&safe);
    assert!(pd.refused().is_empty(), "{:?}", pd.refused());
    let events = pd.accepted();
    assert_eq!(events.len(), 1, "{events:#?}");
    let trigger = &events[0];
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["dedup_key"], incident.as_str());
    let payload = &trigger["payload"];
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["source"], ZONE);
    assert_eq!(payload["component"], "battery room b3");
    assert_eq!(payload["class"], "manual");
    assert_eq!(payload["custom_details"]["agent"], "paging-a");
    assert_eq!(payload["custom_details"]["incident"], incident.as_str());
    assert!(payload["summary"].as_str().unwrap().contains(&incident));
    let alert = pd.alert(&incident);
    assert_eq!((alert.opened, alert.open), (1, true));

    let all = agent.events();
    let steps = finished_of_type(&all, "pagerduty");
    assert!(
        matches!(
            steps[..],
            [Event::StepFinished {
                ok: true,
                verified: true,
                attempts: 1,
                ..
            }]
        ),
        "{steps:?}"
    );

    assert_eq!(post(port, "/api/v1/zones/b3/reset", Some(TOKEN)).0, 200);
    let resolved = agent.wait_for("page_resolved", Duration::from_secs(20), is_page_resolved);
    assert!(
        matches!(&resolved.event, Event::PageResolved { ok: true, step_type, .. } if step_type == "pagerduty"),
        "{resolved:?}"
    );
    let alert = pd.alert(&incident);
    assert_eq!((alert.opened, alert.resolves, alert.open), (1, 1, false));
    let resolve = pd.accepted().pop().unwrap();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], incident.as_str());
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn an_agent_killed_mid_trigger_triggers_again_after_its_restart_and_pagerduty_keeps_one_incident() {
    let pd = PagerDuty::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let key = key_file(dir.path(), ROUTING_KEY);
    let (config, log) = write_config(
        dir.path(),
        "paging-a",
        port,
        &pagerduty_step(&pd.url(), &key, "60s"),
        "",
    );
    // PagerDuty records the trigger, and the agent dies before it hears the 202.
    pd.hold_next_trigger(Duration::from_secs(60));
    let mut agent = start_agent(&config, &log, port);
    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    wait_until("the first trigger", Duration::from_secs(30), || {
        pd.accepted().len() == 1
    });
    agent.kill9();

    let mut agent = start_agent(&config, &log, port);
    let resumed = agent.wait_for("the resumed runbook", Duration::from_secs(30), |e| {
        matches!(e.event, Event::RunbookStarted { resumed: true, .. })
    });
    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(30), is_safe);
    let incident = incident_of(&safe);
    assert_eq!(incident_of(&resumed), incident);

    let alert = pd.alert(&incident);
    assert_eq!(alert.triggers, 2, "the interrupted step ran again");
    assert_eq!(alert.opened, 1, "one PagerDuty incident");
    assert_eq!(pd.opened_total(), 1);
    assert_eq!(
        count(
            &agent.events(),
            |e| matches!(&e.event, Event::StepFinished { step_type, ok: true, .. } if step_type == "pagerduty")
        ),
        1
    );
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn pagerduty_answers_decide_retries_and_two_agents_triggering_one_incident_open_one() {
    let pd = PagerDuty::start();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), ROUTING_KEY);
    let step = pagerduty_step(&pd.url(), &key, "5s") + "retries = 3\n";
    let config = config_with(&step);
    let incident = "b3-20261125T103102417Z-1";

    // 429 and 5xx are retried; the third attempt gets through.
    pd.force(&[429, 503]);
    let r = run_as(&config, "pangyo-b3-a", incident);
    assert!(r.ok && r.verified, "{r:?}");
    assert_eq!(r.attempts, 3);

    // The other agent triggers the same incident: merged into the open alert.
    let r = run_as(&config, "pangyo-b3-b", incident);
    assert!(r.ok, "{r:?}");
    let alert = pd.alert(incident);
    assert_eq!((alert.triggers, alert.opened), (2, 1), "{alert:?}");
    assert_eq!(alert.payload["custom_details"]["agent"], "pangyo-b3-a");

    // 400 is an invalid event: not retried, PagerDuty's message in the error.
    pd.force(&[400]);
    let r = run_as(&config, "pangyo-b3-a", incident);
    assert!(!r.ok);
    assert_eq!(r.attempts, 1, "{r:?}");
    let error = r.error.unwrap();
    assert!(
        error.contains("Event object is invalid") && error.contains("forced by the test"),
        "{error}"
    );
    assert_eq!(pd.opened_total(), 1);

    // A key file that does not hold a routing key is refused before anything is sent.
    std::fs::write(&key, "not-a-key\n").unwrap();
    let sent = pd.accepted().len();
    let r = run_as(&config, "pangyo-b3-a", incident);
    assert!(!r.ok && r.attempts == 1, "{r:?}");
    assert!(r.error.unwrap().contains("32 letters and digits"));
    assert_eq!(pd.accepted().len(), sent);
}

#[test]
fn the_pagerduty_stand_in_refuses_what_the_events_api_documents_as_invalid() {
    let pd = PagerDuty::start();
    let good = serde_json::json!({
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "b3-1",
        "payload": {"summary": "s", "source": "b3", "severity": "critical"},
    });
    assert!(pd::problems(&good).is_empty());
    let mut cases = Vec::new();
    let mut bad = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        cases.push(v);
    };
    bad(&|v| v["routing_key"] = "x".repeat(31).into());
    bad(&|v| v["event_action"] = "page".into());
    bad(&|v| v["payload"]["severity"] = "high".into());
    bad(&|v| v["payload"]["summary"] = "x".repeat(1025).into());
    bad(&|v| {
        v["payload"].as_object_mut().unwrap().remove("source");
    });
    bad(&|v| {
        v.as_object_mut().unwrap().remove("payload");
    });
    bad(&|v| {
        v["event_action"] = "resolve".into();
        v.as_object_mut().unwrap().remove("dedup_key");
    });
    let rt = support::agent::rt();
    for case in &cases {
        let (status, body) = rt.block_on(async {
            let r = reqwest::Client::new()
                .post(pd.url())
                .json(case)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        });
        assert_eq!(status, 400, "{case}");
        assert_eq!(body["status"], "invalid event");
        assert!(!body["errors"].as_array().unwrap().is_empty());
    }
    assert_eq!(pd.refused().len(), cases.len());
    assert!(pd.accepted().is_empty());
}

#[test]
fn the_contracts_paging_steps_read_as_written() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/contract/integrations.toml");
    let Ok(contract) = std::fs::read_to_string(&path) else {
        eprintln!("note: {} not found; checked nothing", path.display());
        return;
    };
    // The contract's two paging steps, verbatim, in a runbook of their own (the rest of
    // the file names step types other branches bring).
    let steps: String = contract
        .split("[[runbooks.steps]]")
        .filter(|b| b.contains("type = \"alertmanager\"") || b.contains("type = \"pagerduty\""))
        .map(|b| format!("[[runbooks.steps]]{}", b.split("\n[[").next().unwrap()))
        .collect();
    let config = config_with(&steps);
    let runbook = &config.runbooks[0];
    assert_eq!(runbook.steps.len(), 2, "{steps}");
    let firebreak::runbook::steps::Action::Alertmanager(am) = &runbook.steps[0].action else {
        panic!("{:?}", runbook.steps[0].action)
    };
    assert_eq!(am.url.as_str(), "http://10.20.0.70:9093/");
    assert_eq!(am.labels["severity"], "critical");
    assert_eq!(am.labels["team"], "dc-ops");
    assert_eq!(am.labels["alertname"], "FirebreakIncident");
    let firebreak::runbook::steps::Action::Pagerduty(p) = &runbook.steps[1].action else {
        panic!("{:?}", runbook.steps[1].action)
    };
    assert_eq!(p.url.as_str(), "https://events.pagerduty.com/v2/enqueue");
    assert_eq!(
        p.routing_key_file,
        Path::new("/etc/firebreak/pagerduty.key")
    );
    assert_eq!(p.severity.as_str(), "critical");
    for s in &runbook.steps {
        assert_eq!(s.on_failure, firebreak::config::OnFailure::Continue);
    }
}
