//! The `nut_fsd` step: forced shutdown of a UPS's systems through upsd, with the source's
//! credentials, on a connection of its own: `USERNAME`/`PASSWORD`, `PRIMARY` (or `MASTER`),
//! `FSD`, then `ups.status` must show `FSD`. Already set is success. A drill reads
//! `ups.status`, checks the credentials with `PRIMARY` (a permission check that changes
//! nothing without `LOGIN`) and sets nothing.

use super::NutFsdStep;
use crate::config::{NutSource, SourceSpec, Step};
use crate::runbook::{StepContext, StepError, StepOutcome};
use crate::sources::nut::client::{Client, NutError};
use crate::sources::nut::config::STATUS_VARIABLE;
use crate::sources::nut::proto::{NutCode, Status, StatusFlag};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NutFsdError {
    #[error("the source has no username and password_file")]
    NoCredentials,
    #[error("cannot read password_file {path}: {source}")]
    Password {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Nut(#[from] NutError),
    #[error("upsd answered OK FSD-SET but ups.status of {ups} reads \"{status}\"")]
    NotVerified { ups: String, status: String },
}

/// The step engine sees upsd's refusals by name; only failures to reach upsd, and a UPS
/// whose data is momentarily missing, are worth another attempt.
impl From<NutFsdError> for StepError {
    fn from(e: NutFsdError) -> Self {
        match e {
            NutFsdError::Password { path, source } => StepError::Secret {
                path: path.display().to_string(),
                source,
            },
            NutFsdError::NotVerified { .. } => StepError::NotVerified(e.to_string()),
            NutFsdError::Nut(n) => StepError::Failed {
                retryable: n.is_retryable(),
                message: n.to_string(),
            },
            NutFsdError::NoCredentials => StepError::Failed {
                retryable: false,
                message: e.to_string(),
            },
        }
    }
}

/// The user and the password (the file may be rotated between incidents: read each time).
fn credentials(src: &NutSource) -> Result<(&str, String), NutFsdError> {
    let (Some(user), Some(path)) = (&src.username, &src.password_file) else {
        return Err(NutFsdError::NoCredentials);
    };
    let text = std::fs::read_to_string(path).map_err(|source| NutFsdError::Password {
        path: path.clone(),
        source,
    })?;
    Ok((user, text.trim_end_matches(['\r', '\n']).to_string()))
}

pub async fn run(src: &NutSource, dry_run: bool) -> Result<StepOutcome, NutFsdError> {
    let (user, password) = credentials(src)?;
    let target = format!("{} @ {}", src.ups, src.upsd.url());
    let mut c = Client::connect(&src.upsd, src.timeout).await?;
    let before = c.get_var(&src.ups, STATUS_VARIABLE).await?;
    if dry_run {
        c.authenticate(user, &password).await?;
        let primary = match c.primary(&src.ups).await {
            Ok(()) => format!("user `{user}` may act as its primary"),
            Err(e) if e.code() == Some(NutCode::AccessDenied) => format!(
                "PRIMARY refused for user `{user}` (ACCESS-DENIED): FSD will be refused too \
                 unless the password is right and upsd.users gives the user `actions = FSD`"
            ),
            Err(e) => return Err(e.into()),
        };
        c.logout().await;
        return Ok(StepOutcome {
            verified: false,
            detail: format!(
                "dry run: ups.status of {target} is \"{before}\"; {primary}; would set FSD \
                 (nothing changed)"
            ),
        });
    }
    if Status::parse(&before).has(StatusFlag::Fsd) {
        c.logout().await;
        return Ok(StepOutcome {
            verified: true,
            detail: format!("FSD already set on {target} (ups.status \"{before}\")"),
        });
    }
    c.authenticate(user, &password).await?;
    // A user with `actions = FSD` but not `upsmon primary` is refused PRIMARY and may still
    // set FSD: the FSD answer decides.
    let as_primary = match c.primary(&src.ups).await {
        Ok(()) => true,
        Err(e) if e.code() == Some(NutCode::AccessDenied) => false,
        Err(e) => return Err(e.into()),
    };
    c.fsd(&src.ups).await?;
    let after = c.get_var(&src.ups, STATUS_VARIABLE).await?;
    c.logout().await;
    if !Status::parse(&after).has(StatusFlag::Fsd) {
        return Err(NutFsdError::NotVerified {
            ups: target,
            status: after,
        });
    }
    Ok(StepOutcome {
        verified: true,
        detail: format!(
            "FSD set on {target} by `{user}` ({}); ups.status \"{after}\"",
            if as_primary {
                "as its primary"
            } else {
                "with actions = FSD"
            }
        ),
    })
}

/// The step engine's entry: FSD on the step's source's UPS.
pub async fn execute(
    n: &NutFsdStep,
    _step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    match &ctx.config.sources[n.source].spec {
        SourceSpec::Nut(src) => Ok(run(src, ctx.dry_run).await?),
        _ => Err(StepError::Failed {
            retryable: false,
            message: "the step's source is not a NUT source".into(),
        }),
    }
}
