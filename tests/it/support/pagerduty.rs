//! A schema-checking stand-in for PagerDuty's Events API v2 (`POST /v2/enqueue`).
//!
//! The real service is not reachable from CI (and paging a real on-call from a test is not
//! something to do), so this checks what PagerDuty's documentation of the Events API v2
//! requires of an event, and answers as it documents:
//! - the body is a JSON object; `routing_key` a string of 32 characters; `event_action`
//!   one of `trigger`, `acknowledge`, `resolve`; `dedup_key`, when given, a non-empty
//!   string of at most 255 characters, and required for `acknowledge` and `resolve`;
//! - a `trigger` has a `payload` object with `summary` (a non-empty string of at most
//!   1024 characters), `source` (a non-empty string), `severity` (`critical`, `error`,
//!   `warning` or `info`); optional `timestamp` (an RFC 3339 time), `component`, `group`,
//!   `class` (strings) and `custom_details` (any JSON);
//! - accepted: 202 `{"status": "success", "message": "Event processed", "dedup_key": ...}`
//!   (a trigger without a `dedup_key` gets a new one); refused: 400
//!   `{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`.
//!
//! It keeps PagerDuty's alert model by `dedup_key`: a trigger opens an alert unless one is
//! open under that key (then it is merged into it), a resolve closes it. `incidents(key)`
//! counts the alerts ever opened under a key, so a test can assert "one page" however
//! often the step triggered. It is a stand-in: it does not know real integration keys,
//! rate limits or event rules.

use axum::http::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the stand-in knows of one `dedup_key`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alert {
    /// Alerts opened under the key (a trigger while none was open).
    pub opened: u32,
    /// Triggers received (merged ones too).
    pub triggers: u32,
    pub resolves: u32,
    pub open: bool,
    /// The first trigger's payload of the open (or last) alert.
    pub payload: Value,
}

#[derive(Default)]
struct State {
    /// Every well-formed event, in order.
    accepted: Vec<Value>,
    /// Refused bodies and why.
    refused: Vec<(String, Vec<String>)>,
    alerts: BTreeMap<String, Alert>,
    /// Statuses to answer the next requests with, instead of processing them (400, 429,
    /// 500, ...), with PagerDuty's bodies for them.
    forced: VecDeque<u16>,
    /// Hold the answer to the next accepted trigger this long (the event is recorded
    /// first): an agent killed meanwhile never hears the 202.
    hold_next_trigger: Option<Duration>,
    generated: u32,
}

pub struct PagerDuty {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

/// The schema problems of an event (empty: well formed).
pub fn problems(v: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let Some(o) = v.as_object() else {
        return vec!["Event object must be a JSON object".into()];
    };
    match o.get("routing_key") {
        Some(Value::String(k)) if k.chars().count() == 32 => {}
        Some(Value::String(_)) => errs.push("'routing_key' must be 32 characters".into()),
        _ => errs.push("'routing_key' is missing or not a string".into()),
    }
    let action = o.get("event_action").and_then(Value::as_str);
    if !matches!(action, Some("trigger" | "acknowledge" | "resolve")) {
        errs.push("'event_action' must be one of trigger, acknowledge, resolve".into());
    }
    match o.get("dedup_key") {
        None if matches!(action, Some("acknowledge" | "resolve")) => {
            errs.push("'dedup_key' is required for acknowledge and resolve".into())
        }
        None => {}
        Some(Value::String(k)) if !k.is_empty() && k.chars().count() <= 255 => {}
        Some(_) => errs.push("'dedup_key' must be a string of 1 to 255 characters".into()),
    }
    if action == Some("trigger") {
        let Some(p) = o.get("payload").and_then(Value::as_object) else {
            errs.push("'payload' is required for trigger and must be an object".into());
            return errs;
        };
        match p.get("summary") {
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 1024 => {}
            _ => errs.push("'payload.summary' must be a string of 1 to 1024 characters".into()),
        }
        match p.get("source") {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => errs.push("'payload.source' is missing or empty".into()),
        }
        if !matches!(
            p.get("severity").and_then(Value::as_str),
            Some("critical" | "error" | "warning" | "info")
        ) {
            errs.push("'payload.severity' must be one of critical, error, warning, info".into());
        }
        if let Some(t) = p.get("timestamp") {
            let ok = t.as_str().is_some_and(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .is_ok()
            });
            if !ok {
                errs.push("'payload.timestamp' must be an ISO 8601 time".into());
            }
        }
        for key in ["component", "group", "class"] {
            if p.get(key).is_some_and(|v| !v.is_string()) {
                errs.push(format!("'payload.{key}' must be a string"));
            }
        }
    }
    errs
}

impl PagerDuty {
    pub fn start() -> PagerDuty {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state: Arc<Mutex<State>> = Arc::default();
        let st = state.clone();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let enqueue = move |body: axum::body::Bytes| {
            let st = st.clone();
            async move { enqueue(&st, &body).await }
        };
        let app = axum::Router::new().route(
            "/v2/enqueue",
            axum::routing::post(enqueue).head(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        );
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PagerDuty {
            addr,
            state,
            _rt: rt,
        }
    }

    /// The Events API URL to configure (`url`).
    pub fn url(&self) -> String {
        format!("http://{}/v2/enqueue", self.addr)
    }

    /// Answers the next requests with these statuses (400, 429, 500, ...), not processing
    /// them.
    pub fn force(&self, statuses: &[u16]) {
        self.state.lock().unwrap().forced.extend(statuses);
    }

    /// Records the next trigger, then holds its answer for `d`.
    pub fn hold_next_trigger(&self, d: Duration) {
        self.state.lock().unwrap().hold_next_trigger = Some(d);
    }

    /// Every well-formed event received, in order.
    pub fn accepted(&self) -> Vec<Value> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// Refused bodies, each with its schema problems.
    pub fn refused(&self) -> Vec<(String, Vec<String>)> {
        self.state.lock().unwrap().refused.clone()
    }

    /// What the stand-in knows of `dedup_key` (default: never seen).
    pub fn alert(&self, dedup_key: &str) -> Alert {
        self.state
            .lock()
            .unwrap()
            .alerts
            .get(dedup_key)
            .cloned()
            .unwrap_or_default()
    }

    /// Alerts opened under any key.
    pub fn opened_total(&self) -> u32 {
        self.state
            .lock()
            .unwrap()
            .alerts
            .values()
            .map(|a| a.opened)
            .sum()
    }
}

fn answer(status: StatusCode, body: Value) -> (StatusCode, axum::Json<Value>) {
    (status, axum::Json(body))
}

async fn enqueue(state: &Mutex<State>, body: &[u8]) -> (StatusCode, axum::Json<Value>) {
    let hold;
    let reply;
    {
        let mut st = state.lock().unwrap();
        if let Some(code) = st.forced.pop_front() {
            let status = StatusCode::from_u16(code).unwrap();
            // The bodies PagerDuty documents for these statuses.
            let body = match code {
                400 => json!({"status": "invalid event", "message": "Event object is invalid",
                              "errors": ["forced by the test"]}),
                429 => json!({"status": "throttle event",
                              "message": "Requests for this service are arriving too quickly. Please retry later."}),
                _ => json!({"status": "error", "message": status.canonical_reason().unwrap_or("")}),
            };
            return answer(status, body);
        }
        let text = String::from_utf8_lossy(body).into_owned();
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                st.refused.push((text, vec![format!("not JSON: {e}")]));
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({"status": "invalid event", "message": "Event object is invalid",
                           "errors": ["Invalid JSON"]}),
                );
            }
        };
        let errs = problems(&v);
        if !errs.is_empty() {
            st.refused.push((text, errs.clone()));
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"status": "invalid event", "message": "Event object is invalid",
                       "errors": errs}),
            );
        }
        let action = v["event_action"].as_str().unwrap_or("").to_string();
        let key = match v["dedup_key"].as_str() {
            Some(k) => k.to_string(),
            None => {
                st.generated += 1;
                format!("generated-{}", st.generated)
            }
        };
        st.accepted.push(v.clone());
        let alert = st.alerts.entry(key.clone()).or_default();
        match action.as_str() {
            "trigger" => {
                alert.triggers += 1;
                if !alert.open {
                    alert.open = true;
                    alert.opened += 1;
                    alert.payload = v["payload"].clone();
                }
            }
            "resolve" => {
                alert.resolves += 1;
                alert.open = false;
            }
            _ => {}
        }
        hold = if action == "trigger" {
            st.hold_next_trigger.take()
        } else {
            None
        };
        reply = json!({"status": "success", "message": "Event processed", "dedup_key": key});
    }
    if let Some(d) = hold {
        tokio::time::sleep(d).await;
    }
    answer(StatusCode::ACCEPTED, reply)
}
