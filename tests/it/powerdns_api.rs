//! The `powerdns` step against a real PowerDNS Authoritative server (sqlite3 backend, HTTP
//! API): the RRset is replaced and answered over DNS, a wrong key, an unknown zone and a
//! refused change are clear errors that are not retried, `only_if` guards the change, and
//! a drill changes nothing.

use crate::support;
use support::pdns::{Pdns, KEY};
use support::step::{describe, run};

const ZONE: &str = "example.test";

fn pdns() -> Pdns {
    Pdns::start(
        ZONE,
        &[
            ("app.example.test.", "A", 300, &["192.0.2.10"]),
            ("www.example.test.", "A", 300, &["192.0.2.11"]),
        ],
    )
}

/// A `powerdns` step moving app.example.test to 198.51.100.20 and 198.51.100.21; `extra`
/// lines override or add keys. The key file is written into `dir`.
fn step(p: &Pdns, dir: &std::path::Path, key: &str, extra: &str) -> String {
    let key_file = dir.join("pdns.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    format!(
        r#"name = "move app in PowerDNS"
type = "powerdns"
url = "{url}"
server_id = "localhost"
api_key_file = "{key}"
zone = "example.test"
record = "app.example.test"
rtype = "A"
ttl = 30
values = ["198.51.100.21", "198.51.100.20"]
verify_server = "{dns}"
timeout = "5s"
retries = 2
{extra}"#,
        url = p.url(),
        key = key_file.display(),
        dns = p.dns_addr(),
    )
}

fn unchanged(p: &Pdns) {
    assert_eq!(p.dig("app.example.test", "A"), ["192.0.2.10"]);
    assert_eq!(
        p.rrset(ZONE, "app.example.test.", "A"),
        Some((300, vec!["192.0.2.10".to_string()]))
    );
}

#[test]
fn the_rrset_is_replaced_with_its_ttl_and_verified_over_dns_and_a_second_run_changes_nothing() {
    let p = pdns();
    let dir = tempfile::tempdir().unwrap();
    let s = step(&p, dir.path(), KEY, "");
    let report = run(&s, false);
    assert!(report.ok && report.verified, "{report:?}\n{}", p.log());
    assert_eq!(report.attempts, 1);
    let detail = report.detail.unwrap();
    assert!(
        detail.starts_with(
            "replaced and verified: app.example.test. A -> [198.51.100.20, 198.51.100.21] (ttl 30)"
        ),
        "{detail}"
    );
    // What kdig and the API, not the step, see.
    assert_eq!(
        p.dig("app.example.test", "A"),
        ["198.51.100.20", "198.51.100.21"]
    );
    assert_eq!(
        p.rrset(ZONE, "app.example.test.", "A"),
        Some((
            30,
            vec!["198.51.100.20".to_string(), "198.51.100.21".to_string()]
        ))
    );
    assert_eq!(
        p.dig("www.example.test", "A"),
        ["192.0.2.11"],
        "other RRsets stay"
    );

    let again = run(&s, false);
    assert!(again.ok && again.verified, "{again:?}");
    assert!(again.detail.unwrap().starts_with("already in place"));
}

#[test]
fn a_wrong_api_key_is_refused_with_a_clear_error_and_not_retried() {
    let p = pdns();
    let dir = tempfile::tempdir().unwrap();
    let report = run(&step(&p, dir.path(), "not-the-key", ""), false);
    assert!(!report.ok);
    assert_eq!(report.attempts, 1, "{report:?}");
    let err = report.error.unwrap();
    assert!(
        err.contains("refused the key from")
            && err.contains("pdns.key")
            && err.contains("401")
            && !err.contains("not-the-key"),
        "{err}"
    );
    unchanged(&p);
}

#[test]
fn only_if_changes_nothing_when_the_rrset_holds_other_values_and_applies_when_it_holds_them() {
    let p = pdns();
    let dir = tempfile::tempdir().unwrap();
    let stale = run(
        &step(&p, dir.path(), KEY, "only_if = [\"192.0.2.99\"]"),
        false,
    );
    assert!(!stale.ok);
    assert_eq!(stale.attempts, 1, "{stale:?}");
    let err = stale.error.unwrap();
    assert!(
        err.contains("only_if: app.example.test. A holds [192.0.2.10] (ttl 300), not [192.0.2.99]")
            && err.contains("nothing was changed"),
        "{err}"
    );
    unchanged(&p);

    let fresh = step(&p, dir.path(), KEY, "only_if = [\"192.0.2.10\"]");
    let report = run(&fresh, false);
    assert!(report.ok && report.verified, "{report:?}");
    assert_eq!(
        p.dig("app.example.test", "A"),
        ["198.51.100.20", "198.51.100.21"]
    );
    // Run again after the change (a resumed runbook): in place, so only_if is moot.
    let again = run(&fresh, false);
    assert!(again.ok && again.detail.unwrap().starts_with("already in place"));
}

#[test]
fn a_drill_reports_what_the_api_and_dns_hold_and_changes_nothing() {
    let p = pdns();
    let dir = tempfile::tempdir().unwrap();
    let report = run(&step(&p, dir.path(), KEY, ""), true);
    assert!(report.ok && !report.verified, "{report:?}");
    let detail = report.detail.unwrap();
    assert_eq!(
        detail,
        format!(
            "dry run: would replace app.example.test. A -> [198.51.100.20, 198.51.100.21] \
             (ttl 30) in zone example.test.; PowerDNS holds [192.0.2.10] (ttl 300); {} answers \
             [192.0.2.10]",
            p.dns_addr()
        )
    );
    unchanged(&p);
    // A drill with a wrong key fails as the real run would.
    let bad = run(&step(&p, dir.path(), "wrong", ""), true);
    assert!(!bad.ok && bad.error.unwrap().contains("401"));
}

#[test]
fn an_unknown_zone_or_server_is_a_404_that_names_it() {
    let p = pdns();
    let dir = tempfile::tempdir().unwrap();
    let zone = step(&p, dir.path(), KEY, "")
        .replace("zone = \"example.test\"", "zone = \"other.test\"")
        .replace(
            "record = \"app.example.test\"",
            "record = \"app.other.test\"",
        );
    let report = run(&zone, false);
    assert_eq!(report.attempts, 1, "{report:?}");
    let err = report.error.unwrap();
    assert!(
        err.contains("has no zone `other.test.` on server `localhost` (404)"),
        "{err}"
    );
    let server =
        step(&p, dir.path(), KEY, "").replace("server_id = \"localhost\"", "server_id = \"b3\"");
    let report = run(&server, false);
    assert_eq!(report.attempts, 1, "{report:?}");
    let err = report.error.unwrap();
    assert!(err.contains("has no server `b3`"), "{err}");
    unchanged(&p);
}

#[test]
fn a_change_powerdns_refuses_carries_its_422_text() {
    let p = pdns();
    let dir = tempfile::tempdir().unwrap();
    // A CNAME where an A RRset exists: PowerDNS refuses it.
    let s = step(&p, dir.path(), KEY, "")
        .replace("rtype = \"A\"", "rtype = \"CNAME\"")
        .replace(
            "values = [\"198.51.100.21\", \"198.51.100.20\"]",
            "values = [\"dr.example.test\"]",
        );
    let report = run(&s, false);
    assert_eq!(report.attempts, 1, "{report:?}");
    let err = report.error.unwrap();
    assert!(
        err.contains(
            "PowerDNS refused the change of app.example.test. CNAME in zone example.test. (422)"
        ) && err.contains("Conflicts with pre-existing RRset"),
        "{err}"
    );
    unchanged(&p);
}

#[test]
fn txt_values_with_quotes_go_through_the_api_and_read_back_over_dns() {
    let p = pdns();
    let dir = tempfile::tempdir().unwrap();
    let s = step(&p, dir.path(), KEY, "")
        .replace(
            "record = \"app.example.test\"",
            "record = \"status.example.test\"",
        )
        .replace("rtype = \"A\"", "rtype = \"TXT\"")
        .replace(
            "values = [\"198.51.100.21\", \"198.51.100.20\"]",
            r#"values = ['site "b3" evacuated \ fire', "x"]"#,
        );
    let report = run(&s, false);
    assert!(report.ok && report.verified, "{report:?}");
    assert_eq!(
        p.dig("status.example.test", "TXT"),
        [r#""site \"b3\" evacuated \\ fire""#, r#""x""#]
    );
    let again = run(&s, false);
    assert!(again.detail.unwrap().starts_with("already in place"));
}

#[test]
fn an_unreachable_api_is_retried_and_the_description_says_what_the_step_does() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("pdns.key");
    std::fs::write(&key, "k\n").unwrap();
    let port = support::free_port();
    let s = format!(
        r#"name = "move app"
type = "powerdns"
url = "http://127.0.0.1:{port}"
api_key_file = "{}"
zone = "example.test"
record = "app.example.test"
rtype = "A"
values = ["198.51.100.20"]
verify_server = "127.0.0.1:53"
verify_servers = ["127.0.0.2:53"]
only_if = ["192.0.2.10"]
timeout = "1s"
retries = 1"#,
        key.display()
    );
    let report = run(&s, false);
    assert!(!report.ok);
    assert_eq!(report.attempts, 2, "{report:?}");
    let err = report.error.unwrap();
    assert!(
        err.starts_with(&format!(
            "cannot reach the PowerDNS API at http://127.0.0.1:{port} (GET zone): "
        )) && err.contains("refused"),
        "{err}"
    );
    assert_eq!(
        describe(&s),
        format!(
            "powerdns app.example.test. A -> 198.51.100.20 (ttl 30) via http://127.0.0.1:{port} \
             server localhost zone example.test. only if [192.0.2.10]; verified @ 127.0.0.1:53, \
             127.0.0.2:53"
        )
    );
}
