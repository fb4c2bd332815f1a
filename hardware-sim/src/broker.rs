//! The embedded MQTT broker (rumqttd, MQTT 3.1.1, no TLS) used when `play` gets no
//! `--mqtt` URL, so a scenario with MQTT devices runs with nothing else installed.
//!
//! Design: rumqttd has no shutdown API; the broker runs on its own thread for the rest of
//! the process. That suits the CLI (one scenario per process) and tests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// How long to wait for the broker to accept connections.
const READY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("no free port on {host}: {source}")]
    Port {
        host: IpAddr,
        source: std::io::Error,
    },
    #[error("the embedded broker did not accept connections on {0} within 10 s")]
    NotReady(SocketAddr),
}

fn config(listen: SocketAddr) -> Config {
    let server = ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 256 * 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        ..Config::default()
    }
}

/// Starts a broker on `host` (a free port) and returns its `mqtt://` URL once it accepts
/// connections.
pub fn start(host: IpAddr) -> Result<String, BrokerError> {
    // Bound and released: rumqttd binds it a moment later (a small, accepted race).
    let port = TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map_err(|source| BrokerError::Port { host, source })?
        .port();
    let listen = SocketAddr::new(host, port);
    let mut broker = Broker::new(config(listen));
    std::thread::Builder::new()
        .name("embedded-mqtt".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|source| BrokerError::Port { host, source })?;
    let until = Instant::now() + READY;
    while TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_err() {
        if Instant::now() > until {
            return Err(BrokerError::NotReady(listen));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let host = match host {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    Ok(format!("mqtt://{host}:{port}"))
}
