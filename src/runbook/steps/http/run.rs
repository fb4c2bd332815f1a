//! The `http` step: a webhook call with a templated body, an `Idempotency-Key` so a
//! receiver can drop a repeat (incident + step), and the expected status codes.

use super::HttpStep;
use crate::config::Step;
use crate::runbook::{StepContext, StepError, StepOutcome, TemplateVars};
use std::path::Path;
use std::time::Duration;

/// An HTTP client for one step attempt: the step's time limit, a few redirects, the system
/// roots plus `ca_file` (PEM) when given. Shared by the step types that speak HTTP.
pub fn client(ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, StepError> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3));
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| StepError::Http(format!("cannot read ca_file {}: {e}", ca.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| StepError::Http(format!("ca_file {}: {e}", ca.display())))?;
        b = b.add_root_certificate(cert);
    }
    b.build()
        .map_err(|e| StepError::Http(format!("HTTP client: {e}")))
}

pub fn idempotency_key(vars: &TemplateVars, step_name: &str) -> String {
    format!("{}/{}", vars.incident, step_name)
}

pub async fn run(
    step: &HttpStep,
    step_name: &str,
    vars: &TemplateVars,
    timeout: Duration,
    dry_run: bool,
) -> Result<StepOutcome, StepError> {
    run_fenced(step, step_name, vars, timeout, dry_run, None).await
}

/// Header carrying a clustered leader's fencing revision (`[cluster]`): a receiver that
/// remembers the highest one it has seen can refuse a deposed leader's late request.
pub const FENCE_HEADER: &str = "Firebreak-Fence";

/// As `run`; with `fence` (the zone leader's etcd revision) sent in `Firebreak-Fence`.
pub async fn run_fenced(
    step: &HttpStep,
    step_name: &str,
    vars: &TemplateVars,
    timeout: Duration,
    dry_run: bool,
    fence: Option<i64>,
) -> Result<StepOutcome, StepError> {
    let url = vars.render(&step.url);
    let client = client(step.ca_file.as_deref(), timeout)?;
    if dry_run {
        // Reachability only: any HTTP answer to HEAD proves the endpoint is there.
        let resp = client
            .head(&url)
            .send()
            .await
            .map_err(|e| StepError::Http(format!("{url} unreachable: {e}")))?;
        return Ok(StepOutcome {
            verified: false,
            detail: format!(
                "dry run: would {} {url}; endpoint answers ({})",
                step.method,
                resp.status()
            ),
        });
    }
    let method = reqwest::Method::from_bytes(step.method.as_bytes())
        .map_err(|e| StepError::Http(e.to_string()))?;
    let mut req = client.request(method, &url);
    let mut has_key = false;
    for (k, v) in &step.headers {
        has_key |= k.eq_ignore_ascii_case("idempotency-key");
        req = req.header(k, vars.render(v));
    }
    if !has_key {
        req = req.header("Idempotency-Key", idempotency_key(vars, step_name));
    }
    if let Some(f) = fence {
        req = req.header(FENCE_HEADER, f.to_string());
    }
    if let Some(body) = &step.body {
        req = req.body(vars.render(body));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| StepError::Http(format!("{} {url}: {e}", step.method)))?;
    let status = resp.status().as_u16();
    if step.expect_status.contains(&status) {
        Ok(StepOutcome {
            verified: true,
            detail: format!("{} {url} -> {status}", step.method),
        })
    } else {
        let text = resp.text().await.unwrap_or_default();
        let snippet: String = text.chars().take(200).collect();
        Err(StepError::HttpStatus {
            status,
            detail: format!(
                "{} {url} -> {status} (expected {:?}): {snippet}",
                step.method, step.expect_status
            ),
        })
    }
}

/// The step engine's entry.
pub async fn execute(
    h: &HttpStep,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    run_fenced(h, &step.name, ctx.vars, step.timeout, ctx.dry_run, ctx.fence).await
}
