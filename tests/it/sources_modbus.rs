//! The Modbus source against servers: pymodbus (which we did not write) for every type,
//! word order, scale, bit, negative and "no data" value, and RTU over a socat pty pair with
//! several unit ids on one line; the simulator for coalescing (counting the requests it
//! saw), device isolation, exceptions and a device that disappears and returns.

use crate::support;

use firebreak::clock::SystemClock;
use firebreak::config::{self, Config};
use firebreak::detect::{FaultKind, Reading, Sample};
use firebreak::sources::metrics::{ErrorKind, SourceMetrics};
use firebreak::sources::modbus;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use support::pymodbus::{PtyPair, PyModbus};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(15);

fn config(body: &str) -> Config {
    let text = format!(
        r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-modbus-test"

{body}

[[zones]]
id = "z"
runbook = "r"
confirm = 1

[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"
"#
    );
    config::load_str(&text, "test", HashMap::new())
        .unwrap_or_else(|e| panic!("config: {:?}", e.errors))
        .config
}

fn source(name: &str, url: &str, unit: u8, poll: &str, timeout: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\ntype = \"modbus\"\nurl = \"{url}\"\nunit = {unit}\npoll_interval = \"{poll}\"\ntimeout = \"{timeout}\"\nreconnect_max = \"500ms\"\n"
    )
}

fn sensor(id: &str, source: &str, register: &str) -> String {
    format!(
        "[[sensors]]\nid = \"{id}\"\nzone = \"z\"\nkind = \"runtime\"\nsource = \"{source}\"\nregister = {{ {register} }}\n"
    )
}

struct Running {
    rx: mpsc::Receiver<Sample>,
    metrics: HashMap<String, Arc<SourceMetrics>>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    config: Config,
}

impl Running {
    fn start(config: Config) -> Running {
        let (tx, rx) = mpsc::channel(4096);
        let cancel = CancellationToken::new();
        let mut metrics = HashMap::new();
        let mut tasks = Vec::new();
        for d in modbus::devices(&config) {
            metrics.insert(d.name.clone(), d.metrics.clone());
            tasks.push(modbus::spawn(
                d,
                Arc::new(SystemClock::new()),
                tx.clone(),
                cancel.clone(),
            ));
        }
        Running {
            rx,
            metrics,
            cancel,
            tasks,
            config,
        }
    }

    fn id(&self, sensor: u32) -> &str {
        &self.config.sensors[sensor as usize].id
    }

    /// The latest reading of each sensor, once every sensor in `ids` has given one.
    async fn readings(&mut self, ids: &[&str]) -> HashMap<String, Reading> {
        let until = Instant::now() + DEADLINE;
        let mut seen: HashMap<String, Reading> = HashMap::new();
        while !ids.iter().all(|i| seen.contains_key(*i)) {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(s)) => {
                    seen.insert(self.id(s.sensor).to_string(), s.reading);
                }
                _ => panic!(
                    "no reading for every sensor of {ids:?} within {DEADLINE:?}: got {seen:?}"
                ),
            }
        }
        seen
    }

    /// Samples per sensor id received during `window`.
    async fn count_for(&mut self, window: Duration) -> HashMap<String, usize> {
        let until = Instant::now() + window;
        let mut n: HashMap<String, usize> = HashMap::new();
        while let Ok(Some(s)) = tokio::time::timeout_at(until, self.rx.recv()).await {
            *n.entry(self.id(s.sensor).to_string()).or_default() += 1;
        }
        n
    }

    async fn wait_until(&mut self, what: &str, cond: impl Fn(&Sample) -> bool) {
        let until = Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(s)) if cond(&s) => return,
                Ok(Some(_)) => {}
                _ => panic!("timed out waiting for {what}"),
            }
        }
    }

    async fn stop(mut self) -> Self {
        self.cancel.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn assert_value(readings: &HashMap<String, Reading>, id: &str, want: f64) {
    match readings[id] {
        Reading::Value(v) if (v - want).abs() < 1e-6 => {}
        ref other => panic!("{id}: want {want}, got {other:?}"),
    }
}

fn assert_fault(readings: &HashMap<String, Reading>, id: &str, want: FaultKind) {
    assert_eq!(readings[id], Reading::Fault(want), "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_word_order_scale_and_bit_decodes_what_pymodbus_encoded() {
    let reg = |address: u16, ty: &str, value: serde_json::Value, order: &str| json!({"address": address, "type": ty, "value": value, "word_order": order});
    let server = PyModbus::tcp(json!([{ "id": 1, "registers": [
        reg(0, "int16", json!(-50), "big"),
        reg(1, "uint16", json!(65000), "big"),
        reg(2, "uint32", json!(70000), "big"),
        reg(4, "uint32", json!(70000), "little"),
        reg(6, "int32", json!(-123456), "big"),
        reg(8, "int32", json!(-2), "little"),
        reg(10, "float32", json!(23.5), "big"),
        reg(12, "float32", json!(-12.25), "little"),
        reg(14, "uint16", json!(0b0110), "big"),
        reg(15, "uint32", json!(1 << 17), "big"),
        reg(17, "uint16", json!(3200), "big"),
        reg(18, "int16", json!(-32767), "big"),
        // "No data" patterns, raw.
        {"address": 19, "type": "raw", "value": [0xFFFF]},
        {"address": 20, "type": "raw", "value": [0x8000]},
        {"address": 21, "type": "raw", "value": [0x7FC0, 0x0000]},
        {"address": 23, "type": "raw", "value": [0xFFFF, 0xFFFF]},
        // A sensor's own "no data" value (a DS18B20's 85 C power-on reading, in tenths).
        reg(25, "int16", json!(850), "big"),
    ]}]));
    let url = format!("tcp://127.0.0.1:{}", server.port.unwrap());
    let sensors = [
        (
            "i16_tenths",
            "table = \"holding\", address = 0, type = \"i16\", scale = 0.1",
        ),
        ("u16", "table = \"input\", address = 1, type = \"u16\""),
        (
            "u32_high",
            "table = \"holding\", address = 2, type = \"u32\"",
        ),
        (
            "u32_low",
            "table = \"holding\", address = 4, type = \"u32\", word_order = \"low_first\"",
        ),
        (
            "i32_high",
            "table = \"holding\", address = 6, type = \"i32\", word_order = \"high_first\"",
        ),
        (
            "i32_low",
            "table = \"holding\", address = 8, type = \"i32\", word_order = \"low_first\"",
        ),
        (
            "f32_high",
            "table = \"holding\", address = 10, type = \"f32\"",
        ),
        (
            "f32_low",
            "table = \"holding\", address = 12, type = \"f32\", word_order = \"low_first\"",
        ),
        (
            "bit2",
            "table = \"holding\", address = 14, type = \"u16\", bit = 2",
        ),
        (
            "bit0",
            "table = \"holding\", address = 14, type = \"u16\", bit = 0",
        ),
        (
            "bit17",
            "table = \"holding\", address = 15, type = \"u32\", bit = 17",
        ),
        (
            "scaled",
            "table = \"holding\", address = 17, type = \"u16\", scale = 0.0078125, offset = -10.0",
        ),
        (
            "i16_min",
            "table = \"holding\", address = 18, type = \"i16\"",
        ),
        (
            "nodata_u16",
            "table = \"holding\", address = 19, type = \"u16\"",
        ),
        (
            "nodata_i16",
            "table = \"holding\", address = 20, type = \"i16\", scale = 0.1",
        ),
        (
            "nodata_f32",
            "table = \"holding\", address = 21, type = \"f32\"",
        ),
        (
            "nodata_flags",
            "table = \"holding\", address = 23, type = \"u32\", bit = 2",
        ),
        (
            "missing",
            "table = \"holding\", address = 500, type = \"u16\"",
        ),
    ];
    let mut body = source("pym", &url, 1, "100ms", "1s");
    for (id, r) in sensors {
        body.push_str(&sensor(id, "pym", r));
    }
    body.push_str(&sensor(
        "sentinel",
        "pym",
        "table = \"holding\", address = 25, type = \"i16\", scale = 0.1",
    ));
    body.push_str("sentinels = [850, -1270]\n");
    let mut run = Running::start(config(&body));
    let mut ids: Vec<&str> = sensors.iter().map(|(id, _)| *id).collect();
    ids.push("sentinel");
    let r = run.readings(&ids).await;
    // Compared before scale: 850 is the sentinel, not 85.0.
    assert_fault(&r, "sentinel", FaultKind::OutOfRange);
    assert_value(&r, "i16_tenths", -5.0);
    assert_value(&r, "u16", 65000.0);
    assert_value(&r, "u32_high", 70000.0);
    assert_value(&r, "u32_low", 70000.0);
    assert_value(&r, "i32_high", -123456.0);
    assert_value(&r, "i32_low", -2.0);
    assert_value(&r, "f32_high", 23.5);
    assert_value(&r, "f32_low", -12.25);
    assert_value(&r, "bit2", 1.0);
    assert_value(&r, "bit0", 0.0);
    assert_value(&r, "bit17", 1.0);
    assert_value(&r, "scaled", 15.0);
    assert_value(&r, "i16_min", -32767.0);
    assert_fault(&r, "nodata_u16", FaultKind::OutOfRange);
    assert_fault(&r, "nodata_i16", FaultKind::OutOfRange);
    assert_fault(&r, "nodata_f32", FaultKind::OutOfRange);
    assert_fault(&r, "nodata_flags", FaultKind::OutOfRange);
    // pymodbus answers an undefined address with an exception: that sensor faults, the
    // link stays up and the other reads go on.
    assert_fault(&r, "missing", FaultKind::ModbusException);
    let m = run.metrics["pym"].snapshot();
    assert!(m.connected, "{m:?}");
    assert!(m.errors_of(ErrorKind::Exception) >= 1, "{m:?}");
    assert_eq!(m.errors_of(ErrorKind::Transport), 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_precision_64_bit_and_every_byte_layout_decode_what_python_packed() {
    let reg = |address: u16, ty: &str, value: serde_json::Value, order: &str| json!({"address": address, "type": ty, "value": value, "word_order": order});
    let packed = |address: u16, format: &str, value: f64, word: &str, byte: &str| json!({"address": address, "type": "packed", "format": format, "value": value, "word_order": word, "byte_order": byte});
    let server = PyModbus::tcp(json!([{ "id": 1, "registers": [
        packed(0, ">e", 412.0, "big", "big"),
        packed(1, ">e", -0.5, "big", "little"),
        packed(2, ">f", 36.75, "big", "big"),
        packed(4, ">f", 36.75, "little", "big"),
        packed(6, ">f", 36.75, "big", "little"),
        packed(8, ">f", 36.75, "little", "little"),
        packed(10, ">d", -1234.0625, "big", "big"),
        packed(14, ">d", 0.001, "little", "little"),
        reg(18, "uint64", json!(5_000_000_000u64), "big"),
        reg(22, "int64", json!(-5_000_000_000i64), "little"),
        // Half precision NaN: the detector's "no data".
        {"address": 26, "type": "raw", "value": [0x7E00]},
    ]}]));
    let url = format!("tcp://127.0.0.1:{}", server.port.unwrap());
    let sensors = [
        ("f16", "table = \"holding\", address = 0, type = \"f16\""),
        ("f16_little", "table = \"holding\", address = 1, type = \"f16\", byte_order = \"little\""),
        ("abcd", "table = \"holding\", address = 2, type = \"f32\""),
        ("cdab", "table = \"holding\", address = 4, type = \"f32\", word_order = \"low_first\""),
        ("badc", "table = \"holding\", address = 6, type = \"f32\", byte_order = \"little\""),
        ("dcba", "table = \"holding\", address = 8, type = \"f32\", word_order = \"low_first\", byte_order = \"little\""),
        ("f64", "table = \"holding\", address = 10, type = \"f64\""),
        ("f64_dcba", "table = \"holding\", address = 14, type = \"f64\", word_order = \"low_first\", byte_order = \"little\""),
        ("u64", "table = \"holding\", address = 18, type = \"u64\""),
        ("i64_low", "table = \"holding\", address = 22, type = \"i64\", word_order = \"low_first\""),
        ("nodata_f16", "table = \"holding\", address = 26, type = \"f16\""),
    ];
    let mut body = source("pym", &url, 1, "100ms", "1s");
    for (id, r) in sensors {
        body.push_str(&sensor(id, "pym", r));
    }
    let mut run = Running::start(config(&body));
    let ids: Vec<&str> = sensors.iter().map(|(id, _)| *id).collect();
    let r = run.readings(&ids).await;
    assert_value(&r, "f16", 412.0);
    assert_value(&r, "f16_little", -0.5);
    for layout in ["abcd", "cdab", "badc", "dcba"] {
        assert_value(&r, layout, 36.75);
    }
    assert_value(&r, "f64", -1234.0625);
    assert_value(&r, "f64_dcba", 0.001);
    assert_value(&r, "u64", 5e9);
    assert_value(&r, "i64_low", -5e9);
    assert_fault(&r, "nodata_f16", FaultKind::OutOfRange);
}

fn sim_device(body: &str) -> hardware_sim::Scenario {
    hardware_sim::Scenario::from_toml_str(&format!(
        "[scenario]\nname = \"t\"\nduration = \"60s\"\n\n[[devices]]\nname = \"dev\"\nunit = 1\n{body}"
    ))
    .unwrap_or_else(|e| panic!("scenario: {e}"))
}

fn sim_register(signal: &str, table: &str, address: u16, timeline: &str) -> String {
    format!(
        "[[devices.registers]]\nsignal = \"{signal}\"\ntable = \"{table}\"\naddress = {address}\ntype = \"i16\"\nscale = 0.1\ntimeline = {timeline}\n"
    )
}

async fn play(scenario: hardware_sim::Scenario) -> hardware_sim::PlayHandle {
    hardware_sim::play(
        scenario,
        hardware_sim::PlayOptions {
            speed: 1.0,
            host: None,
        },
    )
    .await
    .expect("start the simulator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_reads_are_the_only_requests_the_server_sees() {
    let mut regs = String::new();
    for a in 0..10 {
        regs.push_str(&sim_register(
            &format!("t{a}"),
            "input",
            a,
            "[{ at = \"0s\", set = 20.0 }]",
        ));
    }
    regs.push_str(&sim_register(
        "far",
        "input",
        200,
        "[{ at = \"0s\", set = 21.0 }]",
    ));
    let sim = play(sim_device(&regs)).await;
    let url = format!("tcp://{}", sim.addr("dev").unwrap());
    let mut body = source("dev", &url, 1, "50ms", "1s");
    for a in 0..10 {
        body.push_str(&sensor(
            &format!("t{a}"),
            "dev",
            &format!("table = \"input\", address = {a}, type = \"i16\", scale = 0.1"),
        ));
    }
    body.push_str(&sensor(
        "far",
        "dev",
        "table = \"input\", address = 200, type = \"i16\", scale = 0.1",
    ));
    let cfg = config(&body);
    assert_eq!(
        modbus::devices(&cfg)[0].reads.len(),
        2,
        "10 neighbours in one read, the far one in another"
    );
    let mut run = Running::start(cfg);
    let until = Instant::now() + DEADLINE;
    let mut passes = 0usize;
    let mut far = 0usize;
    while passes < 20 {
        let s = tokio::time::timeout_at(until, run.rx.recv())
            .await
            .expect("samples")
            .unwrap();
        match run.id(s.sensor) {
            "t0" => passes += 1,
            "far" => far += 1,
            _ => {}
        }
    }
    let mut run = run.stop().await;
    while let Ok(s) = run.rx.try_recv() {
        if run.id(s.sensor) == "far" {
            far += 1;
        }
        if run.id(s.sensor) == "t0" {
            passes += 1;
        }
    }
    let requests = sim.stats("dev").unwrap().requests as usize;
    // Every pass is exactly two requests (a cancelled pass may have sent only its first).
    assert!(
        requests == passes + far || requests == passes + far + 1,
        "{requests} requests for {passes} passes of 2 reads ({far} of the second)"
    );
    assert!(far + 1 >= passes, "{far} far reads for {passes} passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_does_not_slow_a_fast_one() {
    let sim = play(sim_device(&sim_register(
        "t",
        "input",
        0,
        "[{ at = \"0s\", set = 20.0 }]",
    )))
    .await;
    // Accepts connections and never answers: every read times out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let mut body = source(
        "fast",
        &format!("tcp://{}", sim.addr("dev").unwrap()),
        1,
        "50ms",
        "500ms",
    );
    body.push_str(&source(
        "dead",
        &format!("tcp://{silent_addr}"),
        1,
        "50ms",
        "400ms",
    ));
    body.push_str(&sensor(
        "fast.t",
        "fast",
        "table = \"input\", address = 0, type = \"i16\", scale = 0.1",
    ));
    body.push_str(&sensor(
        "dead.t",
        "dead",
        "table = \"input\", address = 0, type = \"i16\", scale = 0.1",
    ));
    let mut run = Running::start(config(&body));
    run.wait_until("a first fast sample", |s| s.sensor == 0)
        .await;
    let counts = run.count_for(Duration::from_secs(2)).await;
    let fast = counts.get("fast.t").copied().unwrap_or(0);
    // 2 s at 50 ms is 40 polls; allow for a loaded 2-core CI machine.
    assert!(
        fast >= 24,
        "fast device gave {fast} samples in 2s next to a silent one"
    );
    assert_eq!(counts.get("dead.t"), None);
    let dead = run.metrics["dead"].snapshot();
    assert!(
        !dead.connected && dead.errors_of(ErrorKind::Transport) >= 1,
        "{dead:?}"
    );
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_fault_the_sensor_and_keep_the_link_up() {
    let sim = play(sim_device(&sim_register(
        "t",
        "input",
        0,
        "[{ at = \"0s\", set = 20.0 }, { at = \"0s\", fault = \"exception\" }]",
    )))
    .await;
    let mut body = source(
        "dev",
        &format!("tcp://{}", sim.addr("dev").unwrap()),
        1,
        "50ms",
        "500ms",
    );
    body.push_str(&sensor(
        "t",
        "dev",
        "table = \"input\", address = 0, type = \"i16\", scale = 0.1",
    ));
    let mut run = Running::start(config(&body));
    let r = run.readings(&["t"]).await;
    assert_fault(&r, "t", FaultKind::ModbusException);
    let m = run.metrics["dev"].snapshot();
    assert!(m.connected, "{m:?}");
    assert_eq!(
        m.errors_of(ErrorKind::Transport) + m.errors_of(ErrorKind::Connect),
        0,
        "{m:?}"
    );
    assert_eq!(
        sim.stats("dev").unwrap().connections,
        1,
        "an exception must not reconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_disappears_and_returns_is_read_again() {
    let mut scenario = sim_register(
        "t",
        "input",
        0,
        "[{ at = \"0s\", set = 20.0 }, { at = \"3s\", set = 30.0 }]",
    );
    scenario.push_str(
        "[[devices.events]]\nat = \"1s\"\ngone = true\nmode = \"refuse\"\n\n[[devices.events]]\nat = \"3s\"\ngone = false\n",
    );
    let sim = play(sim_device(&scenario)).await;
    let mut body = source(
        "dev",
        &format!("tcp://{}", sim.addr("dev").unwrap()),
        1,
        "50ms",
        "300ms",
    );
    body.push_str(&sensor(
        "t",
        "dev",
        "table = \"input\", address = 0, type = \"i16\", scale = 0.1",
    ));
    let mut run = Running::start(config(&body));
    run.wait_until("20 C before it goes", |s| s.reading == Reading::Value(20.0))
        .await;
    run.wait_until("30 C after it is back", |s| {
        s.reading == Reading::Value(30.0)
    })
    .await;
    let m = run.metrics["dev"].snapshot();
    assert!(m.connected, "{m:?}");
    assert!(
        m.errors_of(ErrorKind::Transport) + m.errors_of(ErrorKind::Connect) >= 1,
        "{m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_units_sharing_one_serial_line_are_read_and_a_dead_unit_only_costs_its_timeout() {
    let pty = PtyPair::new();
    let _server = PyModbus::rtu(
        &pty.a,
        json!([
            {"id": 1, "registers": [{"address": 0, "type": "int16", "value": -50}]},
            {"id": 2, "registers": [{"address": 0, "type": "uint32", "value": 70000, "word_order": "little"}]},
        ]),
    );
    let url = format!("rtu://{}?baud=19200&parity=N&stop=1", pty.b.display());
    let mut body = source("u1", &url, 1, "200ms", "150ms");
    body.push_str(&source("u2", &url, 2, "200ms", "150ms"));
    body.push_str(&source("u3-dead", &url, 3, "200ms", "150ms"));
    body.push_str(&sensor(
        "u1.t",
        "u1",
        "table = \"holding\", address = 0, type = \"i16\", scale = 0.1",
    ));
    body.push_str(&sensor(
        "u2.runtime",
        "u2",
        "table = \"holding\", address = 0, type = \"u32\", word_order = \"low_first\"",
    ));
    body.push_str(&sensor(
        "u3.t",
        "u3-dead",
        "table = \"holding\", address = 0, type = \"i16\"",
    ));
    let cfg = config(&body);
    let devs = modbus::devices(&cfg);
    assert!(
        Arc::ptr_eq(&devs[0].link, &devs[2].link),
        "one link for the line"
    );
    drop(devs);
    let mut run = Running::start(cfg);
    let r = run.readings(&["u1.t", "u2.runtime"]).await;
    assert_value(&r, "u1.t", -5.0);
    assert_value(&r, "u2.runtime", 70000.0);
    let counts = run.count_for(Duration::from_secs(2)).await;
    // 2 s at 200 ms is 10 polls each; the dead unit holds the line at most 150 ms a try.
    for id in ["u1.t", "u2.runtime"] {
        let n = counts.get(id).copied().unwrap_or(0);
        assert!(
            n >= 6,
            "{id}: {n} samples in 2s next to a dead unit ({counts:?})"
        );
    }
    assert_eq!(counts.get("u3.t"), None);
    let dead = run.metrics["u3-dead"].snapshot();
    assert!(
        !dead.connected && dead.errors_of(ErrorKind::Transport) >= 1,
        "{dead:?}"
    );
}
