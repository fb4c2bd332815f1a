//! Operator commands from the CLI: a local drill, and actions sent to a running agent.

use crate::config::Config;

/// Runs a zone's drill locally and prints the table; `Ok(true)` when every step passes.
pub async fn drill(config: &Config, zone: &str) -> Result<bool, String> {
    let zi = config
        .zones
        .iter()
        .position(|z| z.id == zone)
        .ok_or_else(|| {
            format!(
                "unknown zone `{zone}` (zones: {})",
                config
                    .zones
                    .iter()
                    .map(|z| z.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let rows = crate::incident::drill(config, zi, &format!("drill-{zone}-cli"), None).await;
    print!("{}", crate::incident::drill_table(zone, &rows));
    Ok(rows.iter().all(|r| r.ok))
}

/// POSTs `action` for `zone` to the agent's API with the configured token.
pub async fn remote(
    config: &Config,
    zone: &str,
    action: &str,
    by: Option<String>,
) -> Result<String, String> {
    let api = config
        .api
        .as_ref()
        .ok_or("the config has no [api] section: the agent serves no API")?;
    let token_file = api
        .token_file
        .as_ref()
        .ok_or("the config has no [api] token_file: operator actions are disabled")?;
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| format!("cannot read {}: {e}", token_file.display()))?;
    let host = if api.listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        api.listen.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let url = format!(
        "http://{host}:{}/api/v1/zones/{zone}/{action}",
        api.listen.port()
    );
    let mut req = reqwest::Client::new().post(&url).bearer_auth(token.trim());
    if let Some(by) = by {
        req = req
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "by": by }).to_string());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{url}: {e} (is the agent running?)"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}
