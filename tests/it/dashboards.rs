//! The Grafana dashboards are valid and consistent: unique panel ids, every panel and
//! target on a datasource variable (no hard-coded uids), units set, and every metric name
//! a Prometheus dashboard uses is one the agent exports and documents.

use std::collections::HashSet;
use std::path::Path;

fn dashboards() -> Vec<(String, serde_json::Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{} is not valid JSON: {err}", e.path().display()));
            (e.file_name().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 3,
        "room overview, agent health and the Flux room overview"
    );
    out
}

/// Metric names in a PromQL expression (histogram suffixes folded to the family).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("firebreak_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let mut name = &expr[start..end];
        for suffix in ["_bucket", "_count", "_sum"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if base.ends_with("_seconds") {
                    name = base;
                }
            }
        }
        names.push(name.to_string());
        i = end;
    }
    names
}

#[test]
fn panels_have_unique_ids_a_datasource_variable_and_units() {
    for (file, d) in dashboards() {
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 39,
            "{file}: schemaVersion"
        );
        assert!(
            d["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{file}: uid"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter()
                .any(|v| v["type"] == "datasource" && v["name"] == "datasource"),
            "{file}: a `datasource` variable"
        );
        let mut ids = HashSet::new();
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap();
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: duplicate panel id in `{title}`"
            );
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}: `{title}` hard-codes its datasource"
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{file}: a target of `{title}`"
                );
            }
            assert!(
                p["fieldConfig"]["defaults"]["unit"].as_str().is_some(),
                "{file}: `{title}` has no unit"
            );
        }
    }
}

#[test]
fn every_metric_a_dashboard_uses_is_exported_and_documented() {
    // The metrics reference: the "Prometheus metrics" table of docs/operations.md.
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let mut used = HashSet::new();
    for (file, d) in dashboards() {
        let mut exprs: Vec<String> = Vec::new();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                if let Some(e) = t["expr"].as_str() {
                    exprs.push(e.to_string());
                }
            }
        }
        for a in d["annotations"]["list"].as_array().unwrap() {
            if let Some(e) = a["expr"].as_str() {
                exprs.push(e.to_string());
            }
        }
        for e in exprs {
            for name in metric_names(&e) {
                assert!(
                    firebreak::sinks::prometheus::NAMES.contains(&name.as_str()),
                    "{file}: `{name}` is not a metric the agent exports"
                );
                assert!(
                    reference.contains(&format!("`{name}`")),
                    "{file}: `{name}` is not documented in docs/operations.md"
                );
                used.insert(name);
            }
        }
    }
    assert!(
        used.len() >= 12,
        "the dashboards cover most metrics: {used:?}"
    );
}

#[test]
fn provisioning_files_point_grafana_at_the_dashboards() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/provisioning");
    let text = std::fs::read_to_string(dir.join("dashboards.yaml")).unwrap();
    assert!(
        text.contains("type: file") && text.contains("path:"),
        "{text}"
    );
}
