//! Runs a `wait` step.

use super::WaitStep;
use crate::config::units::format_duration;
use crate::config::Step;
use crate::runbook::{StepContext, StepError, StepOutcome};

pub async fn execute(
    w: &WaitStep,
    _step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    if !ctx.dry_run {
        crate::clock::sleep(w.duration).await;
    }
    Ok(StepOutcome {
        verified: !ctx.dry_run,
        detail: format!(
            "{} {}",
            if ctx.dry_run {
                "dry run: would wait"
            } else {
                "waited"
            },
            format_duration(w.duration)
        ),
    })
}
