//! The `powerdns` step: read the RRset through the API (GET), refuse when `only_if` no
//! longer holds, replace it (PATCH, `changetype: REPLACE`), then query the DNS servers
//! until they answer the new RRset.
//!
//! Design: `only_if` is checked by a GET before the PATCH, and the PowerDNS API has no
//! compare-and-set (no ETag, no If-Match, no prerequisite in a PATCH): a change made by
//! someone else between the two requests is overwritten. The window is one round trip;
//! the step narrows it no further and the README says so. `dns_update`'s `prerequisite`
//! is atomic (RFC 2136 prerequisites are checked by the server with the update).

use super::content::{from_content, to_content};
use super::{absolute, PowerDnsStep};
use crate::config::Step;
use crate::dns;
use crate::runbook::{StepContext, StepError, StepOutcome};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The parts of a zone document the step reads (`GET .../zones/{zone}`).
#[derive(Debug, Deserialize)]
struct Zone {
    #[serde(default)]
    rrsets: Vec<RrSet>,
}

#[derive(Debug, Deserialize)]
struct RrSet {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    ttl: Option<u32>,
    #[serde(default)]
    records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
struct Record {
    content: String,
    #[serde(default)]
    disabled: bool,
}

/// PowerDNS's error document (`{"error": "..."}`).
#[derive(Debug, Deserialize)]
struct ApiError {
    error: String,
}

/// The RRset as the API holds it: normalised values of its enabled records, and its TTL.
#[derive(Debug, Clone, PartialEq)]
struct Current {
    values: Vec<String>,
    ttl: Option<u32>,
}

impl Current {
    fn show(&self) -> String {
        match self.ttl {
            Some(ttl) if !self.values.is_empty() => {
                format!("[{}] (ttl {ttl})", self.values.join(", "))
            }
            _ => "no such RRset".to_string(),
        }
    }
}

struct Api<'a> {
    step: &'a PowerDnsStep,
    client: reqwest::Client,
    key: String,
}

impl<'a> Api<'a> {
    fn new(step: &'a PowerDnsStep, timeout: Duration) -> Result<Api<'a>, StepError> {
        let text = std::fs::read_to_string(&step.api_key_file).map_err(|source| {
            StepError::Secret {
                path: step.api_key_file.display().to_string(),
                source,
            }
        })?;
        let key = text.trim().to_string();
        if key.is_empty() {
            return Err(StepError::Failed {
                message: format!("api_key_file {} is empty", step.api_key_file.display()),
                retryable: false,
            });
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StepError::Http(format!("HTTP client: {e}")))?;
        Ok(Api { step, client, key })
    }

    /// `{url}/api/v1/servers/{server_id}` and the `zones/{zone}` below it, each name one
    /// path segment (percent-encoded as needed).
    fn server_url(&self) -> url::Url {
        let mut u = self.step.url.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty()
                .extend(["api", "v1", "servers", &self.step.server_id]);
        }
        u
    }

    fn zone_url(&self) -> url::Url {
        let mut u = self.server_url();
        if let Ok(mut p) = u.path_segments_mut() {
            p.extend(["zones", &absolute(&self.step.zone)]);
        }
        u
    }

    fn request(&self, method: reqwest::Method, url: url::Url) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .header("X-API-Key", &self.key)
            .header("Accept", "application/json")
    }

    async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, StepError> {
        req.send().await.map_err(|e| {
            // reqwest's own message names the URL; the cause (refused, timed out) is below.
            let mut cause = String::new();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                cause = s.to_string();
                source = s.source();
            }
            if e.is_timeout() {
                cause = "timed out".into();
            }
            StepError::Http(format!(
                "cannot reach the PowerDNS API at {} ({what}): {}",
                self.step.url.as_str().trim_end_matches('/'),
                if cause.is_empty() { e.to_string() } else { cause }
            ))
        })
    }

    /// The RRset the API holds now.
    async fn current(&self) -> Result<Current, StepError> {
        let mut url = self.zone_url();
        // Filters PowerDNS 4.8 understands; older servers return the whole zone, which is
        // filtered below either way.
        url.query_pairs_mut()
            .append_pair("rrset_name", &absolute(&self.step.record))
            .append_pair("rrset_type", self.step.rtype.as_str());
        let resp = self
            .send("GET zone", self.request(reqwest::Method::GET, url))
            .await?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(self.refused("GET", status, resp).await);
        }
        let zone: Zone = resp.json().await.map_err(|e| StepError::Failed {
            message: format!("PowerDNS answered the zone with a document this step cannot read: {e}"),
            retryable: true,
        })?;
        let name = absolute(&self.step.record);
        let kind = self.step.rtype;
        let rrset = zone
            .rrsets
            .iter()
            .find(|r| absolute(&r.name) == name && r.rtype.eq_ignore_ascii_case(kind.as_str()));
        let Some(rrset) = rrset else {
            return Ok(Current {
                values: Vec::new(),
                ttl: None,
            });
        };
        let contents: Vec<String> = rrset
            .records
            .iter()
            .filter(|r| !r.disabled)
            .map(|r| from_content(kind, &r.content))
            .collect();
        let values = dns::normalise_values(kind, &contents).map_err(|e| StepError::Failed {
            message: format!("PowerDNS holds {name} {kind} values this step cannot read: {e}"),
            retryable: false,
        })?;
        Ok(Current {
            values,
            ttl: rrset.ttl,
        })
    }

    /// Replaces the RRset with `values` (normalised) and the step's TTL.
    async fn replace(&self, values: &[String]) -> Result<(), StepError> {
        let kind = self.step.rtype;
        let body = serde_json::json!({
            "rrsets": [{
                "name": absolute(&self.step.record),
                "type": kind.as_str(),
                "ttl": self.step.ttl,
                "changetype": "REPLACE",
                "records": values
                    .iter()
                    .map(|v| serde_json::json!({"content": to_content(kind, v), "disabled": false}))
                    .collect::<Vec<_>>(),
            }]
        });
        let req = self
            .request(reqwest::Method::PATCH, self.zone_url())
            .json(&body);
        let resp = self.send("PATCH zone", req).await?;
        let status = resp.status().as_u16();
        // 204 No Content; 200 from servers that return the zone.
        if status == 204 || status == 200 {
            return Ok(());
        }
        Err(self.refused("PATCH", status, resp).await)
    }

    /// A status other than success, as a clear error: a wrong key, an unknown server or
    /// zone, PowerDNS's own words for a 422.
    async fn refused(&self, method: &str, status: u16, resp: reqwest::Response) -> StepError {
        let text = resp.text().await.unwrap_or_default();
        let said = serde_json::from_str::<ApiError>(&text)
            .map(|e| e.error)
            .unwrap_or_else(|_| text.trim().chars().take(200).collect());
        let api = self.step.url.as_str().trim_end_matches('/');
        let zone = absolute(&self.step.zone);
        let detail = match status {
            401 | 403 => format!(
                "the PowerDNS API at {api} refused the key from {} ({status} {said}): it must \
                 be the server's `api-key`",
                self.step.api_key_file.display()
            ),
            404 => {
                if self.server_known().await == Some(false) {
                    format!(
                        "the PowerDNS API at {api} has no server `{}` (404; PowerDNS \
                         Authoritative's is `localhost`)",
                        self.step.server_id
                    )
                } else {
                    format!(
                        "the PowerDNS API at {api} has no zone `{zone}` on server `{}` (404)",
                        self.step.server_id
                    )
                }
            }
            422 => format!(
                "PowerDNS refused the change of {} {} in zone {zone} (422): {said}",
                absolute(&self.step.record),
                self.step.rtype
            ),
            _ => format!("{method} {} -> {status}: {said}", self.zone_url()),
        };
        StepError::HttpStatus { status, detail }
    }

    /// Whether the server id exists (`None` when that cannot be told).
    async fn server_known(&self) -> Option<bool> {
        let resp = self
            .request(reqwest::Method::GET, self.server_url())
            .send()
            .await
            .ok()?;
        match resp.status().as_u16() {
            200 => Some(true),
            404 => Some(false),
            _ => None,
        }
    }
}

/// What `server` answers for the record now (normalised values).
async fn answers(
    step: &PowerDnsStep,
    server: SocketAddr,
    timeout: Duration,
) -> Result<Vec<String>, StepError> {
    Ok(dns::query_rrset(server, &step.record, step.rtype, timeout).await?)
}

fn servers(step: &PowerDnsStep) -> impl Iterator<Item = SocketAddr> + '_ {
    std::iter::once(step.verify_server).chain(step.verify_servers.iter().copied())
}

pub async fn run(
    step: &PowerDnsStep,
    timeout: Duration,
    dry_run: bool,
) -> Result<StepOutcome, StepError> {
    let started = crate::clock::now();
    // One exchange gets a fraction of the step's time, so a lost datagram or a slow
    // answer leaves room for another try within the step.
    let exchange = (timeout / 3).max(Duration::from_millis(200));
    let api = Api::new(step, exchange)?;
    let kind = step.rtype;
    let want = dns::normalise_values(kind, &step.values)?;
    let only_if = step
        .only_if
        .as_deref()
        .map(|v| dns::normalise_values(kind, v))
        .transpose()?;
    let target = format!(
        "{} {} -> [{}] (ttl {}) in zone {}",
        absolute(&step.record),
        kind,
        want.join(", "),
        step.ttl,
        absolute(&step.zone)
    );
    let current = api.current().await?;
    let in_place = current.values == want && current.ttl == Some(step.ttl);
    let prerequisite_fails = !in_place && only_if.as_ref().is_some_and(|o| *o != current.values);
    let refusal = || {
        format!(
            "only_if: {} {} holds {}, not [{}] as expected: someone else changed it; nothing \
             was changed",
            absolute(&step.record),
            kind,
            current.show(),
            only_if.as_deref().unwrap_or_default().join(", ")
        )
    };
    if dry_run {
        let mut detail = format!(
            "dry run: would replace {target}; PowerDNS holds {}",
            current.show()
        );
        for server in servers(step) {
            let got = answers(step, server, exchange).await?;
            detail.push_str(&format!("; {server} answers [{}]", got.join(", ")));
        }
        if prerequisite_fails {
            return Err(StepError::Failed {
                message: format!("{detail}; would refuse: {}", refusal()),
                retryable: false,
            });
        }
        return Ok(StepOutcome {
            verified: false,
            detail,
        });
    }
    if prerequisite_fails {
        return Err(StepError::Failed {
            message: refusal(),
            retryable: false,
        });
    }
    // Already in place (a run again after a restart, or an undo of nothing): no PATCH.
    if !in_place {
        api.replace(&want).await?;
    }
    // Verify until 9/10 of the step's time, so that a failure says what was last seen
    // rather than the engine's bare timeout.
    let deadline = started + timeout.mul_f64(0.9);
    for server in servers(step) {
        let spec = step.spec(server, exchange);
        let mut delay = Duration::from_millis(50);
        loop {
            let last = match dns::verify(&spec).await {
                Ok(true) => break,
                Ok(false) => match answers(step, server, exchange).await {
                    Ok(got) => format!("answers [{}]", got.join(", ")),
                    Err(e) => e.to_string(),
                },
                Err(e) if !e.is_retryable() => return Err(e.into()),
                Err(e) => e.to_string(),
            };
            if crate::clock::now() + delay >= deadline {
                return Err(StepError::NotVerified(format!(
                    "PowerDNS took {target}, but {server} {last} (with ttl {} expected)",
                    step.ttl
                )));
            }
            crate::clock::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }
    let checked: Vec<String> = servers(step).map(|s| s.to_string()).collect();
    Ok(StepOutcome {
        verified: true,
        detail: format!(
            "{}: {target}; answered by {}",
            if in_place {
                "already in place"
            } else {
                "replaced and verified"
            },
            checked.join(", ")
        ),
    })
}

/// The step engine's entry.
pub async fn execute(
    p: &PowerDnsStep,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    run(p, step.timeout, ctx.dry_run).await
}
