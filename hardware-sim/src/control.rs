//! The HTTP control API of a running scenario (`play --control ADDR`): small, JSON, no
//! auth (bind it to loopback). Every handler is a thin shell over [`Control`].
//!
//! - `GET  /api/status` → `{"sim_ms", "paused", "speed", "finished"}`
//! - `POST /api/start`, `POST /api/pause` → the status after the change
//! - `POST /api/set`   `{"device", "signal", "value": number | null}` (null: back to the timeline)
//! - `POST /api/fault` `{"device", "signal", "fault": "exception" | ... | null}`
//!
//! Unknown device or signal → 404; a bad fault name or value → 400; both with `{"error"}`.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::runner::{Control, ControlError};
use crate::timeline::Fault;

#[derive(Debug, thiserror::Error)]
pub enum ControlApiError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    device: String,
    signal: String,
    value: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    device: String,
    signal: String,
    fault: Option<String>,
}

fn error(status: StatusCode, message: impl ToString) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

fn result(r: Result<(), ControlError>) -> Response {
    match r {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(e @ ControlError::UnknownSignal { .. }) => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

pub fn router(control: Control) -> Router {
    Router::new()
        .route(
            "/api/status",
            get(|State(c): State<Control>| async move { Json(c.status()) }),
        )
        .route(
            "/api/start",
            post(|State(c): State<Control>| async move {
                c.start();
                Json(c.status())
            }),
        )
        .route(
            "/api/pause",
            post(|State(c): State<Control>| async move {
                c.pause();
                Json(c.status())
            }),
        )
        .route(
            "/api/set",
            post(
                |State(c): State<Control>, Json(b): Json<SetBody>| async move {
                    result(c.set_value(&b.device, &b.signal, b.value))
                },
            ),
        )
        .route(
            "/api/fault",
            post(
                |State(c): State<Control>, Json(b): Json<FaultBody>| async move {
                    let fault = match b.fault.as_deref().map(|f| (f, Fault::parse(f))) {
                        None => None,
                        Some((_, Some(f))) => Some(f),
                        Some((name, None)) => {
                            return error(
                                StatusCode::BAD_REQUEST,
                                format!("unknown fault `{name}` (expected {})", Fault::NAMES),
                            )
                        }
                    };
                    result(c.set_fault(&b.device, &b.signal, fault))
                },
            ),
        )
        .with_state(control)
}

/// Binds `addr` and serves the control API until the task is aborted.
pub async fn serve(
    addr: SocketAddr,
    control: Control,
) -> Result<(SocketAddr, JoinHandle<()>), ControlApiError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ControlApiError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ControlApiError::Bind { addr, source })?;
    let app = router(control);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "control API stopped");
        }
    });
    Ok((local, task))
}
