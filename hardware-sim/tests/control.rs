//! The HTTP control API of a running scenario: start, pause, set a value, inject a fault,
//! checked over real HTTP and real Modbus TCP.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use hardware_sim::{PlayExtras, PlayOptions};
use support::{connect, eventually, scenario};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::prelude::*;
use tokio_modbus::ExceptionCode;

const DEADLINE: Duration = Duration::from_secs(15);

const ROOM: &str = r#"
[scenario]
name = "control"
duration = "1h"

[[devices]]
name = "env"

[[devices.registers]]
signal = "temp"
table = "input"
address = 0
type = "i16"
scale = 0.1
timeline = [{ at = "0s", set = 23.0 }]
"#;

/// One HTTP/1.1 request; returns the status code and the JSON body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text[9..12].parse().unwrap();
    let json = text.split("\r\n\r\n").nth(1).unwrap_or("null");
    (
        status,
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

async fn read_temp(ctx: &mut tokio_modbus::client::Context) -> Result<u16, ExceptionCode> {
    ctx.read_input_registers(0, 1).await.unwrap().map(|w| w[0])
}

#[tokio::test]
async fn start_pause_set_a_value_and_inject_a_fault_over_http() {
    let sim = hardware_sim::play_with(
        scenario(ROOM),
        PlayOptions {
            speed: 10.0,
            host: None,
        },
        PlayExtras {
            mqtt_broker: None,
            start_paused: true,
        },
    )
    .await
    .unwrap();
    let (api, _task) = hardware_sim::control::serve("127.0.0.1:0".parse().unwrap(), sim.control())
        .await
        .unwrap();
    let mut ctx = connect(sim.addr("env").unwrap(), 1).await;

    let (code, status) = http(api, "GET", "/api/status", "").await;
    assert_eq!(code, 200);
    assert_eq!(status["paused"], true);
    assert_eq!(status["sim_ms"], 0);

    // A value set from outside is what a client reads, until it is cleared.
    let set = r#"{"device":"env","signal":"temp","value":71.5}"#;
    assert_eq!(http(api, "POST", "/api/set", set).await.0, 200);
    eventually("the set value", DEADLINE, async || {
        (read_temp(&mut ctx).await == Ok(715)).then_some(())
    })
    .await;

    let fault = r#"{"device":"env","signal":"temp","fault":"exception"}"#;
    assert_eq!(http(api, "POST", "/api/fault", fault).await.0, 200);
    eventually("the injected exception", DEADLINE, async || {
        (read_temp(&mut ctx).await == Err(ExceptionCode::ServerDeviceFailure)).then_some(())
    })
    .await;

    let clear_fault = r#"{"device":"env","signal":"temp","fault":null}"#;
    let clear_value = r#"{"device":"env","signal":"temp","value":null}"#;
    assert_eq!(http(api, "POST", "/api/fault", clear_fault).await.0, 200);
    assert_eq!(http(api, "POST", "/api/set", clear_value).await.0, 200);
    eventually("the timeline's value again", DEADLINE, async || {
        (read_temp(&mut ctx).await == Ok(230)).then_some(())
    })
    .await;

    // Mistakes are named.
    let (code, body) = http(
        api,
        "POST",
        "/api/set",
        r#"{"device":"env","signal":"nope","value":1}"#,
    )
    .await;
    assert_eq!(code, 404);
    assert!(body["error"].as_str().unwrap().contains("nope"));
    let (code, body) = http(
        api,
        "POST",
        "/api/fault",
        r#"{"device":"env","signal":"temp","fault":"fire"}"#,
    )
    .await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("unknown fault"));

    // Start: sim time moves. Pause: it holds.
    let (_, started) = http(api, "POST", "/api/start", "").await;
    assert_eq!(started["paused"], false);
    eventually("sim time to move", DEADLINE, async || {
        let (_, s) = http(api, "GET", "/api/status", "").await;
        (s["sim_ms"].as_u64().unwrap() > 0).then_some(())
    })
    .await;
    let (_, paused) = http(api, "POST", "/api/pause", "").await;
    assert_eq!(paused["paused"], true);
    let (_, later) = http(api, "GET", "/api/status", "").await;
    assert!(later["sim_ms"].as_u64().unwrap() >= paused["sim_ms"].as_u64().unwrap());
    let (_, again) = http(api, "GET", "/api/status", "").await;
    assert_eq!(
        again["sim_ms"], later["sim_ms"],
        "paused sim time does not move"
    );
    sim.shutdown().await;
}
