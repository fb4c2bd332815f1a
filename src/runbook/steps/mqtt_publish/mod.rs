//! `mqtt_publish`: publish a templated message through one of the agent's MQTT sources'
//! brokers (its own connection, the source's TLS and credentials). Runner: `run.rs`.

use super::{check_template, Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use serde::Deserialize;

pub mod run;

/// The keys of an `mqtt_publish` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub source: Option<String>,
    pub topic: Option<String>,
    pub payload: Option<String>,
    pub qos: Option<i64>,
    pub retain: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct MqttPublishStep {
    /// Index of the MQTT source in `Config::sources`.
    pub source: usize,
    /// Its name, for summaries.
    pub source_name: String,
    pub topic: String,
    pub payload: String,
    pub qos: u8,
    pub retain: bool,
}

impl StepInfo for MqttPublishStep {
    fn describe(&self) -> String {
        format!("mqtt_publish {} via {}", self.topic, self.source_name)
    }
}

impl StepConfig for MqttPublishStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, refs: &Refs) -> Option<Self> {
        let source = (refs.mqtt_source)(c, &format!("{path}.source"), &s.source);
        let topic = c
            .required_str(&format!("{path}.topic"), &s.topic)
            .map(str::to_string);
        if let Some(t) = &topic {
            check_template(c, &format!("{path}.topic"), t);
            if t.contains(['+', '#']) {
                c.err(
                    format!("{path}.topic"),
                    "a topic to publish to must not contain wildcards",
                );
            }
        }
        let payload = s.payload.unwrap_or_default();
        check_template(c, &format!("{path}.payload"), &payload);
        let qos = match s.qos {
            None => 1,
            Some(q @ 0..=2) => q as u8,
            Some(q) => {
                c.err(
                    format!("{path}.qos"),
                    format!("{q} is not a QoS (0, 1 or 2)"),
                );
                1
            }
        };
        let (source, source_name) = source?;
        Some(MqttPublishStep {
            source,
            source_name,
            topic: topic?,
            payload,
            qos,
            retain: s.retain.unwrap_or(false),
        })
    }
}
