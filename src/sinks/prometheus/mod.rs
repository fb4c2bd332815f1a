//! Prometheus metrics, served at `GET /metrics`. Names are stable: dashboards and alerts
//! depend on them (docs/operations.md lists them).
//!
//! Design: per-sensor and per-zone gauges are filled from the detection core's state when
//! scraped, not on every sample, so the hot path pays nothing for them. Counters that
//! belong to a component (samples, errors, steps) are updated by that component.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub sensor_value: prometheus::GaugeVec,
    pub sensor_state: IntGaugeVec,
    pub zone_level: IntGaugeVec,
    pub safe_to_cut_power: IntGaugeVec,
    pub incident_active: IntGaugeVec,
    pub runbook_steps: IntCounterVec,
    pub runbook_duration: HistogramVec,
    pub runbook_over_budget: IntCounterVec,
    pub source_up: IntGaugeVec,
    pub poll_duration: HistogramVec,
    pub samples: IntCounterVec,
    pub source_errors: IntCounterVec,
    pub spool_bytes: IntGauge,
    pub telemetry_dropped: IntCounterVec,
    pub events: IntCounterVec,
    pub event_log_errors: IntCounterVec,
    /// Failed writes of the incident journal (a restart could repeat or skip steps).
    pub journal_errors: prometheus::IntCounter,
    pub build_info: IntGaugeVec,
    /// Seconds until the zone is expected to lose power; absent while unknown.
    pub seconds_to_power_loss: prometheus::GaugeVec,
    /// The power map: 1 when every zone on the feed has failed over and verified.
    pub feed_safe_to_cut: IntGaugeVec,
}

/// The metric names this agent exports (documented; a test checks each is present).
pub const NAMES: [&str; 20] = [
    "firebreak_sensor_value",
    "firebreak_sensor_state",
    "firebreak_zone_level",
    "firebreak_safe_to_cut_power",
    "firebreak_incident_active",
    "firebreak_runbook_steps_total",
    "firebreak_runbook_duration_seconds",
    "firebreak_runbook_over_budget_total",
    "firebreak_source_up",
    "firebreak_source_poll_duration_seconds",
    "firebreak_samples_total",
    "firebreak_source_errors_total",
    "firebreak_telemetry_spool_bytes",
    "firebreak_telemetry_dropped_total",
    "firebreak_events_total",
    "firebreak_event_log_errors_total",
    "firebreak_journal_errors_total",
    "firebreak_build_info",
    "firebreak_zone_seconds_to_power_loss",
    "firebreak_feed_safe_to_cut",
];

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    /// Exports every step of `config`'s runbooks at 0 for each outcome, so that a
    /// dashboard's `increase(firebreak_runbook_steps_total[..])` sees the first run ever
    /// (Prometheus cannot see the increase of a series that appears already counted).
    pub fn declare_runbooks(&self, config: &crate::config::Config) {
        for rb in &config.runbooks {
            for step in rb.steps.iter().chain(&rb.undo_steps) {
                for outcome in ["ok", "failed"] {
                    self.runbook_steps
                        .with_label_values(&[&rb.name, &step.name, outcome]);
                }
            }
        }
    }

    pub fn new() -> Self {
        let r = Registry::new();
        let sensor_value = prometheus::GaugeVec::new(
            Opts::new(
                "firebreak_sensor_value",
                "Last good value of a sensor, in the kind's unit",
            ),
            &["sensor", "zone", "kind"],
        )
        .expect("valid metric");
        r.register(Box::new(sensor_value.clone()))
            .expect("unique metric");
        let spool_bytes = IntGauge::new(
            "firebreak_telemetry_spool_bytes",
            "Bytes of telemetry spooled on disk",
        )
        .expect("valid metric");
        r.register(Box::new(spool_bytes.clone()))
            .expect("unique metric");
        let seconds_to_power_loss = prometheus::GaugeVec::new(
            Opts::new(
                "firebreak_zone_seconds_to_power_loss",
                "Seconds until the zone is expected to lose power (UPS runtime on battery, or rising temperatures projected to critical_above); absent while unknown",
            ),
            &["zone"],
        )
        .expect("valid metric");
        r.register(Box::new(seconds_to_power_loss.clone()))
            .expect("unique metric");
        let m = Metrics {
            seconds_to_power_loss,
            sensor_value,
            sensor_state: gauge_vec(
                &r,
                "firebreak_sensor_state",
                "1 for the sensor's current state (ok, warn, alarm, critical, stale, fault)",
                &["sensor", "zone", "state"],
            ),
            zone_level: gauge_vec(
                &r,
                "firebreak_zone_level",
                "Zone level: 0 normal, 1 warning, 2 alarm, 3 critical",
                &["zone"],
            ),
            feed_safe_to_cut: gauge_vec(
                &r,
                "firebreak_feed_safe_to_cut",
                "1 when every zone the power feed powers has failed over and verified: its breaker may be opened",
                &["feed"],
            ),
            safe_to_cut_power: gauge_vec(
                &r,
                "firebreak_safe_to_cut_power",
                "1 when the zone's runbook succeeded and verified: power may be cut",
                &["zone"],
            ),
            incident_active: gauge_vec(
                &r,
                "firebreak_incident_active",
                "1 while the zone has an open (not reset) incident",
                &["zone"],
            ),
            runbook_steps: counter_vec(
                &r,
                "firebreak_runbook_steps_total",
                "Runbook steps run, by outcome (ok, failed)",
                &["runbook", "step", "outcome"],
            ),
            runbook_duration: histogram_vec(
                &r,
                "firebreak_runbook_duration_seconds",
                "Time from a runbook's start (or resume) to its end",
                &["runbook"],
                vec![
                    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 90.0, 180.0, 600.0,
                ],
            ),
            runbook_over_budget: counter_vec(
                &r,
                "firebreak_runbook_over_budget_total",
                "Runbooks that overran their budget",
                &["runbook"],
            ),
            source_up: gauge_vec(
                &r,
                "firebreak_source_up",
                "1 while the source is connected",
                &["source"],
            ),
            poll_duration: histogram_vec(
                &r,
                "firebreak_source_poll_duration_seconds",
                "Time of one poll pass over a device",
                &["source"],
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            ),
            samples: counter_vec(
                &r,
                "firebreak_samples_total",
                "Samples received from a source (values and faults)",
                &["source"],
            ),
            source_errors: counter_vec(
                &r,
                "firebreak_source_errors_total",
                "Source errors by type",
                &["source", "error"],
            ),
            spool_bytes,
            telemetry_dropped: counter_vec(
                &r,
                "firebreak_telemetry_dropped_total",
                "Telemetry points dropped, by reason",
                &["reason"],
            ),
            events: counter_vec(
                &r,
                "firebreak_events_total",
                "Events written to the event log, by event",
                &["event"],
            ),
            event_log_errors: counter_vec(
                &r,
                "firebreak_event_log_errors_total",
                "Failed event log writes",
                &["event"],
            ),
            journal_errors: {
                let c = prometheus::IntCounter::new(
                    "firebreak_journal_errors_total",
                    "Failed incident journal writes",
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            build_info: gauge_vec(
                &r,
                "firebreak_build_info",
                "Always 1; the agent's version as a label",
                &["version"],
            ),
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m
    }

    /// The registry, for components that register their own metrics (`[cluster]`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
