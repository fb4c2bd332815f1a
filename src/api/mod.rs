//! The HTTP API on `[api] listen`: health, status, incidents, and the operator actions
//! (failover, reset, drill) behind a bearer token.

// Handlers return `Response` for errors by design (axum); boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod limit;
pub mod page;
pub mod status;
pub mod trend;

use crate::incident::DrillRow;
use crate::journal::Journal;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read api.token_file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("api.token_file {0} is empty")]
    EmptyToken(String),
}

/// Why the engine refused an operator action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    UnknownZone(String),
    Conflict(String),
}

/// Requests from the API to the engine, answered through `reply`.
#[derive(Debug)]
pub enum ApiCommand {
    Failover {
        zone: String,
        reply: oneshot::Sender<Result<String, Refusal>>,
    },
    Reset {
        zone: String,
        by: String,
        reply: oneshot::Sender<Result<String, Refusal>>,
    },
    Drill {
        zone: String,
        reply: oneshot::Sender<Result<Vec<DrillRow>, Refusal>>,
    },
    /// The status document, as JSON ([`status::Status`] reads it).
    Status {
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// Refresh the state gauges from the detection core before a scrape.
    RefreshMetrics { reply: oneshot::Sender<()> },
}

/// Operator actions allowed in a burst, then one per `POST_REFILL` (all callers
/// together: the API listens on loopback or a management network, and the limit also
/// slows down guessing the token).
const POST_BURST: u32 = 10;
const POST_REFILL: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct AppState {
    commands: mpsc::Sender<ApiCommand>,
    metrics: Arc<crate::sinks::prometheus::Metrics>,
    token: Option<Arc<str>>,
    journal: Journal,
    posts: Arc<std::sync::Mutex<limit::Bucket>>,
}

/// Reads the bearer token; `None` when no token file is configured (POSTs then refused).
pub fn read_token(path: Option<&std::path::Path>) -> Result<Option<Arc<str>>, ApiError> {
    let Some(p) = path else { return Ok(None) };
    let text = std::fs::read_to_string(p).map_err(|source| ApiError::Token {
        path: p.display().to_string(),
        source,
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(ApiError::EmptyToken(p.display().to_string()));
    }
    Ok(Some(Arc::from(t)))
}

/// Binds the listener now (so a bad address fails the start) and serves until `stop`.
pub async fn serve(
    addr: SocketAddr,
    token: Option<Arc<str>>,
    journal: Journal,
    metrics: Arc<crate::sinks::prometheus::Metrics>,
    commands: mpsc::Sender<ApiCommand>,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ApiError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let state = AppState {
        commands,
        metrics,
        token,
        journal,
        posts: Arc::new(std::sync::Mutex::new(limit::Bucket::new(
            POST_BURST,
            POST_REFILL,
        ))),
    };
    let app = Router::new()
        .route("/", get(status_page))
        .route("/ui/zones", get(status_fragment))
        .route(
            "/assets/page.css",
            get(|| async { asset("text/css; charset=utf-8", page::CSS) }),
        )
        .route(
            "/assets/page.js",
            get(|| async { asset("text/javascript; charset=utf-8", page::JS) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .route("/api/v1/status", get(status))
        .route("/api/v1/feeds", get(feeds))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/zones/{zone}/failover", post(failover))
        .route("/api/v1/zones/{zone}/reset", post(reset))
        .route("/api/v1/zones/{zone}/drill", post(drill))
        .layer(DefaultBodyLimit::max(4096))
        .with_state(state);
    let handle = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "API server failed");
        }
    });
    Ok((local, handle))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// 429 when operator actions come too fast, 403 when POSTs are disabled (no token file),
/// 401 for a missing or wrong token.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let taken = state
        .posts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(crate::clock::now());
    if let Err(wait) = taken {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        tracing::warn!(retry_after_s = secs, "operator request refused: rate limit");
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many operator requests ({POST_BURST} in a burst, then one per {} s); retry in {secs} s",
                POST_REFILL.as_secs()
            ),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        return Err(r);
    }
    let Some(expected) = &state.token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "operator actions are disabled: no api.token_file is configured",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

async fn ask<T>(
    state: &AppState,
    make: impl FnOnce(oneshot::Sender<T>) -> ApiCommand,
    wait: Duration,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    state
        .commands
        .send_timeout(make(tx), Duration::from_secs(2))
        .await
        .map_err(|_| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent is busy or stopping",
            )
        })?;
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent did not answer in time",
        )),
    }
}

/// The engine's status document does not read as [`status::Status`]: a bug, said as such.
fn unreadable(e: serde_json::Error) -> Response {
    tracing::error!(error = %e, "the status document does not read as its type");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the status document is malformed: {e}"),
    )
}

fn refused(r: Refusal) -> Response {
    match r {
        Refusal::UnknownZone(z) => error(StatusCode::NOT_FOUND, format!("unknown zone `{z}`")),
        Refusal::Conflict(m) => error(StatusCode::CONFLICT, m),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match ask(
        &state,
        |reply| ApiCommand::Status { reply },
        Duration::from_secs(1),
    )
    .await
    {
        // Config loaded and sources started (both before the engine answers), and the
        // event log takes writes.
        Ok(v) => match status::Status::from_json(v) {
            Ok(s) if s.event_log_writable => (StatusCode::OK, "ready\n").into_response(),
            Ok(_) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event log cannot be written",
            ),
            Err(e) => unreadable(e),
        },
        Err(r) => r,
    }
}

async fn metrics_page(State(state): State<AppState>) -> Response {
    // A stuck engine must not make the scrape fail: render what we have.
    let _ = ask(
        &state,
        |reply| ApiCommand::RefreshMetrics { reply },
        Duration::from_secs(1),
    )
    .await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn status(State(state): State<AppState>) -> Response {
    match ask(
        &state,
        |reply| ApiCommand::Status { reply },
        Duration::from_secs(2),
    )
    .await
    {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// The power map: `{"feeds": [{id, description, zones, safe_to_cut, waiting_for, loads}]}`,
/// the same list as the status document's `feeds`.
async fn feeds(State(state): State<AppState>) -> Response {
    match ask(
        &state,
        |reply| ApiCommand::Status { reply },
        Duration::from_secs(2),
    )
    .await
    {
        Ok(v) => match status::Status::from_json(v) {
            Ok(s) => Json(serde_json::json!({ "feeds": s.feeds })).into_response(),
            Err(e) => unreadable(e),
        },
        Err(r) => r,
    }
}

/// Headers of every status-page response: only our own assets may load, nothing cached.
fn page_headers(content_type: &'static str) -> [(axum::http::HeaderName, &'static str); 4] {
    use axum::http::header;
    [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    ]
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (page_headers(content_type), body).into_response()
}

async fn status_page(State(state): State<AppState>) -> Response {
    let now = crate::events::format_ts(crate::clock::wall_now());
    let html = match ask(
        &state,
        |reply| ApiCommand::Status { reply },
        Duration::from_secs(2),
    )
    .await
    {
        Ok(v) => match status::Status::from_json(v) {
            Ok(s) => page::page(Some(&s), None, &now),
            Err(e) => page::page(
                None,
                Some(&format!("the agent's status is malformed: {e}")),
                &now,
            ),
        },
        Err(_) => page::page(
            None,
            Some("the agent's engine did not answer in time"),
            &now,
        ),
    };
    (page_headers("text/html; charset=utf-8"), html).into_response()
}

async fn status_fragment(State(state): State<AppState>) -> Response {
    match ask(
        &state,
        |reply| ApiCommand::Status { reply },
        Duration::from_secs(2),
    )
    .await
    {
        Ok(v) => match status::Status::from_json(v) {
            Ok(s) => (
                page_headers("text/html; charset=utf-8"),
                page::zones_fragment(&s),
            )
                .into_response(),
            Err(e) => unreadable(e),
        },
        Err(r) => r,
    }
}

async fn incidents(State(state): State<AppState>) -> Response {
    let journal = state.journal.clone();
    match tokio::task::spawn_blocking(move || journal.all()).await {
        Ok(all) => Json(serde_json::json!({ "incidents": all })).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the journal failed",
        ),
    }
}

async fn failover(
    State(state): State<AppState>,
    Path(zone): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    match ask(
        &state,
        |reply| ApiCommand::Failover { zone, reply },
        Duration::from_secs(5),
    )
    .await
    {
        Ok(Ok(incident)) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "incident": incident })),
        )
            .into_response(),
        Ok(Err(r)) => refused(r),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize, Default)]
struct ResetBody {
    by: Option<String>,
}

async fn reset(
    State(state): State<AppState>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let parsed: ResetBody = if body.is_empty() {
        ResetBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("body must be JSON like {{\"by\":\"name\"}}: {e}"),
                )
            }
        }
    };
    let by = parsed
        .by
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "api".into());
    match ask(
        &state,
        |reply| ApiCommand::Reset { zone, by, reply },
        Duration::from_secs(5),
    )
    .await
    {
        Ok(Ok(incident)) => {
            Json(serde_json::json!({ "incident": incident, "reset": true })).into_response()
        }
        Ok(Err(r)) => refused(r),
        Err(r) => r,
    }
}

async fn drill(
    State(state): State<AppState>,
    Path(zone): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    match ask(
        &state,
        |reply| ApiCommand::Drill { zone, reply },
        Duration::from_secs(600),
    )
    .await
    {
        Ok(Ok(rows)) => {
            let pass = rows.iter().all(|r| r.ok);
            Json(serde_json::json!({ "pass": pass, "steps": rows })).into_response()
        }
        Ok(Err(r)) => refused(r),
        Err(r) => r,
    }
}
