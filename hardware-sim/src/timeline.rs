//! The value of a signal at sim time `t`: pure, no clock, no I/O.
//!
//! A register's timeline has four tracks that are read independently:
//! - value (`set`, `ramp`, `exponential`): each segment starts from the value the previous
//!   one had reached at that instant, so an interrupted ramp continues smoothly;
//! - spike: while active it replaces the value (noise included), then the value track shows
//!   through again;
//! - noise: from its start, adds a deterministic uniform ±amplitude value that changes every
//!   `every` of sim time (a new sample per step, seeded, independent of playback speed);
//! - fault: what the Modbus server does with reads of this register.
//!
//! A device has its own event timeline: whether it answers at all.

use std::time::Duration;

/// Errors in a timeline. `index` is the position of the offending segment in the list given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimelineError {
    #[error("a timeline needs at least one segment")]
    Empty,
    #[error("must start with a `set` at 0s so that every instant has a value")]
    NoInitialValue { index: usize },
    #[error(
        "{at:?} is earlier than the entry before it ({previous:?}): entries must be in time order"
    )]
    OutOfOrder {
        index: usize,
        at: Duration,
        previous: Duration,
    },
    #[error("two {track} segments start at {at:?}")]
    SameTime {
        index: usize,
        track: &'static str,
        at: Duration,
    },
    #[error("must be greater than 0")]
    NotPositive { index: usize, field: &'static str },
    #[error("must be a finite number")]
    NotFinite { index: usize, field: &'static str },
    #[error("noise amplitude must not be negative")]
    NegativeAmplitude { index: usize },
}

impl TimelineError {
    /// Position of the segment the error is about, if any.
    pub fn index(&self) -> Option<usize> {
        match self {
            TimelineError::Empty => None,
            TimelineError::NoInitialValue { index }
            | TimelineError::OutOfOrder { index, .. }
            | TimelineError::SameTime { index, .. }
            | TimelineError::NotPositive { index, .. }
            | TimelineError::NotFinite { index, .. }
            | TimelineError::NegativeAmplitude { index } => Some(*index),
        }
    }

    /// Field of the segment the error is about, if it is about one field.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            TimelineError::Empty | TimelineError::NoInitialValue { .. } => None,
            TimelineError::OutOfOrder { .. } | TimelineError::SameTime { .. } => Some("at"),
            TimelineError::NotPositive { field, .. } | TimelineError::NotFinite { field, .. } => {
                Some(field)
            }
            TimelineError::NegativeAmplitude { .. } => Some("noise"),
        }
    }
}

/// What the server does with reads covering a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Normal answers.
    #[default]
    None,
    /// Exception 0x04, server device failure.
    Exception,
    /// Exception 0x06, server device busy.
    Busy,
    /// Every word of the register reads 0xFFFF (a classic "no data" value).
    AllOnes,
    /// Every word of the register reads 0x0000 (the other classic "no data" value).
    Zeros,
    /// Reads covering the register get no answer at all (the client times out); an MQTT
    /// device does not publish.
    Timeout,
}

impl Fault {
    pub const NAMES: &'static str = "none, exception, busy, ffff, zeros, timeout";

    pub fn parse(s: &str) -> Option<Fault> {
        match s {
            "none" => Some(Fault::None),
            "exception" => Some(Fault::Exception),
            "busy" => Some(Fault::Busy),
            "ffff" => Some(Fault::AllOnes),
            "zeros" => Some(Fault::Zeros),
            "timeout" => Some(Fault::Timeout),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Exception => "exception",
            Fault::Busy => "busy",
            Fault::AllOnes => "ffff",
            Fault::Zeros => "zeros",
            Fault::Timeout => "timeout",
        }
    }
}

/// One timeline entry's effect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SegmentKind {
    /// Jump to `value` and hold it.
    Set { value: f64 },
    /// Linear from the current value to `target`, reached after `over`, then held.
    Ramp { target: f64, over: Duration },
    /// `target + (start - target) * exp(-dt / tau)`.
    Exponential { target: f64, tau: Duration },
    /// Replace the value with `value` for `hold`, then show the value track again.
    Spike { value: f64, hold: Duration },
    /// From now on add uniform noise in ±`amplitude`, a new sample every `every`.
    Noise {
        amplitude: f64,
        seed: u64,
        every: Duration,
    },
    /// Change how reads of this register are answered.
    Fault(Fault),
    /// Hold the value read at the start (noise included) for `hold`: a stuck sensor.
    Freeze { hold: Duration },
    /// No answer at all for `hold` (Modbus: the client times out; MQTT: no publish), then
    /// whatever the fault track says. `silence` in scenario files is the MQTT spelling.
    Dropout { hold: Duration },
}

impl SegmentKind {
    /// The name used in scenario files and in `segment` events.
    pub fn name(&self) -> &'static str {
        match self {
            SegmentKind::Set { .. } => "set",
            SegmentKind::Ramp { .. } => "ramp",
            SegmentKind::Exponential { .. } => "exponential",
            SegmentKind::Spike { .. } => "spike",
            SegmentKind::Noise { .. } => "noise",
            SegmentKind::Fault(_) => "fault",
            SegmentKind::Freeze { .. } => "freeze",
            SegmentKind::Dropout { .. } => "dropout",
        }
    }

    fn track(&self) -> &'static str {
        match self {
            SegmentKind::Set { .. }
            | SegmentKind::Ramp { .. }
            | SegmentKind::Exponential { .. } => "value",
            SegmentKind::Spike { .. } => "spike",
            SegmentKind::Noise { .. } => "noise",
            SegmentKind::Fault(_) => "fault",
            SegmentKind::Freeze { .. } => "freeze",
            SegmentKind::Dropout { .. } => "dropout",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub at: Duration,
    pub kind: SegmentKind,
}

impl Segment {
    pub fn new(at: Duration, kind: SegmentKind) -> Self {
        Segment { at, kind }
    }
}

/// Every problem with `segments`, in list order.
pub fn check(segments: &[Segment]) -> Vec<TimelineError> {
    let mut errors = Vec::new();
    if segments.is_empty() {
        errors.push(TimelineError::Empty);
        return errors;
    }
    match segments.iter().position(|s| s.kind.track() == "value") {
        Some(i)
            if segments[i].at == Duration::ZERO
                && matches!(segments[i].kind, SegmentKind::Set { .. }) => {}
        Some(index) => errors.push(TimelineError::NoInitialValue { index }),
        None => errors.push(TimelineError::NoInitialValue { index: 0 }),
    }
    let mut last_at_per_track: Vec<(&'static str, Duration)> = Vec::new();
    for (index, seg) in segments.iter().enumerate() {
        if index > 0 && seg.at < segments[index - 1].at {
            errors.push(TimelineError::OutOfOrder {
                index,
                at: seg.at,
                previous: segments[index - 1].at,
            });
        }
        let track = seg.kind.track();
        match last_at_per_track.iter_mut().find(|(t, _)| *t == track) {
            Some((_, last)) => {
                if *last == seg.at {
                    errors.push(TimelineError::SameTime {
                        index,
                        track,
                        at: seg.at,
                    });
                }
                *last = seg.at;
            }
            None => last_at_per_track.push((track, seg.at)),
        }
        let finite = |value: f64, field: &'static str, errors: &mut Vec<TimelineError>| {
            if !value.is_finite() {
                errors.push(TimelineError::NotFinite { index, field });
            }
        };
        let positive = |d: Duration, field: &'static str, errors: &mut Vec<TimelineError>| {
            if d.is_zero() {
                errors.push(TimelineError::NotPositive { index, field });
            }
        };
        match seg.kind {
            SegmentKind::Set { value } => finite(value, "set", &mut errors),
            SegmentKind::Ramp { target, over } => {
                finite(target, "ramp", &mut errors);
                positive(over, "over", &mut errors);
            }
            SegmentKind::Exponential { target, tau } => {
                finite(target, "exponential", &mut errors);
                positive(tau, "tau", &mut errors);
            }
            SegmentKind::Spike { value, hold } => {
                finite(value, "spike", &mut errors);
                positive(hold, "for", &mut errors);
            }
            SegmentKind::Noise {
                amplitude, every, ..
            } => {
                finite(amplitude, "noise", &mut errors);
                if amplitude < 0.0 {
                    errors.push(TimelineError::NegativeAmplitude { index });
                }
                positive(every, "every", &mut errors);
            }
            SegmentKind::Freeze { hold } => positive(hold, "freeze", &mut errors),
            SegmentKind::Dropout { hold } => positive(hold, "dropout", &mut errors),
            SegmentKind::Fault(_) => {}
        }
    }
    errors
}

/// One value-track segment with the value it starts from.
#[derive(Debug, Clone, Copy)]
struct ValueSegment {
    at: Duration,
    from: f64,
    kind: SegmentKind,
}

impl ValueSegment {
    fn eval(&self, t: Duration) -> f64 {
        let dt = t.saturating_sub(self.at).as_secs_f64();
        match self.kind {
            SegmentKind::Set { value } => value,
            SegmentKind::Ramp { target, over } => {
                let progress = (dt / over.as_secs_f64()).min(1.0);
                self.from + (target - self.from) * progress
            }
            SegmentKind::Exponential { target, tau } => {
                target + (self.from - target) * (-dt / tau.as_secs_f64()).exp()
            }
            // Only value-track kinds are stored as value segments.
            _ => self.from,
        }
    }
}

/// A checked timeline, ready to be sampled at any sim time.
#[derive(Debug, Clone)]
pub struct Timeline {
    segments: Vec<Segment>,
    values: Vec<ValueSegment>,
}

/// Everything the server needs about one register at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub fault: Fault,
    /// How many segments have started by now; a change marks a segment boundary.
    pub started: usize,
}

impl Timeline {
    /// Builds a timeline; fails with the first problem [`check`] finds.
    pub fn new(segments: Vec<Segment>) -> Result<Timeline, TimelineError> {
        if let Some(e) = check(&segments).into_iter().next() {
            return Err(e);
        }
        let mut values: Vec<ValueSegment> = Vec::new();
        for seg in segments.iter().filter(|s| s.kind.track() == "value") {
            let from = values.last().map_or(0.0, |prev| prev.eval(seg.at));
            values.push(ValueSegment {
                at: seg.at,
                from,
                kind: seg.kind,
            });
        }
        Ok(Timeline { segments, values })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The same timeline with every noise seed XORed with `seed`: a run is a pure function
    /// of the scenario and the seed, and seed 0 leaves the file's seeds as they are.
    pub fn reseeded(mut self, seed: u64) -> Timeline {
        for s in &mut self.segments {
            if let SegmentKind::Noise { seed: own, .. } = &mut s.kind {
                *own ^= seed;
            }
        }
        self
    }

    /// The value before spikes and noise.
    pub fn base_value_at(&self, t: Duration) -> f64 {
        let i = self.values.partition_point(|v| v.at <= t);
        // check() guarantees a value segment at 0s, so i >= 1 for every t.
        self.values[i.saturating_sub(1)].eval(t)
    }

    /// The engineering value at `t`.
    pub fn value_at(&self, t: Duration) -> f64 {
        self.value_with(t, &|t| self.base_value_at(t))
    }

    /// The engineering value at `t` with `base` in place of the value track (a signal that
    /// follows the live room): spikes, noise and freezes still apply.
    pub fn value_with(&self, t: Duration, base: &dyn Fn(Duration) -> f64) -> f64 {
        let started = &self.segments[..self.started_at(t)];
        let frozen = started.iter().rev().find_map(|s| match s.kind {
            SegmentKind::Freeze { hold } if t < s.at + hold => Some(s.at),
            _ => None,
        });
        self.live_value_at(frozen.unwrap_or(t), base)
    }

    /// The value at `t` as if no freeze were active.
    fn live_value_at(&self, t: Duration, base: &dyn Fn(Duration) -> f64) -> f64 {
        let started = &self.segments[..self.started_at(t)];
        let spike = started.iter().rev().find_map(|s| match s.kind {
            SegmentKind::Spike { value, hold } if t < s.at + hold => Some(value),
            _ => None,
        });
        if let Some(v) = spike {
            return v;
        }
        let noise = started.iter().rev().find_map(|s| match s.kind {
            SegmentKind::Noise {
                amplitude,
                seed,
                every,
            } => {
                let step = (t - s.at).as_nanos() / every.as_nanos().max(1);
                Some(amplitude * unit_noise(seed, step as u64))
            }
            _ => None,
        });
        base(t) + noise.unwrap_or(0.0)
    }

    /// How reads are answered at `t`.
    pub fn fault_at(&self, t: Duration) -> Fault {
        let started = &self.segments[..self.started_at(t)];
        let dropout = started.iter().any(|s| match s.kind {
            SegmentKind::Dropout { hold } => t < s.at + hold,
            _ => false,
        });
        if dropout {
            return Fault::Timeout;
        }
        started
            .iter()
            .rev()
            .find_map(|s| match s.kind {
                SegmentKind::Fault(f) => Some(f),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Number of segments whose start is at or before `t`.
    pub fn started_at(&self, t: Duration) -> usize {
        self.segments.partition_point(|s| s.at <= t)
    }

    pub fn sample(&self, t: Duration) -> Sample {
        Sample {
            value: self.value_at(t),
            fault: self.fault_at(t),
            started: self.started_at(t),
        }
    }

    /// [`Timeline::sample`] with `base` in place of the value track.
    pub fn sample_with(&self, t: Duration, base: &dyn Fn(Duration) -> f64) -> Sample {
        Sample {
            value: self.value_with(t, base),
            fault: self.fault_at(t),
            started: self.started_at(t),
        }
    }
}

/// Uniform in [-1, 1), a pure function of (seed, step).
fn unit_noise(seed: u64, step: u64) -> f64 {
    let bits = splitmix64(splitmix64(seed) ^ step);
    // 53 random bits -> [0, 1)
    let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
    unit * 2.0 - 1.0
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How a gone device behaves on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneMode {
    /// Connections are dropped; new ones are accepted but never answered (clients time out).
    Silent,
    /// Connections are dropped and the port is closed (clients get "connection refused").
    Refuse,
}

impl GoneMode {
    pub fn parse(s: &str) -> Option<GoneMode> {
        match s {
            "silent" => Some(GoneMode::Silent),
            "refuse" => Some(GoneMode::Refuse),
            _ => None,
        }
    }
}

/// Whether a device is on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Presence {
    #[default]
    Present,
    Gone(GoneMode),
}

impl Presence {
    /// The name used in `device` events.
    pub fn name(self) -> &'static str {
        match self {
            Presence::Present => "back",
            Presence::Gone(GoneMode::Silent) => "gone",
            Presence::Gone(GoneMode::Refuse) => "gone_refusing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceEvent {
    pub at: Duration,
    pub presence: Presence,
}

/// Every problem with a device's events, in list order.
pub fn check_events(events: &[DeviceEvent]) -> Vec<TimelineError> {
    let mut errors = Vec::new();
    for (index, pair) in events.windows(2).enumerate() {
        let index = index + 1;
        if pair[1].at < pair[0].at {
            errors.push(TimelineError::OutOfOrder {
                index,
                at: pair[1].at,
                previous: pair[0].at,
            });
        } else if pair[1].at == pair[0].at {
            errors.push(TimelineError::SameTime {
                index,
                track: "device",
                at: pair[1].at,
            });
        }
    }
    errors
}

/// A device's presence over time; present until the first event says otherwise.
#[derive(Debug, Clone, Default)]
pub struct DeviceTimeline {
    events: Vec<DeviceEvent>,
}

impl DeviceTimeline {
    pub fn new(events: Vec<DeviceEvent>) -> Result<DeviceTimeline, TimelineError> {
        if let Some(e) = check_events(&events).into_iter().next() {
            return Err(e);
        }
        Ok(DeviceTimeline { events })
    }

    pub fn events(&self) -> &[DeviceEvent] {
        &self.events
    }

    pub fn started_at(&self, t: Duration) -> usize {
        self.events.partition_point(|e| e.at <= t)
    }

    pub fn presence_at(&self, t: Duration) -> Presence {
        match self.started_at(t) {
            0 => Presence::Present,
            n => self.events[n - 1].presence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn seg(at: f64, kind: SegmentKind) -> Segment {
        Segment::new(s(at), kind)
    }

    fn set(at: f64, value: f64) -> Segment {
        seg(at, SegmentKind::Set { value })
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn set_holds_its_value_until_the_next_segment() {
        let tl = Timeline::new(vec![set(0.0, 23.0), set(10.0, 30.0)]).unwrap();
        assert_eq!(tl.value_at(s(0.0)), 23.0);
        assert_eq!(tl.value_at(s(9.999)), 23.0);
        assert_eq!(tl.value_at(s(10.0)), 30.0);
        assert_eq!(tl.value_at(s(1000.0)), 30.0);
    }

    #[test]
    fn ramp_is_linear_from_the_current_value_then_holds_the_target() {
        let tl = Timeline::new(vec![
            set(0.0, 23.0),
            seg(
                10.0,
                SegmentKind::Ramp {
                    target: 80.0,
                    over: s(20.0),
                },
            ),
        ])
        .unwrap();
        assert!(close(tl.value_at(s(10.0)), 23.0));
        assert!(close(tl.value_at(s(20.0)), 51.5));
        assert!(close(tl.value_at(s(30.0)), 80.0));
        assert!(close(tl.value_at(s(45.0)), 80.0));
    }

    #[test]
    fn an_interrupted_ramp_continues_from_where_it_was() {
        let tl = Timeline::new(vec![
            set(0.0, 0.0),
            seg(
                0.0,
                SegmentKind::Noise {
                    amplitude: 0.0,
                    seed: 1,
                    every: s(1.0),
                },
            ),
            seg(
                10.0,
                SegmentKind::Ramp {
                    target: 100.0,
                    over: s(10.0),
                },
            ),
            seg(
                15.0,
                SegmentKind::Ramp {
                    target: 0.0,
                    over: s(5.0),
                },
            ),
        ])
        .unwrap();
        assert!(close(tl.value_at(s(15.0)), 50.0));
        assert!(close(tl.value_at(s(17.5)), 25.0));
        assert!(close(tl.value_at(s(20.0)), 0.0));
    }

    #[test]
    fn exponential_approaches_the_target_with_time_constant_tau() {
        let tl = Timeline::new(vec![
            set(0.0, 25.0),
            seg(
                5.0,
                SegmentKind::Exponential {
                    target: 150.0,
                    tau: s(20.0),
                },
            ),
        ])
        .unwrap();
        assert!(close(tl.value_at(s(5.0)), 25.0));
        let one_tau = 150.0 - 125.0 * (-1.0f64).exp();
        assert!(close(tl.value_at(s(25.0)), one_tau));
        let v = tl.value_at(s(500.0));
        assert!(v < 150.0 && v > 149.99);
        assert!(tl.value_at(s(10.0)) < tl.value_at(s(11.0)));
    }

    #[test]
    fn spike_replaces_the_value_then_returns_to_the_base_timeline() {
        let tl = Timeline::new(vec![
            set(0.0, 23.0),
            seg(
                8.0,
                SegmentKind::Ramp {
                    target: 33.0,
                    over: s(10.0),
                },
            ),
            seg(
                10.0,
                SegmentKind::Spike {
                    value: 95.0,
                    hold: Duration::from_millis(300),
                },
            ),
        ])
        .unwrap();
        assert!(close(tl.value_at(s(9.999)), 24.999));
        assert_eq!(tl.value_at(s(10.0)), 95.0);
        assert_eq!(tl.value_at(s(10.299)), 95.0);
        // the ramp kept going underneath the spike
        assert!(close(tl.value_at(s(10.3)), 25.3));
        assert!(close(tl.base_value_at(s(10.1)), 25.1));
    }

    #[test]
    fn noise_is_bounded_and_deterministic_per_seed() {
        let noisy = |seed| {
            Timeline::new(vec![
                set(0.0, 23.0),
                seg(
                    1.0,
                    SegmentKind::Noise {
                        amplitude: 0.2,
                        seed,
                        every: s(1.0),
                    },
                ),
            ])
            .unwrap()
        };
        let a = noisy(7);
        let b = noisy(7);
        let c = noisy(8);
        assert_eq!(a.value_at(s(0.5)), 23.0, "no noise before it starts");
        let series = |tl: &Timeline| {
            (0..200)
                .map(|i| tl.value_at(s(1.0 + f64::from(i) * 0.5)))
                .collect::<Vec<_>>()
        };
        let (sa, sb, sc) = (series(&a), series(&b), series(&c));
        assert_eq!(sa, sb, "same seed, same noise");
        assert_ne!(sa, sc, "another seed, other noise");
        assert!(sa.iter().all(|v| (v - 23.0).abs() <= 0.2));
        assert!(
            sa.iter().any(|v| (v - 23.0).abs() > 0.1),
            "noise uses its range"
        );
        // one sample per `every`: constant within a step
        assert_eq!(a.value_at(s(3.1)), a.value_at(s(3.9)));
    }

    #[test]
    fn noise_amplitude_zero_turns_noise_off() {
        let tl = Timeline::new(vec![
            set(0.0, 5.0),
            seg(
                0.0,
                SegmentKind::Noise {
                    amplitude: 1.0,
                    seed: 3,
                    every: s(1.0),
                },
            ),
            seg(
                10.0,
                SegmentKind::Noise {
                    amplitude: 0.0,
                    seed: 3,
                    every: s(1.0),
                },
            ),
        ])
        .unwrap();
        assert_eq!(tl.value_at(s(12.0)), 5.0);
    }

    #[test]
    fn fault_lasts_until_cleared_and_counts_as_a_boundary() {
        let tl = Timeline::new(vec![
            set(0.0, 1.0),
            seg(45.0, SegmentKind::Fault(Fault::Exception)),
            seg(50.0, SegmentKind::Fault(Fault::None)),
        ])
        .unwrap();
        assert_eq!(tl.fault_at(s(44.9)), Fault::None);
        assert_eq!(tl.fault_at(s(45.0)), Fault::Exception);
        assert_eq!(tl.fault_at(s(49.9)), Fault::Exception);
        assert_eq!(tl.fault_at(s(50.0)), Fault::None);
        assert_eq!(tl.sample(s(0.0)).started, 1);
        assert_eq!(tl.sample(s(47.0)).started, 2);
        assert_eq!(tl.value_at(s(47.0)), 1.0);
    }

    #[test]
    fn check_lists_every_problem_with_its_segment() {
        let errors = check(&[
            seg(
                0.0,
                SegmentKind::Ramp {
                    target: 1.0,
                    over: Duration::ZERO,
                },
            ),
            set(5.0, f64::NAN),
            set(3.0, 1.0),
            set(3.0, 2.0),
            seg(
                4.0,
                SegmentKind::Noise {
                    amplitude: -1.0,
                    seed: 0,
                    every: s(1.0),
                },
            ),
        ]);
        assert_eq!(
            errors,
            vec![
                TimelineError::NoInitialValue { index: 0 },
                TimelineError::NotPositive {
                    index: 0,
                    field: "over"
                },
                TimelineError::NotFinite {
                    index: 1,
                    field: "set"
                },
                TimelineError::OutOfOrder {
                    index: 2,
                    at: s(3.0),
                    previous: s(5.0)
                },
                TimelineError::SameTime {
                    index: 3,
                    track: "value",
                    at: s(3.0)
                },
                TimelineError::NegativeAmplitude { index: 4 },
            ]
        );
        assert_eq!(check(&[]), vec![TimelineError::Empty]);
    }

    #[test]
    fn device_is_present_until_gone_and_back_when_told() {
        let tl = DeviceTimeline::new(vec![
            DeviceEvent {
                at: s(20.0),
                presence: Presence::Gone(GoneMode::Silent),
            },
            DeviceEvent {
                at: s(30.0),
                presence: Presence::Present,
            },
        ])
        .unwrap();
        assert_eq!(tl.presence_at(s(0.0)), Presence::Present);
        assert_eq!(tl.presence_at(s(20.0)), Presence::Gone(GoneMode::Silent));
        assert_eq!(tl.presence_at(s(30.0)), Presence::Present);
        assert!(DeviceTimeline::new(vec![
            DeviceEvent {
                at: s(2.0),
                presence: Presence::Present
            },
            DeviceEvent {
                at: s(1.0),
                presence: Presence::Present
            },
        ])
        .is_err());
    }

    #[test]
    fn freeze_holds_the_value_seen_at_its_start_while_the_room_moves_on() {
        let tl = Timeline::new(vec![
            set(0.0, 20.0),
            seg(
                0.001,
                SegmentKind::Ramp {
                    target: 30.0,
                    over: s(10.0),
                },
            ),
            seg(5.001, SegmentKind::Freeze { hold: s(3.0) }),
        ])
        .unwrap();
        assert!(close(tl.value_at(s(5.001)), 25.0));
        assert!(close(tl.value_at(s(7.9)), 25.0));
        assert!(close(tl.value_at(s(8.001)), 28.0));
    }

    #[test]
    fn dropout_answers_nothing_for_its_span_then_the_fault_track_shows_again() {
        let tl = Timeline::new(vec![
            set(0.0, 1.0),
            seg(2.0, SegmentKind::Fault(Fault::AllOnes)),
            seg(4.0, SegmentKind::Dropout { hold: s(1.0) }),
        ])
        .unwrap();
        assert_eq!(tl.fault_at(s(3.0)), Fault::AllOnes);
        assert_eq!(tl.fault_at(s(4.5)), Fault::Timeout);
        assert_eq!(tl.fault_at(s(5.0)), Fault::AllOnes);
        assert_eq!(tl.value_at(s(4.5)), 1.0);
    }
}
