//! Self-metrics every source reports the same way: samples in, errors by type, connection
//! state. Lock-free counters, shared with whoever exports them (API, telemetry, tests).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Error classes counted per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Could not connect (refused, unresolvable, TLS/auth refused, timed out).
    Connect,
    /// An established link failed or a request timed out.
    Transport,
    /// The device or its server said no: a Modbus exception, an `ERR` from upsd, an SNMP
    /// error-status, a BACnet Error, Reject or Abort.
    Exception,
    /// A payload or register value that is not a reading.
    BadValue,
    /// A request went unanswered through all its retries (an SNMP agent that is down, or
    /// that drops a wrong community without a word).
    Timeout,
    /// The device refused our credentials (a wrong SNMPv3 password or user, or a reply whose
    /// digest or encryption does not check out).
    Authentication,
    /// The device does not have an object a sensor names (SNMP noSuchObject, noSuchInstance,
    /// endOfMibView; BACnet unknown-object or unknown-property).
    NoSuchObject,
    /// The device refused a COV subscription (BACnet): that object is read every poll
    /// only.
    CovRefused,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Connect,
        ErrorKind::Transport,
        ErrorKind::Exception,
        ErrorKind::BadValue,
        ErrorKind::Timeout,
        ErrorKind::Authentication,
        ErrorKind::NoSuchObject,
        ErrorKind::CovRefused,
    ];

    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

#[derive(Debug)]
pub struct SourceMetrics {
    pub source: String,
    samples_in: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    connected: AtomicBool,
    /// Poll-pass durations, once an exporter attaches its histogram.
    poll: std::sync::OnceLock<prometheus::Histogram>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub samples_in: u64,
    pub errors: Vec<(&'static str, u64)>,
    pub connected: bool,
}

impl Snapshot {
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors
            .iter()
            .find(|(k, _)| *k == kind.as_str())
            .map_or(0, |(_, n)| *n)
    }
}

impl SourceMetrics {
    pub fn new(source: impl Into<String>) -> Self {
        SourceMetrics {
            source: source.into(),
            samples_in: AtomicU64::new(0),
            errors: Default::default(),
            connected: AtomicBool::new(false),
            poll: std::sync::OnceLock::new(),
        }
    }

    /// Where poll durations go (`firebreak_source_poll_duration_seconds{source}`).
    pub fn attach_poll_histogram(&self, h: prometheus::Histogram) {
        let _ = self.poll.set(h);
    }

    pub fn observe_poll(&self, seconds: f64) {
        if let Some(h) = self.poll.get() {
            h.observe(seconds);
        }
    }

    pub fn sample(&self) {
        self.samples_in.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    /// Whether the source is connected (answering) now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Adds the counts of an earlier instance of the same source (a config reload replaced
    /// it), so exported counters keep counting up.
    pub fn carry_over(&self, earlier: &Snapshot) {
        self.samples_in
            .fetch_add(earlier.samples_in, Ordering::Relaxed);
        for k in ErrorKind::ALL {
            self.errors[k as usize].fetch_add(earlier.errors_of(k), Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            samples_in: self.samples_in.load(Ordering::Relaxed),
            errors: ErrorKind::ALL
                .iter()
                .map(|k| (k.as_str(), self.errors[*k as usize].load(Ordering::Relaxed)))
                .collect(),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_by_type() {
        let m = SourceMetrics::new("s");
        m.sample();
        m.sample();
        m.error(ErrorKind::BadValue);
        m.set_connected(true);
        let s = m.snapshot();
        assert_eq!(s.samples_in, 2);
        assert_eq!(s.errors_of(ErrorKind::BadValue), 1);
        assert_eq!(s.errors_of(ErrorKind::Connect), 0);
        assert!(s.connected);
    }

    #[test]
    fn a_replaced_source_carries_its_counts_over() {
        let old = SourceMetrics::new("s");
        old.sample();
        old.error(ErrorKind::Transport);
        let new = SourceMetrics::new("s");
        new.sample();
        new.carry_over(&old.snapshot());
        let s = new.snapshot();
        assert_eq!(s.samples_in, 2);
        assert_eq!(s.errors_of(ErrorKind::Transport), 1);
    }
}
