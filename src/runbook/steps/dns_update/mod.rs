//! `dns_update`: replace an RRset with an RFC 2136 UPDATE (TSIG-signed when a key is
//! given), then read it back from the server and any `verify_servers`. Runner: `run.rs`.

use super::{Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use crate::dns::{self, RecordKind, TsigAlgorithm, TsigKey, UpdateSpec};
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

pub mod run;

/// The keys of a `dns_update` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub server: Option<String>,
    pub zone: Option<String>,
    pub record: Option<String>,
    pub rtype: Option<String>,
    pub ttl: Option<i64>,
    pub values: Option<Vec<String>>,
    pub prerequisite: Option<Vec<String>>,
    pub tsig_key: Option<String>,
    pub tsig_algorithm: Option<String>,
    pub tsig_secret_file: Option<String>,
    pub verify_servers: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct DnsStep {
    pub server: SocketAddr,
    pub zone: String,
    pub record: String,
    pub rtype: RecordKind,
    pub ttl: u32,
    pub values: Vec<String>,
    pub prerequisite: Option<Vec<String>>,
    pub tsig: Option<TsigRef>,
    pub verify_servers: Vec<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct TsigRef {
    pub key: String,
    pub algorithm: TsigAlgorithm,
    pub secret_file: PathBuf,
}

impl StepInfo for DnsStep {
    fn describe(&self) -> String {
        format!(
            "dns_update {} {} -> {} @ {}{}",
            self.record,
            self.rtype,
            self.values.join(", "),
            self.server,
            if self.tsig.is_some() {
                " (TSIG)"
            } else {
                " (unsigned)"
            }
        )
    }

    fn secret_files(&self) -> Vec<(&'static str, PathBuf)> {
        self.tsig
            .iter()
            .map(|t| ("tsig_secret_file", t.secret_file.clone()))
            .collect()
    }
}

impl StepConfig for DnsStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, _refs: &Refs) -> Option<Self> {
        let server = c
            .required_str(&format!("{path}.server"), &s.server)
            .and_then(|v| match parse_dns_server(v) {
                Ok(a) => Some(a),
                Err(e) => {
                    c.err(format!("{path}.server"), e);
                    None
                }
            });
        let RrsetKeys {
            zone,
            record,
            rtype,
            ttl,
            values,
        } = rrset_keys(c, path, &s.zone, &s.record, &s.rtype, s.ttl, &s.values);
        if matches!(rtype, Some(RecordKind::Cname)) && values.as_ref().is_some_and(|v| v.len() > 1)
        {
            c.err(format!("{path}.values"), "a CNAME takes exactly one value");
        }
        let tsig = match (&s.tsig_key, &s.tsig_algorithm, &s.tsig_secret_file) {
            (None, None, None) => None,
            (key, alg, file) => {
                let key = c
                    .required_str(&format!("{path}.tsig_key"), key)
                    .map(str::to_string);
                let file = c
                    .required_str(&format!("{path}.tsig_secret_file"), file)
                    .map(PathBuf::from);
                let algorithm = match alg.as_deref() {
                    None => Some(TsigAlgorithm::HmacSha256),
                    Some(a) => match a.parse::<TsigAlgorithm>() {
                        Ok(a) => Some(a),
                        Err(_) => {
                            c.err(
                                format!("{path}.tsig_algorithm"),
                                format!("unsupported algorithm `{a}` (hmac-sha256, hmac-sha384 or hmac-sha512)"),
                            );
                            None
                        }
                    },
                };
                match (key, algorithm, file) {
                    (Some(key), Some(algorithm), Some(secret_file)) => Some(TsigRef {
                        key,
                        algorithm,
                        secret_file,
                    }),
                    _ => None,
                }
            }
        };
        let mut verify_servers = Vec::new();
        for (i, v) in s.verify_servers.iter().flatten().enumerate() {
            match parse_dns_server(v) {
                Ok(a) => verify_servers.push(a),
                Err(e) => c.err(format!("{path}.verify_servers[{i}]"), e),
            }
        }
        let (server, zone, record, rtype, values) = (server?, zone?, record?, rtype?, values?);
        // Let the DNS module judge names and values: it is the one that will encode them.
        let spec = UpdateSpec {
            server,
            zone: zone.clone(),
            record: record.clone(),
            kind: rtype,
            ttl,
            values: values.clone(),
            key: tsig.as_ref().map(|t| TsigKey {
                name: t.key.clone(),
                algorithm: t.algorithm,
                secret: vec![0; 32],
            }),
            timeout: Duration::from_secs(1),
        };
        // A bad value is reported at its own key, the rest (names, zone) at `record`.
        let bad_values: Vec<(usize, dns::DnsError)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| dns::validate_value(rtype, v).err().map(|e| (i, e)))
            .collect();
        if !bad_values.is_empty() {
            for (i, e) in bad_values {
                c.err(format!("{path}.values[{i}]"), e.to_string());
            }
            return None;
        }
        if let Err(e) = dns::validate(&spec) {
            c.err(format!("{path}.record"), e.to_string());
            return None;
        }
        Some(DnsStep {
            server,
            zone,
            record,
            rtype,
            ttl,
            values,
            prerequisite: s.prerequisite,
            tsig,
            verify_servers,
        })
    }
}

/// A DNS server is an IP address with an optional port (53): the agent must not depend on
/// name resolution to reach the server that does name resolution. A name is accepted only
/// when it resolves to a loopback address (`localhost:5353`, for tests and the demo).
pub(crate) fn parse_dns_server(v: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = v.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    if let Ok(mut it) = v.to_socket_addrs() {
        if let Some(a) = it.next() {
            if a.ip().is_loopback() {
                return Ok(a);
            }
        }
    }
    Err(format!(
        "`{v}` is not an IP address with optional port (e.g. \"10.20.0.53:53\")"
    ))
}

/// The RRset keys `dns_update` and `powerdns` share (`zone`, `record`, `rtype`, `ttl`,
/// `values`), each checked and reported at `{path}.{key}`; `ttl` defaults to 30.
pub(crate) struct RrsetKeys {
    pub zone: Option<String>,
    pub record: Option<String>,
    pub rtype: Option<RecordKind>,
    pub ttl: u32,
    pub values: Option<Vec<String>>,
}

pub(crate) fn rrset_keys(
    c: &mut Collector,
    path: &str,
    zone: &Option<String>,
    record: &Option<String>,
    rtype: &Option<String>,
    ttl: Option<i64>,
    values: &Option<Vec<String>>,
) -> RrsetKeys {
        let zone = c
            .required_str(&format!("{path}.zone"), zone)
            .map(str::to_string);
        let record = c
            .required_str(&format!("{path}.record"), record)
            .map(str::to_string);
        let rtype = c
            .required_str(&format!("{path}.rtype"), rtype)
            .and_then(|t| match t.parse::<RecordKind>() {
                Ok(k) => Some(k),
                Err(_) => {
                    c.err(
                        format!("{path}.rtype"),
                        format!("unsupported record type `{t}` (A, AAAA, CNAME or TXT)"),
                    );
                    None
                }
            });
        let ttl = match ttl {
            None => 30,
            Some(t) if (0..=2_147_483_647).contains(&t) => t as u32,
            Some(t) => {
                c.err(
                    format!("{path}.ttl"),
                    format!("{t} is not a TTL (0 to 2147483647 seconds)"),
                );
                30
            }
        };
        let values = c.required(&format!("{path}.values"), values).cloned();
        if values.as_ref().is_some_and(|v| v.is_empty()) {
            c.err(
                format!("{path}.values"),
                "needs at least one value (the new RRset)",
            );
        }
    RrsetKeys {
        zone,
        record,
        rtype,
        ttl,
        values,
    }
}

