//! The InfluxDB v2 write API over HTTP, and what each answer means for a batch.
//!
//! Design: reqwest (already the agent's HTTP client) rather than the `influxdb2` crate.
//! influxdb2 0.5 brings a second HTTP stack (reqwest 0.11 with native-tls) and only
//! gzips the `DataPoint` stream API: its `write_line_protocol*` calls take a body but no
//! headers, so pre-formatted (and pre-compressed, as spooled) line protocol cannot be
//! sent with `Content-Encoding: gzip`; it also folds every non-204 answer into one error
//! without the `Retry-After` header a 429 needs.

use super::ErrorKind;
use bytes::Bytes;
use std::io::Read as _;
use std::time::Duration;

/// What became of one write request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx: InfluxDB has the batch.
    Written,
    /// Try again later; keep (spool) the batch meanwhile. `after` is the server's
    /// `Retry-After`, when it gave one.
    Retry {
        kind: ErrorKind,
        after: Option<Duration>,
        detail: String,
    },
    /// The server refused the batch itself (a 4xx that is not about auth or rate): sending
    /// it again would fail again, so it is dropped and counted.
    Rejected { status: u16, message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("telemetry.influxdb.url {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(reqwest::Error),
}

pub struct Client {
    http: reqwest::Client,
    write_url: url::Url,
    auth: Option<String>,
}

impl Client {
    pub fn new(
        base: &str,
        org: &str,
        bucket: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let bad = |reason: String| ClientError::Url {
            url: base.to_string(),
            reason,
        };
        let mut write_url =
            url::Url::parse(&format!("{}/api/v2/write", base.trim_end_matches('/')))
                .map_err(|e| bad(e.to_string()))?;
        if !matches!(write_url.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https".into()));
        }
        write_url
            .query_pairs_mut()
            .append_pair("org", org)
            .append_pair("bucket", bucket)
            .append_pair("precision", "ms");
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(ClientError::Build)?;
        Ok(Client {
            http,
            write_url,
            auth: token.map(|t| format!("Token {}", t.trim())),
        })
    }

    /// Sends one gzip-compressed batch of line protocol.
    pub async fn write(&self, gzip_body: Bytes) -> Outcome {
        let mut req = self
            .http
            .post(self.write_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(gzip_body);
        if let Some(auth) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                return Outcome::Retry {
                    kind: ErrorKind::Unavailable,
                    after: None,
                    detail: format!("{what}: {e}"),
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Written;
        }
        let after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut text = resp.text().await.unwrap_or_default();
        text.truncate(text.floor_char_boundary_compat(1024));
        classify(status.as_u16(), after, text)
    }
}

/// The meaning of an HTTP status for a batch (pure, for tests).
pub fn classify(status: u16, after: Option<Duration>, text: String) -> Outcome {
    match status {
        200..=299 => Outcome::Written,
        401 | 403 => Outcome::Retry {
            kind: ErrorKind::Auth,
            after: None,
            detail: format!("HTTP {status}: {text}"),
        },
        429 => Outcome::Retry {
            kind: ErrorKind::RateLimited,
            after,
            detail: format!("HTTP {status}: {text}"),
        },
        // 408: the request timed out on the server's side; nothing wrong with the batch.
        408 => Outcome::Retry {
            kind: ErrorKind::Unavailable,
            after,
            detail: format!("HTTP {status}: {text}"),
        },
        400..=499 => Outcome::Rejected {
            status,
            message: text,
        },
        _ => Outcome::Retry {
            kind: ErrorKind::Unavailable,
            after,
            detail: format!("HTTP {status}: {text}"),
        },
    }
}

/// The line a refusal is about: InfluxDB names it as `line N` (1-based) in its message;
/// without that, the batch's first line.
pub fn offending_line(gzip_body: &[u8], message: &str) -> String {
    let mut text = String::new();
    let _ = flate2::read::GzDecoder::new(gzip_body).read_to_string(&mut text);
    let n = message
        .match_indices("line ")
        .find_map(|(i, m)| {
            let digits: String = message[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            digits.parse::<usize>().ok()
        })
        .unwrap_or(1);
    let line = text.lines().nth(n.saturating_sub(1)).unwrap_or_default();
    let mut line = line.to_string();
    line.truncate(line.floor_char_boundary_compat(2048));
    line
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorCharBoundary for String {
    fn floor_char_boundary_compat(&self, i: usize) -> usize {
        if i >= self.len() {
            return self.len();
        }
        (0..=i)
            .rev()
            .find(|&j| self.is_char_boundary(j))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn statuses_map_to_keep_retry_or_drop() {
        assert_eq!(classify(204, None, String::new()), Outcome::Written);
        assert!(matches!(
            classify(401, None, String::new()),
            Outcome::Retry {
                kind: ErrorKind::Auth,
                ..
            }
        ));
        assert!(matches!(
            classify(403, None, String::new()),
            Outcome::Retry {
                kind: ErrorKind::Auth,
                ..
            }
        ));
        assert!(matches!(
            classify(429, Some(Duration::from_secs(3)), String::new()),
            Outcome::Retry { kind: ErrorKind::RateLimited, after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        for s in [500, 502, 503, 504] {
            assert!(matches!(
                classify(s, None, String::new()),
                Outcome::Retry {
                    kind: ErrorKind::Unavailable,
                    ..
                }
            ));
        }
        for s in [400, 404, 413, 422] {
            assert!(matches!(
                classify(s, None, "x".into()),
                Outcome::Rejected { status, .. } if status == s
            ));
        }
    }

    #[test]
    fn the_offending_line_is_the_one_influxdb_names() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"a v=1 1\nb v=oops 2\nc v=3 3\n").unwrap();
        let body = gz.finish().unwrap();
        assert_eq!(
            offending_line(&body, "unable to parse points: line 2: invalid field"),
            "b v=oops 2"
        );
        assert_eq!(offending_line(&body, "no line number"), "a v=1 1");
    }

    #[test]
    fn the_write_url_carries_org_bucket_and_ms_precision() {
        let c = Client::new(
            "http://127.0.0.1:8086/",
            "dc ops",
            "fire&break",
            Some("tok\n"),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            c.write_url.as_str(),
            "http://127.0.0.1:8086/api/v2/write?org=dc+ops&bucket=fire%26break&precision=ms"
        );
        assert_eq!(c.auth.as_deref(), Some("Token tok"));
        assert!(Client::new("ftp://x", "o", "b", None, Duration::from_secs(1)).is_err());
    }
}
