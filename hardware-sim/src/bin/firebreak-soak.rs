//! `firebreak-soak`: the soak test (issue 9). Serves 1,000 simulated sensors (100 Modbus TCP
//! devices x 10 registers, the simulator's `--devices` copies of one device) to the real
//! `firebreak` agent for N minutes and watches the agent from outside:
//!
//! - RSS (`VmRSS` of /proc/PID/status) and open file descriptors (/proc/PID/fd), sampled
//!   every `--every` seconds after a warm-up;
//! - samples: what the simulator answered (reads x registers) against the agent's
//!   `firebreak_samples_total`, and every source's counter growing in every interval;
//! - the event log: every line parses, timestamps never go backwards, and the quiet room
//!   produced no stale, fault or level change.
//!
//! At the end it prints a report and exits 1 when RSS or fds grew by 2 % or more (mean of
//! the first three vs the last three measurements after the warm-up), a sample was missed,
//! the event log is inconsistent or the agent died; 0 otherwise.
//!
//!     cargo build --bins && target/debug/firebreak-soak --minutes 5
//!     cargo build --release --bins && target/release/firebreak-soak --minutes 60
//!
//! `--agent PATH` names the agent binary (default: `firebreak` next to this binary).

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

const REGISTERS: usize = 10;

#[derive(Parser)]
#[command(
    name = "firebreak-soak",
    about = "Soak test: the agent against 1,000 simulated sensors"
)]
struct Args {
    /// How long to run after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// Simulated Modbus devices (10 sensors each).
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Poll interval of every device, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Warm-up before the first measurement, in seconds, under the measured workload
    /// (polls and /metrics scrapes): connections, buffers and the allocator settle. (The
    /// status page's trend buffers, which used to grow RSS by about 15 % over the first
    /// two minutes, are now allocated whole at start.)
    #[arg(long, default_value_t = 60)]
    warmup: u64,
    /// Seconds between measurements.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// The agent binary (default: `firebreak` next to this program).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Fail when RSS or open fds grew by this many percent or more.
    #[arg(long, default_value_t = 2.0)]
    max_growth: f64,
}

struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One device with `REGISTERS` temperatures (input registers 0..10, i16, 0.1 C), held at
/// room temperature, copied `devices` times by the simulator.
fn scenario(devices: usize) -> hardware_sim::Scenario {
    let mut text = String::from(
        "[scenario]\nname = \"soak\"\nduration = \"86400s\"\n\n\
         [[devices]]\nname = \"soak\"\nlisten = \"127.0.0.1:0\"\nunit = 1\n\n",
    );
    for r in 0..REGISTERS {
        let _ = write!(
            text,
            "[[devices.registers]]\nsignal = \"t{r}\"\ntable = \"input\"\naddress = {r}\n\
             type = \"i16\"\nscale = 0.1\ntimeline = [{{ at = \"0s\", set = {} }}]\n\n",
            21.0 + r as f64 * 0.1
        );
    }
    hardware_sim::Scenario::from_toml_str(&text)
        .unwrap_or_else(|e| panic!("soak scenario: {e}"))
        .replicated(devices, None)
        .unwrap_or_else(|e| panic!("soak scenario: {e}"))
}

fn device_name(d: usize) -> String {
    if d == 0 {
        "soak".into()
    } else {
        format!("soak-{}", d + 1)
    }
}

fn agent_config(dir: &Path, sim: &hardware_sim::PlayHandle, args: &Args, api: u16) -> String {
    let mut c = format!(
        "[agent]\nname = \"soak\"\nstate_dir = \"{d}\"\nevent_log = \"{d}/events.jsonl\"\n\n\
         [api]\nlisten = \"127.0.0.1:{api}\"\n\n",
        d = dir.display()
    );
    for d in 0..args.devices {
        let name = device_name(d);
        let addr = sim.addr(&name).expect("device bound");
        let _ = write!(
            c,
            "[[sources]]\nname = \"{name}\"\ntype = \"modbus\"\nurl = \"tcp://{addr}\"\nunit = 1\n\
             poll_interval = \"{}ms\"\ntimeout = \"2s\"\n\n",
            args.poll_ms
        );
        for r in 0..REGISTERS {
            let _ = write!(
                c,
                "[[sensors]]\nid = \"{name}.t{r}\"\nzone = \"z{}\"\nkind = \"temperature\"\nsource = \"{name}\"\n\
                 register = {{ table = \"input\", address = {r}, type = \"i16\", scale = 0.1 }}\n\n",
                d % 10
            );
        }
    }
    let _ = write!(
        c,
        "[detect.temperature]\nstale_after = \"{}ms\"\n\n",
        (args.poll_ms * 10).max(5000)
    );
    for z in 0..10.min(args.devices) {
        let _ = write!(
            c,
            "[[zones]]\nid = \"z{z}\"\nrunbook = \"r\"\nconfirm = 2\n\n"
        );
    }
    c.push_str(
        "[[runbooks]]\nname = \"r\"\n[[runbooks.steps]]\nname = \"w\"\ntype = \"wait\"\nduration = \"1s\"\n",
    );
    c
}

/// GET over HTTP/1.0 (no chunked encoding), the body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then_some(())?;
    head.split(' ').nth(1).filter(|c| *c == "200")?;
    Some(body.to_string())
}

fn label<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(format!("{key}=\"").as_str())? + key.len() + 2;
    let end = line[start..].find('"')? + start;
    Some(&line[start..end])
}

/// Per-source sample counters, sources up, and source errors, from /metrics.
#[derive(Debug, Default, Clone)]
struct Scrape {
    samples: std::collections::BTreeMap<String, u64>,
    up: usize,
    errors: u64,
}

impl Scrape {
    fn total(&self) -> u64 {
        self.samples.values().sum()
    }
}

fn scrape(api: u16) -> Option<Scrape> {
    let text = http_get(api, "/metrics")?;
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let source = label(line, "source").unwrap_or_default().to_string();
        if line.starts_with("firebreak_samples_total{") {
            s.samples.insert(source, value as u64);
        } else if line.starts_with("firebreak_source_up{") && value == 1.0 {
            s.up += 1;
        } else if line.starts_with("firebreak_source_errors_total{") {
            s.errors += value as u64;
        }
    }
    Some(s)
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// (requests, exceptions + unanswered) over every device.
fn sim_reads(sim: &hardware_sim::PlayHandle, devices: usize) -> (u64, u64) {
    (0..devices)
        .map(|d| sim.stats(&device_name(d)).expect("device"))
        .fold((0, 0), |(r, e), s| {
            (r + s.requests, e + s.exceptions + s.unanswered)
        })
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

/// Growth in percent from the mean of the first three to the mean of the last three.
fn growth(v: &[u64]) -> f64 {
    let k = 3.min(v.len());
    let first = mean(&v[..k]);
    let last = mean(&v[v.len() - k..]);
    if first == 0.0 {
        0.0
    } else {
        (last - first) / first * 100.0
    }
}

/// Checks the event log: every line JSON with `ts` (RFC 3339) and `event`, timestamps in
/// order, and nothing but start and stop in a quiet room. Returns the problems found.
fn check_event_log(path: &Path) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut problems = Vec::new();
    let mut last: Option<time::OffsetDateTime> = None;
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        n += 1;
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("line {}: not JSON ({e})", i + 1));
                continue;
            }
        };
        let ts = v["ts"].as_str().and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
        match (ts, last) {
            (None, _) => problems.push(format!("line {}: no RFC 3339 ts", i + 1)),
            (Some(t), Some(l)) if t < l => {
                problems.push(format!("line {}: ts goes backwards", i + 1))
            }
            (Some(t), _) => last = Some(t),
        }
        match v["event"].as_str() {
            Some("agent_started" | "agent_stopped") => {}
            Some(other) => problems.push(format!("line {}: unexpected {other}: {line}", i + 1)),
            None => problems.push(format!("line {}: no event", i + 1)),
        }
    }
    if !text.lines().any(|l| l.contains("\"agent_started\"")) {
        problems.push("no agent_started".into());
    }
    (n, problems)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let agent_bin = args.agent.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .expect("current exe")
            .with_file_name("firebreak")
    });
    if !agent_bin.exists() {
        eprintln!(
            "firebreak-soak: no agent binary at {} (cargo build --bins, or --agent PATH)",
            agent_bin.display()
        );
        return ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = rt
        .block_on(hardware_sim::play(
            scenario(args.devices),
            hardware_sim::PlayOptions {
                speed: 1.0,
                host: None,
            },
        ))
        .expect("start the simulator");
    let dir = std::env::temp_dir().join(format!("firebreak-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.join("firebreak.toml");
    std::fs::write(&config, agent_config(&dir, &sim, &args, api)).expect("write config");
    let stderr_path = dir.join("agent.stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut agent = AgentProcess(
        Command::new(&agent_bin)
            .args(["run", "--allow-root", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the agent"),
    );
    let pid = agent.0.id();
    let sensors = args.devices * REGISTERS;
    println!(
        "soak: {} devices x {REGISTERS} registers = {sensors} sensors polled every {} ms, \
         {}s warm-up, {} min measured, agent {} (pid {pid}), files in {}",
        args.devices,
        args.poll_ms,
        args.warmup,
        args.minutes,
        agent_bin.display(),
        dir.display()
    );

    let ready_by = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = scrape(api) {
            if s.up == args.devices
                && s.samples.values().filter(|&&n| n > 0).count() == args.devices
            {
                break;
            }
        }
        if Instant::now() > ready_by || agent.0.try_wait().ok().flatten().is_some() {
            eprintln!(
                "FAIL: agent not ready within 120 s\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The warm-up runs the measured workload, scrapes included: the first scrapes of
    // /metrics (1,000 sensors' worth of text, a few MiB) move glibc's dynamic mmap
    // threshold, after which such buffers come from (and stay in) a malloc arena, a
    // one-time step of about 5 MiB that is not a leak.
    let warm_until = Instant::now() + Duration::from_secs(args.warmup);
    while Instant::now() < warm_until {
        let _ = scrape(api);
        let left = warm_until.saturating_duration_since(Instant::now());
        std::thread::sleep(left.min(Duration::from_secs(args.every)));
    }

    let mut failures = Vec::new();
    let t0 = Instant::now();
    let before0 = sim_reads(&sim, args.devices);
    let s0 = scrape(api).expect("scrape");
    let after0 = sim_reads(&sim, args.devices);
    let mut rss = vec![rss_kib(pid).unwrap_or(0)];
    let mut fds = vec![open_fds(pid).unwrap_or(0)];
    let mut prev = s0.clone();
    let mut stalled = 0usize;
    let window = Duration::from_secs_f64(args.minutes * 60.0);
    let mut next = t0;
    let mut last_print = t0;
    while t0.elapsed() < window {
        next += Duration::from_secs(args.every);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if let Ok(Some(status)) = agent.0.try_wait() {
            failures.push(format!("agent exited ({status})"));
            break;
        }
        let (Some(r), Some(f)) = (rss_kib(pid), open_fds(pid)) else {
            failures.push("agent's /proc entry gone".into());
            break;
        };
        rss.push(r);
        fds.push(f);
        match scrape(api) {
            Some(s) => {
                for (source, n) in &s.samples {
                    if prev.samples.get(source).is_some_and(|p| p >= n) {
                        stalled += 1;
                        eprintln!("source {source}: no sample in {} s", args.every);
                    }
                }
                prev = s;
            }
            None => failures.push(format!("/metrics did not answer at {:?}", t0.elapsed())),
        }
        if last_print.elapsed() >= Duration::from_secs(60) {
            last_print = Instant::now();
            println!(
                "  {:>5.1} min: RSS {} KiB, fds {f}, samples {}",
                t0.elapsed().as_secs_f64() / 60.0,
                r,
                prev.total() - s0.total()
            );
        }
    }
    let before1 = sim_reads(&sim, args.devices);
    let s1 = scrape(api).expect("scrape");
    let after1 = sim_reads(&sim, args.devices);
    let elapsed = t0.elapsed().as_secs_f64();

    // Samples the simulator surely answered inside the window (reads that completed after
    // the first scrape began and before the last one began), and at most.
    let answered = |from: (u64, u64), to: (u64, u64)| {
        (to.0 - from.0).saturating_sub(to.1 - from.1) * REGISTERS as u64
    };
    let (lo, hi) = (answered(after0, before1), answered(before0, after1));
    let got = s1.total() - s0.total();
    let scheduled = sensors as f64 * elapsed / (args.poll_ms as f64 / 1000.0);
    let missed = lo.saturating_sub(got);
    let errors = s1.errors - s0.errors;
    let (events, log_problems) = check_event_log(&dir.join("events.jsonl"));
    let rss_growth = growth(&rss);
    let fd_growth = growth(&fds);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!("--- soak report ---");
    println!(
        "measured {:.1} min after {} s warm-up; {} measurements every {} s; machine: {} cores, \
         shared, load average {}",
        elapsed / 60.0,
        args.warmup,
        rss.len(),
        args.every,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "RSS: first {} KiB, last {} KiB, min {}, max {}; growth {rss_growth:+.2} % (first 3 vs last 3)",
        rss[0],
        rss[rss.len() - 1],
        rss.iter().min().unwrap_or(&0),
        rss.iter().max().unwrap_or(&0)
    );
    println!(
        "open fds: first {}, last {}, max {}; growth {fd_growth:+.2} %",
        fds[0],
        fds[fds.len() - 1],
        fds.iter().max().unwrap_or(&0)
    );
    println!(
        "samples: simulator answered {lo}..={hi}, agent counted {got} (schedule alone {scheduled:.0}, \
         {:.1} %); missed {missed}; source errors {errors}; intervals with a stalled source {stalled}",
        got as f64 / scheduled * 100.0
    );
    println!(
        "event log: {events} lines, {} problem(s)",
        log_problems.len()
    );
    for p in &log_problems {
        println!("  {p}");
    }

    if rss_growth >= args.max_growth {
        failures.push(format!("RSS grew {rss_growth:.2} %"));
    }
    if fd_growth >= args.max_growth {
        failures.push(format!("open fds grew {fd_growth:.2} %"));
    }
    if missed > 0 {
        failures.push(format!("{missed} samples missed"));
    }
    if errors > 0 {
        failures.push(format!("{errors} source errors"));
    }
    if stalled > 0 {
        failures.push(format!("{stalled} source intervals without a sample"));
    }
    if !log_problems.is_empty() {
        failures.push("event log inconsistent".into());
    }
    if let Ok(Some(status)) = agent.0.try_wait() {
        failures.push(format!("agent exited ({status})"));
    }
    // A clean stop, then the log once more (agent_stopped must parse and be in order too).
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = agent.0.wait();
    let (_, after_stop) = check_event_log(&dir.join("events.jsonl"));
    if !after_stop.is_empty() && log_problems.is_empty() {
        failures.push(format!("event log inconsistent after stop: {after_stop:?}"));
    }
    rt.block_on(sim.shutdown());
    if failures.is_empty() {
        println!("PASS");
        let _ = std::fs::remove_dir_all(&dir);
        ExitCode::SUCCESS
    } else {
        println!("FAIL: {}", failures.join("; "));
        println!("(files kept in {})", dir.display());
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_compares_the_mean_of_the_first_three_with_the_last_three() {
        assert_eq!(growth(&[100, 100, 100, 101, 102, 102, 102]), 2.0);
        assert_eq!(growth(&[113, 113, 113, 113]), 0.0);
        assert!(growth(&[100, 99, 101, 100]) < 2.0);
        assert_eq!(growth(&[50]), 0.0);
    }

    fn log_with(lines: &[&str]) -> (usize, Vec<String>) {
        let path = std::env::temp_dir().join(format!(
            "soak-log-test-{}-{}.jsonl",
            std::process::id(),
            lines.len()
        ));
        std::fs::write(&path, lines.join("\n")).unwrap();
        let r = check_event_log(&path);
        let _ = std::fs::remove_file(&path);
        r
    }

    #[test]
    fn a_quiet_run_has_a_consistent_log() {
        let (n, problems) = log_with(&[
            r#"{"ts":"2026-11-25T10:00:00.000Z","event":"agent_started","agent":"soak"}"#,
            r#"{"ts":"2026-11-25T11:00:00.000Z","event":"agent_stopped","agent":"soak"}"#,
        ]);
        assert_eq!((n, problems), (2, vec![]));
    }

    #[test]
    fn backwards_time_broken_lines_and_unexpected_events_are_problems() {
        let (_, problems) = log_with(&[
            r#"{"ts":"2026-11-25T10:00:01.000Z","event":"agent_started","agent":"soak"}"#,
            r#"{"ts":"2026-11-25T10:00:00.000Z","event":"source_state","agent":"soak"}"#,
            r#"{"ts":"2026-11-25T10:00:02.0"#,
        ]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("backwards"));
        assert!(problems[1].contains("unexpected source_state"));
        assert!(problems[2].contains("not JSON"));
    }
}
