//! The `haproxy` step: set servers' state over the runtime API, verified with
//! `show servers state`.

use super::{HaproxySocket, HaproxyStep, ServerState};
use crate::config::Step;
use crate::runbook::{StepContext, StepError, StepOutcome};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    #[error("cannot reach the HAProxy runtime API at {socket}: {source}")]
    Connect {
        socket: String,
        source: std::io::Error,
    },
    #[error("HAProxy runtime API I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("HAProxy refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
    #[error("HAProxy does not know server {backend}/{server}")]
    UnknownServer { backend: String, server: String },
    #[error("server {backend}/{server} is not in state {want} yet (admin state {admin})")]
    NotYet {
        backend: String,
        server: String,
        want: &'static str,
        admin: u32,
    },
}

impl HaproxyError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HaproxyError::Connect { .. } | HaproxyError::Io(_) | HaproxyError::NotYet { .. }
        )
    }
}

/// The step engine sees a runtime API error as a step failure, retryable or not.
impl From<HaproxyError> for StepError {
    fn from(e: HaproxyError) -> Self {
        StepError::Failed {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(socket: &HaproxySocket) -> Result<Box<dyn Stream>, HaproxyError> {
    match socket {
        HaproxySocket::Tcp(addr) => tokio::net::TcpStream::connect(addr)
            .await
            .map(|s| Box::new(s) as Box<dyn Stream>)
            .map_err(|source| HaproxyError::Connect {
                socket: format!("tcp://{addr}"),
                source,
            }),
        HaproxySocket::Unix(path) => tokio::net::UnixStream::connect(path)
            .await
            .map(|s| Box::new(s) as Box<dyn Stream>)
            .map_err(|source| HaproxyError::Connect {
                socket: format!("unix://{}", path.display()),
                source,
            }),
    }
}

/// Sends one command line (HAProxy answers and closes the connection) and returns the answer.
pub async fn command(socket: &HaproxySocket, line: &str) -> Result<String, HaproxyError> {
    let mut s = connect(socket).await?;
    s.write_all(format!("{line}\n").as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// (server name, srv_admin_state) of a backend's servers.
pub async fn server_states(
    socket: &HaproxySocket,
    backend: &str,
) -> Result<Vec<(String, u32)>, HaproxyError> {
    let answer = command(socket, &format!("show servers state {backend}")).await?;
    let mut out = Vec::new();
    for line in answer.lines().skip(1) {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 7 || cols[1] != backend {
            continue;
        }
        if let Ok(admin) = cols[6].parse() {
            out.push((cols[3].to_string(), admin));
        }
    }
    if out.is_empty() && !answer.trim().is_empty() && !answer.starts_with('1') {
        return Err(HaproxyError::Refused {
            command: format!("show servers state {backend}"),
            answer: answer.trim().into(),
        });
    }
    Ok(out)
}

const ADMIN_MAINT: u32 = 0x01;
const ADMIN_DRAIN: u32 = 0x08;

fn in_state(admin: u32, want: ServerState) -> bool {
    match want {
        ServerState::Drain => admin & ADMIN_DRAIN != 0,
        ServerState::Maint => admin & ADMIN_MAINT != 0,
        ServerState::Ready => admin & (ADMIN_MAINT | ADMIN_DRAIN) == 0,
    }
}

pub async fn run(
    step: &HaproxyStep,
    _timeout: Duration,
    dry_run: bool,
) -> Result<StepOutcome, HaproxyError> {
    let states = server_states(&step.socket, &step.backend).await?;
    for server in &step.servers {
        if !states.iter().any(|(n, _)| n == server) {
            return Err(HaproxyError::UnknownServer {
                backend: step.backend.clone(),
                server: server.clone(),
            });
        }
    }
    let target = format!(
        "{}/{} -> {}",
        step.backend,
        step.servers.join(","),
        step.state.as_str()
    );
    if dry_run {
        return Ok(StepOutcome {
            verified: false,
            detail: format!("dry run: would set {target}; servers known"),
        });
    }
    for server in &step.servers {
        let line = format!(
            "set server {}/{} state {}",
            step.backend,
            server,
            step.state.as_str()
        );
        let answer = command(&step.socket, &line).await?;
        if !answer.trim().is_empty() {
            return Err(HaproxyError::Refused {
                command: line,
                answer: answer.trim().into(),
            });
        }
    }
    let states = server_states(&step.socket, &step.backend).await?;
    for server in &step.servers {
        let admin = states
            .iter()
            .find(|(n, _)| n == server)
            .map(|(_, a)| *a)
            .unwrap_or(0);
        if !in_state(admin, step.state) {
            return Err(HaproxyError::NotYet {
                backend: step.backend.clone(),
                server: server.clone(),
                want: step.state.as_str(),
                admin,
            });
        }
    }
    Ok(StepOutcome {
        verified: true,
        detail: format!("set and verified: {target}"),
    })
}

/// The step engine's entry.
pub async fn execute(
    h: &HaproxyStep,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    Ok(run(h, step.timeout, ctx.dry_run).await?)
}
