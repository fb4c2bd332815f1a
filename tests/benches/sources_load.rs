//! Load bench for issue 3: the real agent binary against 100 simulated Modbus TCP devices
//! x 10 registers polled every 250 ms (4,000 samples/s) and 1,000 MQTT sensors at 1 Hz
//! through a real Mosquitto (1,000 samples/s). Reports the agent's CPU (% of one core,
//! from /proc/<pid>/stat), RSS (VmRSS) and sample loss (what the servers delivered vs the
//! agent's `firebreak_samples_total`).
//!
//! Run: `cargo bench --bench sources_load` (release). Needs `mosquitto` on PATH.
//! Environment: FIREBREAK_BENCH_SECS (default 30) sets the measured window.
//!
//! The agent binary is the one Cargo builds alongside this bench (`CARGO_BIN_EXE_firebreak`,
//! which Cargo sets for benches as for integration tests), so a `cargo bench` measures
//! the release build of the same commit.
// Benches time real work and real peers (clippy.toml).
#![allow(clippy::disallowed_methods)]

#[path = "../it/support/mod.rs"]
mod support;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::fmt::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::mosquitto;

const DEVICES: usize = 100;
const REGISTERS: usize = 10;
const MQTT_SENSORS: usize = 1000;
const POLL: Duration = Duration::from_millis(250);
const WARMUP: Duration = Duration::from_secs(5);

fn scenario() -> hardware_sim::Scenario {
    let mut text = String::from("[scenario]\nname = \"sources-load\"\nduration = \"3600s\"\n\n");
    for d in 0..DEVICES {
        let _ = write!(
            text,
            "[[devices]]\nname = \"dev{d}\"\nlisten = \"127.0.0.1:0\"\nunit = 1\n\n"
        );
        for r in 0..REGISTERS {
            let _ = write!(
                text,
                "[[devices.registers]]\nsignal = \"t{r}\"\ntable = \"input\"\naddress = {r}\ntype = \"i16\"\nscale = 0.1\n\
                 timeline = [{{ at = \"0s\", set = {} }}]\n\n",
                20.0 + (d * REGISTERS + r) as f64 % 50.0 * 0.1
            );
        }
    }
    hardware_sim::Scenario::from_toml_str(&text).unwrap_or_else(|e| panic!("scenario: {e}"))
}

fn agent_config(
    dir: &std::path::Path,
    sim: &hardware_sim::PlayHandle,
    broker: u16,
    api: u16,
) -> String {
    let mut c = format!(
        "[agent]\nname = \"bench\"\nstate_dir = \"{d}\"\nevent_log = \"{d}/events.jsonl\"\n\n\
         [api]\nlisten = \"127.0.0.1:{api}\"\n\n\
         [[sources]]\nname = \"broker\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{broker}\"\nclient_id = \"firebreak-bench\"\n\n",
        d = dir.display()
    );
    for d in 0..DEVICES {
        let addr = sim.addr(&format!("dev{d}")).expect("device bound");
        let _ = write!(
            c,
            "[[sources]]\nname = \"dev{d}\"\ntype = \"modbus\"\nurl = \"tcp://{addr}\"\nunit = 1\npoll_interval = \"{}ms\"\ntimeout = \"1s\"\n\n",
            POLL.as_millis()
        );
    }
    for d in 0..DEVICES {
        for r in 0..REGISTERS {
            let _ = write!(
                c,
                "[[sensors]]\nid = \"dev{d}.t{r}\"\nzone = \"z\"\nkind = \"temperature\"\nsource = \"dev{d}\"\n\
                 register = {{ table = \"input\", address = {r}, type = \"i16\", scale = 0.1 }}\n\n"
            );
        }
    }
    for i in 0..MQTT_SENSORS {
        let _ = write!(
            c,
            "[[sensors]]\nid = \"mqtt.t{i}\"\nzone = \"z\"\nkind = \"temperature\"\nsource = \"broker\"\ntopic = \"bench/t{i}\"\n\n"
        );
    }
    c.push_str(
        "[[zones]]\nid = \"z\"\nrunbook = \"r\"\nconfirm = 2\n\n\
         [[runbooks]]\nname = \"r\"\n[[runbooks.steps]]\nname = \"w\"\ntype = \"wait\"\nduration = \"1s\"\n",
    );
    c
}

/// (modbus, mqtt) sums of `firebreak_samples_total`, and how many sources are up.
#[derive(Debug, Clone, Copy, Default)]
struct Scrape {
    modbus: u64,
    mqtt: u64,
    modbus_up: usize,
    mqtt_up: bool,
}

fn label<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(format!("{key}=\"").as_str())? + key.len() + 2;
    let end = line[start..].find('"')? + start;
    Some(&line[start..end])
}

async fn scrape(http: &reqwest::Client, api: u16) -> Option<Scrape> {
    let text = http
        .get(format!("http://127.0.0.1:{api}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value: f64 = line.rsplit(' ').next()?.parse().ok()?;
        let source = label(line, "source").unwrap_or_default();
        if line.starts_with("firebreak_samples_total{") {
            if source == "broker" {
                s.mqtt += value as u64;
            } else {
                s.modbus += value as u64;
            }
        } else if line.starts_with("firebreak_source_up{") && value == 1.0 {
            if source == "broker" {
                s.mqtt_up = true;
            } else {
                s.modbus_up += 1;
            }
        }
    }
    Some(s)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("agent running");
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent running");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores available ({cpu}), shared with other work; load average {}",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    )
}

fn sim_requests(sim: &hardware_sim::PlayHandle) -> (u64, u64) {
    (0..DEVICES)
        .map(|d| sim.stats(&format!("dev{d}")).expect("device"))
        .fold((0, 0), |(r, e), s| {
            (r + s.requests, e + s.exceptions + s.unanswered)
        })
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to filter on
    // either, so run only under `cargo bench` to keep the test suite fast.
    if !std::env::args().any(|a| a == "--bench") {
        println!("sources_load: run with `cargo bench --bench sources_load`");
        return;
    }
    let window = Duration::from_secs(
        std::env::var("FIREBREAK_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = mosquitto::Mosquitto::start(mosquitto::Options::default());
    let sim = rt
        .block_on(hardware_sim::play(
            scenario(),
            hardware_sim::PlayOptions {
                speed: 1.0,
                host: None,
            },
        ))
        .expect("start the simulator");
    let dir = tempfile::tempdir().unwrap();
    let api = support::free_port();
    let config = dir.path().join("firebreak.toml");
    std::fs::write(&config, agent_config(dir.path(), &sim, broker.port, api)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_firebreak"));
    cmd.args(["run", "--allow-root", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn");
    // Killed on drop.
    let mut agent =
        support::peer::Peer::with_log("firebreak", &dir.path().join("agent.stderr")).stderr_only();
    agent.start(cmd);
    let pid = agent.pid().expect("agent running");
    let http = reqwest::Client::new();

    // Publisher: every second, one message per MQTT sensor (QoS 1), in 10 batches of 100
    // 20 ms apart (real sensors are not synchronised, and one 1,000-message burst would
    // measure Mosquitto's per-client queue, 1,000 by default, more than the agent). A
    // message counts as published once the client has taken it.
    let published = Arc::new(AtomicU64::new(0));
    let bursts = Arc::new(AtomicU64::new(0));
    {
        let (published, bursts) = (published.clone(), bursts.clone());
        let port = broker.port;
        rt.spawn(async move {
            let mut opts = MqttOptions::new("bench-publisher", "127.0.0.1", port);
            opts.set_keep_alive(Duration::from_secs(30));
            opts.set_inflight(1000);
            let (client, mut eventloop) = AsyncClient::new(opts, 2 * MQTT_SENSORS);
            tokio::spawn(async move {
                loop {
                    if let Err(e) = eventloop.poll().await {
                        eprintln!("publisher: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            });
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                n += 1;
                for i in 0..MQTT_SENSORS {
                    if i > 0 && i % 100 == 0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let payload = format!("{}", 21.0 + (n as usize + i) as f64 % 10.0 * 0.1);
                    if client
                        .publish(format!("bench/t{i}"), QoS::AtLeastOnce, false, payload)
                        .await
                        .is_ok()
                    {
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                }
                bursts.fetch_add(1, Ordering::Release);
            }
        });
    }

    // Wait until the agent is up: every device answering, the broker connected, and MQTT
    // samples flowing (the subscriptions are in place).
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = rt.block_on(scrape(&http, api));
        if let Some(s) = s {
            if s.modbus_up == DEVICES && s.mqtt_up && s.mqtt >= MQTT_SENSORS as u64 {
                break;
            }
        }
        assert!(
            Instant::now() < until,
            "agent not ready within 60s (last scrape {s:?}); stderr: {}",
            std::fs::read_to_string(dir.path().join("agent.stderr")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(WARMUP);

    // Snapshots are taken half a second after a burst, when no MQTT message is in flight.
    let after_burst = || {
        let b = bursts.load(Ordering::Acquire);
        while bursts.load(Ordering::Acquire) == b {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    after_burst();
    // Each scrape is bracketed by simulator counts: a scrape takes a while under load,
    // and the devices answer 400 reads/s meanwhile.
    let t0 = Instant::now();
    let before0 = sim_requests(&sim);
    let s0 = rt.block_on(scrape(&http, api)).expect("scrape");
    let after0 = sim_requests(&sim);
    let pub0 = published.load(Ordering::Relaxed);
    let cpu0 = cpu_ticks(pid);
    let tck = clock_ticks_per_sec();

    let mut cpu_pct = Vec::new();
    let mut rss = Vec::new();
    let mut last = (Instant::now(), cpu0);
    let secs = window.as_secs();
    for _ in 0..secs {
        after_burst();
        let now = Instant::now();
        let ticks = cpu_ticks(pid);
        cpu_pct
            .push((ticks - last.1) as f64 / tck / now.duration_since(last.0).as_secs_f64() * 100.0);
        rss.push(rss_kib(pid) as f64 / 1024.0);
        last = (now, ticks);
    }
    let before1 = sim_requests(&sim);
    let s1 = rt.block_on(scrape(&http, api)).expect("scrape");
    let after1 = sim_requests(&sim);
    let pub1 = published.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(pid);

    // Samples of answered reads: surely inside the window (lo) and at most (hi).
    let answered = |from: (u64, u64), to: (u64, u64)| {
        (to.0 - from.0).saturating_sub(to.1 - from.1) * REGISTERS as u64
    };
    let (lo, hi) = (answered(after0, before1), answered(before0, after1));
    let reads = (after1.0 + before1.0 - after0.0 - before0.0) / 2;
    let served = lo;
    let modbus_got = s1.modbus - s0.modbus;
    let scheduled = (DEVICES * REGISTERS) as f64 * elapsed / POLL.as_secs_f64();
    let mqtt_sent = pub1 - pub0;
    let mqtt_got = s1.mqtt - s0.mqtt;
    let overall_cpu = (cpu1 - cpu0) as f64 / tck / elapsed * 100.0;
    let rss_max = rss.iter().copied().fold(0.0, f64::max);
    let lost = served.saturating_sub(modbus_got) + mqtt_sent.saturating_sub(mqtt_got);

    println!("sources_load: {DEVICES} Modbus TCP devices x {REGISTERS} registers every {}ms + {MQTT_SENSORS} MQTT sensors at 1 Hz, {elapsed:.1}s measured", POLL.as_millis());
    println!("machine: {}", machine());
    println!(
        "agent CPU: median {:.2}% of one core per second (overall {overall_cpu:.2}%; target <= 5%)",
        median(&mut cpu_pct.clone())
    );
    println!(
        "agent RSS: median {:.1} MiB, max {rss_max:.1} MiB (target <= 64 MiB)",
        median(&mut rss.clone())
    );
    println!(
        "Modbus: ~{reads} reads answered by the simulator ({:.2}/s per device, schedule 4/s) = {lo}..={hi} samples served in the window; agent counted {modbus_got} (schedule alone: {scheduled:.0})",
        reads as f64 / elapsed / DEVICES as f64
    );
    println!("MQTT: {mqtt_sent} messages published (QoS 1); agent counted {mqtt_got}");
    println!(
        "samples lost: {lost} (Modbus: {} below the surely-served count, MQTT {}; target 0)",
        served as i64 - modbus_got as i64,
        mqtt_sent as i64 - mqtt_got as i64
    );
    drop(agent);
    rt.block_on(sim.shutdown());
}
