//! Test harness: real peers and the real agent binary, on loopback with temp dirs.
#![allow(dead_code)]

pub mod agent;
pub mod chrome;
pub mod etcd;
pub mod events;
pub mod haproxy;
pub mod knot;
pub mod mosquitto;
pub mod prometheus;
pub mod pymodbus;
pub mod receiver;
pub mod room;
pub mod victoria;

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
