//! The `dns_update` step: replace an RRset with a TSIG-signed RFC 2136 UPDATE, then query
//! the server (and any `verify_servers`) until the new RRset answers.

use super::DnsStep;
use crate::config::Step;
use crate::runbook::{StepContext, StepError, StepOutcome};
use crate::dns::{self, TsigKey, UpdateSpec};
use std::time::Duration;

/// Reads the TSIG secret (the file may be rotated between incidents: read it each time).
fn key(step: &DnsStep) -> Result<Option<TsigKey>, StepError> {
    let Some(t) = &step.tsig else { return Ok(None) };
    let text = std::fs::read_to_string(&t.secret_file).map_err(|source| StepError::Secret {
        path: t.secret_file.display().to_string(),
        source,
    })?;
    let secret = dns::parse_tsig_secret(&text)?;
    Ok(Some(TsigKey {
        name: t.key.clone(),
        algorithm: t.algorithm,
        secret,
    }))
}

pub fn spec(step: &DnsStep, timeout: Duration) -> Result<UpdateSpec, StepError> {
    Ok(UpdateSpec {
        server: step.server,
        zone: step.zone.clone(),
        record: step.record.clone(),
        kind: step.rtype,
        ttl: step.ttl,
        values: step.values.clone(),
        key: key(step)?,
        // One network exchange gets a fraction of the step's time, so a lost datagram
        // leaves room for another try within the step.
        timeout: (timeout / 3).max(Duration::from_millis(200)),
    })
}

pub async fn run(
    step: &DnsStep,
    timeout: Duration,
    dry_run: bool,
) -> Result<StepOutcome, StepError> {
    run_fenced(step, timeout, dry_run, None).await
}

/// As `run`; with `fence` (a clustered leader's revision), the UPDATE is fenced: the
/// fencing TXT `_firebreak-fence.<record>` is read first, a newer revision there refuses
/// the step (a newer leader has acted), and the UPDATE itself compares that TXT with what
/// was read and replaces it with this revision (see `dns::send_update_fenced`).
pub async fn run_fenced(
    step: &DnsStep,
    timeout: Duration,
    dry_run: bool,
    fence: Option<i64>,
) -> Result<StepOutcome, StepError> {
    let spec = spec(step, timeout)?;
    let target = format!(
        "{} {} -> [{}] on {}",
        step.record,
        step.rtype,
        step.values.join(", "),
        step.server
    );
    if dry_run {
        // Change nothing; prove the server answers for the record...
        let current = dns::query_rrset(step.server, &step.record, step.rtype, spec.timeout).await?;
        // ...and accepts our key: a signed UPDATE whose prerequisite cannot hold. The
        // server checks the signature first (NOTAUTH/BADSIG for a wrong key), then the
        // prerequisite (NXRRSET), and applies nothing.
        let key_check = if spec.key.is_some() {
            match dns::send_update(&spec, Some(&impossible_rrset(step.rtype, &current))).await {
                Err(dns::DnsError::PrerequisiteFailed { .. }) => {
                    "; the server accepts our TSIG key"
                }
                Ok(_) => {
                    return Err(StepError::NotVerified(
                        "the server applied a dry-run UPDATE whose prerequisite could not hold"
                            .into(),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            ""
        };
        return Ok(StepOutcome {
            verified: false,
            detail: format!(
                "dry run: would replace {target}; server answers [{}] now{key_check}",
                current.join(", ")
            ),
        });
    }
    // Already in place (e.g. resumed after a crash between send and verify): nothing to send.
    let already = matches!(dns::verify(&spec).await, Ok(true));
    let fence = match fence {
        Some(rev) => Some(read_fence(&spec, step, rev).await?),
        None => None,
    };
    if !already {
        dns::send_update_fenced(&spec, step.prerequisite.as_deref(), fence.as_ref()).await?;
    }
    verify_until(&spec, step).await?;
    Ok(StepOutcome {
        verified: true,
        detail: if already {
            format!("already in place: {target}")
        } else {
            format!("updated and verified: {target}")
        },
    })
}

/// The fencing record as it is now; refuses when it holds a newer revision than `rev`.
async fn read_fence(spec: &UpdateSpec, step: &DnsStep, rev: i64) -> Result<dns::Fence, StepError> {
    let name = dns::fence_name(&step.record);
    let current = dns::query_rrset(step.server, &name, dns::RecordKind::Txt, spec.timeout)
        .await?
        .into_iter()
        .next();
    if let Some(seen) = current.as_deref().and_then(|v| v.parse::<i64>().ok()) {
        if seen > rev {
            return Err(StepError::Fenced(format!(
                "{name} holds fencing revision {seen}, newer than this leader's {rev}: a newer \
                 leader has acted; nothing sent"
            )));
        }
    }
    Ok(dns::Fence {
        name,
        current,
        new: rev.to_string(),
    })
}

/// An RRset the record cannot hold right now: the current one plus a value nobody uses.
fn impossible_rrset(kind: dns::RecordKind, current: &[String]) -> Vec<String> {
    let sentinel = match kind {
        dns::RecordKind::A => "0.0.0.0".to_string(),
        dns::RecordKind::Aaaa => "::".to_string(),
        dns::RecordKind::Cname => "firebreak-dry-run.invalid.".to_string(),
        dns::RecordKind::Txt => format!("firebreak-dry-run-{}", std::process::id()),
    };
    if kind == dns::RecordKind::Cname {
        // A CNAME holds one value: any other name cannot be there.
        return vec![sentinel];
    }
    let mut v = current.to_vec();
    v.push(sentinel);
    v
}

/// Polls each server until it answers the new RRset. The caller's step timeout bounds it.
async fn verify_until(spec: &UpdateSpec, step: &DnsStep) -> Result<(), StepError> {
    let servers = std::iter::once(step.server).chain(step.verify_servers.iter().copied());
    for server in servers {
        let mut s = spec.clone();
        s.server = server;
        let mut delay = Duration::from_millis(50);
        loop {
            match dns::verify(&s).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) if !e.is_retryable() => return Err(e.into()),
                Err(e) => tracing::debug!(%server, error = %e, "verify query failed; retrying"),
            }
            crate::clock::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
    Ok(())
}

/// The step engine's entry.
pub async fn execute(
    d: &DnsStep,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    run_fenced(d, step.timeout, ctx.dry_run, ctx.fence).await
}
