//! The local status page (`GET /`): one self-contained page for the person standing in
//! the building. Rendered here, on the server, from the same document as `/api/v1/status`
//! ([`Status`]), so it is complete without JavaScript; the script only polls `/ui/zones`
//! (this same rendering, as a fragment) and runs operator actions with the token.
//!
//! Every string from the status (zone and sensor ids, step names, errors) goes through
//! [`esc`] before it reaches the HTML.

use super::status::{Sensor, Status, Zone};
use crate::config::Kind;
use crate::detect::{Reason, SensorState, ZoneLevel};
use crate::journal::StepStatus;
use crate::staged::Basis;
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

/// The whole page. `status` is `None` when the engine did not answer (`why` says so);
/// `rendered_at` is the wall time (RFC 3339) the view was made, shown to readers without JS.
pub fn page(status: Option<&Status>, why: Option<&str>, rendered_at: &str) -> String {
    let rendered = time_of(Some(rendered_at));
    let agent = status.map(|s| esc(&s.agent)).unwrap_or_default();
    let level = status
        .map(|s| s.worst_level().as_str())
        .unwrap_or("no data")
        .to_uppercase();
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

fn level_symbol(level: ZoneLevel) -> &'static str {
    match level {
        ZoneLevel::Normal => "\u{2713}",
        ZoneLevel::Warning => "!",
        ZoneLevel::Alarm => "!!",
        ZoneLevel::Critical => "\u{2716}",
    }
}

fn level_class(level: ZoneLevel) -> &'static str {
    match level {
        ZoneLevel::Normal => "lvl-normal",
        ZoneLevel::Warning => "lvl-warning",
        ZoneLevel::Alarm => "lvl-alarm",
        ZoneLevel::Critical => "lvl-critical",
    }
}

/// The part the script replaces on every poll: summary banner and one card per zone.
pub fn zones_fragment(status: &Status) -> String {
    let zones = &status.zones;
    let mut out = String::new();
    let worst = status.worst_level();
    let at_risk: Vec<String> = zones
        .iter()
        .filter(|z| z.level > ZoneLevel::Normal)
        .map(|z| format!("{} {}", esc(&z.id), z.level.as_str().to_uppercase()))
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
        lvl = worst.as_str(),
        sym = level_symbol(worst),
    );
    if status.dry_run {
        out.push_str(r#"<p class="note">DRY RUN: this agent changes nothing; it will never declare safe to cut power.</p>"#);
    }
    if !status.event_log_writable {
        out.push_str(r#"<p class="note warn">The event log cannot be written.</p>"#);
    }
    feeds(&mut out, &status.feeds, zones);
    for z in zones {
        zone_card(&mut out, z);
    }
    out
}

/// The power map: the breakers that may be opened now, in large type, and the ones that
/// may not yet with what still runs on them. Firebreak never opens a breaker itself.
fn feeds(out: &mut String, feeds: &[crate::feeds::FeedState], zones: &[Zone]) {
    if feeds.is_empty() {
        return;
    }
    let (safe, not_yet): (Vec<_>, Vec<_>) = feeds.iter().partition(|f| f.safe_to_cut);
    out.push_str(r#"<section class="feeds" id="feeds" aria-labelledby="feeds-h"><h2 id="feeds-h">Power feeds</h2>"#);
    if safe.is_empty() {
        out.push_str(r#"<p class="feeds-none">No breaker may be opened yet: no feed has all of its zones failed over and verified.</p>"#);
    } else {
        out.push_str(r#"<p class="feeds-safe-h">You may open these breakers now:</p><ul class="feeds-safe">"#);
        for f in &safe {
            let loads = if f.loads.is_empty() {
                String::new()
            } else {
                format!(
                    r#" <span class="feed-loads">(also powers, nothing to move: {})</span>"#,
                    esc(&f.loads.join(", "))
                )
            };
            let _ = write!(
                out,
                r#"<li class="feed feed-safe" data-feed="{id}"><strong>{desc}</strong> <code>{id}</code>: zones {zones} failed over and verified{loads}</li>"#,
                id = esc(&f.id),
                desc = esc(&f.description),
                zones = esc(&f.zones.join(", ")),
            );
        }
        out.push_str("</ul>");
    }
    if !not_yet.is_empty() {
        out.push_str(r#"<p class="feeds-wait-h">Do NOT open yet:</p><ul class="feeds-wait">"#);
        for f in &not_yet {
            let waiting: Vec<String> = f
                .waiting_for
                .iter()
                .map(|zid| {
                    let why = zones
                        .iter()
                        .find(|z| &z.id == zid)
                        .map(still_runs)
                        .unwrap_or("state unknown");
                    format!("{} ({why})", esc(zid))
                })
                .collect();
            let _ = write!(
                out,
                r#"<li class="feed feed-wait" data-feed="{id}"><strong>{desc}</strong> <code>{id}</code>: still powers {waiting}</li>"#,
                id = esc(&f.id),
                desc = esc(&f.description),
                waiting = waiting.join(", "),
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>\n");
}

/// Why a zone still holds its feeds back, in a few words.
fn still_runs(z: &Zone) -> &'static str {
    if z.runbook_running {
        "failover running"
    } else if z.incident.is_some() && z.finished_at.is_some() {
        "failover did not complete and verify"
    } else if z.incident.is_some() {
        "failover has not finished"
    } else {
        "services still running: no failover"
    }
}

fn zone_card(out: &mut String, z: &Zone) {
    let id = esc(&z.id);
    let level = z.level;
    let _ = write!(
        out,
        r#"<section class="zone {cls}" data-zone="{id}" data-level="{lvl}" data-runbook-running="{running}" aria-labelledby="z-{id}">
<header class="zone-head"><h2 id="z-{id}">{id}</h2><p class="level"><span class="sym" aria-hidden="true">{sym}</span> <span class="level-text">{up}</span></p></header>
"#,
        cls = level_class(level),
        lvl = level.as_str(),
        sym = level_symbol(level),
        up = level.as_str().to_uppercase(),
        running = z.runbook_running,
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
fn safety(out: &mut String, z: &Zone) {
    let has_incident = z.incident.is_some();
    let rehearsed: Vec<&str> = z
        .steps
        .iter()
        .flatten()
        .filter(|s| s.status == StepStatus::Succeeded && z.rehearsed_steps.contains(&s.name))
        .map(|s| s.name.as_str())
        .collect();
    let (cls, msg) = if z.safe_to_cut_power && rehearsed.is_empty() {
        (
            "safe-yes",
            "\u{2713} SAFE TO CUT POWER: failover ran and every step was verified".to_string(),
        )
    } else if z.safe_to_cut_power {
        (
            "safe-yes",
            format!(
                "\u{2713} SAFE TO CUT POWER: every step that acts was verified; {} only rehearsed (dry run), did nothing and is not part of this verdict: {}",
                if rehearsed.len() == 1 { "1 step was".to_string() } else { format!("{} steps were", rehearsed.len()) },
                esc(&rehearsed.join(", "))
            ),
        )
    } else if z.runbook_running {
        (
            "safe-no",
            "\u{2716} DO NOT CUT POWER YET: failover is running".to_string(),
        )
    } else if has_incident && z.finished_at.is_some() {
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

/// UPS state from the zone's power sensors, and the expected power loss when known.
fn power(out: &mut String, z: &Zone) {
    let mut parts: Vec<String> = Vec::new();
    for s in &z.sensors {
        let id = esc(&s.id);
        match (s.kind, s.value) {
            (Kind::OnBattery, Some(v)) => parts.push(format!(
                r#"<span class="{}">UPS {} ({id})</span>"#,
                if v >= 1.0 { "pw-bad" } else { "pw-ok" },
                if v >= 1.0 { "ON BATTERY" } else { "on mains" }
            )),
            (Kind::OnBattery, None) => {
                parts.push(format!("<span>UPS on battery: unknown ({id})</span>"))
            }
            (Kind::Runtime, Some(v)) => {
                parts.push(format!("<span>UPS runtime {} ({id})</span>", fmt_secs(v)))
            }
            (Kind::Runtime, None) => parts.push(format!("<span>UPS runtime unknown ({id})</span>")),
            _ => {}
        }
    }
    if let Some(secs) = z.seconds_to_power_loss {
        parts.push(power_loss(secs, z.power_loss_basis));
    }
    if let Some(p) = &z.prepare {
        // In the order of the document's keys, as they always were shown.
        parts.push(format!(
            "<span>Prepare: incident: {}, ran_here: {}, runbook: {}, running: {}, undone: {}</span>",
            esc(&p.incident),
            p.ran_here,
            esc(&p.runbook),
            p.running,
            p.undone
        ));
    }
    if !parts.is_empty() {
        let _ = writeln!(out, r#"<p class="power">{}</p>"#, parts.join(" · "));
    }
}

/// The expected power loss as what it is: an estimate, named by what it is based on and
/// what it means, never a countdown that reads as already run out.
fn power_loss(secs: f64, basis: Option<Basis>) -> String {
    let now = secs < 1.0;
    match basis {
        Some(Basis::UpsRuntime) if now => r#"<strong class="pw-bad">Power loss expected now: the UPS on battery reports no runtime left (its own estimate)</strong>"#.to_string(),
        Some(Basis::UpsRuntime) => format!(
            r#"<strong class="pw-bad">Power loss expected in {}: the UPS on battery reports that much runtime left (its own estimate)</strong>"#,
            fmt_secs(secs)
        ),
        Some(Basis::TemperatureTrend) if now => r#"<strong class="pw-warn">Power cut expected now: the temperature trend reaches the cut-off now (estimate from the rise; the fire brigade cuts power when the fire grows)</strong>"#.to_string(),
        Some(Basis::TemperatureTrend) => format!(
            r#"<strong class="pw-warn">Power cut expected in about {}: the temperature trend reaches the cut-off then (estimate from the rise; the fire brigade cuts power when the fire grows)</strong>"#,
            fmt_secs(secs)
        ),
        None => format!(
            r#"<strong class="pw-warn">Power loss expected in about {} (estimate)</strong>"#,
            fmt_secs(secs)
        ),
    }
}

fn time_of(ts: Option<&str>) -> String {
    // RFC 3339 `2026-11-25T10:00:00.000Z`: the page shows the UTC time of day.
    match ts {
        Some(t) => match t.get(11..19) {
            Some(hms) => format!(r#"<time datetime="{}">{} UTC</time>"#, esc(t), esc(hms)),
            None => esc(t),
        },
        None => String::new(),
    }
}

/// Incident id, the decision and each step with result and time.
fn timeline(out: &mut String, z: &Zone) {
    let Some(incident) = &z.incident else {
        return;
    };
    let _ = writeln!(
        out,
        r#"<div class="incident"><p>Incident <code class="incident-id">{}</code></p><ol class="timeline">"#,
        esc(incident)
    );
    let _ = writeln!(
        out,
        r#"<li class="decision">{} Decision: {} · runbook <code>{}</code> started</li>"#,
        time_of(z.started_at.as_deref()),
        z.cause
            .as_deref()
            .map(|c| esc(&c.to_uppercase()))
            .unwrap_or_else(|| "incident".into()),
        esc(&z.runbook),
    );
    for s in z.steps.iter().flatten() {
        let rehearsed = z.rehearsed_steps.contains(&s.name);
        let (cls, word) = match s.status {
            StepStatus::Succeeded if rehearsed && !s.verified => (
                "st-warn",
                "REHEARSED only (dry run): did nothing, not part of the verdict",
            ),
            StepStatus::Succeeded if s.verified => ("st-ok", "OK, verified"),
            StepStatus::Succeeded => ("st-warn", "OK, not verified"),
            StepStatus::Failed => ("st-bad", "FAILED"),
            StepStatus::Started => ("st-run", "running"),
            StepStatus::Pending | StepStatus::Skipped => ("st-wait", "pending"),
        };
        let err = s
            .error
            .as_deref()
            .map(|e| format!(r#" <span class="err">{}</span>"#, esc(e)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            r#"<li class="step {cls}">{} <span class="step-name">{}</span>: <strong>{word}</strong>{err}</li>"#,
            time_of(s.finished_at.as_deref()),
            esc(&s.name),
        );
    }
    if z.finished_at.is_some() {
        let safe = z.safe_to_cut_power;
        let _ = writeln!(
            out,
            r#"<li class="{}">{} Runbook finished: {}</li>"#,
            if safe { "st-ok" } else { "st-bad" },
            time_of(z.finished_at.as_deref()),
            if safe {
                "safe to cut power"
            } else {
                "NOT safe to cut power"
            }
        );
    }
    out.push_str("</ol></div>\n");
}

fn state_symbol(state: SensorState) -> &'static str {
    match state {
        SensorState::Ok => "\u{2713}",
        SensorState::Warn => "!",
        SensorState::Alarm => "!!",
        SensorState::Critical => "\u{2716}",
        SensorState::Stale => "\u{231b}",
        SensorState::Fault => "?",
    }
}

fn state_class(state: SensorState) -> &'static str {
    match state {
        SensorState::Ok => "s-ok",
        SensorState::Warn => "s-warn",
        SensorState::Alarm => "s-alarm",
        SensorState::Critical => "s-critical",
        SensorState::Stale | SensorState::Fault => "s-stale",
    }
}

fn sensors(out: &mut String, z: &Zone) {
    if z.sensors.is_empty() {
        return;
    }
    out.push_str(
        r#"<table class="sensors"><thead><tr><th>Sensor</th><th>Value</th><th>State</th><th>Age</th><th>Trend</th></tr></thead><tbody>
"#,
    );
    for s in &z.sensors {
        sensor_row(out, s);
    }
    out.push_str("</tbody></table>\n");
}

fn sensor_row(out: &mut String, s: &Sensor) {
    let state = s.state;
    let evidence = state != SensorState::Ok;
    let value = match (s.kind, s.value) {
        (Kind::OnBattery, Some(v)) if v >= 1.0 => "ON BATTERY".to_string(),
        (Kind::OnBattery, Some(_)) => "on mains".to_string(),
        (kind, Some(v)) => format!("{} {}", fmt_num(v), esc(kind.unit())),
        (_, None) => "no value".into(),
    };
    let age = if s.age_ms < 1000 {
        "&lt; 1 s".to_string()
    } else {
        fmt_secs(s.age_ms as f64 / 1000.0)
    };
    let _ = writeln!(
        out,
        r#"<tr class="sensor{ev}" data-sensor="{id}"><th scope="row">{id} <small>{kind}</small>{evtag}</th><td class="value">{value}</td><td class="state {state_cls}"><span aria-hidden="true">{sym}</span> {st}{why}</td><td class="age">{age}</td><td class="trend">{trend}</td></tr>"#,
        why = if evidence && s.reason != Reason::Cleared {
            format!(
                r#"<small class="reason">{}</small>"#,
                esc(s.reason.as_str())
            )
        } else {
            String::new()
        },
        ev = if evidence { " evidence" } else { "" },
        evtag = if evidence {
            r#" <span class="evtag">evidence</span>"#
        } else {
            ""
        },
        id = esc(&s.id),
        kind = esc(s.kind.as_str()),
        state_cls = state_class(state),
        sym = state_symbol(state),
        st = state.as_str().to_uppercase(),
        trend = sparkline(&s.trend),
    );
}

/// An inline SVG polyline of the trend (gaps break the line); empty without data.
pub fn sparkline(values: &[Option<f64>]) -> String {
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
    use crate::api::status::fixtures::{self, sensor, status};
    use crate::api::status::Prepare;
    use crate::detect::{Level, Reason};
    use crate::journal::StepRecord;
    use crate::staged::Basis;

    const TS: &str = "2026-11-25T10:00:00.000Z";

    fn aged(mut s: Sensor, age_ms: u64) -> Sensor {
        s.age_ms = age_ms;
        s
    }

    fn zone(level: ZoneLevel) -> Zone {
        let mut temp = aged(
            sensor("b3.temp.row1", Kind::Temperature, SensorState::Ok, 24.5),
            120,
        );
        temp.trend = vec![Some(24.0), Some(24.2), None, Some(24.5)];
        let mut gas = aged(
            sensor("b3.offgas.1", Kind::Offgas, SensorState::Critical, 250.0),
            90_000,
        );
        gas.reason = Reason::Above(Level::Critical);
        let mut z = fixtures::zone("b3-battery-room", level, "evacuate-b3");
        z.sensors = vec![
            temp,
            gas,
            aged(
                sensor("ups-b3-1.on_battery", Kind::OnBattery, SensorState::Ok, 1.0),
                10,
            ),
            aged(
                sensor("ups-b3-1.runtime", Kind::Runtime, SensorState::Ok, 600.0),
                10,
            ),
        ];
        z
    }

    fn step(name: &str, status: StepStatus) -> StepRecord {
        StepRecord {
            name: name.into(),
            status,
            verified: false,
            attempts: 0,
            error: None,
            finished_at: None,
            unannounced: false,
        }
    }

    #[test]
    fn level_is_written_in_words_not_only_colour() {
        let html = page(Some(&status(vec![zone(ZoneLevel::Alarm)])), None, TS);
        assert!(html.contains(r#"data-level="alarm""#));
        assert!(html.contains(r#"<span class="level-text">ALARM</span>"#));
        assert!(html.contains("AT RISK: b3-battery-room ALARM"));
        assert!(html.contains("<title>ALARM · Firebreak edge-1</title>"));
    }

    #[test]
    fn every_string_from_the_status_is_escaped() {
        let mut z = zone(ZoneLevel::Critical);
        z.id = "<script>alert(1)</script>".into();
        z.sensors[0].id = "a\"b'c&d".into();
        z.incident = Some("i<1>".into());
        let mut s = step("<img src=x>", StepStatus::Failed);
        s.error = Some("</li><b>x".into());
        s.finished_at = Some("2026-11-25T1\u{e9}:00<b>0".into());
        z.steps = Some(vec![s]);
        let html = zones_fragment(&status(vec![z]));
        for raw in ["<script>", "a\"b'c&d", "i<1>", "<img", "</li><b>", "<b>0"] {
            assert!(!html.contains(raw), "{raw} must be escaped");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a&quot;b&#39;c&amp;d"));
    }

    #[test]
    fn safe_to_cut_power_and_the_step_timeline_are_shown() {
        let mut z = zone(ZoneLevel::Critical);
        z.incident = Some("b3-20261125T100000000Z-1".into());
        z.cause = Some("fire".into());
        z.started_at = Some("2026-11-25T10:00:00.000Z".into());
        z.finished_at = Some("2026-11-25T10:00:04.000Z".into());
        z.safe_to_cut_power = true;
        let mut s = step("move app", StepStatus::Succeeded);
        s.verified = true;
        s.attempts = 1;
        s.finished_at = Some("2026-11-25T10:00:03.500Z".into());
        z.steps = Some(vec![s]);
        let html = zones_fragment(&status(vec![z]));
        assert!(html.contains("SAFE TO CUT POWER"));
        assert!(html.contains("Decision: FIRE"));
        assert!(html
            .contains(r#"<span class="step-name">move app</span>: <strong>OK, verified</strong>"#));
        assert!(html.contains("10:00:03 UTC"));
        assert!(html.contains("b3-20261125T100000000Z-1"));
    }

    #[test]
    fn a_verdict_names_the_steps_that_were_only_rehearsed() {
        let mut z = zone(ZoneLevel::Critical);
        z.incident = Some("i-1".into());
        z.finished_at = Some("2026-11-25T10:00:04.000Z".into());
        z.safe_to_cut_power = true;
        z.rehearsed_steps = vec!["page on-call".into(), "move anycast".into()];
        let mut done = step("move app", StepStatus::Succeeded);
        done.verified = true;
        z.steps = Some(vec![
            done,
            step("page on-call", StepStatus::Succeeded),
            step("move anycast", StepStatus::Succeeded),
        ]);
        let html = zones_fragment(&status(vec![z]));
        assert!(!html.contains("every step was verified"), "{html}");
        assert!(html.contains(
            "SAFE TO CUT POWER: every step that acts was verified; 2 steps were only rehearsed (dry run), did nothing and is not part of this verdict: page on-call, move anycast"
        ));
        assert!(html.contains(r#"<span class="step-name">page on-call</span>: <strong>REHEARSED only (dry run): did nothing, not part of the verdict</strong>"#));
        assert!(!html.contains("OK, not verified"), "{html}");
    }

    #[test]
    fn an_estimate_says_what_it_is_based_on_and_never_reads_as_a_countdown_run_out() {
        let mut z = zone(ZoneLevel::Critical);
        z.seconds_to_power_loss = Some(0.0);
        z.power_loss_basis = Some(Basis::TemperatureTrend);
        let html = zones_fragment(&status(vec![z.clone()]));
        assert!(!html.contains("in 0 s"), "{html}");
        assert!(html.contains("the temperature trend reaches the cut-off now (estimate"));
        z.seconds_to_power_loss = Some(250.0);
        let html = zones_fragment(&status(vec![z]));
        assert!(html.contains(
            "Power cut expected in about 4 min 10 s: the temperature trend reaches the cut-off then"
        ));
    }

    #[test]
    fn the_power_map_lists_the_breakers_that_may_be_opened_and_what_still_runs_on_the_others() {
        use crate::feeds::FeedState;
        let mut a = zone(ZoneLevel::Critical);
        a.id = "b3".into();
        a.incident = Some("i-1".into());
        a.safe_to_cut_power = true;
        a.finished_at = Some("2026-11-25T10:00:04.000Z".into());
        let mut b = zone(ZoneLevel::Normal);
        b.id = "b4".into();
        let mut st = status(vec![a, b]);
        st.feeds = vec![
            FeedState {
                id: "pdu-a".into(),
                description: "B3 PDU A, breaker 3-14 <LV-B3>".into(),
                zones: vec!["b3".into()],
                safe_to_cut: true,
                waiting_for: vec![],
                loads: vec!["lighting".into()],
            },
            FeedState {
                id: "pdu-b".into(),
                description: "B3/B4 PDU B".into(),
                zones: vec!["b3".into(), "b4".into()],
                safe_to_cut: false,
                waiting_for: vec!["b4".into()],
                loads: vec![],
            },
        ];
        let html = zones_fragment(&st);
        let (_, safe) = html
            .split_once("You may open these breakers now:")
            .expect("safe list");
        let (safe, wait) = safe.split_once("Do NOT open yet:").expect("wait list");
        assert!(
            safe.contains("B3 PDU A, breaker 3-14 &lt;LV-B3&gt;"),
            "{html}"
        );
        assert!(safe.contains("nothing to move: lighting"));
        assert!(!safe.contains("pdu-b"));
        assert!(wait.contains("B3/B4 PDU B"));
        assert!(
            wait.contains("still powers b4 (services still running: no failover)"),
            "{html}"
        );
    }

    #[test]
    fn a_running_or_failed_runbook_says_not_to_cut_power() {
        let mut z = zone(ZoneLevel::Critical);
        z.incident = Some("i-1".into());
        z.runbook_running = true;
        let html = zones_fragment(&status(vec![z.clone()]));
        assert!(html.contains("DO NOT CUT POWER YET"));
        z.runbook_running = false;
        z.finished_at = Some("2026-11-25T10:00:04.000Z".into());
        let mut s = step("s", StepStatus::Failed);
        s.error = Some("timeout".into());
        z.steps = Some(vec![s]);
        let html = zones_fragment(&status(vec![z]));
        assert!(html.contains("NOT SAFE TO CUT POWER"));
        assert!(html.contains("FAILED"));
        assert!(!html.contains("\u{2713} SAFE TO CUT POWER"));
    }

    #[test]
    fn evidence_sensors_show_value_state_age_and_trend() {
        let html = zones_fragment(&status(vec![zone(ZoneLevel::Critical)]));
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
        let html = zones_fragment(&status(vec![zone(ZoneLevel::Warning)]));
        assert!(html.contains("ON BATTERY"));
        assert!(html.contains("UPS runtime 10 min 00 s (ups-b3-1.runtime)"));
        assert!(!html.contains("Power loss"));
        assert!(!html.contains("Prepare:"));
        let mut z = zone(ZoneLevel::Warning);
        z.seconds_to_power_loss = Some(95.0);
        z.power_loss_basis = Some(Basis::UpsRuntime);
        z.prepare = Some(Prepare {
            incident: "b3-<1>".into(),
            runbook: "prepare-b3".into(),
            running: true,
            undone: false,
            ran_here: true,
        });
        let html = zones_fragment(&status(vec![z]));
        // Issue 21: the estimate says what it is based on (it read "Power loss in 1 min 35 s
        // (ups_runtime)").
        assert!(html.contains(
            "Power loss expected in 1 min 35 s: the UPS on battery reports that much runtime left"
        ));
        assert!(html.contains(
            "Prepare: incident: b3-&lt;1&gt;, ran_here: true, runbook: prepare-b3, running: true, undone: false"
        ));
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
        let html = page(Some(&status(vec![zone(ZoneLevel::Normal)])), None, TS);
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!CSS.contains("http") && !CSS.contains("@import"));
        assert!(!JS.contains("http://") && !JS.contains("https://"));
        assert!(html.contains("All 1 zone(s) NORMAL"));
    }

    #[test]
    fn sparkline_keeps_noise_flat_and_shows_a_real_rise() {
        let flat = sparkline(&[Some(22.4), Some(22.6), Some(22.4)]);
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
        let rise = sparkline(&[Some(23.0), Some(50.0), Some(85.0)]);
        assert!(rise.contains(r#"points="0.0,26.0 60.0,"#), "{rise}");
        assert!(rise.contains("120.0,2.0"), "{rise}");
        assert!(sparkline(&[Some(1.0)]).is_empty(), "one point is no trend");
    }
}
