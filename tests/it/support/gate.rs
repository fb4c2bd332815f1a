//! An HTTP forwarder in front of a real peer that can hold back one kind of request: the
//! way a test stops an agent in the middle of a step (after its POST reached the peer,
//! before its read-back returned) to kill it there.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Gate {
    pub addr: SocketAddr,
    /// (method, path) of every request seen, in order.
    seen: Arc<Mutex<Vec<(String, String)>>>,
    hold: Arc<AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

impl Gate {
    /// Forwards every request to `upstream` (`http://host:port`); while held, requests of
    /// `method` wait (and are forwarded once released).
    pub fn start(upstream: &str, method: &'static str) -> Gate {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let hold = Arc::new(AtomicBool::new(false));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let client = reqwest::Client::new();
        let upstream = upstream.trim_end_matches('/').to_string();
        let (rec, held) = (seen.clone(), hold.clone());
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (rec, held, client, upstream) =
                (rec.clone(), held.clone(), client.clone(), upstream.clone());
            async move {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                rec.lock()
                    .unwrap()
                    .push((parts.method.to_string(), parts.uri.path().to_string()));
                while parts.method.as_str() == method && held.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let mut fwd = client.request(parts.method.clone(), format!("{upstream}{path}"));
                if let Some(ct) = parts.headers.get("content-type") {
                    fwd = fwd.header("content-type", ct.clone());
                }
                match fwd.body(bytes.to_vec()).send().await {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.bytes().await.unwrap_or_default();
                        (status, body.to_vec())
                    }
                    Err(e) => (
                        axum::http::StatusCode::BAD_GATEWAY,
                        e.to_string().into_bytes(),
                    ),
                }
            }
        });
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Gate {
            addr,
            seen,
            hold,
            _rt: rt,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hold(&self, on: bool) {
        self.hold.store(on, Ordering::SeqCst);
    }

    /// How many requests `method path` have been seen.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count()
    }

    /// Waits until `count(method, path)` reaches `n`.
    pub fn wait_for(&self, method: &str, path: &str, n: usize, deadline: Duration) {
        let until = Instant::now() + deadline;
        while self.count(method, path) < n {
            assert!(
                Instant::now() < until,
                "no {n} `{method} {path}` within {deadline:?}: {:?}",
                self.seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
