//! The few etcd v3 calls `[cluster]` makes, over etcd's JSON gateway.
//!
//! Design: hand-written over the gateway, not a gRPC crate. Every maintained etcd crate
//! (`etcd-client` and the others on tonic/prost) generates its code from etcd's .proto
//! files in a build script, so building the agent needed `protoc` and the protobuf
//! well-known .proto files: a machine with only the Rust toolchain and a C compiler could
//! not build it. The JSON gateway is etcd's documented API for clients that do not speak
//! gRPC: the same RPCs as HTTP/1.1 POSTs of JSON to the client URL (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/lease/grant`, ...), which etcd 3.4 and later serve at `/v3/` by
//! default, on the same port and with the same TLS and authentication (two TLS rules of
//! etcd's for the gateway are in docs/cluster.md). The agent needs seven of them; with
//! reqwest (already its HTTP client) and serde that is this file, no code generation, and
//! 21 crates fewer in Cargo.lock.
//!
//! The wire format, as etcd 3.4 sends it (checked against the real server): fields keep
//! their .proto names (`create_revision`, `ID`, `TTL`; the camelCase forms are accepted
//! too), `bytes` fields are base64, `int64` fields are JSON strings (numbers are accepted
//! too), enums go by name (`"CREATE"`, `"EQUAL"`), and zero values are left out (a
//! missing `succeeded` is false, a missing `TTL` is 0). An error is a non-2xx answer
//! whose body has the gRPC code and message (`{"error": "...", "message": "...",
//! "code": 16}`; newer gateways send `{"code": 16, "message": "..."}`).
//!
//! Behaviour the agent relies on:
//! - No request is sent by `Client::new`: a down etcd at start shows at the first call.
//! - A call is bounded by `Options::timeout` as a whole (connecting, authenticating and
//!   every endpoint tried included), as one gRPC request with a deadline would be.
//! - With several endpoints, a call starts at the one that answered last; when that one
//!   does not answer (refused, timed out, or etcd says it is unavailable: no leader, a
//!   stopping member) the next is tried, each once, within the same time; the next call
//!   starts after the one that failed. Other errors are etcd's answer and are returned at
//!   once.
//! - With credentials, the client authenticates (`/v3/auth/authenticate`) before its
//!   first request and sends the token in `Authorization`; when etcd rejects the token
//!   (expired: simple tokens live 5 minutes by default, or the auth store changed) it
//!   authenticates again and repeats the request once.
//! - A lease is kept alive by one `/v3/lease/keepalive` request per refresh: the
//!   gateway's answer is one line `{"result": {"ID": ..., "TTL": ...}}`, and a TTL of 0
//!   (or none) means the lease is gone.
//! - No proxy from the environment (`HTTPS_PROXY`, ...) is used: etcd is reached
//!   directly, as a gRPC client would.

use base64::Engine as _;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// gRPC status codes the client acts on.
const DEADLINE_EXCEEDED: i32 = 4;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client cannot be built (an endpoint that is not a URL, bad TLS material).
    #[error("{0}")]
    Config(String),
    /// No answer from this endpoint: refused, timed out, connection dropped.
    #[error("{endpoint}: {detail}")]
    Transport { endpoint: String, detail: String },
    /// etcd answered with an error. `code` is the gRPC status code when the body had one.
    #[error("{endpoint} answered HTTP {http}: {message}")]
    Status {
        endpoint: String,
        http: u16,
        code: Option<i32>,
        message: String,
    },
    /// An answer that is not what the gateway sends.
    #[error("{endpoint}: unexpected answer: {detail}")]
    Decode { endpoint: String, detail: String },
}

impl Error {
    /// Whether another endpoint may answer where this one did not: no answer at all, or
    /// etcd saying this member cannot serve now (no leader, timed out, stopping).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Status { http, code, .. } => {
                matches!(code, Some(UNAVAILABLE | DEADLINE_EXCEEDED))
                    || (code.is_none() && matches!(http, 502..=504))
            }
            Error::Config(_) | Error::Decode { .. } => false,
        }
    }

    /// Whether etcd refused the request's token (expired, unknown, or issued before the
    /// auth store changed): authenticating again helps.
    pub fn is_auth_rejected(&self) -> bool {
        match self {
            Error::Status { code, message, .. } => {
                *code == Some(UNAUTHENTICATED)
                    || message.contains("invalid auth token")
                    || message.contains("revision of auth store is old")
            }
            _ => false,
        }
    }
}

/// `username` and the password from `password_file`.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Default)]
pub struct Options {
    /// Client URLs (`http://` or `https://`, host and port).
    pub endpoints: Vec<String>,
    /// Bound on one call, every endpoint tried included.
    pub timeout: Duration,
    /// The CA (PEM) that signs etcd's server certificate; the only one trusted when set.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate and its private key (PEM).
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    pub credentials: Option<Credentials>,
}

/// An etcd client; clones share the connections and the token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The endpoints without a trailing `/`.
    endpoints: Vec<String>,
    /// The endpoint that answered last (or the one after the last that did not): calls
    /// start there.
    current: AtomicUsize,
    timeout: Duration,
    credentials: Option<Credentials>,
    token: Mutex<Option<String>>,
    /// One authentication at a time: callers that find the token rejected together
    /// share the new one.
    authenticating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client; sends nothing.
    pub fn new(opts: Options) -> Result<Client, Error> {
        if opts.endpoints.is_empty() {
            return Err(Error::Config("no etcd endpoint".into()));
        }
        let mut endpoints = Vec::new();
        for e in &opts.endpoints {
            let u = url::Url::parse(e)
                .map_err(|err| Error::Config(format!("etcd endpoint `{e}`: {err}")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(Error::Config(format!(
                    "etcd endpoint `{e}` must be an http:// or https:// URL with a host"
                )));
            }
            endpoints.push(e.trim_end_matches('/').to_string());
        }
        let mut b = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .http1_only()
            .no_proxy();
        if let Some(ca) = &opts.ca_pem {
            // Every certificate of a bundle; none at all is refused here rather than found
            // out as a failed handshake at every request.
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| Error::Config(format!("ca_file: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Config("ca_file: no PEM certificate in it".into()));
            }
            b = b.tls_built_in_root_certs(false);
            for cert in certs {
                b = b.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &opts.identity_pem {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| Error::Config(format!("cert_file/key_file: {e}")))?;
            b = b.identity(id);
        }
        let http = b
            .build()
            .map_err(|e| Error::Config(format!("HTTP client for etcd: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                endpoints,
                current: AtomicUsize::new(0),
                timeout: opts.timeout,
                credentials: opts.credentials,
                token: Mutex::new(None),
                authenticating: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The key `key`, if it exists.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyValue>, Error> {
        let req = RangeRequest {
            key: key.as_ref().to_vec(),
            range_end: Vec::new(),
        };
        let resp: RangeResponse = self.call("/v3/kv/range", &req).await?;
        Ok(resp.kvs.into_iter().next())
    }

    /// Every key that starts with `prefix`, in key order.
    pub async fn get_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<Vec<KeyValue>, Error> {
        let req = RangeRequest {
            key: prefix.as_ref().to_vec(),
            range_end: prefix_end(prefix.as_ref()),
        };
        let resp: RangeResponse = self.call("/v3/kv/range", &req).await?;
        Ok(resp.kvs)
    }

    /// Sets `key` to `value`, attached to `lease` (0: none).
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease: i64,
    ) -> Result<(), Error> {
        let req = PutRequest {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            lease,
        };
        let _: serde::de::IgnoredAny = self.call("/v3/kv/put", &req).await?;
        Ok(())
    }

    pub async fn txn(&self, txn: &Txn) -> Result<TxnResponse, Error> {
        self.call("/v3/kv/txn", txn).await
    }

    /// A new lease of `ttl` seconds; its ID.
    pub async fn lease_grant(&self, ttl: i64) -> Result<i64, Error> {
        let (at, resp): (usize, LeaseGrantResponse) = self
            .call_at("/v3/lease/grant", &LeaseGrantRequest { ttl })
            .await?;
        if !resp.error.is_empty() || resp.id == 0 {
            return Err(Error::Status {
                endpoint: self.endpoint(at),
                http: 200,
                code: None,
                message: format!("lease not granted: {}", resp.error),
            });
        }
        Ok(resp.id)
    }

    /// Ends the lease; the keys attached to it go.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), Error> {
        let _: serde::de::IgnoredAny = self.call("/v3/lease/revoke", &LeaseId { id }).await?;
        Ok(())
    }

    /// Refreshes the lease; the TTL it has again, 0 when the lease is gone (expired or
    /// revoked).
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, Error> {
        let body = serde_json::to_vec(&LeaseId { id }).expect("a lease ID encodes");
        let (at, text) = self.post("/v3/lease/keepalive", body.into()).await?;
        keep_alive_ttl(&text).map_err(|e| e.at(&self.endpoint(at)))
    }

    /// Sends `req`, decodes the answer.
    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        req: &impl Serialize,
    ) -> Result<T, Error> {
        Ok(self.call_at(path, req).await?.1)
    }

    /// As `call`; also which endpoint answered.
    async fn call_at<T: DeserializeOwned>(
        &self,
        path: &str,
        req: &impl Serialize,
    ) -> Result<(usize, T), Error> {
        let body = serde_json::to_vec(req).expect("etcd requests encode");
        let (at, text) = self.post(path, body.into()).await?;
        let resp = serde_json::from_slice(&text).map_err(|e| Error::Decode {
            endpoint: self.endpoint(at),
            detail: e.to_string(),
        })?;
        Ok((at, resp))
    }

    fn endpoint(&self, at: usize) -> String {
        self.inner.endpoints[at].clone()
    }

    /// Posts `body` to `path`, from the endpoint that answered last on to the others
    /// while an endpoint does not answer, all within the timeout; which endpoint
    /// answered, and its answer.
    async fn post(&self, path: &str, body: Bytes) -> Result<(usize, Bytes), Error> {
        let n = self.inner.endpoints.len();
        let deadline = crate::clock::now() + self.inner.timeout;
        let start = self.inner.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let at = (start + i) % n;
            let r = tokio::time::timeout_at(deadline, self.post_to(at, path, body.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Transport {
                        endpoint: self.endpoint(at),
                        detail: format!("timed out after {:?}", self.inner.timeout),
                    })
                });
            match r {
                Ok(text) => {
                    self.inner.current.store(at, Ordering::Relaxed);
                    return Ok((at, text));
                }
                Err(e) if e.is_unavailable() => {
                    tracing::debug!(endpoint = %self.inner.endpoints[at], error = %e, "etcd endpoint did not answer");
                    // The next call starts after this one (unless another call has
                    // moved on meanwhile).
                    let _ = self.inner.current.compare_exchange(
                        at,
                        (at + 1) % n,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    last = Some(e);
                    if crate::clock::now() >= deadline {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one endpoint tried"))
    }

    /// One endpoint: authenticated first when there are credentials, and once more when
    /// etcd rejects the token.
    async fn post_to(&self, at: usize, path: &str, body: Bytes) -> Result<Bytes, Error> {
        let token = self.token(at, None).await?;
        match self.send(at, path, body.clone(), token.as_deref()).await {
            Err(e) if e.is_auth_rejected() && self.inner.credentials.is_some() => {
                tracing::debug!(error = %e, "etcd rejected the token; authenticating again");
                let token = self.token(at, token.as_deref()).await?;
                self.send(at, path, body, token.as_deref()).await
            }
            r => r,
        }
    }

    /// The token to send (none without credentials), authenticating on endpoint `at`
    /// when there is none yet or the one there is was `rejected`.
    async fn token(&self, at: usize, rejected: Option<&str>) -> Result<Option<String>, Error> {
        let Some(creds) = &self.inner.credentials else {
            return Ok(None);
        };
        let usable = |t: &Option<String>| t.clone().filter(|t| Some(t.as_str()) != rejected);
        if let Some(t) = usable(&self.current_token()) {
            return Ok(Some(t));
        }
        let _one = self.inner.authenticating.lock().await;
        // Another caller may have authenticated meanwhile.
        if let Some(t) = usable(&self.current_token()) {
            return Ok(Some(t));
        }
        let req = AuthenticateRequest {
            name: &creds.user,
            password: &creds.password,
        };
        let body = serde_json::to_vec(&req).expect("credentials encode");
        let text = self
            .send(at, "/v3/auth/authenticate", body.into(), None)
            .await?;
        let resp: AuthenticateResponse =
            serde_json::from_slice(&text).map_err(|e| Error::Decode {
                endpoint: self.endpoint(at),
                detail: e.to_string(),
            })?;
        if resp.token.is_empty() {
            return Err(Error::Decode {
                endpoint: self.endpoint(at),
                detail: "authenticated without a token (is auth enabled in etcd?)".into(),
            });
        }
        *self.inner.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(resp.token.clone());
        Ok(Some(resp.token))
    }

    fn current_token(&self) -> Option<String> {
        self.inner
            .token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// One POST to one endpoint: its body when 2xx, else the error etcd gave.
    async fn send(
        &self,
        at: usize,
        path: &str,
        body: Bytes,
        token: Option<&str>,
    ) -> Result<Bytes, Error> {
        let endpoint = &self.inner.endpoints[at];
        let transport = |e: reqwest::Error| Error::Transport {
            endpoint: endpoint.clone(),
            detail: transport_detail(&e),
        };
        let mut req = self
            .inner
            .http
            .post(format!("{endpoint}{path}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.header(reqwest::header::AUTHORIZATION, t);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let text = resp.bytes().await.map_err(transport)?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(status_error(endpoint, status.as_u16(), &text))
        }
    }
}

/// What failed, with the causes reqwest keeps in its error chain ("error sending
/// request" alone does not say "connection refused").
fn transport_detail(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut detail = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    detail
}

/// The error in a non-2xx answer's body (the gateway's JSON, or the text of a plain
/// HTTP error such as a 404 from a server without the gateway), with a hint where etcd's
/// own words do not say what to change.
fn status_error(endpoint: &str, http: u16, body: &[u8]) -> Error {
    let (code, mut message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => (b.code, b.message()),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let mut text = text.trim().chars().take(200).collect::<String>();
            if http == 404 {
                text.push_str(" (no JSON gateway at /v3/: etcd 3.4 or later serves it)");
            }
            (None, text)
        }
    };
    if endpoint.starts_with("https://")
        && code == Some(UNAVAILABLE)
        && message == "connection closed"
    {
        // The gateway could not reach etcd's gRPC server behind it.
        message.push_str(
            " (with --client-cert-auth, etcd's gateway presents etcd's own server \
             certificate to etcd: it must allow client authentication too)",
        );
    }
    if message.contains("CommonName of client sending a request against gateway") {
        message.push_str(
            " (with etcd authentication on, the gateway refuses a client certificate \
             that has a CN: use one without, and username/password_file)",
        );
    }
    Error::Status {
        endpoint: endpoint.to_string(),
        http,
        code,
        message,
    }
}

/// The remaining TTL in a keep-alive answer (its first line); 0 when the lease is gone.
fn keep_alive_ttl(text: &[u8]) -> Result<i64, Error> {
    let decode = |detail: String| Error::Decode {
        endpoint: String::new(),
        detail,
    };
    let line = text
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .ok_or_else(|| decode("an empty keep-alive answer".into()))?;
    let msg: StreamMessage<LeaseKeepAliveResponse> =
        serde_json::from_slice(line).map_err(|e| decode(e.to_string()))?;
    match (msg.result, msg.error) {
        (_, Some(e)) => Err(Error::Status {
            endpoint: String::new(),
            http: e.http_code.unwrap_or(200),
            code: e.code,
            message: e.message(),
        }),
        (Some(r), None) => Ok(r.ttl.max(0)),
        (None, None) => Err(decode("a keep-alive answer without a result".into())),
    }
}

impl Error {
    /// Names the endpoint of an error found after the request (`keep_alive_ttl`).
    fn at(self, at: &str) -> Error {
        let endpoint = at.to_string();
        match self {
            Error::Status {
                http,
                code,
                message,
                ..
            } => Error::Status {
                endpoint,
                http,
                code,
                message,
            },
            Error::Decode { detail, .. } => Error::Decode { endpoint, detail },
            e => e,
        }
    }
}

/// The end of the range of keys that start with `prefix` (etcd's `range_end`): the
/// prefix with its last byte below 0xff incremented and what follows dropped; `\0`
/// (every key) when there is no such byte.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A transaction: `success` ops run when every `compare` holds, else `failure` ops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Txn {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    compare: Vec<Compare>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    success: Vec<Op>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failure: Vec<Op>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    pub fn when(mut self, compare: impl IntoIterator<Item = Compare>) -> Txn {
        self.compare.extend(compare);
        self
    }

    pub fn and_then(mut self, ops: impl IntoIterator<Item = Op>) -> Txn {
        self.success.extend(ops);
        self
    }

    pub fn or_else(mut self, ops: impl IntoIterator<Item = Op>) -> Txn {
        self.failure.extend(ops);
        self
    }
}

/// A transaction's condition. Only the one the agent uses: a key's create revision.
#[derive(Debug, Clone, Serialize)]
pub struct Compare {
    target: CompareTarget,
    result: CompareResult,
    #[serde(with = "b64")]
    key: Vec<u8>,
    #[serde(with = "int64")]
    create_revision: i64,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum CompareTarget {
    Create,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum CompareResult {
    Equal,
}

impl Compare {
    /// `key` was created at revision `rev`; 0: `key` does not exist.
    pub fn create_revision_is(key: impl AsRef<[u8]>, rev: i64) -> Compare {
        Compare {
            target: CompareTarget::Create,
            result: CompareResult::Equal,
            key: key.as_ref().to_vec(),
            create_revision: rev,
        }
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    RequestRange(RangeRequest),
    RequestPut(PutRequest),
    RequestDeleteRange(DeleteRangeRequest),
}

impl Op {
    pub fn get(key: impl AsRef<[u8]>) -> Op {
        Op::RequestRange(RangeRequest {
            key: key.as_ref().to_vec(),
            range_end: Vec::new(),
        })
    }

    /// Sets `key`, attached to `lease` (0: none).
    pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>, lease: i64) -> Op {
        Op::RequestPut(PutRequest {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            lease,
        })
    }

    pub fn delete(key: impl AsRef<[u8]>) -> Op {
        Op::RequestDeleteRange(DeleteRangeRequest {
            key: key.as_ref().to_vec(),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RangeRequest {
    #[serde(with = "b64")]
    key: Vec<u8>,
    #[serde(with = "b64", skip_serializing_if = "Vec::is_empty")]
    range_end: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PutRequest {
    #[serde(with = "b64")]
    key: Vec<u8>,
    #[serde(with = "b64")]
    value: Vec<u8>,
    #[serde(with = "int64", skip_serializing_if = "is_zero")]
    lease: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeleteRangeRequest {
    #[serde(with = "b64")]
    key: Vec<u8>,
}

#[derive(Serialize)]
struct LeaseGrantRequest {
    #[serde(rename = "TTL", with = "int64")]
    ttl: i64,
}

#[derive(Serialize)]
struct LeaseId {
    #[serde(rename = "ID", with = "int64")]
    id: i64,
}

#[derive(Serialize)]
struct AuthenticateRequest<'a> {
    name: &'a str,
    password: &'a str,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResponseHeader {
    #[serde(with = "int64")]
    pub revision: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct KeyValue {
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    #[serde(with = "int64", alias = "createRevision")]
    pub create_revision: i64,
    #[serde(with = "int64", alias = "modRevision")]
    pub mod_revision: i64,
    #[serde(with = "int64")]
    pub version: i64,
    #[serde(with = "b64")]
    pub value: Vec<u8>,
    /// The lease the key is attached to; 0: none.
    #[serde(with = "int64")]
    pub lease: i64,
}

impl KeyValue {
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RangeResponse {
    pub header: Option<ResponseHeader>,
    pub kvs: Vec<KeyValue>,
    #[serde(with = "int64")]
    pub count: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TxnResponse {
    pub header: Option<ResponseHeader>,
    /// Whether the compares held (the `success` ops ran).
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

impl TxnResponse {
    /// The keys the transaction's get ops found.
    pub fn kvs(&self) -> impl Iterator<Item = &KeyValue> {
        self.responses
            .iter()
            .filter_map(|r| r.response_range.as_ref())
            .flat_map(|r| r.kvs.iter())
    }
}

/// One op's answer; only gets are read (puts and deletes say nothing the agent uses).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResponseOp {
    #[serde(alias = "responseRange")]
    pub response_range: Option<RangeResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LeaseGrantResponse {
    #[serde(rename = "ID", alias = "id", with = "int64")]
    id: i64,
    error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LeaseKeepAliveResponse {
    #[serde(rename = "TTL", alias = "ttl", with = "int64")]
    ttl: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthenticateResponse {
    token: String,
}

/// One line of a streamed answer (keep-alive): a result or an error.
#[derive(Debug, Deserialize)]
struct StreamMessage<T> {
    result: Option<T>,
    error: Option<ErrorBody>,
}

/// An error body: `{"error": "...", "message": "...", "code": 16}` (etcd 3.4/3.5), in a
/// stream `{"grpc_code": 16, "http_code": 401, "message": "..."}`, or `{"code": 16,
/// "message": "..."}` (newer gateways).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorBody {
    #[serde(alias = "grpc_code")]
    code: Option<i32>,
    http_code: Option<u16>,
    message: String,
    error: Option<serde_json::Value>,
}

impl ErrorBody {
    fn message(&self) -> String {
        match (&self.error, self.message.is_empty()) {
            (_, false) => self.message.clone(),
            (Some(serde_json::Value::String(e)), true) => e.clone(),
            _ => "no message".into(),
        }
    }
}

/// `bytes` fields: base64 (standard alphabet; URL-safe and unpadded accepted).
mod b64 {
    use super::*;
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};

    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        general_purpose::PAD.with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    const LENIENT_URL: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        general_purpose::PAD.with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );

    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        LENIENT
            .decode(&s)
            .or_else(|_| LENIENT_URL.decode(&s))
            .map_err(|e| serde::de::Error::custom(format!("`{s}` is not base64: {e}")))
    }
}

/// `int64` fields: written as JSON strings (as the gateway does); read from strings or
/// numbers.
mod int64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Int64 {
            Number(i64),
            Text(String),
        }
        match Option::<Int64>::deserialize(d)? {
            None => Ok(0),
            Some(Int64::Number(n)) => Ok(n),
            Some(Int64::Text(s)) => s
                .parse()
                .map_err(|e| serde::de::Error::custom(format!("`{s}` is not an int64: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_campaign_txn_is_sent_as_the_gateway_expects() {
        let txn = Txn::new()
            .when([Compare::create_revision_is("/fb/zones/b3/leader", 0)])
            .and_then([Op::put("/fb/zones/b3/leader", "a", 7587862481023423496)])
            .or_else([Op::get("/fb/zones/b3/leader")]);
        assert_eq!(
            serde_json::to_value(&txn).unwrap(),
            json!({
                "compare": [{
                    "target": "CREATE",
                    "result": "EQUAL",
                    "key": "L2ZiL3pvbmVzL2IzL2xlYWRlcg==",
                    "create_revision": "0",
                }],
                "success": [{"request_put": {
                    "key": "L2ZiL3pvbmVzL2IzL2xlYWRlcg==",
                    "value": "YQ==",
                    "lease": "7587862481023423496",
                }}],
                "failure": [{"request_range": {"key": "L2ZiL3pvbmVzL2IzL2xlYWRlcg=="}}],
            })
        );
    }

    #[test]
    fn a_txn_without_a_condition_or_a_lease_leaves_those_fields_out() {
        let txn = Txn::new().and_then([Op::put("k", "v", 0), Op::delete("old")]);
        assert_eq!(
            serde_json::to_value(&txn).unwrap(),
            json!({"success": [
                {"request_put": {"key": "aw==", "value": "dg=="}},
                {"request_delete_range": {"key": "b2xk"}},
            ]})
        );
    }

    #[test]
    fn a_range_answer_is_read_with_its_int64s_as_strings_and_its_bytes_as_base64() {
        // As etcd 3.4 answers /v3/kv/range.
        let text = r#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"3","raft_term":"2"},"kvs":[{"key":"L25zL3pvbmVzL3ovbGVhZGVy","create_revision":"3","mod_revision":"3","version":"1","value":"YQ==","lease":"2324035830587056650"}],"count":"1"}"#;
        let r: RangeResponse = serde_json::from_str(text).unwrap();
        assert_eq!(r.header.unwrap().revision, 3);
        assert_eq!(r.count, 1);
        assert_eq!(
            r.kvs,
            vec![KeyValue {
                key: b"/ns/zones/z/leader".to_vec(),
                create_revision: 3,
                mod_revision: 3,
                version: 1,
                value: b"a".to_vec(),
                lease: 2324035830587056650,
            }]
        );
        assert_eq!(r.kvs[0].value_str(), Some("a"));
    }

    #[test]
    fn numbers_camel_case_and_missing_zero_values_are_read_too() {
        let text =
            r#"{"kvs":[{"key":"aw==","createRevision":12,"modRevision":"14","value":"dg"}]}"#;
        let r: RangeResponse = serde_json::from_str(text).unwrap();
        let kv = &r.kvs[0];
        assert_eq!((kv.create_revision, kv.mod_revision), (12, 14));
        assert_eq!((kv.version, kv.lease), (0, 0), "left out: zero");
        assert_eq!(kv.value, b"v", "unpadded base64");
        assert!(r.header.is_none());
        // No key: no `kvs` at all.
        let empty: RangeResponse = serde_json::from_str(r#"{"header":{"revision":"2"}}"#).unwrap();
        assert!(empty.kvs.is_empty());
    }

    #[test]
    fn a_failed_txn_has_no_succeeded_field_and_carries_the_get_ops_keys() {
        let text = r#"{"header":{"revision":"3"},"responses":[{"response_range":{"header":{"revision":"3"},"kvs":[{"key":"aw==","create_revision":"3","mod_revision":"3","version":"1","value":"Yg==","lease":"5"}],"count":"1"}}]}"#;
        let r: TxnResponse = serde_json::from_str(text).unwrap();
        assert!(!r.succeeded);
        assert_eq!(
            r.kvs().map(|kv| kv.value_str()).collect::<Vec<_>>(),
            vec![Some("b")]
        );
        let won: TxnResponse = serde_json::from_str(
            r#"{"header":{"revision":"9"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"9"}}},{"response_delete_range":{"deleted":"1"}}]}"#,
        )
        .unwrap();
        assert!(won.succeeded);
        assert_eq!(won.header.as_ref().unwrap().revision, 9);
        assert_eq!(won.kvs().count(), 0);
    }

    #[test]
    fn a_bad_int64_or_base64_is_a_decode_error_not_a_zero() {
        assert!(serde_json::from_str::<KeyValue>(r#"{"create_revision":"x"}"#).is_err());
        assert!(serde_json::from_str::<KeyValue>(r#"{"key":"%%%"}"#).is_err());
    }

    #[test]
    fn lease_requests_use_the_proto_field_names() {
        assert_eq!(
            serde_json::to_value(LeaseGrantRequest { ttl: 4 }).unwrap(),
            json!({"TTL": "4"})
        );
        assert_eq!(
            serde_json::to_value(LeaseId { id: 42 }).unwrap(),
            json!({"ID": "42"})
        );
        let g: LeaseGrantResponse =
            serde_json::from_str(r#"{"header":{},"ID":"2324035830587056648","TTL":"5"}"#).unwrap();
        assert_eq!(g.id, 2324035830587056648);
    }

    #[test]
    fn a_keep_alive_answer_gives_the_ttl_and_zero_when_the_lease_is_gone() {
        let live = b"{\"result\":{\"header\":{\"revision\":\"3\"},\"ID\":\"7\",\"TTL\":\"5\"}}\n";
        assert_eq!(keep_alive_ttl(live).unwrap(), 5);
        // etcd answers a lease it no longer has without a TTL.
        let gone = b"{\"result\":{\"header\":{\"revision\":\"3\"},\"ID\":\"7\"}}\n";
        assert_eq!(keep_alive_ttl(gone).unwrap(), 0);
        let negative = b"{\"result\":{\"ID\":\"7\",\"TTL\":\"-1\"}}";
        assert_eq!(keep_alive_ttl(negative).unwrap(), 0);
        assert!(matches!(keep_alive_ttl(b"\n"), Err(Error::Decode { .. })));
    }

    #[test]
    fn an_error_in_the_keep_alive_stream_is_etcds_answer() {
        let e = keep_alive_ttl(
            br#"{"error":{"grpc_code":16,"http_code":401,"message":"etcdserver: invalid auth token","http_status":"Unauthorized"}}"#,
        )
        .unwrap_err()
        .at("http://127.0.0.1:2379");
        assert!(e.is_auth_rejected(), "{e:?}");
        assert_eq!(
            e.to_string(),
            "http://127.0.0.1:2379 answered HTTP 401: etcdserver: invalid auth token"
        );
    }

    #[test]
    fn error_answers_are_read_from_both_gateway_shapes() {
        let v1 = status_error(
            "http://e:2379",
            404,
            br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#,
        );
        let Error::Status { code, message, .. } = &v1 else {
            panic!("{v1:?}")
        };
        assert_eq!(*code, Some(5));
        assert_eq!(message, "etcdserver: requested lease not found");
        let v2 = status_error(
            "http://e:2379",
            503,
            br#"{"code":14,"message":"etcdserver: no leader","details":[]}"#,
        );
        assert!(v2.is_unavailable(), "{v2:?}");
        let no_gateway = status_error("http://e:2379", 404, b"Not Found\n");
        assert!(
            no_gateway.to_string().contains("etcd 3.4 or later"),
            "{no_gateway}"
        );
    }

    #[test]
    fn the_gateways_tls_refusals_say_what_to_change() {
        // etcd 3.4 under --client-cert-auth, with a server certificate for servers only.
        let eku = status_error(
            "https://e:2379",
            503,
            br#"{"error":"connection closed","message":"connection closed","code":14}"#,
        );
        assert!(
            eku.to_string()
                .contains("server certificate to etcd: it must allow client authentication"),
            "{eku}"
        );
        assert!(
            eku.is_unavailable(),
            "the member may still be the only one at fault"
        );
        // etcd 3.4 with authentication on, to a client certificate that has a CN.
        let cn = status_error(
            "https://e:2379",
            400,
            b"CommonName of client sending a request against gateway will be ignored and not used as expected\n",
        );
        assert!(cn.to_string().contains("use one without"), "{cn}");
        assert!(!cn.is_unavailable());
    }

    #[test]
    fn only_no_answer_or_an_unavailable_member_moves_on_to_the_next_endpoint() {
        let status = |http: u16, code: Option<i32>, message: &str| Error::Status {
            endpoint: "http://e:2379".into(),
            http,
            code,
            message: message.into(),
        };
        let refused = Error::Transport {
            endpoint: "http://e:2379".into(),
            detail: "cannot connect: connection refused".into(),
        };
        assert!(refused.is_unavailable());
        assert!(status(503, Some(14), "etcdserver: no leader").is_unavailable());
        assert!(status(503, Some(14), "etcdserver: request timed out").is_unavailable());
        assert!(status(504, Some(4), "context deadline exceeded").is_unavailable());
        assert!(status(502, None, "Bad Gateway").is_unavailable());
        // etcd's answers: another member would say the same.
        assert!(!status(401, Some(16), "etcdserver: invalid auth token").is_unavailable());
        assert!(!status(403, Some(7), "etcdserver: permission denied").is_unavailable());
        assert!(!status(404, Some(5), "etcdserver: requested lease not found").is_unavailable());
        assert!(!Error::Decode {
            endpoint: String::new(),
            detail: String::new()
        }
        .is_unavailable());
    }

    #[test]
    fn a_rejected_token_is_told_apart_from_a_refusal() {
        let status = |http: u16, code: Option<i32>, message: &str| Error::Status {
            endpoint: "http://e:2379".into(),
            http,
            code,
            message: message.into(),
        };
        assert!(status(401, Some(16), "etcdserver: invalid auth token").is_auth_rejected());
        assert!(
            status(400, Some(3), "etcdserver: revision of auth store is old").is_auth_rejected()
        );
        assert!(!status(403, Some(7), "etcdserver: permission denied").is_auth_rejected());
        assert!(!status(
            400,
            Some(3),
            "etcdserver: authentication failed, invalid user ID or password"
        )
        .is_auth_rejected());
    }

    #[test]
    fn a_prefix_ends_at_its_last_byte_plus_one() {
        assert_eq!(prefix_end(b"/fb/nodes/"), b"/fb/nodes0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0], "every key");
        assert_eq!(prefix_end(b""), vec![0], "every key");
    }

    #[test]
    fn the_client_is_built_without_a_request_and_refuses_bad_endpoints_and_tls_files() {
        let opts = |endpoints: &[&str]| Options {
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            timeout: Duration::from_secs(2),
            ..Options::default()
        };
        // Nothing listens there: building does not notice.
        let c = Client::new(opts(&["http://127.0.0.1:9/", "https://etcd-2:2379"])).unwrap();
        assert_eq!(
            c.inner.endpoints,
            ["http://127.0.0.1:9", "https://etcd-2:2379"]
        );
        assert!(matches!(
            Client::new(opts(&["etcd:2379"])),
            Err(Error::Config(_))
        ));
        assert!(matches!(Client::new(opts(&[])), Err(Error::Config(_))));
        let bad_ca = Options {
            ca_pem: Some(b"not a certificate".to_vec()),
            ..opts(&["https://etcd:2379"])
        };
        assert!(matches!(Client::new(bad_ca), Err(Error::Config(_))));
        let bad_identity = Options {
            identity_pem: Some((b"no cert".to_vec(), b"no key".to_vec())),
            ..opts(&["https://etcd:2379"])
        };
        assert!(matches!(Client::new(bad_identity), Err(Error::Config(_))));
    }

    /// A port that accepts connections (the kernel's backlog) and never answers.
    fn black_hole() -> (std::net::TcpListener, String) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        (l, url)
    }

    /// A port where nothing listens: connections are refused.
    fn refused() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    /// An HTTP server answering every request with `body` (200, JSON).
    async fn answering(body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    // The request: headers, then Content-Length bytes of body.
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = c.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        req.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if req.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = c.write_all(resp.as_bytes()).await;
                });
            }
        });
        url
    }

    fn client(endpoints: Vec<String>, timeout: Duration) -> Client {
        Client::new(Options {
            endpoints,
            timeout,
            ..Options::default()
        })
        .unwrap()
    }

    const ONE_KEY: &str = r#"{"header":{"revision":"2"},"kvs":[{"key":"aw==","create_revision":"2","mod_revision":"2","version":"1","value":"dg=="}],"count":"1"}"#;

    #[tokio::test(start_paused = true)]
    async fn a_refused_endpoint_is_passed_over_within_the_same_call() {
        let live = answering(ONE_KEY).await;
        let c = client(vec![refused(), live], Duration::from_secs(2));
        let kv = c.get("k").await.unwrap().unwrap();
        assert_eq!(kv.value_str(), Some("v"));
    }

    #[tokio::test(start_paused = true)]
    async fn endpoints_that_never_answer_cost_one_timeout_not_one_each() {
        let holes: Vec<_> = (0..3).map(|_| black_hole()).collect();
        let timeout = Duration::from_millis(500);
        let c = client(holes.iter().map(|(_, u)| u.clone()).collect(), timeout);
        let started = crate::clock::now();
        let e = c.get("k").await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(e, Error::Transport { .. }), "{e:?}");
        // Paused time: `took` is the time the client waited, not the machine's load.
        assert!(took >= timeout, "{took:?}");
        assert!(
            took < Duration::from_millis(1200),
            "one call, three silent endpoints: {took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_silent_endpoint_the_next_call_starts_at_the_next_one() {
        let (_hole, silent) = black_hole();
        let live = answering(ONE_KEY).await;
        let c = client(vec![silent, live], Duration::from_millis(500));
        // The silent endpoint takes the whole call's time.
        assert!(c.get("k").await.is_err());
        // The retry goes to the other one.
        assert_eq!(c.get("k").await.unwrap().unwrap().value, b"v");
    }

    #[test]
    fn credentials_do_not_show_the_password() {
        let c = Credentials {
            user: "root".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
