//! `http`: call a webhook or API (templated URL, headers and body, an Idempotency-Key,
//! expected statuses). Runner: `run.rs`.

use super::{check_template, Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub mod run;

/// The keys of an `http` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub method: Option<String>,
    pub url: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<String>,
    pub expect_status: Option<Vec<i64>>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HttpStep {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub expect_status: Vec<u16>,
    pub ca_file: Option<PathBuf>,
}

impl StepInfo for HttpStep {
    fn describe(&self) -> String {
        format!("http {} {}", self.method, self.url)
    }
}

impl StepConfig for HttpStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, _refs: &Refs) -> Option<Self> {
        let method = s
            .method
            .clone()
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&method.as_str()) {
            c.err(
                format!("{path}.method"),
                format!("unsupported method `{method}` (GET, POST, PUT, PATCH, DELETE, HEAD)"),
            );
        }
        let url = c
            .required_str(&format!("{path}.url"), &s.url)
            .and_then(|u| {
                check_template(c, &format!("{path}.url"), u);
                let probe = u.replace("{{", "x").replace("}}", "x");
                match url::Url::parse(&probe) {
                    Ok(p) if p.scheme() == "http" || p.scheme() == "https" => Some(u.to_string()),
                    Ok(p) => {
                        c.err(
                            format!("{path}.url"),
                            format!("`{u}`: scheme `{}` is not http or https", p.scheme()),
                        );
                        None
                    }
                    Err(e) => {
                        c.err(format!("{path}.url"), format!("`{u}` is not a URL: {e}"));
                        None
                    }
                }
            });
        let mut headers = Vec::new();
        for (k, v) in s.headers.iter().flatten() {
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
            {
                c.err(
                    format!("{path}.headers"),
                    format!("`{k}` is not a valid header name"),
                );
            }
            check_template(c, &format!("{path}.headers.{k}"), v);
            headers.push((k.clone(), v.clone()));
        }
        if let Some(b) = &s.body {
            check_template(c, &format!("{path}.body"), b);
        }
        let expect_status = match &s.expect_status {
            None => (200..300).collect(),
            Some(v) => {
                let mut out = Vec::new();
                for (i, code) in v.iter().enumerate() {
                    if (100..=599).contains(code) {
                        out.push(*code as u16);
                    } else {
                        c.err(
                            format!("{path}.expect_status[{i}]"),
                            format!("{code} is not an HTTP status (100 to 599)"),
                        );
                    }
                }
                out
            }
        };
        Some(HttpStep {
            method,
            url: url?,
            headers,
            body: s.body,
            expect_status,
            ca_file: s.ca_file.as_deref().map(PathBuf::from),
        })
    }
}
