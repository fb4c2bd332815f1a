//! One configured step run through the runbook engine, for the step tests against real
//! peers (`bgp_bird`, `powerdns_api`): the step is written as TOML, loaded and validated
//! like any config, then run with its timeout and retries.

use firebreak::config::Config;
use firebreak::runbook::{run_step, StepContext, StepReport, TemplateVars};

/// A config whose runbook is the one step `step_toml` (the keys after `[[runbooks.steps]]`).
pub fn config_with_step(step_toml: &str) -> Config {
    let text = format!(
        "[agent]\nname = \"t\"\n[[zones]]\nid = \"z\"\nrunbook = \"r\"\n[[runbooks]]\n\
         name = \"r\"\n[[runbooks.steps]]\n{step_toml}\n"
    );
    match firebreak::config::load_str(&text, "step.toml", Default::default()) {
        Ok(l) => l.config,
        Err(e) => panic!("invalid step:\n{step_toml}\n{e:?}"),
    }
}

/// Runs the step (a drill when `drill`) to its end, retries included.
pub fn run(step_toml: &str, drill: bool) -> StepReport {
    let config = config_with_step(step_toml);
    let vars = TemplateVars {
        agent: "t".into(),
        zone: "z".into(),
        level: "critical".into(),
        incident: "z-1".into(),
        cause: "fire".into(),
        runbook: "r".into(),
    };
    let ctx = StepContext {
        config: &config,
        vars: &vars,
        dry_run: drill,
        fence: None,
        modbus: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run_step(&config.runbooks[0].steps[0], &ctx))
}

/// The step's one-line description (what check-config prints).
pub fn describe(step_toml: &str) -> String {
    config_with_step(step_toml).runbooks[0].steps[0]
        .action
        .describe()
}
