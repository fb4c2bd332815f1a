//! The `bgp_withdraw` step: `disable` (or `enable`) a BIRD protocol over the control
//! socket, then read back BIRD's protocol state and, with `verify_peer`, whether another
//! BIRD still holds the prefix.

use super::birdc::{self, BirdError, Birdc};
use super::{BgpAction, BgpStep};
use crate::config::Step;
use crate::runbook::{StepContext, StepError, StepOutcome};
use std::time::Duration;

/// The step engine sees a BIRD error as a step failure, retryable or not.
impl From<BirdError> for StepError {
    fn from(e: BirdError) -> Self {
        StepError::Failed {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }
    }
}

/// How the protocol reads once the action has taken effect.
fn wanted_state(action: BgpAction) -> &'static str {
    match action {
        BgpAction::Withdraw => "down",
        BgpAction::Announce => "up",
    }
}

/// Routes for `what` as a phrase: "holds 203.0.113.0/24 (1 route: ...)" or "does not
/// hold 203.0.113.0/24".
fn holding(what: impl std::fmt::Display, routes: &[String]) -> String {
    match routes {
        [] => format!("does not hold {what}"),
        [one] => format!("holds {what} (1 route: {one})"),
        [first, ..] => format!("holds {what} ({} routes, first: {first})", routes.len()),
    }
}

/// The routes `verify_peer` holds for the prefix (from `verify_from` only, when set).
async fn peer_routes(step: &BgpStep, exchange: Duration) -> Result<Vec<String>, BirdError> {
    let Some(peer) = &step.verify_peer else {
        return Ok(Vec::new());
    };
    let mut bird = Birdc::connect(peer, exchange).await?;
    bird.routes(step.prefix, step.verify_from).await
}

fn peer_name(step: &BgpStep) -> String {
    let peer = step.verify_peer.as_deref().map(birdc::url).unwrap_or_default();
    match step.verify_from {
        Some(from) => format!("{peer} (routes from {from})"),
        None => peer,
    }
}

pub async fn run(
    step: &BgpStep,
    timeout: Duration,
    dry_run: bool,
) -> Result<StepOutcome, StepError> {
    let started = crate::clock::now();
    // One exchange gets a fraction of the step's time, so a slow answer leaves room for
    // the read-back (and its report) within the step.
    let exchange = (timeout / 3).max(Duration::from_millis(200));
    let mut bird = Birdc::connect(&step.socket, exchange).await?;
    let socket = birdc::url(&step.socket);
    // Also how an unknown protocol is found before anything is changed.
    let before = bird.protocol_state(&step.protocol).await?;
    let verb = match step.action {
        BgpAction::Withdraw => "disable",
        BgpAction::Announce => "enable",
    };
    if dry_run {
        let here = bird.routes(step.prefix, None).await?;
        let mut detail = format!(
            "dry run: would {verb} protocol {} on {socket} (now {before}); this BIRD {}",
            step.protocol,
            holding(step.prefix, &here)
        );
        if step.verify_peer.is_some() {
            let there = peer_routes(step, exchange).await?;
            detail.push_str(&format!(
                "; {} {}",
                peer_name(step),
                holding(step.prefix, &there)
            ));
        }
        return Ok(StepOutcome {
            verified: false,
            detail,
        });
    }
    let changed = bird
        .set_enabled(&step.protocol, step.action == BgpAction::Announce)
        .await?;
    // Verify until 9/10 of the step's time, so that a failure says what was last seen
    // rather than the engine's bare timeout.
    let deadline = started + timeout.mul_f64(0.9);
    let want = wanted_state(step.action);
    let mut delay = Duration::from_millis(50);
    let (state, peer) = loop {
        let state = bird.protocol_state(&step.protocol).await?;
        let mut last = format!(
            "protocol {} on {socket} is {state}, not {want} yet",
            step.protocol
        );
        if state.state == want {
            if step.verify_peer.is_none() {
                break (state, None);
            }
            match peer_routes(step, exchange).await {
                Ok(routes) => {
                    let done = match step.action {
                        BgpAction::Withdraw => routes.is_empty(),
                        BgpAction::Announce => !routes.is_empty(),
                    };
                    if done {
                        break (state, Some(routes));
                    }
                    last = format!(
                        "protocol {} is {state}, but {} {}",
                        step.protocol,
                        peer_name(step),
                        match step.action {
                            BgpAction::Withdraw => format!("still {}", holding("it", &routes)),
                            BgpAction::Announce => "has not learned it again".to_string(),
                        }
                    );
                }
                Err(e) if !e.is_retryable() => return Err(e.into()),
                Err(e) => last = format!("protocol {} is {state}, but {e}", step.protocol),
            }
        }
        if crate::clock::now() + delay >= deadline {
            return Err(StepError::NotVerified(format!(
                "{} {}: {last}",
                step.action.as_str(),
                step.prefix
            )));
        }
        crate::clock::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    };
    let done = match (step.action, changed) {
        (BgpAction::Withdraw, true) => "disabled",
        (BgpAction::Withdraw, false) => "already disabled",
        (BgpAction::Announce, true) => "enabled",
        (BgpAction::Announce, false) => "already enabled",
    };
    let mut detail = format!(
        "{} {}: protocol {} {done} on {socket}, now {state}",
        step.action.as_str(),
        step.prefix,
        step.protocol
    );
    if let Some(routes) = peer {
        detail.push_str(&format!(
            "; {} {}",
            peer_name(step),
            holding(step.prefix, &routes)
        ));
    }
    Ok(StepOutcome {
        verified: true,
        detail,
    })
}

/// The step engine's entry.
pub async fn execute(
    b: &BgpStep,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    run(b, step.timeout, ctx.dry_run).await
}
