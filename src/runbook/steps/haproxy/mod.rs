//! `haproxy`: set backend servers to drain, maint or ready over HAProxy's runtime API, then
//! read their state back. Runner: `run.rs`.

use super::{Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use crate::config::units::split_host_port;
use serde::Deserialize;
use std::path::PathBuf;

pub mod run;

/// The keys of a `haproxy` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub socket: Option<String>,
    pub backend: Option<String>,
    pub servers: Option<Vec<String>>,
    pub state: Option<String>,
    pub wait_sessions_below: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    Drain,
    Maint,
    Ready,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaproxySocket {
    Tcp(String),
    Unix(PathBuf),
}

#[derive(Debug, Clone)]
pub struct HaproxyStep {
    pub socket: HaproxySocket,
    pub backend: String,
    pub servers: Vec<String>,
    pub state: ServerState,
    pub wait_sessions_below: Option<u32>,
}

impl StepInfo for HaproxyStep {
    fn describe(&self) -> String {
        format!(
            "haproxy {}/{} -> {}",
            self.backend,
            self.servers.join(","),
            self.state.as_str()
        )
    }
}

impl StepConfig for HaproxyStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, _refs: &Refs) -> Option<Self> {
        let socket = c
            .required_str(&format!("{path}.socket"), &s.socket)
            .and_then(|v| {
                if let Some(rest) = v.strip_prefix("tcp://") {
                    match split_host_port(rest, 9999) {
                        Ok((h, p)) => Some(HaproxySocket::Tcp(format!("{h}:{p}"))),
                        Err(e) => {
                            c.err(format!("{path}.socket"), format!("`{v}`: {e}"));
                            None
                        }
                    }
                } else if let Some(rest) = v.strip_prefix("unix://") {
                    if rest.starts_with('/') {
                        Some(HaproxySocket::Unix(PathBuf::from(rest)))
                    } else {
                        c.err(format!("{path}.socket"), format!("`{v}`: the socket path must be absolute (unix:///run/haproxy/admin.sock)"));
                        None
                    }
                } else {
                    c.err(
                        format!("{path}.socket"),
                        format!("`{v}` is not tcp://host:port or unix:///path"),
                    );
                    None
                }
            });
        let backend = c
            .required_str(&format!("{path}.backend"), &s.backend)
            .map(str::to_string);
        let servers = c.required(&format!("{path}.servers"), &s.servers).cloned();
        if servers.as_ref().is_some_and(|v| v.is_empty()) {
            c.err(format!("{path}.servers"), "needs at least one server");
        }
        let state = match c.required_str(&format!("{path}.state"), &s.state) {
            None => None,
            Some("drain") => Some(ServerState::Drain),
            Some("maint") => Some(ServerState::Maint),
            Some("ready") => Some(ServerState::Ready),
            Some(o) => {
                c.err(
                    format!("{path}.state"),
                    format!("unknown state `{o}` (drain, maint or ready)"),
                );
                None
            }
        };
        let wait_sessions_below = c
            .int_in(
                &format!("{path}.wait_sessions_below"),
                s.wait_sessions_below,
                0..=1_000_000,
                "",
            )
            .map(|n| n as u32);
        Some(HaproxyStep {
            socket: socket?,
            backend: backend?,
            servers: servers?,
            state: state?,
            wait_sessions_below,
        })
    }
}
