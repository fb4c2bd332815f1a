//! The simulator played in-process at speed 10, read over real Modbus TCP.

mod support;

use std::time::Duration;

use hardware_sim::{play, PlayEvent, PlayOptions, Scenario};
use support::{connect, eventually, scenario, shipped};
use tokio::time::timeout;
use tokio_modbus::prelude::*;
use tokio_modbus::ExceptionCode;

const FAST: PlayOptions = PlayOptions {
    speed: 10.0,
    host: None,
};
/// Generous: a loaded 2-core CI machine is slow, and waiting costs nothing when it is not.
const DEADLINE: Duration = Duration::from_secs(15);
/// How long a client waits for an answer before calling the device silent.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(300);

fn device_with(registers_and_events: &str) -> Scenario {
    scenario(&format!(
        r#"
[scenario]
name = "test"
duration = "60s"

[[devices]]
name = "dev"
unit = 1
{registers_and_events}
"#
    ))
}

const TWO_TEMPS: &str = r#"
[[devices.registers]]
signal = "temp.row1"
table = "input"
address = 0
type = "i16"
scale = 0.1
timeline = [
  { at = "0s", set = 23.0 },
  { at = "5s", fault = "exception" },
  { at = "15s", fault = "none" },
]

[[devices.registers]]
signal = "temp.row2"
table = "input"
address = 1
type = "i16"
scale = 0.1
timeline = [{ at = "0s", set = 24.0 }]

[[devices.registers]]
signal = "offgas.1"
table = "holding"
address = 10
type = "u16"
timeline = [
  { at = "0s", set = 5 },
  { at = "20s", set = 7 },
]
"#;

#[tokio::test]
async fn offgas_then_heat_serves_the_documented_values_over_time() {
    let s = Scenario::from_file(shipped("offgas-then-heat.toml")).unwrap();
    let mut handle = play(s, FAST).await.unwrap();
    let mut events = handle.take_events().unwrap();
    let env = handle.addr("env-b3").unwrap();
    let ups = handle.addr("ups-b3-1").unwrap();
    let mut env = connect(env, 1).await;
    let mut ups = connect(ups, 1).await;

    // UPS: online, 900 s runtime as u32 high word first, 25 C as raw / 128.
    assert_eq!(
        ups.read_holding_registers(0, 2).await.unwrap(),
        Ok(vec![0, 2])
    );
    assert_eq!(
        ups.read_holding_registers(128, 2).await.unwrap(),
        Ok(vec![0, 900])
    );
    assert_eq!(
        ups.read_holding_registers(135, 1).await.unwrap(),
        Ok(vec![3200])
    );

    // Before 12 s sim both rows read 23.0 C (raw 230).
    let temps = env.read_input_registers(0, 2).await.unwrap().unwrap();
    if handle.sim_time() < Duration::from_secs(12) {
        assert_eq!(temps, vec![230, 230]);
    }

    // Off-gas ramps to 60 ppm, reached at 15 s sim and held.
    eventually("offgas.1 reaches 60 ppm", DEADLINE, async || {
        let v = env.read_holding_registers(10, 1).await.unwrap().unwrap();
        (v == [60]).then_some(())
    })
    .await;

    // Row 1 ramps (not jumps) to 85.0 C, never going down.
    let mut seen = Vec::new();
    eventually("temp.row1 reaches 85.0 C", DEADLINE, async || {
        let v = env.read_input_registers(0, 1).await.unwrap().unwrap()[0] as i16;
        seen.push(v);
        (v == 850).then_some(())
    })
    .await;
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "row 1 went down: {seen:?}"
    );
    assert!(
        seen.iter().any(|v| *v > 230 && *v < 850),
        "row 1 jumped instead of ramping: {seen:?}"
    );
    eventually("temp.row2 reaches 45.0 C", DEADLINE, async || {
        let v = env.read_input_registers(1, 1).await.unwrap().unwrap();
        (v == [450]).then_some(())
    })
    .await;

    timeout(DEADLINE, handle.finished())
        .await
        .expect("finished");
    assert_eq!(handle.sim_time(), Duration::from_secs(60));
    // Last values are held after the end.
    assert_eq!(
        env.read_input_registers(0, 2).await.unwrap(),
        Ok(vec![850, 450])
    );

    let mut got = Vec::new();
    while let Ok(e) = events.try_recv() {
        got.push(e);
    }
    assert!(matches!(&got[0], PlayEvent::Listening { device, unit: 1, .. } if device == "env-b3"));
    assert!(matches!(&got[1], PlayEvent::Listening { device, .. } if device == "ups-b3-1"));
    assert_eq!(got[2], PlayEvent::Ready);
    assert!(got.contains(&PlayEvent::Segment {
        t_ms: 5000,
        device: "env-b3".into(),
        signal: "offgas.1".into(),
        what: "ramp",
        fault: None,
    }));
    assert_eq!(got.last(), Some(&PlayEvent::Finished));
    handle.shutdown().await;
}

#[tokio::test]
async fn exception_fault_answers_exception_4_while_the_link_stays_up() {
    let handle = play(device_with(TWO_TEMPS), FAST).await.unwrap();
    let mut ctx = connect(handle.addr("dev").unwrap(), 1).await;
    assert_eq!(ctx.read_input_registers(0, 1).await.unwrap(), Ok(vec![230]));

    eventually("row 1 answers exception 4", DEADLINE, async || {
        let r = ctx.read_input_registers(0, 1).await.expect("link stays up");
        (r == Err(ExceptionCode::ServerDeviceFailure)).then_some(())
    })
    .await;
    // Same connection: other registers still answer, reads covering the faulted one do not.
    assert_eq!(ctx.read_input_registers(1, 1).await.unwrap(), Ok(vec![240]));
    assert_eq!(
        ctx.read_input_registers(0, 2).await.unwrap(),
        Err(ExceptionCode::ServerDeviceFailure)
    );

    eventually(
        "row 1 answers again once the fault clears",
        DEADLINE,
        async || {
            let r = ctx.read_input_registers(0, 1).await.expect("link stays up");
            (r == Ok(vec![230])).then_some(())
        },
    )
    .await;
    let stats = handle.stats("dev").unwrap();
    assert_eq!(stats.connections, 1, "one connection throughout");
    assert!(stats.exceptions >= 2);
    handle.shutdown().await;
}

#[tokio::test]
async fn unmapped_reads_are_illegal_addresses_and_partial_reads_fill_zeros() {
    let handle = play(device_with(TWO_TEMPS), FAST).await.unwrap();
    let addr = handle.addr("dev").unwrap();
    let mut ctx = connect(addr, 1).await;
    assert_eq!(
        ctx.read_input_registers(100, 5).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        ctx.read_holding_registers(0, 10).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        ctx.read_holding_registers(8, 4).await.unwrap(),
        Ok(vec![0, 0, 5, 0])
    );
    // No coils on this device: an unmapped address, like any table.
    assert_eq!(
        ctx.read_coils(0, 1).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );

    // Another unit id through the same port: gateway target device failed to respond.
    let mut other = connect(addr, 2).await;
    assert_eq!(
        other.read_input_registers(0, 1).await.unwrap(),
        Err(ExceptionCode::GatewayTargetDevice)
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn writes_to_holding_registers_override_until_the_next_segment() {
    let handle = play(device_with(TWO_TEMPS), FAST).await.unwrap();
    let mut ctx = connect(handle.addr("dev").unwrap(), 1).await;
    assert_eq!(ctx.write_single_register(10, 99).await.unwrap(), Ok(()));
    let read = ctx.read_holding_registers(10, 1).await.unwrap();
    if handle.sim_time() < Duration::from_secs(20) {
        assert_eq!(
            read,
            Ok(vec![99]),
            "the written value holds within the segment"
        );
    }
    eventually(
        "the next segment replaces the written value",
        DEADLINE,
        async || {
            let r = ctx.read_holding_registers(10, 1).await.unwrap();
            (r == Ok(vec![7])).then_some(())
        },
    )
    .await;
    assert_eq!(
        ctx.write_multiple_registers(11, &[1, 2]).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn gone_device_drops_connections_and_leaves_new_ones_unanswered_until_back() {
    let s = device_with(&format!(
        r#"{TWO_TEMPS}
[[devices.events]]
at = "10s"
gone = true

[[devices.events]]
at = "50s"
gone = false
"#
    ));
    let handle = play(s, FAST).await.unwrap();
    let addr = handle.addr("dev").unwrap();
    let mut ctx = connect(addr, 1).await;
    assert_eq!(ctx.read_input_registers(1, 1).await.unwrap(), Ok(vec![240]));

    eventually(
        "the open connection stops answering",
        DEADLINE,
        async || match timeout(CLIENT_TIMEOUT, ctx.read_input_registers(1, 1)).await {
            Ok(Ok(Ok(_))) => None,
            _ => Some(()),
        },
    )
    .await;

    // A new connection is accepted but never answered: the client times out.
    let mut fresh = connect(addr, 1).await;
    let read = timeout(CLIENT_TIMEOUT, fresh.read_input_registers(1, 1)).await;
    assert!(
        handle.sim_time() >= Duration::from_secs(50) || read.is_err(),
        "a gone device answered: {read:?}"
    );

    // Back at 50 s: a client that reconnects gets answers again.
    eventually("the device answers again", DEADLINE, async || {
        let mut c = connect(addr, 1).await;
        match timeout(CLIENT_TIMEOUT, c.read_input_registers(1, 1)).await {
            Ok(Ok(Ok(v))) => Some(v),
            _ => None,
        }
    })
    .await;
    assert!(handle.stats("dev").unwrap().unanswered >= 1);
    handle.shutdown().await;
}

#[tokio::test]
async fn refusing_device_closes_its_port_until_back() {
    let s = device_with(&format!(
        r#"{TWO_TEMPS}
[[devices.events]]
at = "5s"
gone = true
mode = "refuse"

[[devices.events]]
at = "30s"
gone = false
"#
    ));
    let handle = play(s, FAST).await.unwrap();
    let addr = handle.addr("dev").unwrap();
    eventually(
        "connections are refused",
        DEADLINE,
        async || match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        },
    )
    .await;
    eventually("the same port answers again", DEADLINE, async || {
        let Ok(mut c) = tokio_modbus::client::tcp::connect_slave(addr, Slave(1)).await else {
            return None;
        };
        match timeout(CLIENT_TIMEOUT, c.read_input_registers(1, 1)).await {
            Ok(Ok(Ok(v))) => Some(v),
            _ => None,
        }
    })
    .await;
    handle.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_ports() {
    let handle = play(device_with(TWO_TEMPS), FAST).await.unwrap();
    let addr = handle.addr("dev").unwrap();
    handle.shutdown().await;
    eventually("the port is closed", DEADLINE, async || {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn host_option_replaces_the_listen_ip() {
    let opts = PlayOptions {
        host: Some("127.0.0.2".parse().unwrap()),
        ..FAST
    };
    let handle = play(device_with(TWO_TEMPS), opts).await.unwrap();
    let addr = handle.addr("dev").unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.2");
    let mut ctx = connect(addr, 1).await;
    assert_eq!(ctx.read_input_registers(1, 1).await.unwrap(), Ok(vec![240]));
    handle.shutdown().await;
}

#[tokio::test]
async fn nuisance_spike_row2_warms_then_returns_with_small_noise() {
    let s = Scenario::from_file(shipped("nuisance-spike.toml")).unwrap();
    let handle = play(s, FAST).await.unwrap();
    let mut env = connect(handle.addr("env-b3").unwrap(), 1).await;
    let start = env.read_input_registers(1, 1).await.unwrap().unwrap()[0] as i16;
    assert!(
        (229..=231).contains(&start),
        "23.0 C ± 0.05 noise, got raw {start}"
    );
    eventually("row 2 warms to 40 C", DEADLINE, async || {
        let v = env.read_input_registers(1, 1).await.unwrap().unwrap()[0] as i16;
        (399..=401).contains(&v).then_some(())
    })
    .await;
    eventually("row 2 is back to 23 C", DEADLINE, async || {
        let v = env.read_input_registers(1, 1).await.unwrap().unwrap()[0] as i16;
        (229..=231).contains(&v).then_some(())
    })
    .await;
    assert!(handle.sim_time() >= Duration::from_secs(25));
    handle.shutdown().await;
}
