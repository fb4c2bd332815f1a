//! The InfluxDB sink against a real VictoriaMetrics (which speaks the InfluxDB v2 write
//! API): exact points, outages, restarts with a spool left behind, a bounded spool, and a
//! server that refuses a batch.

use crate::support;

use firebreak::detect::{SensorState, ZoneLevel};
use firebreak::sinks::influxdb::{
    DropReason, SensorName, Sink, SinkConfig, Stats, Telemetry, TelemetryTx, Tuning,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::victoria::{Series, Victoria};
use tokio_util::sync::CancellationToken;

const SENSORS: [(&str, &str); 3] = [
    ("b3.temp.row1", "temperature"),
    ("b3.offgas.1", "offgas"),
    ("ups-b3-1.runtime", "runtime"),
];
const ZONE: &str = "b3-battery-room";

fn config(url: &str, spool: &Path) -> SinkConfig {
    SinkConfig {
        agent: "test-b3".into(),
        url: url.into(),
        org: "dc-ops".into(),
        bucket: "firebreak".into(),
        token: Some("secret-token".into()),
        flush_interval: Duration::from_millis(100),
        spool_dir: spool.to_path_buf(),
        spool_max: 256 << 20,
        sensors: SENSORS
            .iter()
            .map(|(id, kind)| SensorName {
                id: id.to_string(),
                zone: ZONE.into(),
                kind: kind.to_string(),
            })
            .collect(),
        zones: vec![ZONE.into()],
        tuning: Tuning {
            batch_lines: 500,
            request_timeout: Duration::from_secs(3),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(3),
            ..Tuning::default()
        },
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

struct Running {
    sink: Option<Sink>,
    stop: CancellationToken,
    tx: TelemetryTx,
    stats: Arc<Stats>,
}

fn start(rt: &tokio::runtime::Runtime, cfg: SinkConfig) -> Running {
    let _g = rt.enter();
    let stop = CancellationToken::new();
    let sink = Sink::start(cfg, stop.clone()).expect("start the sink");
    Running {
        tx: sink.sender(),
        stats: sink.stats(),
        sink: Some(sink),
        stop,
    }
}

impl Running {
    /// Graceful shutdown: waits until everything is sent or spooled.
    fn shutdown(&mut self, rt: &tokio::runtime::Runtime) {
        self.stop.cancel();
        if let Some(s) = self.sink.take() {
            rt.block_on(s.join());
        }
    }
}

fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !cond() {
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A deterministic sample: sensor `i % 3`, distinct millisecond per sample and sensor.
fn sample(i: usize, base_ms: i64) -> Telemetry {
    let sensor = (i % 3) as u32;
    let state = [
        SensorState::Ok,
        SensorState::Warn,
        SensorState::Alarm,
        SensorState::Critical,
        SensorState::Stale,
        SensorState::Fault,
    ][(i / 7) % 6];
    // Eighths: exact in binary and in the ~15 significant digits VictoriaMetrics keeps.
    let value = (i % 11 != 5).then_some(20.0 + (i % 8000) as f64 * 0.125 + sensor as f64 * 1000.0);
    Telemetry::Sensor {
        sensor,
        ts_ms: base_ms + i as i64,
        value,
        state,
    }
}

/// What VictoriaMetrics should hold for these samples: series name and sensor label to
/// sorted (ts, value) points.
fn expected(samples: &[Telemetry]) -> Points {
    let mut out: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
    for t in samples {
        if let Telemetry::Sensor {
            sensor,
            ts_ms,
            value,
            state,
        } = *t
        {
            let id = SENSORS[sensor as usize].0.to_string();
            if let Some(v) = value {
                out.entry(("firebreak_sensor_value".into(), id.clone()))
                    .or_default()
                    .push((ts_ms, v));
            }
            out.entry(("firebreak_sensor_state".into(), id))
                .or_default()
                .push((ts_ms, firebreak::sinks::influxdb::state_code(state) as f64));
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|a| a.0);
    }
    out
}

fn sensor_series(got: &[Series]) -> Points {
    got.iter()
        .filter(|s| s.name().starts_with("firebreak_sensor_"))
        .map(|s| {
            (
                (s.name().to_string(), s.label("sensor").to_string()),
                s.points(),
            )
        })
        .collect()
}

type Points = BTreeMap<(String, String), Vec<(i64, f64)>>;

/// Equal series, or a panic that names the first difference (not the whole data).
fn assert_same(got: &Points, want: &Points) {
    let keys = |m: &Points| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(got), keys(want), "series differ");
    for (k, w) in want {
        let g = &got[k];
        if g != w {
            let first = g
                .iter()
                .zip(w.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(g.len().min(w.len()));
            panic!(
                "{k:?}: got {} points, want {}; first difference at {first}: got {:?}, want {:?}",
                g.len(),
                w.len(),
                g.get(first),
                w.get(first)
            );
        }
    }
}

fn count(got: &[Series], prefix: &str) -> usize {
    got.iter()
        .filter(|s| s.name().starts_with(prefix))
        .map(|s| s.values.len())
        .sum()
}

#[test]
fn the_exact_points_arrive_with_their_values_tags_and_ms_timestamps() {
    let rt = runtime();
    let vm = Victoria::start();
    let spool = tempfile::tempdir().unwrap();
    let mut sink = start(&rt, config(&vm.url(), spool.path()));
    let base = now_ms() - 600_000;
    let samples: Vec<Telemetry> = (0..3000).map(|i| sample(i, base)).collect();
    for t in &samples {
        sink.tx.send(t.clone());
    }
    for (i, level) in [ZoneLevel::Warning, ZoneLevel::Alarm, ZoneLevel::Critical]
        .into_iter()
        .enumerate()
    {
        sink.tx.send(Telemetry::Zone {
            zone: 0,
            ts_ms: base + 10_000 + i as i64,
            level,
        });
    }
    sink.tx.send(Telemetry::Event {
        name: "zone_level",
        ts_ms: base + 10_000,
        detail: r#"{"ts":"x","event":"zone_level","zone":"b3 \"battery\" room","from":"normal","to":"warning"}"#.into(),
    });
    wait_until("every point written", Duration::from_secs(30), || {
        sink.stats.written.load(Ordering::Relaxed) == 3004
    });
    sink.shutdown(&rt);

    let got = vm.export();
    assert_same(&sensor_series(&got), &expected(&samples));
    for s in got
        .iter()
        .filter(|s| s.name().starts_with("firebreak_sensor_"))
    {
        assert_eq!(s.label("agent"), "test-b3");
        assert_eq!(s.label("zone"), ZONE);
        let kind = SENSORS
            .iter()
            .find(|(id, _)| *id == s.label("sensor"))
            .unwrap()
            .1;
        assert_eq!(s.label("kind"), kind);
    }
    let zone = got
        .iter()
        .find(|s| s.name() == "firebreak_zone_level")
        .expect("zone series");
    assert_eq!(zone.label("zone"), ZONE);
    assert_eq!(
        zone.points(),
        vec![
            (base + 10_000, 1.0),
            (base + 10_001, 2.0),
            (base + 10_002, 3.0)
        ]
    );
    let event = got
        .iter()
        .find(|s| s.name() == "firebreak_event_count")
        .expect("event series");
    assert_eq!(event.label("event"), "zone_level");
    assert_eq!(event.points(), vec![(base + 10_000, 1.0)]);
}

#[test]
fn an_outage_delivers_every_point_once_with_its_original_timestamp() {
    let rt = runtime();
    let mut vm = Victoria::start();
    let spool = tempfile::tempdir().unwrap();
    let mut sink = start(&rt, config(&vm.url(), spool.path()));
    let base = now_ms() - 600_000;
    let sent: Arc<Mutex<Vec<Telemetry>>> = Arc::default();
    let feeding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let feeder = {
        let (tx, sent, feeding) = (sink.tx.clone(), sent.clone(), feeding.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            // About 1,500 samples a second until told to stop (bounded: 60 s at most).
            let until = Instant::now() + Duration::from_secs(60);
            while feeding.load(Ordering::Relaxed) && Instant::now() < until {
                for _ in 0..15 {
                    let t = sample(i, base);
                    sent.lock().unwrap().push(t.clone());
                    tx.send(t);
                    i += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    wait_until("points before the outage", Duration::from_secs(20), || {
        sink.stats.written.load(Ordering::Relaxed) > 1000
    });
    vm.stop();
    wait_until(
        "points spooled during the outage",
        Duration::from_secs(20),
        || sink.stats.spooled.load(Ordering::Relaxed) > 3000,
    );
    vm.restart();
    wait_until("the spool replayed", Duration::from_secs(30), || {
        sink.stats.replayed.load(Ordering::Relaxed) > 3000
    });
    feeding.store(false, Ordering::Relaxed);
    feeder.join().unwrap();
    let sent = sent.lock().unwrap().clone();
    wait_until("every point written", Duration::from_secs(30), || {
        sink.stats.written.load(Ordering::Relaxed) == sent.len() as u64
    });
    sink.shutdown(&rt);
    let stats = &sink.stats;
    assert_eq!(stats.dropped_count(DropReason::QueueFull), 0);
    assert_eq!(stats.spool_points.load(Ordering::Relaxed), 0);
    assert_eq!(stats.written.load(Ordering::Relaxed), sent.len() as u64);
    let got = vm.export();
    // Equal, not a superset: a point sent twice would show up twice.
    assert_same(&sensor_series(&got), &expected(&sent));
}

#[test]
fn a_spool_left_by_a_previous_sink_is_replayed_by_the_next_even_after_a_crash() {
    let rt = runtime();
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let spool = tempfile::tempdir().unwrap();
    let base = now_ms() - 600_000;
    let samples: Vec<Telemetry> = (0..4000).map(|i| sample(i, base)).collect();

    // First run: InfluxDB is down the whole time; a clean stop spools what it holds.
    let mut first = start(&rt, config(&url, spool.path()));
    for t in &samples[..2000] {
        first.tx.send(t.clone());
    }
    first.shutdown(&rt);
    assert_eq!(first.stats.spool_points.load(Ordering::Relaxed), 2000);

    // Second run: still down; it crashes (no shutdown) once its batches are on disk.
    let second = start(&rt, config(&url, spool.path()));
    for t in &samples[2000..] {
        second.tx.send(t.clone());
    }
    wait_until(
        "the second run's batches spooled",
        Duration::from_secs(20),
        || second.stats.spool_points.load(Ordering::Relaxed) == 4000,
    );
    second.sink.expect("sink").abort();

    // Third run: InfluxDB is back.
    let vm = Victoria::start_on(port);
    let mut third = start(&rt, config(&url, spool.path()));
    wait_until("the spool replayed", Duration::from_secs(30), || {
        third.stats.replayed.load(Ordering::Relaxed) == 4000
    });
    third.shutdown(&rt);
    assert_eq!(third.stats.spool_bytes.load(Ordering::Relaxed), 0);
    assert_same(&sensor_series(&vm.export()), &expected(&samples));
}

#[test]
// Formerly quarantined as flaky. The cause: the test waited only for the sink's intake
// between bursts of 5,000 samples; on a loaded machine the writer (one fsync per spooled
// batch) fell more than `batches_in_flight` (16) batches behind, the intake then spooled
// newer batches itself while older ones still waited in the writer's queue, so the
// spool's write order (which `spool_max` drops by, oldest written first) was no longer
// the data's order, and a recent batch could be dropped while an older one was kept. The
// test now waits until each burst is on disk, as a sink does when data arrives over time;
// the reordering under overload is documented (docs/operations.md, telemetry).
fn a_tiny_spool_drops_the_oldest_sensor_data_first_and_keeps_every_event() {
    let rt = runtime();
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let spool = tempfile::tempdir().unwrap();
    let base = now_ms() - 600_000;
    let mut cfg = config(&url, spool.path());
    cfg.spool_max = 64 << 10;
    cfg.tuning.segment_bytes = Some(8 << 10);
    // Small batches whatever the machine's load: the newest data must fit the tiny spool.
    cfg.tuning.batch_lines = 500;
    let mut first = start(&rt, cfg.clone());
    let mut samples = Vec::new();
    for i in 0..30_000 {
        if i % 6000 == 0 {
            first.tx.send(Telemetry::Event {
                name: "sensor_state",
                ts_ms: base + i as i64,
                detail: format!("{{\"n\":{i}}}"),
            });
        }
        let t = sample(i, base);
        first.tx.send(t.clone());
        samples.push(t);
        if i % 5000 == 4999 {
            // Let the sink batch and spool as it would over time.
            // Every line sent so far written to the spool (or dropped to make room):
            // the writer keeps up, so the spool's order is the data's order.
            wait_until("the sink to catch up", Duration::from_secs(20), || {
                first.stats.spooled.load(Ordering::Relaxed) >= (i + 1 + i / 6000 + 1) as u64
            });
        }
    }
    first.shutdown(&rt);
    let dropped = first.stats.dropped_count(DropReason::SpoolFull);
    let first_spooled = first.stats.spooled.load(Ordering::Relaxed);
    assert!(dropped > 0, "the spool should have overflowed");
    assert!(first.stats.spool_bytes.load(Ordering::Relaxed) <= 64 << 10);
    assert_eq!(first.stats.dropped_count(DropReason::QueueFull), 0);

    let vm = Victoria::start_on(port);
    let mut second = start(&rt, cfg);
    wait_until("the spool replayed", Duration::from_secs(30), || {
        second.stats.spool_points.load(Ordering::Relaxed) == 0
    });
    // The last replayed batch may still be in flight when the spool reads empty: wait
    // (bounded) until the newest data is stored before stopping the sink.
    let newest_expected = expected(&samples[samples.len() - 1000..]);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let arrived = sensor_series(&vm.export());
        let all_there = newest_expected.iter().all(|(k, pts)| {
            arrived
                .get(k)
                .is_some_and(|a| pts.iter().all(|p| a.contains(p)))
        });
        if all_there || Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    second.shutdown(&rt);
    let got = vm.export();
    let events = got
        .iter()
        .find(|s| s.name() == "firebreak_event_count")
        .expect("events arrived");
    assert_eq!(
        events.timestamps.len(),
        5,
        "every event survives the overflow"
    );
    // What arrived is the newest sensor data; every line is accounted for.
    let state_points: usize = got
        .iter()
        .filter(|s| s.name() == "firebreak_sensor_state")
        .map(|s| s.values.len())
        .sum();
    assert_eq!(state_points as u64 + dropped, 30_000);
    // Every point that arrived is one that was sent, unchanged and once; the newest
    // survived and the oldest went.
    let all = expected(&samples);
    let arrived = sensor_series(&got);
    for (key, points) in &arrived {
        let sent = &all[key];
        let mut seen = std::collections::HashSet::new();
        for p in points {
            assert!(seen.insert(p.0), "{key:?}: {p:?} arrived twice");
            assert!(sent.contains(p), "{key:?}: {p:?} was never sent");
        }
    }
    let newest: Vec<Telemetry> = samples[samples.len() - 1000..].to_vec();
    for (key, points) in expected(&newest) {
        let missing: Vec<i64> = points
            .iter()
            .filter(|p| !arrived[&key].contains(p))
            .map(|p| p.0 - base)
            .collect();
        let have: Vec<i64> = arrived[&key].iter().map(|p| p.0 - base).collect();
        assert!(
            missing.is_empty(),
            "{} newest points of {key:?} lost (sample numbers {:?}..{:?}); arrived: {} points, {:?}..{:?}; spooled {}, dropped {dropped}",
            missing.len(),
            missing.first(),
            missing.last(),
            have.len(),
            have.first(),
            have.last(),
            first_spooled,
        );
    }
    let oldest_kept = arrived.values().flatten().map(|p| p.0).min().unwrap();
    assert!(
        oldest_kept >= base + 1000,
        "the oldest data should have gone first"
    );
    assert_eq!(count(&got, "firebreak_sensor_state"), state_points);
}

#[test]
fn a_refused_batch_is_dropped_and_counted_and_later_batches_still_go_through() {
    use std::io::Read as _;
    let rt = runtime();
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let addr = {
        let received = received.clone();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                let mut text = String::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_string(&mut text)
                    .unwrap();
                if text.contains("poison") {
                    // What InfluxDB says about a line it cannot take.
                    return (
                        axum::http::StatusCode::BAD_REQUEST,
                        r#"{"code":"invalid","message":"unable to parse points: line 1: bad"}"#,
                    );
                }
                received
                    .lock()
                    .unwrap()
                    .extend(text.lines().map(str::to_string));
                (axum::http::StatusCode::NO_CONTENT, "")
            }
        });
        rt.spawn(async move { axum::serve(listener, app).await });
        addr
    };
    let spool = tempfile::tempdir().unwrap();
    let mut sink = start(&rt, config(&format!("http://{addr}"), spool.path()));
    sink.tx.send(Telemetry::Event {
        name: "zone_level",
        ts_ms: 1,
        detail: "poison".into(),
    });
    wait_until("the refusal", Duration::from_secs(10), || {
        sink.stats.dropped_count(DropReason::Rejected) == 1
    });
    let base = now_ms();
    for i in 0..100 {
        sink.tx.send(sample(i, base));
    }
    sink.shutdown(&rt);
    assert_eq!(sink.stats.written.load(Ordering::Relaxed), 100);
    assert_eq!(sink.stats.spooled.load(Ordering::Relaxed), 0);
    assert_eq!(received.lock().unwrap().len(), 100);
}

/// The real agent binary with the simulator: samples and events reach VictoriaMetrics;
/// then, with VictoriaMetrics down, the agent is killed with SIGKILL, and every point it
/// had spooled arrives after the next start.
#[test]
fn the_agent_spools_through_an_outage_and_a_kill_9_and_the_next_run_delivers_it() {
    use support::agent::{start_sim, Agent};
    let mut vm = Victoria::start();
    let rt = runtime();
    let sim = start_sim(&rt, "normal-day.toml", 1.0);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::write(dir.path().join("influx.token"), "t0ken\n").unwrap();
    let config = dir.path().join("firebreak.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
name = "test-b3"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[[sources]]
name = "env-b3"
type = "modbus"
url = "tcp://{env}"
unit = 1
poll_interval = "100ms"
timeout = "500ms"

[[sensors]]
id = "b3.temp.row1"
zone = "b3-battery-room"
kind = "temperature"
source = "env-b3"
register = {{ table = "input", address = 0, type = "i16", scale = 0.1 }}

[[sensors]]
id = "b3.temp.row2"
zone = "b3-battery-room"
kind = "temperature"
source = "env-b3"
register = {{ table = "input", address = 1, type = "i16", scale = 0.1 }}

[[zones]]
id = "b3-battery-room"
runbook = "evacuate-b3"

[[runbooks]]
name = "evacuate-b3"

[[runbooks.steps]]
name = "pause"
type = "wait"
duration = "1s"

[telemetry.influxdb]
url = "{url}"
org = "dc-ops"
bucket = "firebreak"
token_file = "{token}"
flush_interval = "200ms"
spool_max = "16MiB"
"#,
            state = state.display(),
            env = sim.addr("env-b3").unwrap(),
            url = vm.url(),
            token = dir.path().join("influx.token").display(),
        ),
    )
    .unwrap();
    let events = state.join("events.jsonl");
    let mut agent = Agent::start(&config, &events);
    let got = vm.wait_for("samples and agent_started", Duration::from_secs(30), |s| {
        count(s, "firebreak_sensor_state") >= 20
            && s.iter()
                .any(|x| x.name() == "firebreak_event_count" && x.label("event") == "agent_started")
    });
    let temp = got
        .iter()
        .find(|s| s.name() == "firebreak_sensor_value" && s.label("sensor") == "b3.temp.row1")
        .expect("temperature series");
    assert_eq!(temp.label("kind"), "temperature");
    assert!(
        temp.values.iter().all(|v| (20.0..30.0).contains(v)),
        "{temp:?}"
    );
    // Sample timestamps are wall-clock milliseconds of when they were taken.
    let now = now_ms();
    assert!(temp
        .timestamps
        .iter()
        .all(|t| (now - 60_000..=now).contains(t)));

    vm.stop();
    let spooled = || spooled_points(&state.join("spool"));
    wait_until("points in the spool", Duration::from_secs(30), || {
        spooled().len() >= 20
    });
    agent.kill9();
    let lost_if_not_replayed = spooled();

    vm.restart();
    let mut agent = Agent::start(&config, &events);
    let got = vm.wait_for("the spool replayed", Duration::from_secs(30), |s| {
        let have: std::collections::HashSet<(String, i64)> = s
            .iter()
            .filter(|x| x.name() == "firebreak_sensor_state")
            .flat_map(|x| {
                x.timestamps
                    .iter()
                    .map(|t| (x.label("sensor").to_string(), *t))
            })
            .collect();
        lost_if_not_replayed.iter().all(|p| have.contains(p))
    });
    assert!(count(&got, "firebreak_sensor_state") > lost_if_not_replayed.len());
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
}

/// (sensor, ts) of every `firebreak_sensor` line in the spool's segment files, read with
/// the documented record format (len, crc, flags, lines, gzip payload).
fn spooled_points(dir: &Path) -> Vec<(String, i64)> {
    use std::io::Read as _;
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "seg") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        let mut off = 0;
        while off + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
            if off + 8 + len > bytes.len() {
                break;
            }
            let body = &bytes[off + 8..off + 8 + len];
            let mut text = String::new();
            flate2::read::GzDecoder::new(&body[5..])
                .read_to_string(&mut text)
                .unwrap();
            for line in text.lines().filter(|l| l.starts_with("firebreak_sensor,")) {
                let sensor = line
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("sensor="))
                    .unwrap()
                    .to_string();
                let ts = line.rsplit(' ').next().unwrap().parse().unwrap();
                out.push((sensor, ts));
            }
            off += 8 + len;
        }
    }
    out
}
