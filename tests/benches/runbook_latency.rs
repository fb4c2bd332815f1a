//! Runbook latency bench (`cargo bench --bench runbook_latency`), printing medians and p99:
//! 1. decision to first step on the wire: from `incident::dispatch` (journal write, event
//!    write with fsync, task spawn) to the first DNS datagram arriving at a local socket;
//! 2. a full `dns_update` + verify against a local Knot server.
//!
//! Needs knotd (apt-get install knot knot-dnsutils). Not a test: figures only.
// Benches time real work and real peers (clippy.toml).
#![allow(clippy::disallowed_methods)]

#[path = "../it/support/mod.rs"]
mod support;

use base64::Engine as _;
use firebreak::clock::SystemClock;
use firebreak::config::{load_str, Action};
use firebreak::detect::Cause;
use firebreak::events::EventLog;
use firebreak::incident::{dispatch, Shared};
use firebreak::journal::Journal;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::knot;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name}: n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
        v.len(),
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v.last().unwrap().as_secs_f64() * 1e3
    );
}

fn make_config(
    dir: &std::path::Path,
    server: &str,
    secret_file: &std::path::Path,
) -> firebreak::config::Config {
    let text = format!(
        r#"
[agent]
name = "bench"
state_dir = "{state}"
event_log = "{state}/events.jsonl"
[[zones]]
id = "z"
runbook = "rb"
[[runbooks]]
name = "rb"
[[runbooks.steps]]
name = "dns"
type = "dns_update"
server = "{server}"
zone = "example.test"
record = "app.example.test"
rtype = "A"
values = ["198.51.100.20"]
tsig_key = "firebreak"
tsig_secret_file = "{secret}"
timeout = "3s"
"#,
        state = dir.join("state").display(),
        secret = secret_file.display()
    );
    load_str(&text, "bench.toml", Default::default())
        .expect("bench config")
        .config
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret =
        base64::engine::general_purpose::STANDARD.encode(b"firebreak-bench-secret-32-bytes!");
    let secret_file = dir.path().join("tsig.secret");
    std::fs::write(&secret_file, &secret).unwrap();
    println!(
        "machine: {} cores; figures are wall-clock on a shared machine",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // 1. Decision to dispatch: a local UDP socket stands for the DNS server.
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let config = Arc::new(make_config(
        dir.path(),
        &sink.local_addr().unwrap().to_string(),
        &secret_file,
    ));
    std::fs::create_dir_all(&config.agent.state_dir).unwrap();
    let journal = Journal::open(&config.agent.state_dir).unwrap();
    let shared = Arc::new(Shared {
        power: firebreak::incident::PowerBoard::default(),
        coordinator: Arc::new(firebreak::incident::Alone),
        modbus: Default::default(),
        config: config.clone(),
        metrics: Arc::new(firebreak::sinks::prometheus::Metrics::new()),
        log: Arc::new(EventLog::open(&config.agent.event_log, "bench").unwrap()),
        journal: journal.clone(),
        clock: Arc::new(SystemClock::new()),
        telemetry: None,
        status: None,
    });
    let mut dispatch_times = Vec::new();
    let mut buf = [0u8; 1500];
    for i in 0..300u32 {
        let t0 = Instant::now();
        let (_, task) = rt.block_on(async { dispatch(shared.clone(), 0, Cause::Fire, i) });
        sink.recv_from(&mut buf).expect("first DNS datagram");
        dispatch_times.push(t0.elapsed());
        task.abort();
        if let Ok(Some(inc)) = journal.load("z") {
            journal.close(&inc).unwrap();
        }
    }
    report(
        "decision -> first step on the wire (journal + fsync'd event + spawn)",
        dispatch_times,
    );

    // 2. dns_update + verify against Knot.
    let knot = knot::Knot::start(
        "example.test",
        &[("app", "A", "192.0.2.10")],
        Some(("firebreak", "hmac-sha256", &secret)),
    );
    let config = make_config(dir.path(), &knot.addr().to_string(), &secret_file);
    let Action::DnsUpdate(step) = &config.runbooks[0].steps[0].action else {
        unreachable!()
    };
    let mut times = Vec::new();
    for i in 0..200u32 {
        let mut s = step.clone();
        s.values = vec![format!("198.51.100.{}", 1 + i % 200)];
        let t0 = Instant::now();
        let out = rt
            .block_on(firebreak::runbook::steps::dns_update::run::run(
                &s,
                Duration::from_secs(3),
                false,
            ))
            .expect("update");
        times.push(t0.elapsed());
        assert!(out.verified);
    }
    report("dns_update + verify against local Knot", times);
}
