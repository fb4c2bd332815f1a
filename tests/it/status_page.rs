//! The local status page in a real browser: headless Chromium (Debian `chromium` +
//! `chromium-driver`) over WebDriver, the real `firebreak` binary, and the simulator
//! playing a room over Modbus TCP. Screenshots are saved under `target/status-page/`.

use crate::support;

use fantoccini::{Client, Locator};
use firebreak::detect::Cause;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::{start_sim, status_of, Agent};
use support::chrome::ChromeDriver;
use support::events::Event;

const TOKEN: &str = "page-test-token-0123456789";
const ZONE: &str = "b3-battery-room";

/// A room config (contract keys only): env + UPS over Modbus, and a runbook of two
/// commands around a short wait, so that failover takes a moment and verifies.
fn room_config(dir: &Path, sim: &hardware_sim::PlayHandle, api_port: u16) -> PathBuf {
    let token_file = dir.join("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let text = format!(
        r#"
[agent]
name = "page-test"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{api_port}"
token_file = "{token}"

{sensors}

[[zones]]
id = "{ZONE}"
runbook = "evacuate-b3"
confirm = 2

[[runbooks]]
name = "evacuate-b3"

[[runbooks.steps]]
name = "stop batch writers"
type = "command"
argv = ["/bin/sh", "-c", "echo stopping batch in $1", "sh", "{{{{zone}}}}"]
timeout = "5s"

[[runbooks.steps]]
name = "let sessions drain"
type = "wait"
duration = "2s"

[[runbooks.steps]]
name = "announce failover"
type = "command"
argv = ["/bin/echo", "failed over {{{{zone}}}}"]
timeout = "5s"

[[feeds]]
id = "b3-pdu-a"
description = "B3 PDU A, breaker 3-14 in panel LV-B3"
zones = ["{ZONE}"]
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

fn start_agent(rt: &tokio::runtime::Runtime, config: &Path, port: u16) -> Agent {
    let agent = Agent::start(config, &config.parent().unwrap().join("state/events.jsonl"));
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let up = rt.block_on(async {
            reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                .await
                .is_ok_and(|r| r.status().is_success())
        });
        if up {
            return agent;
        }
        assert!(
            Instant::now() < until,
            "agent API did not come up\n{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where the screenshots go: `target/status-page/<name>.png`.
fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = artifact(name);
    std::fs::write(&path, png).unwrap();
    path
}

/// The text of the first element matching `css`, or "" when there is none yet.
async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn attr_of(c: &Client, css: &str, attr: &str) -> Option<String> {
    c.find(Locator::Css(css))
        .await
        .ok()?
        .attr(attr)
        .await
        .ok()?
}

/// Polls the page (as the operator would look at it) until `what` holds, or panics with
/// the page text and the agent's diagnostics once `deadline` has passed.
async fn wait_page<F, Fut>(c: &Client, agent: &Agent, what: &str, deadline: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if check().await {
            return;
        }
        if Instant::now() > until {
            let body = text_of(c, "body").await;
            panic!(
                "timed out after {deadline:?} waiting for the page to show {what}\n--- page ---\n{body}\n{}",
                agent.diagnostics()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn zone_css(inner: &str) -> String {
    format!(r#"section.zone[data-zone="{ZONE}"]{inner}"#)
}

#[test]
fn fire_scenario_shows_critical_then_safe_to_cut_power_without_a_reload() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    // The browser first: the scenario starts playing as soon as the simulator is up, and
    // its room is quiet for its first 5 s (12 s before the heat), at real speed.
    let driver = ChromeDriver::start(dir.path());
    let c = rt.block_on(driver.session(&dir.path().join("profile-js"), true));
    let sim = start_sim(&rt, "offgas-then-heat.toml", 1.0);
    let config = room_config(dir.path(), &sim, port);
    let agent = start_agent(&rt, &config, port);
    let url = format!("http://127.0.0.1:{port}/");

    rt.block_on(async {
        c.goto(&url).await.unwrap();
        // A mark in this document: a reload or navigation would lose it.
        c.execute("window.__notReloaded = 'yes'; return true;", vec![])
            .await
            .unwrap();
        assert!(
            text_of(&c, "#feeds").await.contains("No breaker may be opened yet"),
            "the power map is on the page before any failover"
        );
        let first = attr_of(&c, &zone_css(""), "data-level").await;
        assert_ne!(
            first.as_deref(),
            Some("critical"),
            "the page must see the change happen: it loaded after the zone was already \
             critical (the room is quiet for the scenario's first 5 s, the heat starts at 12 s)\n{}",
            agent.diagnostics()
        );

        wait_page(
            &c,
            &agent,
            "the zone CRITICAL",
            Duration::from_secs(120),
            || async {
                attr_of(&c, &zone_css(""), "data-level").await.as_deref() == Some("critical")
            },
        )
        .await;
        assert_eq!(
            text_of(&c, &zone_css(" .level-text")).await,
            "CRITICAL",
            "the level is written out, not only coloured"
        );
        assert!(text_of(&c, "#summary").await.contains("AT RISK"));
        let evidence = text_of(&c, &zone_css(" tr.evidence")).await;
        assert!(
            evidence.contains("EVIDENCE"),
            "the sensors behind the decision are marked: {evidence}"
        );
        screenshot(&c, "fire-critical").await;

        wait_page(
            &c,
            &agent,
            "SAFE TO CUT POWER",
            Duration::from_secs(120),
            || async {
                text_of(&c, &zone_css(" .safe.safe-yes"))
                    .await
                    .contains("SAFE TO CUT POWER")
            },
        )
        .await;
        wait_page(
            &c,
            &agent,
            "the feed listed as safe to open",
            Duration::from_secs(30),
            || async {
                text_of(&c, "#feeds .feeds-safe")
                    .await
                    .contains("B3 PDU A, breaker 3-14 in panel LV-B3")
            },
        )
        .await;
        assert!(text_of(&c, "#feeds")
            .await
            .contains("You may open these breakers now"));
        let marker = c
            .execute("return window.__notReloaded || 'reloaded';", vec![])
            .await
            .unwrap();
        assert_eq!(marker, "yes", "the page updated in place, without a reload");

        let timeline = text_of(&c, &zone_css(" .timeline")).await;
        for expected in [
            "Decision: FIRE",
            "stop batch writers: OK, verified",
            "let sessions drain: OK, verified",
            "announce failover: OK, verified",
            "Runbook finished: safe to cut power",
        ] {
            assert!(timeline.contains(expected), "{expected:?} in\n{timeline}");
        }
        assert!(
            text_of(&c, &zone_css(" .incident-id"))
                .await
                .starts_with(ZONE),
            "the incident id is shown"
        );
        assert!(text_of(&c, "#conn").await.contains("LIVE"));
        assert!(
            c.title().await.unwrap().starts_with("CRITICAL"),
            "the tab's title follows the level"
        );
        let shot = screenshot(&c, "fire-safe-to-cut-power").await;
        assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

        // The same state, server-rendered, for a browser with JavaScript off.
        let nojs = driver
            .session(&dir.path().join("profile-nojs"), false)
            .await;
        nojs.goto(&url).await.unwrap();
        assert_eq!(
            attr_of(&nojs, &zone_css(""), "data-level").await.as_deref(),
            Some("critical")
        );
        assert!(text_of(&nojs, &zone_css(" .level-text")).await == "CRITICAL");
        assert!(text_of(&nojs, &zone_css(" .safe"))
            .await
            .contains("SAFE TO CUT POWER"));
        assert!(
            text_of(&nojs, "#conn").await.contains("Server-rendered"),
            "scripts really are off in this session"
        );
        let buttons = nojs
            .find(Locator::Css(&zone_css(" button[data-action=drill]")))
            .await
            .unwrap();
        assert!(
            !buttons.is_displayed().await.unwrap(),
            "actions need the script (and its token): hidden without it"
        );
        screenshot(&nojs, "no-javascript").await;
        // And on a phone-sized screen.
        c.set_window_size(412, 915).await.unwrap();
        let overflow = c
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(overflow, 0, "no sideways scrolling on a phone");
        screenshot(&c, "phone").await;
        nojs.close().await.unwrap();
        c.close().await.unwrap();
    });
    drop(agent);
    rt.block_on(sim.shutdown());
}

#[test]
fn operator_actions_need_the_token_and_show_their_result() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let sim = start_sim(&rt, "normal-day.toml", 1.0);
    let config = room_config(dir.path(), &sim, port);
    let mut agent = start_agent(&rt, &config, port);
    let driver = ChromeDriver::start(dir.path());
    let drills = |agent: &Agent| {
        agent
            .events()
            .iter()
            .filter(|e| {
                matches!(
                    e.event,
                    Event::RunbookStarted {
                        cause: Cause::Drill,
                        ..
                    }
                )
            })
            .count()
    };

    rt.block_on(async {
        let c = driver.session(&dir.path().join("profile"), true).await;
        c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
        assert_eq!(text_of(&c, "#token-state").await, "no token");

        // No token: the page refuses by itself and sends nothing.
        let drill = zone_css(" button[data-action=drill]");
        c.find(Locator::Css(&drill))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let refused = text_of(&c, "#action-result").await;
        assert!(refused.contains("REFUSED"), "{refused}");
        assert!(refused.contains("needs the API token"), "{refused}");
        assert_eq!(drills(&agent), 0, "nothing reached the agent");

        // A wrong token: the agent refuses and the page says so.
        let set_token = |t: &'static str| {
            let c = c.clone();
            async move {
                let input = c.find(Locator::Id("token")).await.unwrap();
                input.send_keys(t).await.unwrap();
                c.find(Locator::Css("#token-form button[type=submit]"))
                    .await
                    .unwrap()
                    .click()
                    .await
                    .unwrap();
            }
        };
        set_token("not-the-token").await;
        c.find(Locator::Css(&drill))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_page(
            &c,
            &agent,
            "the agent's refusal",
            Duration::from_secs(30),
            || async { text_of(&c, "#action-result").await.contains("HTTP 401") },
        )
        .await;
        let refused = text_of(&c, "#action-result").await;
        assert!(refused.contains("REFUSED"), "{refused}");
        assert!(refused.contains("wrong bearer token"), "{refused}");
        assert_eq!(drills(&agent), 0, "a wrong token runs nothing");

        // The token is kept for this tab only (sessionStorage), never in the page.
        c.find(Locator::Id("forget-token"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        set_token(TOKEN).await;
        assert_eq!(text_of(&c, "#token-state").await, "token set for this tab");
        let stored = c
            .execute(
                "return [sessionStorage.getItem('firebreak-api-token'), localStorage.length];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(stored, serde_json::json!([TOKEN, 0]));

        c.find(Locator::Css(&drill))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_page(
            &c,
            &agent,
            "the drill's result",
            Duration::from_secs(60),
            || async { text_of(&c, "#action-result").await.contains("PASS") },
        )
        .await;
        let result = text_of(&c, "#action-result table.drill-steps").await;
        for step in [
            "stop batch writers",
            "let sessions drain",
            "announce failover",
        ] {
            assert!(
                result.contains(step),
                "{step} in the drill result:\n{result}"
            );
        }
        assert_eq!(
            result.matches("✓ OK").count(),
            3,
            "every step passed:\n{result}"
        );
        assert_eq!(drills(&agent), 1, "one drill, reported to the event log");
        screenshot(&c, "drill-result").await;

        // A destructive action asks first; dismissing it sends nothing.
        c.find(Locator::Css(&zone_css(" button[data-action=failover]")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert!(c
            .get_alert_text()
            .await
            .unwrap()
            .contains("Start the failover runbook"));
        c.dismiss_alert().await.unwrap();
        assert!(text_of(&c, "#action-result").await.contains("Cancelled"));
        assert!(
            !agent.events().iter().any(|e| matches!(
                e.event,
                Event::RunbookStarted {
                    cause: Cause::Manual,
                    ..
                }
            )),
            "a dismissed confirmation starts no failover"
        );

        // Accepted: the failover runs and the page follows it to the end.
        c.find(Locator::Css(&zone_css(" button[data-action=failover]")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.accept_alert().await.unwrap();
        wait_page(
            &c,
            &agent,
            "the failover's incident",
            Duration::from_secs(30),
            || async {
                text_of(&c, "#action-result")
                    .await
                    .contains("started, incident")
            },
        )
        .await;
        wait_page(
            &c,
            &agent,
            "the manual failover's outcome",
            Duration::from_secs(60),
            || async {
                text_of(&c, &zone_css(" .safe.safe-yes"))
                    .await
                    .contains("SAFE TO CUT POWER")
                    && attr_of(&c, &zone_css(""), "data-runbook-running")
                        .await
                        .as_deref()
                        == Some("false")
            },
        )
        .await;
        assert!(text_of(&c, &zone_css(" .timeline"))
            .await
            .contains("Decision: MANUAL"));
        screenshot(&c, "manual-failover").await;

        // Reset asks first, then closes the incident.
        c.find(Locator::Css(&zone_css(" button[data-action=reset]")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert!(c.get_alert_text().await.unwrap().contains("Reset zone"));
        c.accept_alert().await.unwrap();
        wait_page(
            &c,
            &agent,
            "the reset's result",
            Duration::from_secs(30),
            || async { text_of(&c, "#action-result").await.contains("closed") },
        )
        .await;
        wait_page(
            &c,
            &agent,
            "the zone without incident",
            Duration::from_secs(30),
            || async {
                text_of(&c, &zone_css(" .safe"))
                    .await
                    .contains("No incident")
            },
        )
        .await;
        assert!(agent
            .events()
            .iter()
            .any(|e| matches!(e.event, Event::IncidentReset { .. })));

        // The agent goes away: the page says its data is stale.
        agent.kill9();
        wait_page(&c, &agent, "STALE", Duration::from_secs(60), || async {
            text_of(&c, "#conn").await.contains("STALE")
        })
        .await;
        assert_eq!(
            attr_of(&c, "#zones", "data-stale").await.as_deref(),
            Some("true")
        );
        screenshot(&c, "agent-unreachable").await;
        c.close().await.unwrap();
    });
    rt.block_on(sim.shutdown());
}

#[test]
fn plain_get_serves_the_current_levels_server_rendered() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let sim = start_sim(&rt, "normal-day.toml", 1.0);
    let config = room_config(dir.path(), &sim, port);
    let agent = start_agent(&rt, &config, port);

    rt.block_on(async {
        let base = format!("http://127.0.0.1:{port}");
        let status = status_of(
            &reqwest::get(format!("{base}/api/v1/status"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        let level = status.zones[0].level.as_str().to_string();
        let r = reqwest::get(format!("{base}/")).await.unwrap();
        assert_eq!(r.status(), 200);
        let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ctype.starts_with("text/html"), "{ctype}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        let html = r.text().await.unwrap();
        assert!(
            html.contains(&format!(r#"data-zone="{ZONE}" data-level="{level}""#)),
            "{html}"
        );
        assert!(html.contains(&format!(
            r#"<span class="level-text">{}</span>"#,
            level.to_uppercase()
        )));
        assert!(html.contains("b3.offgas.1"));
        for asset in ["/assets/page.css", "/assets/page.js"] {
            let r = reqwest::get(format!("{base}{asset}")).await.unwrap();
            assert_eq!(r.status(), 200, "{asset}");
            assert!(!r.text().await.unwrap().is_empty(), "{asset}");
        }
    });
    drop(agent);
    rt.block_on(sim.shutdown());
}
