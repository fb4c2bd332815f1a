//! `powerdns`: replace one RRset through the PowerDNS Authoritative HTTP API (a PATCH
//! with `changetype: REPLACE`), optionally only while it still holds the old values, then
//! query `verify_server` (and `verify_servers`) over DNS until they answer the new
//! RRset. Runner: `run.rs`; how values are written in the API: `content.rs`.

use super::dns_update::{parse_dns_server, rrset_keys, RrsetKeys};
use super::{Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use crate::dns::{self, RecordKind, UpdateSpec};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub mod content;
pub mod run;

/// The keys of a `powerdns` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub url: Option<String>,
    pub server_id: Option<String>,
    pub api_key_file: Option<String>,
    pub zone: Option<String>,
    pub record: Option<String>,
    pub rtype: Option<String>,
    pub ttl: Option<i64>,
    pub values: Option<Vec<String>>,
    pub only_if: Option<Vec<String>>,
    pub verify_server: Option<String>,
    pub verify_servers: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct PowerDnsStep {
    /// The API's base URL (`http://10.20.0.54:8081`); `/api/v1/...` is appended.
    pub url: url::Url,
    pub server_id: String,
    pub api_key_file: PathBuf,
    pub zone: String,
    pub record: String,
    pub rtype: RecordKind,
    pub ttl: u32,
    pub values: Vec<String>,
    /// Only replace while the RRset holds exactly these values (empty: while it does not
    /// exist).
    pub only_if: Option<Vec<String>>,
    pub verify_server: SocketAddr,
    pub verify_servers: Vec<SocketAddr>,
}

/// A DNS name made absolute (the API wants the trailing dot) and lower-case.
pub fn absolute(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.ends_with('.') {
        n
    } else {
        format!("{n}.")
    }
}

impl PowerDnsStep {
    /// The RRset as a DNS update of `verify_server`: what the DNS module verifies against.
    pub fn spec(&self, server: SocketAddr, timeout: Duration) -> UpdateSpec {
        UpdateSpec {
            server,
            zone: self.zone.clone(),
            record: self.record.clone(),
            kind: self.rtype,
            ttl: self.ttl,
            values: self.values.clone(),
            key: None,
            timeout,
        }
    }
}

impl StepInfo for PowerDnsStep {
    fn describe(&self) -> String {
        let mut s = format!(
            "powerdns {} {} -> {} (ttl {}) via {} server {} zone {}",
            absolute(&self.record),
            self.rtype,
            self.values.join(", "),
            self.ttl,
            self.url.as_str().trim_end_matches('/'),
            self.server_id,
            absolute(&self.zone)
        );
        if let Some(old) = &self.only_if {
            s.push_str(&format!(" only if [{}]", old.join(", ")));
        }
        s.push_str(&format!("; verified @ {}", self.verify_server));
        for v in &self.verify_servers {
            s.push_str(&format!(", {v}"));
        }
        s
    }

    fn secret_files(&self) -> Vec<(&'static str, PathBuf)> {
        vec![("api_key_file", self.api_key_file.clone())]
    }
}

fn dns_server(c: &mut Collector, path: String, v: &str) -> Option<SocketAddr> {
    match parse_dns_server(v) {
        Ok(a) => Some(a),
        Err(e) => {
            c.err(path, e);
            None
        }
    }
}

impl StepConfig for PowerDnsStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, _refs: &Refs) -> Option<Self> {
        let url = c
            .required_str(&format!("{path}.url"), &s.url)
            .and_then(|u| match url::Url::parse(u) {
                Ok(p) if !matches!(p.scheme(), "http" | "https") => {
                    c.err(
                        format!("{path}.url"),
                        format!("`{u}`: scheme `{}` is not http or https", p.scheme()),
                    );
                    None
                }
                Ok(p) if p.query().is_some() || p.fragment().is_some() => {
                    c.err(
                        format!("{path}.url"),
                        format!("`{u}`: the API's base URL takes no query or fragment"),
                    );
                    None
                }
                Ok(p) => Some(p),
                Err(e) => {
                    c.err(format!("{path}.url"), format!("`{u}` is not a URL: {e}"));
                    None
                }
            });
        let server_id = s.server_id.clone().unwrap_or_else(|| "localhost".into());
        if server_id.is_empty() || server_id.contains('/') {
            c.err(
                format!("{path}.server_id"),
                format!("`{server_id}` is not a server id (PowerDNS Authoritative's is `localhost`)"),
            );
        }
        let api_key_file = c
            .required_str(&format!("{path}.api_key_file"), &s.api_key_file)
            .map(PathBuf::from);
        let RrsetKeys {
            zone,
            record,
            rtype,
            ttl,
            values,
        } = rrset_keys(c, path, &s.zone, &s.record, &s.rtype, s.ttl, &s.values);
        let verify_server = c
            .required_str(&format!("{path}.verify_server"), &s.verify_server)
            .and_then(|v| dns_server(c, format!("{path}.verify_server"), v));
        let mut verify_servers = Vec::new();
        for (i, v) in s.verify_servers.iter().flatten().enumerate() {
            if let Some(a) = dns_server(c, format!("{path}.verify_servers[{i}]"), v) {
                verify_servers.push(a);
            }
        }
        let (url, api_key_file, zone, record, rtype, values, verify_server) = (
            url?,
            api_key_file?,
            zone?,
            record?,
            rtype?,
            values?,
            verify_server?,
        );
        // The DNS module judges names and values: it is the one that verifies them.
        let mut bad = false;
        let lists = [("values", Some(&values)), ("only_if", s.only_if.as_ref())];
        for (key, list) in lists {
            for (i, v) in list.into_iter().flatten().enumerate() {
                if let Err(e) = dns::validate_value(rtype, v) {
                    c.err(format!("{path}.{key}[{i}]"), e.to_string());
                    bad = true;
                }
            }
        }
        if bad {
            return None;
        }
        let step = PowerDnsStep {
            url,
            server_id,
            api_key_file,
            zone,
            record,
            rtype,
            ttl,
            values,
            only_if: s.only_if,
            verify_server,
            verify_servers,
        };
        if let Err(e) = dns::validate(&step.spec(verify_server, Duration::from_secs(1))) {
            c.err(format!("{path}.record"), e.to_string());
            return None;
        }
        Some(step)
    }
}
