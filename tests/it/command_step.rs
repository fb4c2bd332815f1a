//! The `command` step: argv without a shell, templated, exit code and output reported,
//! and the whole process group killed on timeout.

use firebreak::config::{Action, CommandStep, OnFailure, Step};
use firebreak::runbook::{run_step, StepContext, TemplateVars};
use std::time::{Duration, Instant};

fn vars() -> TemplateVars {
    TemplateVars {
        agent: "a".into(),
        zone: "b3".into(),
        level: "critical".into(),
        incident: "b3-1".into(),
        cause: "fire".into(),
        runbook: "rb".into(),
    }
}

fn step(argv: &[&str], timeout: Duration) -> Step {
    Step {
        name: "cmd".into(),
        timeout,
        retries: 0,
        on_failure: OnFailure::Abort,
        priority: Default::default(),
        dry_run: false,
        action: Action::Command(CommandStep {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            cwd: None,
            idempotent: false,
        }),
    }
}

fn config() -> firebreak::config::Config {
    let text = "[agent]\nname = \"t\"\n[[zones]]\nid = \"z\"\nrunbook = \"r\"\n[[runbooks]]\nname = \"r\"\n[[runbooks.steps]]\nname = \"w\"\ntype = \"wait\"\nduration = \"1s\"\n";
    firebreak::config::load_str(text, "t.toml", Default::default())
        .unwrap()
        .config
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_command_reports_its_exit_code_and_last_output_lines() {
    let config = config();
    let v = vars();
    let ctx = StepContext {
        config: &config,
        vars: &v,
        dry_run: false,
        fence: None,
        modbus: None,
    };
    let ok = rt().block_on(run_step(
        &step(&["/bin/echo", "zone", "{{zone}}"], Duration::from_secs(5)),
        &ctx,
    ));
    assert!(ok.ok && ok.verified);
    assert!(ok.detail.unwrap().contains("zone b3"));
    let bad = rt().block_on(run_step(
        &step(
            &["/bin/sh", "-c", "echo broken >&2; exit 3"],
            Duration::from_secs(5),
        ),
        &ctx,
    ));
    assert!(!bad.ok);
    let err = bad.error.unwrap();
    assert!(
        err.contains("exited with 3") && err.contains("broken"),
        "{err}"
    );
}

#[test]
fn a_command_that_overruns_its_timeout_is_killed_with_its_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg.pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let config = config();
    let v = vars();
    let ctx = StepContext {
        config: &config,
        vars: &v,
        dry_run: false,
        fence: None,
        modbus: None,
    };
    let started = Instant::now();
    let report = rt().block_on(run_step(
        &step(&["/bin/sh", "-c", &script], Duration::from_millis(500)),
        &ctx,
    ));
    assert!(!report.ok);
    assert!(report.error.unwrap().contains("timed out"));
    assert!(started.elapsed() < Duration::from_secs(10));
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let until = Instant::now() + Duration::from_secs(5);
    // The background grandchild must be gone too (or a zombie awaiting init's reaping).
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z") {
            break;
        }
        assert!(
            Instant::now() < until,
            "background process {pid} survived the timeout: {stat}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_dry_run_command_checks_the_program_exists_without_running_it() {
    let config = config();
    let v = vars();
    let ctx = StepContext {
        config: &config,
        vars: &v,
        dry_run: true,
        fence: None,
        modbus: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let ok = rt().block_on(run_step(
        &step(
            &["/usr/bin/touch", marker.to_str().unwrap()],
            Duration::from_secs(5),
        ),
        &ctx,
    ));
    assert!(ok.ok && !ok.verified);
    assert!(!marker.exists(), "dry run must not run the command");
    let missing = rt().block_on(run_step(
        &step(&["/no/such/program"], Duration::from_secs(5)),
        &ctx,
    ));
    assert!(!missing.ok);
}
