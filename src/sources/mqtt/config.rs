//! The keys of an `mqtt` source (a broker the sensors publish to), their validation and
//! the built source. Configuration layer: imports only `config` helpers and the topic
//! grammar (see `sources/config.rs`).

use crate::config::collect::Collector;
use crate::config::model::SensorInput;
use crate::config::units::split_host_port;
use crate::sources::config::{positive_duration, reconnect_max, SourceConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The keys of an `mqtt` source as written (besides `name`, `type`, `url`).
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    /// Client certificate and key (PEM) for mqtts:// brokers that ask for one.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// MQTT keep-alive. Default "15s".
    pub keep_alive: Option<String>,
    /// Connect timeout. Default "5s".
    pub timeout: Option<String>,
    /// Cap of the exponential reconnect backoff. Default "30s".
    pub reconnect_max: Option<String>,
    /// Topic filters (wildcards allowed) subscribed to once; sensors whose topic they cover
    /// share that subscription.
    pub subscribe: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct MqttSource {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub keep_alive: Duration,
    /// Connect timeout.
    pub timeout: Duration,
    pub reconnect_max: Duration,
    /// Extra topic filters (may hold wildcards) from `subscribe`.
    pub subscribe: Vec<String>,
}

/// The keys of a sensor on an `mqtt` source: its topic and where the value is in the
/// payload.
#[derive(Debug, Default, Deserialize)]
pub struct SensorRaw {
    pub topic: Option<String>,
    pub json_pointer: Option<String>,
    /// RFC 6901 pointer to the reading's own time (RFC 3339 string or epoch milliseconds).
    pub timestamp_pointer: Option<String>,
}

impl SourceConfig for MqttSource {
    type Raw = Raw;
    type SensorRaw = SensorRaw;

    fn sensor_input(c: &mut Collector, path: &str, s: SensorRaw) -> Option<SensorInput> {
        let topic = c
            .required_str(&format!("{path}.topic"), &s.topic)
            .map(str::to_string);
        if let Some(t) = &topic {
            if t.contains(['+', '#']) {
                c.err(
                    format!("{path}.topic"),
                    "a sensor's topic must not contain wildcards (one topic is one value; put the filter in the source's `subscribe` to share one subscription)",
                );
            }
        }
        for (key, v) in [
            ("json_pointer", &s.json_pointer),
            ("timestamp_pointer", &s.timestamp_pointer),
        ] {
            if let Some(p) = v {
                if !p.is_empty() && !p.starts_with('/') {
                    c.err(
                        format!("{path}.{key}"),
                        format!("`{p}` is not an RFC 6901 pointer (it starts with '/')"),
                    );
                }
            }
        }
        topic.map(|topic| SensorInput::Topic {
            topic,
            json_pointer: s.json_pointer,
            timestamp_pointer: s.timestamp_pointer,
        })
    }

    fn describe(&self) -> String {
        format!(
            "mqtt {}:{}{}",
            self.host,
            self.port,
            if self.tls { " (TLS)" } else { "" }
        )
    }

    /// Devices publish at their own pace; a quarter second is typical of the sensors seen.
    fn is_one_device(&self) -> bool {
        false
    }

    fn expected_interval(&self) -> Duration {
        Duration::from_millis(250)
    }

    fn validate(
        c: &mut Collector,
        path: &str,
        name: Option<&str>,
        url: Option<&str>,
        s: Raw,
    ) -> Option<Self> {
        let timeout = positive_duration(c, path, "timeout", &s.timeout, Duration::from_secs(5));
        let keep_alive = c.duration(
            &format!("{path}.keep_alive"),
            &s.keep_alive,
            Duration::from_secs(15),
        );
        // rumqttc refuses keep-alives under 1s (and 0 would disable liveness checks).
        if keep_alive < Duration::from_secs(1) || keep_alive > Duration::from_secs(65535) {
            c.err(
                format!("{path}.keep_alive"),
                "must be between 1s and 65535s",
            );
        }
        let reconnect_max = reconnect_max(c, path, &s.reconnect_max);
        let mut subscribe = Vec::new();
        for (i, f) in s.subscribe.iter().flatten().enumerate() {
            match crate::mqtt_topic::check_filter(f) {
                Ok(()) => subscribe.push(f.clone()),
                Err(e) => c.err(format!("{path}.subscribe[{i}]"), format!("`{f}`: {e}")),
            }
        }
        if s.cert_file.is_some() != s.key_file.is_some() {
            let missing = if s.cert_file.is_some() {
                "key_file"
            } else {
                "cert_file"
            };
            c.err(
                format!("{path}.{missing}"),
                "cert_file and key_file go together (a client certificate needs its key)",
            );
        }
        let endpoint = url.and_then(|u| match parse_mqtt_url(u) {
            Ok(e) => Some(e),
            Err(e) => {
                c.err(format!("{path}.url"), e);
                None
            }
        });
        if s.password_file.is_some() && s.username.is_none() {
            c.err(
                format!("{path}.username"),
                "password_file is set but username is missing",
            );
        }
        if let Some((_, _, false)) = endpoint {
            for (k, set) in [
                ("ca_file", s.ca_file.is_some()),
                ("cert_file", s.cert_file.is_some()),
                ("key_file", s.key_file.is_some()),
            ] {
                if set {
                    c.err(
                        format!("{path}.{k}"),
                        "applies only to TLS brokers (mqtts://)",
                    );
                }
            }
        }
        endpoint.map(|(host, port, tls)| MqttSource {
            host,
            port,
            tls,
            client_id: s
                .client_id
                .unwrap_or_else(|| format!("firebreak-{}", name.unwrap_or("agent"))),
            username: s.username.clone(),
            password_file: s.password_file.as_deref().map(PathBuf::from),
            ca_file: s.ca_file.as_deref().map(PathBuf::from),
            cert_file: s.cert_file.as_deref().map(PathBuf::from),
            key_file: s.key_file.as_deref().map(PathBuf::from),
            keep_alive,
            timeout,
            reconnect_max,
            subscribe,
        })
    }
}

/// `mqtt://host[:port]` or `mqtts://host[:port]`: host, port and whether TLS is on.
pub fn parse_mqtt_url(u: &str) -> Result<(String, u16, bool), String> {
    let (rest, tls, default_port) = if let Some(r) = u.strip_prefix("mqtt://") {
        (r, false, 1883)
    } else if let Some(r) = u.strip_prefix("mqtts://") {
        (r, true, 8883)
    } else {
        return Err(format!(
            "`{u}` is not an MQTT URL (mqtt://host:port or mqtts://host:port)"
        ));
    };
    let (host, port) = split_host_port(rest.trim_end_matches('/'), default_port)
        .map_err(|e| format!("`{u}`: {e}"))?;
    Ok((host, port, tls))
}
