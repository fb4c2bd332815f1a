//! The `command` step: argv run without a shell, in its own process group (killed whole on
//! timeout), with the exit code and the last lines of output reported. The child does not
//! inherit systemd's `NOTIFY_SOCKET` and watchdog variables.

use super::CommandStep;
use crate::config::Step;
use crate::runbook::{StepContext, StepError, StepOutcome, TemplateVars};
use std::process::Stdio;
use tokio::io::AsyncReadExt;

/// Lines of output kept for the event.
const TAIL_LINES: usize = 10;

/// Kills the whole process group when dropped (timeout, shutdown) unless disarmed.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join(" | ")
}

pub async fn run(
    step: &CommandStep,
    vars: &TemplateVars,
    dry_run: bool,
) -> Result<StepOutcome, StepError> {
    let argv: Vec<String> = step.argv.iter().map(|a| vars.render(a)).collect();
    let program = &argv[0];
    if dry_run {
        let path = which(program).ok_or_else(|| {
            StepError::Command(format!("`{program}` not found or not executable"))
        })?;
        return Ok(StepOutcome {
            verified: false,
            detail: format!(
                "dry run: would run {} ({} exists and is executable)",
                argv.join(" "),
                path.display()
            ),
        });
    }
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // systemd's notify socket and watchdog are the agent's alone (crate::systemd).
    for k in crate::systemd::AGENT_ONLY_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in &step.env {
        cmd.env(k, vars.render(v));
    }
    if let Some(dir) = &step.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| StepError::Command(format!("cannot start `{program}`: {e}")))?;
    let mut guard = GroupGuard(child.id().map(|p| p as i32));
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read_out = async {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s).await;
        }
        s
    };
    let read_err = async {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s).await;
        }
        s
    };
    let (out, err, status) = tokio::join!(read_out, read_err, child.wait());
    let status = status.map_err(|e| StepError::Command(format!("waiting for `{program}`: {e}")))?;
    guard.0 = None;
    let output = tail(&format!("{out}\n{err}"));
    match status.code() {
        Some(0) => Ok(StepOutcome {
            verified: true,
            detail: format!("exit 0: {output}"),
        }),
        Some(code) => Err(StepError::Command(format!(
            "`{program}` exited with {code}: {output}"
        ))),
        None => Err(StepError::Command(format!(
            "`{program}` was killed by a signal: {output}"
        ))),
    }
}

/// Resolves a program like the shell would (absolute, relative with a slash, or on PATH).
fn which(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| executable(p))
}

/// The step engine's entry.
pub async fn execute(
    c: &CommandStep,
    _step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    run(c, ctx.vars, ctx.dry_run).await
}
