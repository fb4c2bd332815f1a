//! Fault injection on the whole chain (simulator over Modbus TCP, the real agent binary,
//! Knot): a full disk under `state_dir`, and the wall clock stepped back and forth. In
//! each case the agent stays up, keeps deciding, fails over, and says what went wrong.
//! (Broker, device, InfluxDB and DNS outages and kill -9 are in sources_*, telemetry_*
//! and runbook_peers.)

use crate::support;

use firebreak::detect::{SensorState, ZoneLevel};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use support::agent::{get, start_sim, status_of, Agent};
use support::events::{parse_log, Event, LoggedEvent};
use support::room::{knot, room_config_with};

/// The value of a metric line `name{labels} value` (summed over matching lines).
fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_until(what: &str, deadline: Duration, agent: &Agent, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !cond() {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}\n{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill the disk under state_dir and needs root \
             (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Appends one JSON line that ends the file exactly at a 4 KiB boundary.
fn pad_to_page(log: &Path) {
    let len = std::fs::metadata(log).unwrap().len() as usize;
    let frame = r#"{"event":"test_padding","pad":""}"#.len() + 1;
    let mut room = 4096 - len % 4096;
    if room < frame {
        room += 4096;
    }
    let line = format!(
        "{{\"event\":\"test_padding\",\"pad\":\"{}\"}}\n",
        "x".repeat(room - frame)
    );
    let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    f.write_all(line.as_bytes()).unwrap();
    f.sync_all().unwrap();
    assert_eq!(std::fs::metadata(log).unwrap().len() % 4096, 0);
}

/// Keeps the file system of `path` full (whatever is freed is taken again at once) until
/// the returned flag is cleared.
fn keep_full(path: &Path) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let on = Arc::new(AtomicBool::new(true));
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 512];
    while f.write_all(&chunk).is_ok() {}
    let flag = on.clone();
    let t = std::thread::spawn(move || {
        while flag.load(Ordering::Relaxed) {
            while f.write_all(&chunk).is_ok() {}
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (on, t)
}

#[test]
fn a_full_disk_under_state_dir_is_loud_and_the_room_still_fails_over() {
    let knot = knot();
    let sim_rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _tmpfs = Tmpfs::mount(&state, "1m");
    let port = support::free_port();
    let closed = support::free_port();
    let token = dir.path().join("influx.token");
    std::fs::write(&token, "t\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Telemetry to an InfluxDB that is down: the spool in state_dir grows until the disk
    // is full.
    let extra = format!(
        r#"
[telemetry.influxdb]
url = "http://127.0.0.1:{closed}"
org = "o"
bucket = "b"
token_file = "{}"
flush_interval = "200ms"
"#,
        token.display()
    );
    let sim = start_sim(&sim_rt, "offgas-then-heat.toml", 2.0);
    let config = room_config_with(
        dir.path(),
        sim.addr("env-b3").unwrap(),
        sim.addr("ups-b3-1").unwrap(),
        knot.addr(),
        port,
        &extra,
    );
    let mut agent = Agent::start(&config, &state.join("events.jsonl"));
    agent.wait_for("agent_started", Duration::from_secs(20), |e| {
        matches!(e.event, Event::AgentStarted { .. })
    });
    agent.wait_for_api(port);
    // The event log's last page would still take a dozen lines on a full tmpfs (space is
    // allocated a page at a time): pad it to the page boundary with a JSON line first, so
    // that the agent's next event needs space the disk no longer has.
    pad_to_page(&state.join("events.jsonl"));
    let (full, filler) = keep_full(&state.join("filler"));
    wait_until(
        "a failed event log write",
        Duration::from_secs(90),
        &agent,
        || {
            std::fs::read_to_string(&agent.stderr_log)
                .unwrap_or_default()
                .contains("EVENT LOG WRITE FAILED")
        },
    );

    // Detection and failover go on: the record moves, the zone is critical.
    wait_until(
        "the DNS record to move",
        Duration::from_secs(90),
        &agent,
        || knot.dig("app.example.test", "A") == vec!["198.51.100.20"],
    );
    let status = status_of(&get(port, "/api/v1/status").1);
    assert_eq!(status.zones[0].level, ZoneLevel::Critical, "{status:?}");
    assert!(!status.event_log_writable, "{status:?}");

    // ... and everyone hears about the disk.
    assert_eq!(
        get(port, "/readyz").0,
        503,
        "not ready while events cannot be written"
    );
    let metrics = get(port, "/metrics").1;
    assert!(
        metric(&metrics, "firebreak_event_log_errors_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "firebreak_journal_errors_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "firebreak_telemetry_dropped_total{reason=\"spool_error\"}"
        ) >= 1.0,
        "telemetry that cannot be spooled is counted as dropped\n{metrics}"
    );
    let stderr = std::fs::read_to_string(&agent.stderr_log).unwrap();
    assert!(stderr.contains("EVENT LOG WRITE FAILED"), "{stderr}");
    assert!(stderr.contains("INCIDENT JOURNAL WRITE FAILED"), "{stderr}");

    // Space comes back: the log is whole (every line JSON, no torn line) and takes new
    // events again.
    full.store(false, Ordering::Relaxed);
    filler.join().unwrap();
    std::fs::remove_file(state.join("filler")).unwrap();
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
    // Every line but the test's own padding reads as an event.
    let text = std::fs::read_to_string(&agent.event_log).unwrap();
    let ours: String = text
        .lines()
        .filter(|l| !l.starts_with(r#"{"event":"test_padding""#))
        .map(|l| format!("{l}\n"))
        .collect();
    let events = parse_log(&ours, "events.jsonl");
    assert!(matches!(
        events.first().unwrap().event,
        Event::AgentStarted { .. }
    ));
    assert!(matches!(
        events.last().unwrap().event,
        Event::AgentStopped { .. }
    ));
    sim_rt.block_on(sim.shutdown());
}

/// libfaketime, which the test preloads into the agent to step its wall clock.
fn libfaketime() -> PathBuf {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("libfaketime is missing: install it with `apt-get install faketime`")
        })
}

fn ts_offset_s(event: &LoggedEvent, real: SystemTime) -> f64 {
    let t = time::OffsetDateTime::parse(&event.ts, &time::format_description::well_known::Rfc3339)
        .unwrap();
    let real = time::OffsetDateTime::from(real);
    (t - real).as_seconds_f64()
}

#[test]
fn stepping_the_wall_clock_back_and_forth_changes_no_decision() {
    let knot = knot();
    let sim_rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let sim = start_sim(&sim_rt, "offgas-then-heat.toml", 2.0);
    let config = room_config_with(
        dir.path(),
        sim.addr("env-b3").unwrap(),
        sim.addr("ups-b3-1").unwrap(),
        knot.addr(),
        port,
        "",
    );
    // The agent starts four minutes ahead; the test then steps its wall clock eight
    // minutes back, and on every 1.5 s between the two: far beyond every hold, stale time
    // and rise window, yet inside TSIG's 300 s fudge (a signed DNS update needs a clock
    // within 5 minutes of the server's; beyond that the step fails with BADTIME, as it
    // must). Its monotonic clock is left alone.
    let offset_file = dir.path().join("faketime");
    std::fs::write(&offset_file, "+4m\n").unwrap();
    let lib = libfaketime();
    let mut agent = Agent::start_with_env(
        &config,
        &dir.path().join("state/events.jsonl"),
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("FAKETIME_TIMESTAMP_FILE", offset_file.to_str().unwrap()),
            ("FAKETIME_CACHE_DURATION", "1"),
            ("DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let started = agent.wait_for("agent_started", Duration::from_secs(20), |e| {
        matches!(e.event, Event::AgentStarted { .. })
    });
    let ahead = ts_offset_s(&started, SystemTime::now());
    assert!(
        (200.0..280.0).contains(&ahead),
        "the agent's wall clock is four minutes ahead ({ahead} s): libfaketime works"
    );

    let stepping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let stepper = {
        let stepping = stepping.clone();
        let file = offset_file.clone();
        std::thread::spawn(move || {
            let mut back = true;
            while stepping.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1500));
                std::fs::write(&file, if back { "-4m\n" } else { "+4m\n" }).unwrap();
                back = !back;
            }
        })
    };
    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(90), |e| {
        matches!(e.event, Event::SafeToCutPower { .. })
    });
    stepping.store(false, std::sync::atomic::Ordering::Relaxed);
    stepper.join().unwrap();
    assert_eq!(safe.event.zone(), Some("b3-battery-room"));
    assert_eq!(knot.dig("app.example.test", "A"), vec!["198.51.100.20"]);

    let events = agent.events();
    let now = SystemTime::now();
    assert!(
        events.iter().any(|e| ts_offset_s(e, now) < -200.0),
        "some events were logged while the clock was four minutes behind"
    );
    // Holds and rates run on the monotonic clock: no sensor went stale or frozen when
    // the wall clock jumped, and the fire was confirmed on its real evidence.
    let silenced: Vec<&LoggedEvent> = events
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::SensorState {
                    to: SensorState::Stale | SensorState::Fault,
                    ..
                }
            )
        })
        .collect();
    assert!(silenced.is_empty(), "{silenced:?}");
    let Some(Event::ZoneLevel { evidence, .. }) = events.iter().map(|e| &e.event).find(|e| {
        matches!(
            e,
            Event::ZoneLevel {
                to: ZoneLevel::Critical,
                ..
            }
        )
    }) else {
        panic!("zone went critical")
    };
    assert!(
        evidence.iter().any(|e| e.sensor == "b3.offgas.1")
            && evidence.iter().any(|e| e.sensor.starts_with("b3.temp")),
        "{evidence:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e.event, Event::RunbookStarted { .. }))
            .count(),
        1
    );
    assert_eq!(agent.stop(), Some(0));
    sim_rt.block_on(sim.shutdown());
}
