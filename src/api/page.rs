//! The local status page (`GET /`): one self-contained page for the person standing in
//! the building. Rendered here, on the server, from the same JSON as `/api/v1/status`, so
//! it is complete without JavaScript; the script only polls `/ui/zones` (this same
//! rendering, as a fragment) and runs operator actions with the token.
//!
//! Every string from the status (zone and sensor ids, step names, errors) goes through
//! [`esc`] before it reaches the HTML.

use crate::config::Kind;
use serde_json::Value;
use std::fmt::Write as _;

pub const CSS: &str = include_str!("assets/page.css");
pub const JS: &str = include_str!("assets/page.js");

/// How often the script polls, in milliseconds; also written into the page.
pub const POLL_MS: u64 = 2000;

/// Without JavaScript the page reloads itself this often (a `<meta http-equiv=refresh>`).
pub const NOSCRIPT_REFRESH_S: u64 = 10;

/// HTML-escapes text for element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => String::new(),
        other => esc(&other.to_string()),
    }
}

/// The whole page. `status` is `None` when the engine did not answer (`why` says so);
/// `rendered_at` is the wall time (RFC 3339) the view was made, shown to readers without JS.
pub fn page(status: Option<&Value>, why: Option<&str>, rendered_at: &str) -> String {
    let rendered = time_of(&Value::String(rendered_at.to_string()));
    let agent = status.map(|s| text(&s["agent"])).unwrap_or_default();
    let level = status.map(worst_level).unwrap_or("no data").to_uppercase();
    let body = match status {
        Some(s) => zones_fragment(s),
        None => format!(
            r#"<p class="banner lvl-unknown" role="alert"><span class="sym" aria-hidden="true">?</span> NO DATA: {}</p>"#,
            esc(why.unwrap_or("the agent did not answer"))
        ),
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{level} · Firebreak {agent}</title>
<noscript><meta http-equiv="refresh" content="{NOSCRIPT_REFRESH_S}"></noscript>
<link rel="stylesheet" href="/assets/page.css">
<script src="/assets/page.js" defer></script>
</head>
<body data-poll-ms="{POLL_MS}">
<header class="top">
<h1>Firebreak <span class="agent">{agent}</span></h1>
<p id="conn" class="conn conn-ok">Server-rendered at {rendered}: reload the page for fresh data.</p>
</header>
<section id="operator" class="operator js-only" aria-label="Operator actions">
<form id="token-form" autocomplete="off">
<label for="token">API token (kept for this tab only)</label>
<input id="token" name="token" type="password" autocomplete="off">
<button type="submit">Use token</button>
<button type="button" id="forget-token">Forget token</button>
<span id="token-state" class="token-state">no token</span>
</form>
<div id="action-result" class="action-result" role="status" aria-live="assertive" hidden></div>
</section>
<noscript><p class="note">JavaScript is off: this view reloads itself every {NOSCRIPT_REFRESH_S} s (check the time above) and operator actions are unavailable.</p></noscript>
<main id="zones">
{body}
</main>
</body>
</html>
"#
    )
}

fn level_symbol(level: &str) -> &'static str {
    match level {
        "normal" => "\u{2713}",
        "warning" => "!",
        "alarm" => "!!",
        "critical" => "\u{2716}",
        _ => "?",
    }
}

fn level_class(level: &str) -> &'static str {
    match level {
        "normal" => "lvl-normal",
        "warning" => "lvl-warning",
        "alarm" => "lvl-alarm",
        "critical" => "lvl-critical",
        _ => "lvl-unknown",
    }
}

fn rank(level: &str) -> u8 {
    match level {
        "critical" => 4,
        "alarm" => 3,
        "warning" => 2,
        "normal" => 1,
        _ => 0,
    }
}

/// The most severe zone level (`normal` without zones).
fn worst_level(status: &Value) -> &str {
    status["zones"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|z| z["level"].as_str().unwrap_or(""))
        .max_by_key(|l| rank(l))
        .unwrap_or("normal")
}

/// The part the script replaces on every poll: summary banner and one card per zone.
pub fn zones_fragment(status: &Value) -> String {
    let empty = Vec::new();
    let zones = status["zones"].as_array().unwrap_or(&empty);
    let mut out = String::new();
    let worst = worst_level(status);
    let at_risk: Vec<String> = zones
        .iter()
        .filter(|z| rank(z["level"].as_str().unwrap_or("")) > 1)
        .map(|z| {
            format!(
                "{} {}",
                text(&z["id"]),
                z["level"].as_str().unwrap_or("unknown").to_uppercase()
            )
        })
        .collect();
    let summary = if zones.is_empty() {
        "No zones configured".to_string()
    } else if at_risk.is_empty() {
        format!("All {} zone(s) NORMAL", zones.len())
    } else {
        format!("AT RISK: {}", at_risk.join(", "))
    };
    let _ = write!(
        out,
        r#"<p class="banner {cls}" id="summary" data-level="{lvl}"><span class="sym" aria-hidden="true">{sym}</span> {summary}</p>"#,
        cls = level_class(worst),
        lvl = esc(worst),
        sym = level_symbol(worst),
    );
    if status["dry_run"] == true {
        out.push_str(r#"<p class="note">DRY RUN: this agent changes nothing; it will never declare safe to cut power.</p>"#);
    }
    if status["event_log_writable"] == false {
        out.push_str(r#"<p class="note warn">The event log cannot be written.</p>"#);
    }
    for z in zones {
        zone_card(&mut out, z);
    }
    out
}

fn zone_card(out: &mut String, z: &Value) {
    let id = text(&z["id"]);
    let level = z["level"].as_str().unwrap_or("unknown");
    let _ = write!(
        out,
        r#"<section class="zone {cls}" data-zone="{id}" data-level="{lvl}" data-runbook-running="{running}" aria-labelledby="z-{id}">
<header class="zone-head"><h2 id="z-{id}">{id}</h2><p class="level"><span class="sym" aria-hidden="true">{sym}</span> <span class="level-text">{up}</span></p></header>
"#,
        cls = level_class(level),
        lvl = esc(level),
        sym = level_symbol(level),
        up = esc(&level.to_uppercase()),
        running = z["runbook_running"] == true,
    );
    safety(out, z);
    power(out, z);
    timeline(out, z);
    sensors(out, z);
    let _ = write!(
        out,
        r#"<div class="actions js-only"><button type="button" data-action="drill" data-zone="{id}">Drill</button> <button type="button" data-action="failover" data-zone="{id}" class="danger">Manual failover</button> <button type="button" data-action="reset" data-zone="{id}">Reset</button></div>
</section>
"#
    );
}

/// The one line the operator came for: may the power be cut?
fn safety(out: &mut String, z: &Value) {
    let has_incident = !z["incident"].is_null();
    let running = z["runbook_running"] == true;
    let (cls, msg) = if z["safe_to_cut_power"] == true {
        (
            "safe-yes",
            "\u{2713} SAFE TO CUT POWER: failover ran and every step was verified".to_string(),
        )
    } else if running {
        (
            "safe-no",
            "\u{2716} DO NOT CUT POWER YET: failover is running".to_string(),
        )
    } else if has_incident && !z["finished_at"].is_null() {
        (
            "safe-no",
            "\u{2716} NOT SAFE TO CUT POWER: failover did not complete and verify (see steps)"
                .to_string(),
        )
    } else if has_incident {
        (
            "safe-no",
            "\u{2716} NOT SAFE TO CUT POWER: failover has not finished".to_string(),
        )
    } else {
        ("safe-none", "No incident: failover has not run".to_string())
    };
    let _ = writeln!(out, r#"<p class="safe {cls}">{msg}</p>"#);
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// UPS state from the zone's power sensors, and issue 11's forecast when present.
fn power(out: &mut String, z: &Value) {
    let empty = Vec::new();
    let sensors = z["sensors"].as_array().unwrap_or(&empty);
    let mut parts: Vec<String> = Vec::new();
    for s in sensors {
        let id = text(&s["id"]);
        match (s["kind"].as_str(), s["value"].as_f64()) {
            (Some("on_battery"), Some(v)) => parts.push(format!(
                r#"<span class="{}">UPS {} ({id})</span>"#,
                if v >= 1.0 { "pw-bad" } else { "pw-ok" },
                if v >= 1.0 { "ON BATTERY" } else { "on mains" }
            )),
            (Some("on_battery"), None) => {
                parts.push(format!("<span>UPS on battery: unknown ({id})</span>"))
            }
            (Some("runtime"), Some(v)) => {
                parts.push(format!("<span>UPS runtime {} ({id})</span>", fmt_secs(v)))
            }
            (Some("runtime"), None) => {
                parts.push(format!("<span>UPS runtime unknown ({id})</span>"))
            }
            _ => {}
        }
    }
    if let Some(secs) = z.get("seconds_to_power_loss").and_then(Value::as_f64) {
        let basis = z
            .get("power_loss_basis")
            .map(text)
            .filter(|b| !b.is_empty())
            .map(|b| format!(" ({b})"))
            .unwrap_or_default();
        parts.push(format!(
            r#"<strong class="pw-bad">Power loss in {}{basis}</strong>"#,
            fmt_secs(secs)
        ));
    }
    if let Some(prep) = z.get("prepare").filter(|p| !p.is_null()) {
        let shown = match prep {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| format!("{}: {}", esc(k), text(v)))
                .collect::<Vec<_>>()
                .join(", "),
            other => text(other),
        };
        parts.push(format!("<span>Prepare: {shown}</span>"));
    }
    if !parts.is_empty() {
        let _ = writeln!(out, r#"<p class="power">{}</p>"#, parts.join(" · "));
    }
}

fn time_of(ts: &Value) -> String {
    // RFC 3339 `2026-11-25T10:00:00.000Z`: the page shows the UTC time of day.
    match ts.as_str() {
        Some(t) => match t.get(11..19) {
            Some(hms) => format!(r#"<time datetime="{}">{} UTC</time>"#, esc(t), esc(hms)),
            None => esc(t),
        },
        None => String::new(),
    }
}

/// Incident id, the decision and each step with result and time.
fn timeline(out: &mut String, z: &Value) {
    if z["incident"].is_null() {
        return;
    }
    let _ = writeln!(
        out,
        r#"<div class="incident"><p>Incident <code class="incident-id">{}</code></p><ol class="timeline">"#,
        text(&z["incident"])
    );
    let _ = writeln!(
        out,
        r#"<li class="decision">{} Decision: {} · runbook <code>{}</code> started</li>"#,
        time_of(&z["started_at"]),
        z["cause"]
            .as_str()
            .map(|c| esc(&c.to_uppercase()))
            .unwrap_or_else(|| "incident".into()),
        text(&z["runbook"]),
    );
    let empty = Vec::new();
    for s in z["steps"].as_array().unwrap_or(&empty) {
        let status = s["status"].as_str().unwrap_or("pending");
        let (cls, word) = match status {
            "succeeded" if s["verified"] == true => ("st-ok", "OK, verified"),
            "succeeded" => ("st-warn", "OK, not verified"),
            "failed" => ("st-bad", "FAILED"),
            "started" => ("st-run", "running"),
            _ => ("st-wait", "pending"),
        };
        let err = s["error"]
            .as_str()
            .map(|e| format!(r#" <span class="err">{}</span>"#, esc(e)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            r#"<li class="step {cls}">{} <span class="step-name">{}</span>: <strong>{word}</strong>{err}</li>"#,
            time_of(&s["finished_at"]),
            text(&s["name"]),
        );
    }
    if !z["finished_at"].is_null() {
        let safe = z["safe_to_cut_power"] == true;
        let _ = writeln!(
            out,
            r#"<li class="{}">{} Runbook finished: {}</li>"#,
            if safe { "st-ok" } else { "st-bad" },
            time_of(&z["finished_at"]),
            if safe {
                "safe to cut power"
            } else {
                "NOT safe to cut power"
            }
        );
    }
    out.push_str("</ol></div>\n");
}

fn state_symbol(state: &str) -> &'static str {
    match state {
        "ok" => "\u{2713}",
        "warn" => "!",
        "alarm" => "!!",
        "critical" => "\u{2716}",
        "stale" => "\u{231b}",
        _ => "?",
    }
}

fn sensors(out: &mut String, z: &Value) {
    let empty = Vec::new();
    let list = z["sensors"].as_array().unwrap_or(&empty);
    if list.is_empty() {
        return;
    }
    out.push_str(
        r#"<table class="sensors"><thead><tr><th>Sensor</th><th>Value</th><th>State</th><th>Age</th><th>Trend</th></tr></thead><tbody>
"#,
    );
    for s in list {
        let state = s["state"].as_str().unwrap_or("unknown");
        let evidence = state != "ok";
        let kind = s["kind"].as_str().unwrap_or("");
        let unit = Kind::parse(kind).map(Kind::unit).unwrap_or("");
        let value = match (kind, s["value"].as_f64()) {
            ("on_battery", Some(v)) if v >= 1.0 => "ON BATTERY".to_string(),
            ("on_battery", Some(_)) => "on mains".to_string(),
            (_, Some(v)) => format!("{} {}", fmt_num(v), esc(unit)),
            (_, None) => "no value".into(),
        };
        let age = s["age_ms"]
            .as_u64()
            .map(|ms| {
                if ms < 1000 {
                    "&lt; 1 s".to_string()
                } else {
                    fmt_secs(ms as f64 / 1000.0)
                }
            })
            .unwrap_or_default();
        let state_cls = match state {
            "ok" => "s-ok",
            "warn" => "s-warn",
            "alarm" => "s-alarm",
            "critical" => "s-critical",
            _ => "s-stale",
        };
        let _ = writeln!(
            out,
            r#"<tr class="sensor{ev}" data-sensor="{id}"><th scope="row">{id} <small>{kind}</small>{evtag}</th><td class="value">{value}</td><td class="state {state_cls}"><span aria-hidden="true">{sym}</span> {st}{why}</td><td class="age">{age}</td><td class="trend">{trend}</td></tr>"#,
            why = match s["reason"].as_str() {
                Some(r) if evidence && !r.is_empty() && r != "cleared" => {
                    format!(r#"<small class="reason">{}</small>"#, esc(r))
                }
                _ => String::new(),
            },
            ev = if evidence { " evidence" } else { "" },
            evtag = if evidence {
                r#" <span class="evtag">evidence</span>"#
            } else {
                ""
            },
            id = text(&s["id"]),
            kind = esc(kind),
            sym = state_symbol(state),
            st = esc(&state.to_uppercase()),
            trend = sparkline(&s["trend"]),
        );
    }
    out.push_str("</tbody></table>\n");
}

/// An inline SVG polyline of the trend (gaps break the line); empty without data.
pub fn sparkline(trend: &Value) -> String {
    let Some(points) = trend.as_array() else {
        return String::new();
    };
    let values: Vec<Option<f64>> = points.iter().map(Value::as_f64).collect();
    let known: Vec<f64> = values.iter().flatten().copied().collect();
    if known.len() < 2 {
        return String::new();
    }
    let lo = known.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = known.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (w, h) = (120.0, 28.0);
    let n = (values.len() - 1).max(1) as f64;
    // A floor on the vertical scale, so sensor noise in a quiet room stays a flat line
    // (1 unit, or 5 % of the largest magnitude), centred on the data.
    let floor = (0.05 * lo.abs().max(hi.abs())).max(1.0);
    let (lo, span) = if hi - lo >= floor {
        (lo, hi - lo)
    } else {
        ((lo + hi) / 2.0 - floor / 2.0, floor)
    };
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let x = i as f64 / n * w;
                let y = h - 2.0 - (v - lo) / span * (h - 4.0);
                let _ = write!(current, "{x:.1},{y:.1} ");
            }
            None if !current.is_empty() => lines.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    let mut svg = format!(
        r#"<svg class="spark" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="trend from {} to {}">"#,
        fmt_num(known[0]),
        fmt_num(known[known.len() - 1])
    );
    for l in lines {
        let _ = write!(svg, r#"<polyline points="{}"/>"#, l.trim_end());
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TS: &str = "2026-11-25T10:00:00.000Z";

    fn zone(level: &str) -> Value {
        json!({
            "id": "b3-battery-room",
            "level": level,
            "incident": null,
            "runbook": "evacuate-b3",
            "runbook_running": false,
            "safe_to_cut_power": false,
            "steps": null,
            "sensors": [
                {"id": "b3.temp.row1", "kind": "temperature", "state": "ok", "value": 24.5, "age_ms": 120, "trend": [24.0, 24.2, null, 24.5]},
                {"id": "b3.offgas.1", "kind": "offgas", "state": "critical", "reason": "above:critical_above", "value": 250.0, "age_ms": 90_000},
                {"id": "ups-b3-1.on_battery", "kind": "on_battery", "state": "ok", "value": 1.0, "age_ms": 10},
                {"id": "ups-b3-1.runtime", "kind": "runtime", "state": "ok", "value": 600.0, "age_ms": 10},
            ],
        })
    }

    fn status(zones: Vec<Value>) -> Value {
        json!({"agent": "edge-1", "dry_run": false, "event_log_writable": true, "zones": zones})
    }

    #[test]
    fn level_is_written_in_words_not_only_colour() {
        let html = page(Some(&status(vec![zone("alarm")])), None, TS);
        assert!(html.contains(r#"data-level="alarm""#));
        assert!(html.contains(r#"<span class="level-text">ALARM</span>"#));
        assert!(html.contains("AT RISK: b3-battery-room ALARM"));
        assert!(html.contains("<title>ALARM · Firebreak edge-1</title>"));
    }

    #[test]
    fn every_string_from_the_status_is_escaped() {
        let mut z = zone("critical");
        z["id"] = json!("<script>alert(1)</script>");
        z["sensors"][0]["id"] = json!("a\"b'c&d");
        z["incident"] = json!("i<1>");
        z["steps"] = json!([{"name": "<img src=x>", "status": "failed", "error": "</li><b>x", "finished_at": "2026-11-25T1\u{e9}:00<b>0"}]);
        let html = zones_fragment(&status(vec![z]));
        for raw in ["<script>", "a\"b'c&d", "i<1>", "<img", "</li><b>", "<b>0"] {
            assert!(!html.contains(raw), "{raw} must be escaped");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a&quot;b&#39;c&amp;d"));
    }

    #[test]
    fn safe_to_cut_power_and_the_step_timeline_are_shown() {
        let mut z = zone("critical");
        z["incident"] = json!("b3-20261125T100000000Z-1");
        z["cause"] = json!("fire");
        z["started_at"] = json!("2026-11-25T10:00:00.000Z");
        z["finished_at"] = json!("2026-11-25T10:00:04.000Z");
        z["safe_to_cut_power"] = json!(true);
        z["steps"] = json!([{"name": "move app", "status": "succeeded", "verified": true, "attempts": 1, "finished_at": "2026-11-25T10:00:03.500Z"}]);
        let html = zones_fragment(&status(vec![z]));
        assert!(html.contains("SAFE TO CUT POWER"));
        assert!(html.contains("Decision: FIRE"));
        assert!(html
            .contains(r#"<span class="step-name">move app</span>: <strong>OK, verified</strong>"#));
        assert!(html.contains("10:00:03 UTC"));
        assert!(html.contains("b3-20261125T100000000Z-1"));
    }

    #[test]
    fn a_running_or_failed_runbook_says_not_to_cut_power() {
        let mut z = zone("critical");
        z["incident"] = json!("i-1");
        z["runbook_running"] = json!(true);
        let html = zones_fragment(&status(vec![z.clone()]));
        assert!(html.contains("DO NOT CUT POWER YET"));
        z["runbook_running"] = json!(false);
        z["finished_at"] = json!("2026-11-25T10:00:04.000Z");
        z["steps"] = json!([{"name": "s", "status": "failed", "error": "timeout"}]);
        let html = zones_fragment(&status(vec![z]));
        assert!(html.contains("NOT SAFE TO CUT POWER"));
        assert!(html.contains("FAILED"));
        assert!(!html.contains("\u{2713} SAFE TO CUT POWER"));
    }

    #[test]
    fn evidence_sensors_show_value_state_age_and_trend() {
        let html = zones_fragment(&status(vec![zone("critical")]));
        assert!(html.contains(r#"<tr class="sensor evidence" data-sensor="b3.offgas.1">"#));
        assert!(html.contains("250 ppm"));
        assert!(html.contains(r#"<small class="reason">above:critical_above</small>"#));
        assert!(html.contains("CRITICAL"));
        assert!(html.contains("1 min 30 s"));
        assert!(html.contains("24.5 C"));
        assert_eq!(
            html.matches("<polyline").count(),
            2,
            "the gap splits the line"
        );
    }

    #[test]
    fn ups_state_and_issue_11_fields_are_rendered_when_present_and_tolerated_when_absent() {
        let html = zones_fragment(&status(vec![zone("warning")]));
        assert!(html.contains("ON BATTERY"));
        assert!(html.contains("UPS runtime 10 min 00 s (ups-b3-1.runtime)"));
        assert!(!html.contains("Power loss in"));
        let mut z = zone("warning");
        z["seconds_to_power_loss"] = json!(95.0);
        z["power_loss_basis"] = json!("runtime <ups>");
        z["prepare"] = json!({"step": "drain"});
        let html = zones_fragment(&status(vec![z]));
        assert!(html.contains("Power loss in 1 min 35 s (runtime &lt;ups&gt;)"));
        assert!(html.contains("Prepare: step: drain"));
    }

    #[test]
    fn no_status_renders_a_page_that_says_so() {
        let html = page(None, Some("the agent is busy"), TS);
        assert!(html.contains("NO DATA: the agent is busy"));
        assert!(html.contains(
            "Server-rendered at <time datetime=\"2026-11-25T10:00:00.000Z\">10:00:00 UTC</time>"
        ));
        assert!(html.contains(r#"<script src="/assets/page.js" defer></script>"#));
    }

    #[test]
    fn the_page_references_only_its_own_assets() {
        let html = page(Some(&status(vec![zone("normal")])), None, TS);
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!CSS.contains("http") && !CSS.contains("@import"));
        assert!(!JS.contains("http://") && !JS.contains("https://"));
        assert!(html.contains("All 1 zone(s) NORMAL"));
    }

    #[test]
    fn sparkline_keeps_noise_flat_and_shows_a_real_rise() {
        let flat = sparkline(&json!([22.4, 22.6, 22.4]));
        let ys: Vec<f64> = flat
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        let spread = ys.iter().cloned().fold(f64::MIN, f64::max)
            - ys.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread < 6.0, "0.2 C of noise stays nearly flat: {flat}");
        let rise = sparkline(&json!([23.0, 50.0, 85.0]));
        assert!(rise.contains(r#"points="0.0,26.0 60.0,"#), "{rise}");
        assert!(rise.contains("120.0,2.0"), "{rise}");
        assert!(sparkline(&json!([1.0])).is_empty(), "one point is no trend");
    }
}
