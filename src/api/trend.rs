//! A short per-sensor history for the status page's sparklines: one value every
//! `every`, the last `points` of them. Pure: the caller passes the monotonic time.

use std::collections::VecDeque;

/// Sample period of the trend (2 s) and how many samples it keeps (2 minutes' worth).
pub const EVERY_NS: u64 = 2_000_000_000;
pub const POINTS: usize = 60;

#[derive(Debug, Clone)]
pub struct Trends {
    every_ns: u64,
    points: usize,
    /// Monotonic time of the last recorded sample, `None` before the first.
    last: Option<u64>,
    rings: Vec<VecDeque<Option<f64>>>,
}

impl Trends {
    pub fn new(sensors: usize, every_ns: u64, points: usize) -> Self {
        Trends {
            every_ns,
            points: points.max(1),
            last: None,
            // Allocated whole at the start: memory stays flat from the first minute (the
            // soak test's RSS check) and recording never reallocates.
            rings: (0..sensors)
                .map(|_| VecDeque::with_capacity(points.max(1)))
                .collect(),
        }
    }

    /// Records every sensor's current value if a period has passed since the last record;
    /// `value(i)` is sensor `i`'s value (`None`: no usable value). Returns whether it did.
    pub fn record(&mut self, now: u64, value: impl Fn(usize) -> Option<f64>) -> bool {
        if self
            .last
            .is_some_and(|last| now.saturating_sub(last) < self.every_ns)
        {
            return false;
        }
        self.last = Some(now);
        for (i, ring) in self.rings.iter_mut().enumerate() {
            if ring.len() == self.points {
                ring.pop_front();
            }
            ring.push_back(value(i).filter(|v| v.is_finite()));
        }
        true
    }

    /// Sensor `i`'s values, oldest first (empty for an unknown sensor).
    pub fn values(&self, sensor: usize) -> Vec<Option<f64>> {
        self.rings
            .get(sensor)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_at_most_once_per_period_and_keeps_the_last_points() {
        let mut t = Trends::new(2, 10, 3);
        assert!(t.record(0, |i| Some(i as f64)));
        assert!(!t.record(5, |_| Some(99.0)), "within the period: ignored");
        for (n, at) in [10u64, 20, 30].iter().enumerate() {
            assert!(t.record(*at, |i| Some((n + 1) as f64 * 10.0 + i as f64)));
        }
        assert_eq!(t.values(0), vec![Some(10.0), Some(20.0), Some(30.0)]);
        assert_eq!(t.values(1), vec![Some(11.0), Some(21.0), Some(31.0)]);
    }

    #[test]
    fn missing_and_non_finite_values_are_gaps_and_unknown_sensors_are_empty() {
        let mut t = Trends::new(1, 1, 5);
        t.record(0, |_| None);
        t.record(1, |_| Some(f64::NAN));
        t.record(2, |_| Some(1.5));
        assert_eq!(t.values(0), vec![None, None, Some(1.5)]);
        assert!(t.values(7).is_empty());
    }
}
