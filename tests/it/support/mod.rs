//! Test harness: real peers and the real agent binary, on loopback with temp dirs.
#![allow(dead_code)]

pub mod agent;
pub mod alertmanager;
pub mod bacnet;
pub mod bird;
pub mod chrome;
pub mod etcd;
pub mod events;
pub mod gate;
pub mod haproxy;
pub mod knot;
pub mod mosquitto;
pub mod nut;
pub mod pagerduty;
pub mod pdns;
pub mod peer;
pub mod prometheus;
pub mod pymodbus;
pub mod receiver;
pub mod room;
pub mod snmpd;
pub mod step;
pub mod victoria;

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free on 127.0.0.1 for both TCP and UDP at the time of the call.
pub fn free_tcp_udp_port() -> Result<u16, String> {
    let mut last = String::new();
    for _ in 0..50 {
        let tcp = match std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)) {
            Ok(t) => t,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let port = match tcp.local_addr() {
            Ok(a) => a.port(),
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        match std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, port)) {
            Ok(_udp) => return Ok(port),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "cannot find a free TCP+UDP port on 127.0.0.1: {last}"
    ))
}
