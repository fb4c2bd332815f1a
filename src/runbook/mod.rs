//! Runbooks: the steps that move a zone's services out, run once per incident, each one
//! verified. One folder per step type under `steps/`; this file runs them in order with
//! timeouts, retries and `on_failure`, and reports each step to the event log.

pub mod steps;

use crate::config::{Config, OnFailure, Step};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Dns(#[from] crate::dns::DnsError),
    #[error("cannot read secret file {path}: {source}")]
    Secret {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Command(String),
    #[error("{0}")]
    Http(String),
    #[error("{detail}")]
    HttpStatus { status: u16, detail: String },
    #[error("MQTT: {0}")]
    Mqtt(String),
    /// Could not talk to a Modbus device (connect, timeout, transport).
    #[error("Modbus: {0}")]
    Modbus(String),
    /// A Modbus device answered with an exception: it said no.
    #[error("{device}: {request} refused with Modbus exception {code:#04x} ({name})")]
    ModbusException {
        /// The step's source.
        device: String,
        request: String,
        code: u8,
        name: &'static str,
        retryable: bool,
    },
    /// `[cluster]`: a newer leader's fencing revision is in place; this one is deposed.
    #[error("fenced: {0}")]
    Fenced(String),
    #[error("step interrupted by an agent restart and not idempotent: not run again")]
    Interrupted,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("not verified: {0}")]
    NotVerified(String),
    #[error("step type `{0}` is not implemented in this build yet")]
    Unsupported(&'static str),
    /// A step type's own failure, for types that need no variant of their own.
    #[error("{message}")]
    Failed { message: String, retryable: bool },
}

impl StepError {
    /// Whether trying again may help (a wrong key or a refused update will not).
    pub fn is_retryable(&self) -> bool {
        match self {
            StepError::Dns(e) => e.is_retryable(),
            StepError::Timeout(_)
            | StepError::NotVerified(_)
            | StepError::Http(_)
            | StepError::Mqtt(_)
            | StepError::Modbus(_) => true,
            StepError::ModbusException { retryable, .. } => *retryable,
            // 5xx and 429 may pass; other statuses are the receiver saying no.
            StepError::HttpStatus { status, .. } => *status >= 500 || *status == 429,
            // A command's failure is its own business; running it again is for `retries`
            // only when the operator said it is idempotent.
            StepError::Command(_) => true,
            StepError::Failed { retryable, .. } => *retryable,
            StepError::Secret { .. }
            | StepError::Unsupported(_)
            | StepError::Interrupted
            | StepError::Fenced(_) => false,
        }
    }
}

/// What a step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// The change was checked by reading it back from the target.
    pub verified: bool,
    pub detail: String,
}

/// Values templates may use: `{{agent}} {{zone}} {{level}} {{incident}} {{cause}} {{runbook}}`.
#[derive(Debug, Clone)]
pub struct TemplateVars {
    pub agent: String,
    pub zone: String,
    pub level: String,
    pub incident: String,
    pub cause: String,
    pub runbook: String,
}

impl TemplateVars {
    pub fn render(&self, text: &str) -> String {
        text.replace("{{agent}}", &self.agent)
            .replace("{{zone}}", &self.zone)
            .replace("{{level}}", &self.level)
            .replace("{{incident}}", &self.incident)
            .replace("{{cause}}", &self.cause)
            .replace("{{runbook}}", &self.runbook)
    }
}

/// What a step needs besides its own config.
pub struct StepContext<'a> {
    pub config: &'a Config,
    pub vars: &'a TemplateVars,
    pub dry_run: bool,
    /// `[cluster]`: the zone leader's fencing revision, carried by the steps that can
    /// (HTTP header, DNS prerequisite); `None` for an agent running alone.
    pub fence: Option<i64>,
    /// The running sources' Modbus connections, which `modbus_write` shares; `None` where
    /// no source runs (a drill from the command line, unit tests): the step connects on
    /// its own.
    pub modbus: Option<&'a crate::sources::modbus::Links>,
}

/// Runs one attempt of a step (its own timeout is applied by the caller).
pub async fn execute(step: &Step, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
    if step.dry_run && !ctx.dry_run {
        // A step configured `dry_run = true` stands for a system that is not there (yet):
        // it contacts nothing, says what it would do, and stays out of the verdict. A
        // drill (`[agent]` or runbook `dry_run`) instead checks every system it can reach.
        return Ok(StepOutcome {
            verified: false,
            detail: format!(
                "dry run (step configured dry_run, nothing contacted): would run {}",
                ctx.vars.render(&step.action.describe())
            ),
        });
    }
    execute_action(step, ctx).await
}

macro_rules! define_execute {
    ($($name:ident => $Variant:ident($Step:ident)),* $(,)?) => {
        /// The step's own runner (`steps/<type>/run.rs`).
        async fn execute_action(
            step: &Step,
            ctx: &StepContext<'_>,
        ) -> Result<StepOutcome, StepError> {
            match &step.action {
                $(steps::Action::$Variant(s) => steps::$name::run::execute(s, step, ctx).await,)*
            }
        }
    };
}

steps::with_step_types!(define_execute);

/// The result of a step after its retries.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub ok: bool,
    pub verified: bool,
    pub attempts: u32,
    pub elapsed: Duration,
    pub error: Option<String>,
    pub detail: Option<String>,
}

/// Runs a step with its timeout and up to `retries` more attempts (exponential backoff
/// from 200 ms), stopping early on errors that retrying cannot fix.
pub async fn run_step(step: &Step, ctx: &StepContext<'_>) -> StepReport {
    with_retries(step, "runbook step failed", || execute(step, ctx)).await
}

/// Ends what a step left open for its incident, when the incident ends (operator reset,
/// a prepare undone): the page of an `alertmanager` or `pagerduty` step is resolved, with
/// the step's timeout and retries. `None` for the step types that leave nothing open
/// (`StepInfo::resolves_with_incident`).
pub async fn resolve_step(step: &Step, ctx: &StepContext<'_>) -> Option<StepReport> {
    if !step.action.info().resolves_with_incident() {
        return None;
    }
    Some(
        with_retries(step, "resolving a page failed", || {
            resolve_action(step, ctx)
        })
        .await,
    )
}

async fn resolve_action(step: &Step, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
    match &step.action {
        steps::Action::Alertmanager(a) => {
            steps::alertmanager::run::execute_resolve(a, step, ctx).await
        }
        steps::Action::Pagerduty(p) => steps::pagerduty::run::execute_resolve(p, step, ctx).await,
        other => Err(StepError::Unsupported(other.type_name())),
    }
}

/// One attempt after another within the step's timeout, as `run_step` describes.
async fn with_retries<F, Fut>(step: &Step, what: &'static str, mut attempt: F) -> StepReport
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<StepOutcome, StepError>>,
{
    let started = crate::clock::now();
    let mut backoff = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = match tokio::time::timeout(step.timeout, attempt()).await {
            Ok(r) => r,
            Err(_) => Err(StepError::Timeout(step.timeout)),
        };
        match result {
            Ok(o) => {
                return StepReport {
                    ok: true,
                    verified: o.verified,
                    attempts,
                    elapsed: started.elapsed(),
                    error: None,
                    detail: Some(o.detail),
                }
            }
            Err(e) => {
                let last = attempts > step.retries || !e.is_retryable();
                tracing::warn!(step = %step.name, attempt = attempts, error = %e, final_attempt = last, "{}", what);
                if last {
                    return StepReport {
                        ok: false,
                        verified: false,
                        attempts,
                        elapsed: started.elapsed(),
                        error: Some(e.to_string()),
                        detail: None,
                    };
                }
                crate::clock::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Whether a failed step ends the runbook.
pub fn aborts(step: &Step, report: &StepReport) -> bool {
    !report.ok && step.on_failure == OnFailure::Abort
}

#[cfg(test)]
mod dry_run_step_tests {
    use super::*;

    pub(super) const CONFIG: &str = r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-unit"

[[sources]]
name = "env"
type = "modbus"
url = "tcp://127.0.0.1:1502"
unit = 1

[[sensors]]
id = "t1"
zone = "z"
kind = "temperature"
source = "env"
register = { table = "input", address = 0, type = "i16" }

[[zones]]
id = "z"
runbook = "r"

[[runbooks]]
name = "r"

[[runbooks.steps]]
name = "move dns"
type = "dns_update"
server = "127.0.0.1:9"
zone = "example.test"
record = "app.example.test"
rtype = "A"
ttl = 30
values = ["198.51.100.20"]
timeout = "1s"
dry_run = true
"#;

    #[tokio::test]
    async fn a_step_configured_dry_run_contacts_nothing_and_says_what_it_would_do() {
        let config = crate::config::load_str(CONFIG, "unit", Default::default())
            .expect("valid")
            .config;
        let step = &config.runbooks[0].steps[0];
        assert!(step.dry_run);
        let vars = TemplateVars {
            zone: "z".into(),
            incident: "z-1".into(),
            level: "critical".into(),
            cause: "fire".into(),
            agent: "t".into(),
            runbook: "r".into(),
        };
        let ctx = StepContext {
            config: &config,
            vars: &vars,
            dry_run: false,
            fence: None,
            modbus: None,
        };
        // Nothing listens on port 9: any contact would fail the step.
        let out = execute(step, &ctx).await.expect("a rehearsal cannot fail");
        assert!(!out.verified);
        assert_eq!(
            out.detail,
            "dry run (step configured dry_run, nothing contacted): would run \
             dns_update app.example.test A -> 198.51.100.20 @ 127.0.0.1:9 (unsigned)"
        );
    }
}

/// Timeouts, retries and backoff on paused time: the durations are exact, not measured.
#[cfg(test)]
mod timing_tests {
    use super::*;
    use crate::config::Priority;
    use crate::runbook::steps::{Action, WaitStep};

    fn wait_step(wait: Duration, timeout: Duration, retries: u32) -> Step {
        Step {
            name: "drain".into(),
            timeout,
            retries,
            on_failure: OnFailure::Abort,
            priority: Priority::Must,
            dry_run: false,
            action: Action::Wait(WaitStep { duration: wait }),
        }
    }

    async fn run(step: &Step) -> StepReport {
        let config =
            crate::config::load_str(dry_run_step_tests::CONFIG, "unit", Default::default())
                .expect("valid")
                .config;
        let vars = TemplateVars {
            zone: "z".into(),
            incident: "z-1".into(),
            level: "critical".into(),
            cause: "fire".into(),
            agent: "t".into(),
            runbook: "r".into(),
        };
        let ctx = StepContext {
            config: &config,
            vars: &vars,
            dry_run: false,
            fence: None,
            modbus: None,
        };
        run_step(step, &ctx).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_within_its_timeout_takes_its_own_time_once() {
        let report = run(&wait_step(
            Duration::from_secs(30),
            Duration::from_secs(31),
            2,
        ))
        .await;
        assert!(report.ok, "{report:?}");
        assert_eq!(report.attempts, 1);
        assert_eq!(report.elapsed, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_that_outlasts_its_timeout_is_retried_after_200_then_400_ms_and_reported() {
        let report = run(&wait_step(
            Duration::from_secs(60),
            Duration::from_secs(1),
            2,
        ))
        .await;
        assert!(!report.ok);
        assert_eq!(report.attempts, 3);
        assert_eq!(report.error.as_deref(), Some("timed out after 1s"));
        // Three attempts of 1 s, and the pauses between them.
        assert_eq!(report.elapsed, Duration::from_millis(3_000 + 200 + 400));
        assert!(aborts(
            &wait_step(Duration::ZERO, Duration::ZERO, 0),
            &report
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pause_between_retries_doubles_up_to_ten_seconds() {
        let report = run(&wait_step(
            Duration::from_secs(60),
            Duration::from_secs(1),
            8,
        ))
        .await;
        assert_eq!(report.attempts, 9);
        // 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 6.4 + 10 + 10 s of pauses, 9 attempts of 1 s.
        assert_eq!(report.elapsed, Duration::from_millis(32_600 + 9_000));
    }
}
