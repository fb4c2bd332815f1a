//! The `bgp_withdraw` step against two real BIRD 2 daemons peering over BGP on loopback:
//! the peer loses the anycast prefix, a drill changes nothing, `announce` brings the
//! prefix back, and a wrong protocol name or socket is a clear error.

use crate::support;
use support::bird::{BirdPair, B, PREFIX, STATIC_A, TO_B};
use support::step::{describe, run};

fn step(pair: &BirdPair, protocol: &str, extra: &str) -> String {
    format!(
        r#"name = "withdraw the anycast prefix"
type = "bgp_withdraw"
socket = "{}"
protocol = "{protocol}"
prefix = "{PREFIX}"
verify_peer = "{}"
timeout = "10s"
retries = 2
{extra}"#,
        pair.a.socket_url(),
        pair.b.socket_url()
    )
}

#[test]
fn withdrawing_disables_the_static_protocol_and_the_peer_loses_the_route() {
    let pair = BirdPair::start(B::LearnsOnly);
    let s = step(&pair, STATIC_A, "");
    let report = run(&s, false);
    assert!(report.ok && report.verified, "{report:?}");
    assert_eq!(report.attempts, 1);
    let detail = report.detail.unwrap();
    assert!(
        detail.contains("protocol static_a disabled")
            && detail.contains("now down")
            && detail.contains("does not hold 203.0.113.0/24"),
        "{detail}"
    );
    // What birdc, a client we did not write, sees.
    assert_eq!(pair.a.protocol_state(STATIC_A), "down");
    assert!(!pair.b.holds(PREFIX), "{}", pair.b.birdc("show route"));
    assert_eq!(pair.a.protocol_state(TO_B), "up", "the session stays up");

    // Again (a resumed runbook): BIRD says "already disabled", which is success.
    let again = run(&s, false);
    assert!(again.ok && again.verified, "{again:?}");
    assert!(
        again.detail.unwrap().contains("already disabled"),
        "idempotent"
    );
}

#[test]
fn announce_enables_the_protocol_again_and_the_peer_relearns_the_route() {
    let pair = BirdPair::start(B::LearnsOnly);
    let withdrawn = run(&step(&pair, STATIC_A, ""), false);
    assert!(withdrawn.ok, "{withdrawn:?}");
    assert!(!pair.b.holds(PREFIX));

    let back = run(&step(&pair, STATIC_A, "action = \"announce\""), false);
    assert!(back.ok && back.verified, "{back:?}");
    let detail = back.detail.unwrap();
    assert!(
        detail.contains("protocol static_a enabled") && detail.contains("holds 203.0.113.0/24"),
        "{detail}"
    );
    assert_eq!(pair.a.protocol_state(STATIC_A), "up");
    assert!(pair.b.holds_from(PREFIX, "127.0.0.1"));
    let again = run(&step(&pair, STATIC_A, "action = \"announce\""), false);
    assert!(again.detail.unwrap().contains("already enabled"));
}

#[test]
fn withdrawing_by_disabling_the_bgp_session_and_announcing_waits_for_it_to_come_back() {
    let pair = BirdPair::start(B::LearnsOnly);
    let gone = run(&step(&pair, TO_B, ""), false);
    assert!(gone.ok && gone.verified, "{gone:?}");
    assert_eq!(pair.a.protocol_state(TO_B), "down");
    assert!(!pair.b.holds(PREFIX));
    // The session needs a second or two to be established again (connect delay 1 s):
    // the step polls until BIRD reports it up and B holds the route.
    let back = run(&step(&pair, TO_B, "action = \"announce\""), false);
    assert!(back.ok && back.verified, "{back:?}");
    assert_eq!(pair.a.protocol_state(TO_B), "up");
    assert!(pair.b.holds(PREFIX));
}

#[test]
fn a_drill_reports_the_protocol_and_the_peer_table_without_touching_them() {
    let pair = BirdPair::start(B::LearnsOnly);
    let report = run(&step(&pair, STATIC_A, ""), true);
    assert!(report.ok && !report.verified, "{report:?}");
    let detail = report.detail.unwrap();
    assert!(
        detail.starts_with("dry run: would disable protocol static_a")
            && detail.contains("(now up)")
            && detail.contains("this BIRD holds 203.0.113.0/24")
            && detail.contains(&format!(
                "{} holds 203.0.113.0/24 (1 route",
                pair.b.socket_url()
            )),
        "{detail}"
    );
    assert_eq!(pair.a.protocol_state(STATIC_A), "up");
    assert!(pair.b.holds(PREFIX));
}

#[test]
fn an_unknown_protocol_is_a_clear_error_that_is_not_retried() {
    let pair = BirdPair::start(B::LearnsOnly);
    let report = run(&step(&pair, "anycast_b9", ""), false);
    assert!(!report.ok);
    assert_eq!(report.attempts, 1, "not retried: {report:?}");
    let err = report.error.unwrap();
    assert!(err.contains("has no protocol named `anycast_b9`"), "{err}");
    assert_eq!(pair.a.protocol_state(STATIC_A), "up");
    assert!(pair.b.holds(PREFIX));
}

#[test]
fn with_another_site_announcing_the_prefix_only_verify_from_tells_this_sites_route_apart() {
    // B originates the prefix itself too (another site of the anycast service): it keeps
    // a route after A withdraws, so without verify_from the step cannot verify.
    let pair = BirdPair::start(B::AlsoOriginates);
    let short = step(&pair, STATIC_A, "").replace("timeout = \"10s\"", "timeout = \"1s\"");
    let report = run(&short.replace("retries = 2", "retries = 0"), false);
    assert!(!report.ok, "{report:?}");
    let err = report.error.unwrap();
    assert!(
        err.starts_with("not verified: withdraw 203.0.113.0/24")
            && err.contains("still holds it (1 route: 203.0.113.0/24"),
        "{err}"
    );
    assert!(pair.b.holds(PREFIX), "B's own route stays");

    let from_a = run(&step(&pair, STATIC_A, "verify_from = \"127.0.0.1\""), false);
    assert!(from_a.ok && from_a.verified, "{from_a:?}");
    assert!(!pair.b.holds_from(PREFIX, "127.0.0.1"));
}

#[test]
fn a_missing_socket_is_named_and_the_description_says_what_the_step_does() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("bird.ctl");
    let s = format!(
        r#"name = "withdraw"
type = "bgp_withdraw"
socket = "unix://{}"
protocol = "anycast_b3"
prefix = "203.0.113.0/24"
timeout = "1s"
retries = 1"#,
        missing.display()
    );
    let report = run(&s, false);
    assert!(!report.ok);
    // A BIRD that is restarting comes back: retried.
    assert_eq!(report.attempts, 2);
    let err = report.error.unwrap();
    assert!(
        err.contains(&format!("no BIRD control socket at {}", missing.display())),
        "{err}"
    );
    assert_eq!(
        describe(&s),
        format!(
            "bgp_withdraw withdraw 203.0.113.0/24: disable protocol anycast_b3 @ unix://{}",
            missing.display()
        )
    );
}

#[test]
fn a_socket_that_does_not_speak_birds_protocol_is_named_and_not_retried() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // Something else's socket (HAProxy's runtime API greets with nothing; this one with a
    // prompt), answering every connection the same way.
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"> welcome\n");
        }
    });
    let s = format!(
        r#"name = "withdraw"
type = "bgp_withdraw"
socket = "unix://{}"
protocol = "anycast_b3"
prefix = "203.0.113.0/24"
timeout = "1s"
retries = 2"#,
        path.display()
    );
    let report = run(&s, false);
    assert_eq!(report.attempts, 1, "{report:?}");
    let err = report.error.unwrap();
    assert!(
        err.contains("sent a reply line that is not BIRD's protocol: `> welcome`"),
        "{err}"
    );
}
