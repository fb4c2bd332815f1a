//! The upsd client against a real upsd serving dummy-ups: reads, values changed by `upsrw`,
//! refusals by their NUT code, a wrong password, a stale driver, a closed port, and no
//! `LOGIN` ever.

use crate::support::nut::{Nut, Options, FIREBREAK, FSD_ONLY, UPS};
use firebreak::sources::metrics::ErrorKind;
use firebreak::sources::nut::client::{Client, NutError};
use firebreak::sources::nut::config::{StartTls, Upsd};
use firebreak::sources::nut::proto::{NutCode, Status, StatusFlag};
use std::time::Duration;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(15);

fn upsd(port: u16) -> Upsd {
    Upsd {
        host: "127.0.0.1".into(),
        port,
        tls: None,
    }
}

async fn connect(nut: &Nut) -> Client {
    Client::connect(&upsd(nut.port), TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", nut.upsd_log()))
}

fn value<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_lists_a_upss_variables_and_reads_one() {
    let nut = Nut::start(Options::default());
    let mut c = connect(&nut).await;
    let vars = c.list_vars(UPS).await.expect("LIST VAR");
    assert_eq!(value(&vars, "battery.runtime"), Some("1800"));
    assert_eq!(value(&vars, "ups.temperature"), Some("25.5"));
    assert_eq!(value(&vars, "ups.status"), Some("OL"));
    assert_eq!(value(&vars, "driver.name"), Some("dummy-ups"));
    assert_eq!(c.get_var(UPS, "battery.charge").await.unwrap(), "100");
    c.logout().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_changed_with_upsrw_is_read_on_a_later_list() {
    let nut = Nut::start(Options::default());
    let mut c = connect(&nut).await;
    nut.set("battery.runtime", "300");
    let until = Instant::now() + DEADLINE;
    loop {
        let vars = c.list_vars(UPS).await.expect("LIST VAR");
        if value(&vars, "battery.runtime") == Some("300") {
            break;
        }
        assert!(
            Instant::now() < until,
            "battery.runtime still {:?}",
            value(&vars, "battery.runtime")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ups_or_variable_is_a_refusal_by_code_and_the_connection_stays_usable() {
    let nut = Nut::start(Options::default());
    let mut c = connect(&nut).await;
    let e = c.list_vars("nosuchups").await.unwrap_err();
    assert_eq!(e.code(), Some(NutCode::UnknownUps), "{e}");
    assert_eq!(e.kind(), ErrorKind::Exception);
    assert!(!e.breaks_connection());
    let e = c.get_var(UPS, "battery.nosuchvar").await.unwrap_err();
    assert_eq!(e.code(), Some(NutCode::VarNotSupported), "{e}");
    assert_eq!(
        c.get_var(UPS, "battery.runtime").await.unwrap(),
        "1800",
        "the same connection still answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_accepted_by_password_and_denied_by_the_privileged_commands() {
    let nut = Nut::start(Options::default());
    let mut c = connect(&nut).await;
    c.authenticate(FIREBREAK.0, "not-the-password")
        .await
        .expect("upsd answers OK to any PASSWORD");
    let e = c.primary(UPS).await.unwrap_err();
    assert_eq!(e.code(), Some(NutCode::AccessDenied), "{e}");
    assert!(!e.is_retryable());
    assert!(
        e.to_string().contains("ACCESS-DENIED (wrong password"),
        "{e}"
    );
    let e = c.fsd(UPS).await.unwrap_err();
    assert_eq!(e.code(), Some(NutCode::AccessDenied), "{e}");
    assert!(!Status::parse(&nut.get("ups.status").unwrap()).has(StatusFlag::Fsd));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_sets_fsd_and_upsd_shows_it_in_ups_status() {
    let nut = Nut::start(Options::default());
    let mut c = connect(&nut).await;
    c.authenticate(FIREBREAK.0, FIREBREAK.1).await.unwrap();
    c.primary(UPS)
        .await
        .expect("PRIMARY granted to `upsmon primary`");
    c.fsd(UPS).await.expect("FSD set");
    let status = Status::parse(&c.get_var(UPS, "ups.status").await.unwrap());
    assert!(status.has(StatusFlag::Fsd) && status.has(StatusFlag::Ol));
    // Setting it again is the same answer.
    c.fsd(UPS).await.expect("FSD set again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_only_the_fsd_action_may_set_fsd_but_is_not_a_primary() {
    let nut = Nut::start(Options::default());
    let mut c = connect(&nut).await;
    c.authenticate(FSD_ONLY.0, FSD_ONLY.1).await.unwrap();
    let e = c.primary(UPS).await.unwrap_err();
    assert_eq!(e.code(), Some(NutCode::AccessDenied), "{e}");
    c.fsd(UPS).await.expect("FSD with `actions = FSD`");
    assert!(Status::parse(&nut.get("ups.status").unwrap()).has(StatusFlag::Fsd));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_never_logs_in_so_upsd_counts_no_system_powered_by_it() {
    let nut = Nut::start(Options::default());
    let mut c = connect(&nut).await;
    c.authenticate(FIREBREAK.0, FIREBREAK.1).await.unwrap();
    c.list_vars(UPS).await.unwrap();
    c.primary(UPS).await.unwrap();
    assert_eq!(c.get_var(UPS, "ups.status").await.unwrap(), "OL");
    assert_eq!(
        nut.logged_in_clients(),
        Vec::<String>::new(),
        "upsc -c lists no client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_driver_makes_upsd_answer_data_stale_until_it_updates_again() {
    let nut = Nut::start(Options {
        maxage: Some(2),
        ..Options::default()
    });
    let mut c = connect(&nut).await;
    c.list_vars(UPS).await.expect("fresh data first");
    nut.pause_driver();
    let until = Instant::now() + DEADLINE;
    let stale = loop {
        match c.list_vars(UPS).await {
            Err(e) => break e,
            Ok(_) => {
                assert!(Instant::now() < until, "upsd never said DATA-STALE");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(stale.code(), Some(NutCode::DataStale), "{stale}");
    assert!(stale.is_retryable(), "the data may come back");
    nut.resume_driver();
    let until = Instant::now() + DEADLINE;
    while c.list_vars(UPS).await.is_err() {
        assert!(Instant::now() < until, "the data never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_nobody_listens_on_is_a_connect_error_and_a_dead_upsd_a_transport_one() {
    let mut nut = Nut::start(Options::default());
    let mut c = connect(&nut).await;
    nut.kill_upsd();
    let e = c.list_vars(UPS).await.unwrap_err();
    assert!(
        matches!(e, NutError::Closed { .. } | NutError::Io { .. }),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::Transport);
    assert!(e.breaks_connection() && e.is_retryable());
    let e = Client::connect(&upsd(nut.port), TIMEOUT).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connect, "{e}");
}

fn tls_upsd(nut: &Nut, ca_file: std::path::PathBuf) -> Upsd {
    Upsd {
        tls: Some(StartTls {
            ca_file: Some(ca_file),
        }),
        ..upsd(nut.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_checks_upsds_certificate_against_the_ca_and_then_reads_over_tls() {
    let nut = Nut::start(Options {
        tls: true,
        ..Options::default()
    });
    let mut c = Client::connect(&tls_upsd(&nut, nut.ca_file()), TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("STARTTLS: {e}\n{}", nut.upsd_log()));
    assert_eq!(c.get_var(UPS, "ups.status").await.unwrap(), "OL");
    assert!(c.list_vars(UPS).await.unwrap().len() > 5);
    c.logout().await;
    assert!(
        nut.upsd_log().contains("SSL handshake done successfully"),
        "upsd saw TLS\n{}",
        nut.upsd_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_a_tls_error_that_retrying_will_not_fix() {
    let nut = Nut::start(Options {
        tls: true,
        ..Options::default()
    });
    let other = tempfile::tempdir().unwrap();
    crate::support::mosquitto::make_certs(other.path());
    let e = Client::connect(&tls_upsd(&nut, other.path().join("ca.crt")), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(e, NutError::Tls { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Connect);
    assert!(!e.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_to_a_upsd_without_a_certificate_is_refused_by_name() {
    let nut = Nut::start(Options::default());
    let ca = tempfile::tempdir().unwrap();
    crate::support::mosquitto::make_certs(ca.path());
    let e = Client::connect(&tls_upsd(&nut, ca.path().join("ca.crt")), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(NutCode::FeatureNotConfigured), "{e}");
    assert!(e.to_string().contains("use nut://"), "{e}");
}
