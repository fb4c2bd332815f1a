//! The detection core: a pure state machine. Samples and a monotonic clock go in
//! (`observe`, `tick`); sensor state changes, zone level changes and "start the runbook"
//! decisions come out. No I/O, no locks, no `.await`, and no allocation per sample in
//! steady state (outputs go to a reused buffer; only zone level changes, which are rare,
//! allocate their evidence list).

pub mod rise;

use crate::config::{Config, ConfirmAcross, DetectParams, Kind};
use crate::names;
use rise::{Nanos, RiseWindow};
use serde::{Deserialize, Serialize};

const NONE: Nanos = Nanos::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Ok = 0,
    Warn = 1,
    Alarm = 2,
    Critical = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorState {
    Ok,
    Warn,
    Alarm,
    Critical,
    Stale,
    Fault,
}

impl SensorState {
    pub fn as_str(self) -> &'static str {
        names::name_of(&self)
    }

    pub fn parse(s: &str) -> Option<SensorState> {
        names::from_name(s)
    }

    fn from_level(l: Level) -> Self {
        match l {
            Level::Ok => SensorState::Ok,
            Level::Warn => SensorState::Warn,
            Level::Alarm => SensorState::Alarm,
            Level::Critical => SensorState::Critical,
        }
    }
}

/// Why a reading could not be used; reported by sources or found by the core. Named as
/// a `reason` is written (`fault:modbus_exception`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    #[serde(rename = "fault:modbus_exception")]
    ModbusException,
    #[serde(rename = "fault:out_of_range")]
    OutOfRange,
    #[serde(rename = "fault:not_a_number")]
    NotANumber,
    #[serde(rename = "fault:bad_payload")]
    BadPayload,
    #[serde(rename = "fault:no_data")]
    NoData,
    /// An MQTT payload over the 64 KiB limit.
    #[serde(rename = "fault:payload_too_large")]
    PayloadTooLarge,
    /// A payload that parsed but holds no number (text, object, null).
    #[serde(rename = "fault:not_numeric")]
    NotNumeric,
    /// The sensor's `json_pointer` names nothing in the payload.
    #[serde(rename = "fault:missing_field")]
    MissingField,
    /// The value has not changed at all for `frozen_after`.
    #[serde(rename = "fault:frozen")]
    Frozen,
    /// The value moved faster than `max_rate` since the sample before: a device glitch
    /// (a reboot reading 0, a gateway filling zeros, a spike), not the room.
    #[serde(rename = "fault:implausible_rate")]
    ImplausibleRate,
    /// The SNMP agent has no such object or instance (noSuchObject, noSuchInstance,
    /// endOfMibView) for the sensor's OID.
    #[serde(rename = "fault:no_such_object")]
    NoSuchObject,
    /// The SNMP agent answered the request with an error-status.
    #[serde(rename = "fault:snmp_error")]
    SnmpError,
    /// The BACnet device says the object is faulty: its status-flags have fault set, or
    /// its reliability is other than no-fault-detected.
    #[serde(rename = "fault:bacnet_fault")]
    BacnetFault,
    /// The BACnet object is out of service (its value is not the field's: someone is
    /// testing or overriding it).
    #[serde(rename = "fault:bacnet_out_of_service")]
    BacnetOutOfService,
    /// The BACnet device answered the read with an error, a reject or an abort (the class
    /// and code are logged).
    #[serde(rename = "fault:bacnet_error")]
    BacnetError,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        names::name_of(&self)
    }

    /// The kind named by a reason string (`fault:modbus_exception`, ...).
    pub fn parse(s: &str) -> Option<FaultKind> {
        names::from_name(s)
    }
}

/// Machine-readable reason of a state, as written in events (`above:alarm_above`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Above(Level),
    Below(Level),
    Rise(Level),
    Stale,
    Fault(FaultKind),
    Cleared,
    RuntimeBelowReserve,
    OnBatteryTooLong,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Above(Level::Warn) => "above:warn_above",
            Reason::Above(Level::Alarm) => "above:alarm_above",
            Reason::Above(_) => "above:critical_above",
            Reason::Below(Level::Warn) => "below:warn_below",
            Reason::Below(Level::Alarm) => "below:alarm_below",
            Reason::Below(_) => "below:critical_below",
            Reason::Rise(Level::Warn) => "rise:rise_warn",
            Reason::Rise(_) => "rise:rise_alarm",
            Reason::Stale => "stale",
            Reason::Fault(f) => f.as_str(),
            Reason::Cleared => "cleared",
            Reason::RuntimeBelowReserve => "power:runtime_below_reserve",
            Reason::OnBatteryTooLong => "power:on_battery_too_long",
        }
    }

    /// The reason named by `s` (`above:alarm_above`, `fault:frozen`, ...).
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::all().find(|r| r.as_str() == s)
    }

    /// Every reason the core gives, one per name.
    // Design: `as_str` is the one table (the names nest a level or a fault kind, which
    // serde's attributes cannot spell); `parse` searches it, so the two cannot disagree.
    pub fn all() -> impl Iterator<Item = Reason> {
        // A new variant does not compile here until it is listed below.
        let _listed = |r: Reason| match r {
            Reason::Above(_)
            | Reason::Below(_)
            | Reason::Rise(_)
            | Reason::Fault(_)
            | Reason::Stale
            | Reason::Cleared
            | Reason::RuntimeBelowReserve
            | Reason::OnBatteryTooLong => (),
        };
        [Level::Warn, Level::Alarm, Level::Critical]
            .into_iter()
            .flat_map(|l| [Reason::Above(l), Reason::Below(l), Reason::Rise(l)])
            .chain(names::all::<FaultKind>().map(Reason::Fault))
            .chain([
                Reason::Stale,
                Reason::Cleared,
                Reason::RuntimeBelowReserve,
                Reason::OnBatteryTooLong,
            ])
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Reason::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown reason `{s}`")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneLevel {
    Normal,
    Warning,
    Alarm,
    Critical,
}

impl ZoneLevel {
    pub fn as_str(self) -> &'static str {
        names::name_of(&self)
    }

    pub fn parse(s: &str) -> Option<ZoneLevel> {
        names::from_name(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Fire,
    Power,
    Manual,
    Drill,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        names::name_of(&self)
    }

    pub fn parse(s: &str) -> Option<Cause> {
        names::from_name(s)
    }
}

impl std::fmt::Display for SensorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for ZoneLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    Value(f64),
    Fault(FaultKind),
}

/// One reading of one sensor, stamped with the monotonic clock when it was taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub sensor: u32,
    pub at: Nanos,
    pub reading: Reading,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub sensor: u32,
    pub state: SensorState,
    pub value: Option<f64>,
    pub reason: Reason,
    /// Counted once with the other sensors of its source, which all entered their alarm
    /// at the same instant: a device glitch, not independent evidence.
    pub common_mode: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Sensor {
        sensor: u32,
        from: SensorState,
        to: SensorState,
        value: Option<f64>,
        reason: Reason,
    },
    Zone {
        zone: u32,
        from: ZoneLevel,
        to: ZoneLevel,
        evidence: Vec<Evidence>,
    },
    /// The zone became critical: start its runbook (once per incident).
    Critical { zone: u32, cause: Cause },
}

/// Detection parameters in the core's units (nanoseconds, per second).
///
/// Layout: the first 64 bytes are what a quiet sample reads (see `SensorRt`).
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Params {
    rise: [f64; 2],
    /// Fastest change (per second) the rise window is fed; see `update_rise`.
    slew: f64,
    /// `NONE` when the frozen check is off.
    frozen_after: Nanos,
    min: f64,
    max: f64,
    stale_after: Nanos,
    /// Fastest credible change per nanosecond (`max_rate`); infinite when off.
    max_step: f64,
    // Read only when a value is near a threshold or a condition is pending.
    above: [f64; 3],
    below: [f64; 3],
    hold: Nanos,
    hysteresis: f64,
    /// The rise window's span (the window keeps its own copy for the hot path).
    rise_window: Nanos,
}

/// The rise window is fed at most this many times the highest rise threshold.
const SLEW_FACTOR: f64 = 4.0;

impl Params {
    pub fn from_config(p: &DetectParams) -> Self {
        let on = |v: Option<f64>, off: f64| v.unwrap_or(off);
        Params {
            above: [
                on(p.warn_above, f64::INFINITY),
                on(p.alarm_above, f64::INFINITY),
                on(p.critical_above, f64::INFINITY),
            ],
            below: [
                on(p.warn_below, f64::NEG_INFINITY),
                on(p.alarm_below, f64::NEG_INFINITY),
                on(p.critical_below, f64::NEG_INFINITY),
            ],
            rise: [
                p.rise_warn.map(|r| r / 60.0).unwrap_or(f64::INFINITY),
                p.rise_alarm.map(|r| r / 60.0).unwrap_or(f64::INFINITY),
            ],
            hold: p.hold.as_nanos() as Nanos,
            hysteresis: p.hysteresis,
            stale_after: p.stale_after.as_nanos() as Nanos,
            frozen_after: p.frozen_after.map_or(NONE, |d| d.as_nanos() as Nanos),
            min: p.min,
            max: p.max,
            max_step: p.max_rate.map_or(f64::INFINITY, |r| r / 60.0 / 1e9),
            rise_window: p.rise_window.as_nanos() as Nanos,
            slew: {
                let fastest = [p.rise_warn, p.rise_alarm]
                    .into_iter()
                    .flatten()
                    .fold(0.0f64, f64::max);
                SLEW_FACTOR * fastest / 60.0
            },
        }
    }

    fn has_rise(&self) -> bool {
        self.rise.iter().any(|r| r.is_finite())
    }

    /// Values for which no threshold condition can start (`v > above[l]` and
    /// `v < below[l]` are false for every level) and that are in range. Clamped to finite
    /// bounds so that an infinite value never passes (it is a fault).
    fn quiet_band(&self) -> (f64, f64) {
        let lo = self.below.iter().fold(self.min, |a, &b| a.max(b));
        let hi = self.above.iter().fold(self.max, |a, &b| a.min(b));
        (lo.max(f64::MIN), hi.min(f64::MAX))
    }
}

#[derive(Debug, Clone)]
#[repr(C)]
pub struct SensorSpec {
    pub zone: u32,
    pub kind: Kind,
    /// Keep after `zone` and `kind`: its first 64 bytes are hot (see `SensorRt`).
    pub params: Params,
    /// Samples the rise window may hold (from the expected sample rate).
    pub rise_capacity: usize,
    /// The device (source) the sensor is read from; `None`: a device of its own (and every
    /// sensor behind an MQTT broker). Sensors of one device whose alarms began while it was
    /// suspect of a glitch count once toward `confirm`.
    pub source: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ZoneSpec {
    pub confirm: u32,
    pub confirm_across: ConfirmAcross,
    pub stale_votes: bool,
    /// Power rule: critical when on battery and runtime below this many seconds.
    pub runtime_floor_s: f64,
    pub max_on_battery: Option<Nanos>,
}

// Design: with thousands of sensors the per-sensor state is not in cache when a sample
// arrives, so the cost of `observe` is mostly the cache lines it touches. The fields a
// quiet sample reads and writes come first (this state, the rise window, then `spec`'s
// zone, kind and first 64 bytes of parameters: 256 bytes, four cache lines with the
// alignment); what only a sample near a threshold needs comes after.
#[repr(C, align(64))]
struct SensorRt {
    value: f64,
    last_good: Nanos,
    /// When the value last differed from the one before (frozen check); `NONE` before the
    /// first good sample after silence.
    last_change: Nanos,
    /// `[lo, hi]`: no threshold is crossed and the value is in range; empty when unused.
    band: (f64, f64),
    /// The slew-limited value last fed to the rise window, and when.
    rise_input: f64,
    rise_input_at: Nanos,
    rise_since: [Nanos; 2],
    state: SensorState,
    reason: Reason,
    /// State ok and no condition pending: a value inside `band` cannot start one, so
    /// `observe` skips the threshold checks (see `quiet_band`).
    quiet: bool,
    /// Went stale or faulty while at alarm or above: it keeps the zone at alarm until it
    /// reports again (stale data must never silently resolve an alarm).
    silenced_in_alarm: bool,
    window: Option<RiseWindow>,
    spec: SensorSpec,
    last_fault: Nanos,
    above_since: [Nanos; 3],
    below_since: [Nanos; 3],
    /// When the sensor entered alarm or critical (its vote toward `confirm`); `NONE` while
    /// it does not vote.
    vote_since: Nanos,
}

struct ZoneRt {
    spec: ZoneSpec,
    sensors: Vec<u32>,
    level: ZoneLevel,
    latched: bool,
    dirty: bool,
    on_battery_since: Nanos,
}

pub struct Detector {
    sensors: Vec<SensorRt>,
    zones: Vec<ZoneRt>,
    out: Vec<Output>,
    /// Zones whose sensors changed since they were last evaluated.
    dirty: Vec<u32>,
    /// Latest monotonic time seen (samples or ticks): zones are evaluated at this time.
    now: Nanos,
    /// Take the shortcuts (the quiet band in `observe`, `due` in `tick`); off only in
    /// tests that compare them with the full evaluation.
    fast: bool,
    /// Per sensor, the earliest time `tick` may have something to do for it (0: check on
    /// every tick). A dense array, so a tick over a quiet site scans 8 bytes per sensor
    /// instead of visiting every sensor's state.
    due: Vec<Nanos>,
    /// Per source (`SensorSpec::source`), what its sensors did at its latest instant.
    sources: Vec<SourceRt>,
}

/// A source's sensors at one instant, to tell a device glitch from the room: all of them
/// read exactly 0, at least one of them after reading something else (a module warming
/// up, a gateway filling the registers of a lost device),
/// all report the same fault (the same sentinel, the same exception), or all come back
/// from stale or fault together (a reconnect). Then the source is suspect for a rise
/// window: its sensors' alarm votes count once (`common_mode`).
#[derive(Debug, Clone, Default)]
struct SourceRt {
    /// How many sensors read from this source (only sources with two or more are judged).
    sensors: u32,
    /// The longest rise window of its sensors: how long a glitch can drive a slope.
    window: Nanos,
    at: Nanos,
    zeros: u32,
    /// Of `zeros`, the sensors that read something else before.
    zeroed: u32,
    faults: u32,
    fault: Option<FaultKind>,
    returned: u32,
    /// The current or latest suspect period (`NONE`, 0 before any).
    suspect_from: Nanos,
    suspect_until: Nanos,
}

impl SourceRt {
    /// Whether a vote that began at `since` began while the source was suspect: such a
    /// vote stays common-mode for as long as it lasts.
    fn tainted(&self, since: Nanos) -> bool {
        since != NONE && since >= self.suspect_from && since <= self.suspect_until
    }
}

// Design: zones are evaluated lazily, once the clock moves past the time of the samples
// that changed them (or on `tick`/`drain`). Evaluating after every sample would let the
// order of samples taken at the same instant decide the outcome: sensor A clearing and
// sensor B rising at the same time must not briefly count as two alarm votes.

impl Detector {
    /// `start` is the monotonic time the agent started: a sensor never heard from goes
    /// stale `stale_after` later.
    pub fn new(sensors: Vec<SensorSpec>, zones: Vec<ZoneSpec>, start: Nanos) -> Self {
        let mut zrt: Vec<ZoneRt> = zones
            .into_iter()
            .map(|spec| ZoneRt {
                spec,
                sensors: Vec::new(),
                level: ZoneLevel::Normal,
                latched: false,
                dirty: false,
                on_battery_since: NONE,
            })
            .collect();
        let n_sensors = sensors.len();
        let sensors: Vec<SensorRt> = sensors
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                if let Some(z) = zrt.get_mut(spec.zone as usize) {
                    z.sensors.push(i as u32);
                }
                let window = spec
                    .params
                    .has_rise()
                    .then(|| RiseWindow::new(spec.params.rise_window, spec.rise_capacity));
                SensorRt {
                    state: SensorState::Ok,
                    reason: Reason::Cleared,
                    value: f64::NAN,
                    last_good: start,
                    last_fault: 0,
                    last_change: NONE,
                    silenced_in_alarm: false,
                    above_since: [NONE; 3],
                    below_since: [NONE; 3],
                    rise_since: [NONE; 2],
                    vote_since: NONE,
                    window,
                    rise_input: f64::NAN,
                    rise_input_at: 0,
                    quiet: true,
                    band: spec.params.quiet_band(),
                    spec,
                }
            })
            .collect();
        let dirty = Vec::with_capacity(zrt.len());
        let mut sources: Vec<SourceRt> = Vec::new();
        for s in &sensors {
            if let Some(src) = s.spec.source {
                let src = src as usize;
                if sources.len() <= src {
                    sources.resize(src + 1, SourceRt::default());
                }
                sources[src].sensors += 1;
                sources[src].window = sources[src].window.max(s.spec.params.rise_window);
                sources[src].at = NONE;
                sources[src].suspect_from = NONE;
            }
        }
        Detector {
            sensors,
            zones: zrt,
            out: Vec::with_capacity(64),
            dirty,
            now: start,
            fast: true,
            due: vec![0; n_sensors],
            sources,
        }
    }

    /// Builds the core for a validated config.
    pub fn from_config(config: &Config, start: Nanos) -> Self {
        let sensors = config
            .sensors
            .iter()
            .map(|s| {
                let expected_interval = config.sources[s.source].spec.expected_interval();
                let per_window =
                    s.detect.rise_window.as_secs_f64() / expected_interval.as_secs_f64().max(1e-3);
                SensorSpec {
                    zone: s.zone as u32,
                    kind: s.kind,
                    params: Params::from_config(&s.detect),
                    rise_capacity: ((per_window * 2.0) as usize + 8).min(8192),
                    // A device's sensors fail together; an MQTT broker is many devices.
                    source: config.sources[s.source]
                        .spec
                        .is_one_device()
                        .then_some(s.source as u32),
                }
            })
            .collect();
        let zones = config
            .zones
            .iter()
            .map(|z| {
                let budget = config.runbooks[z.runbook].budget.unwrap_or_default();
                ZoneSpec {
                    confirm: z.confirm,
                    confirm_across: z.confirm_across,
                    stale_votes: z.stale_votes,
                    runtime_floor_s: (z.power_reserve + budget).as_secs_f64(),
                    max_on_battery: z.max_on_battery.map(|d| d.as_nanos() as Nanos),
                }
            })
            .collect();
        Detector::new(sensors, zones, start)
    }

    /// Outputs produced since the last drain, in order. Zones changed by the samples seen
    /// so far are evaluated first.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.flush();
        self.out.drain(..)
    }

    pub fn sensor_count(&self) -> usize {
        self.sensors.len()
    }

    pub fn zone_count(&self) -> usize {
        self.zones.len()
    }

    pub fn sensor_state(&self, sensor: u32) -> (SensorState, Option<f64>) {
        let s = &self.sensors[sensor as usize];
        (s.state, s.value.is_finite().then_some(s.value))
    }

    /// Monotonic time of the sensor's last good sample (the start time if none yet).
    pub fn last_good(&self, sensor: u32) -> Nanos {
        self.sensors[sensor as usize].last_good
    }

    /// The sensor's rate of change per second from its rise window (least squares, once
    /// the window spans half its length); `None` for sensors without rise detection.
    pub fn sensor_rate(&self, sensor: u32) -> Option<f64> {
        let s = self.sensors.get(sensor as usize)?;
        s.window.as_ref()?.slope(s.spec.params.rise_window / 2)
    }

    /// Why the sensor is in its state (`above:alarm_above`, `stale`, ...).
    pub fn sensor_reason(&self, sensor: u32) -> Reason {
        self.sensors[sensor as usize].reason
    }

    /// The zone's level as of the last evaluation (`drain`, `tick`, or a later sample).
    pub fn zone_level(&self, zone: u32) -> ZoneLevel {
        self.zones[zone as usize].level
    }

    pub fn is_latched(&self, zone: u32) -> bool {
        self.zones[zone as usize].latched
    }

    /// Feeds one sample. Unknown sensor indices are ignored.
    pub fn observe(&mut self, sample: Sample) {
        let now = sample.at;
        if now > self.now {
            self.flush();
            self.now = now;
        }
        let i = sample.sensor as usize;
        let Some(s) = self.sensors.get_mut(i) else {
            return;
        };
        let fast = self.fast;
        // A device that zeroes its registers moves readings to 0; a sensor that sits at 0
        // (an off-gas sensor in clean air) does not make its device suspect.
        let was_nonzero = s.value != 0.0 && s.value.is_finite();
        let p = &s.spec.params;
        let fault = match sample.reading {
            Reading::Fault(f) => Some(f),
            Reading::Value(v) if !v.is_finite() => Some(FaultKind::NotANumber),
            Reading::Value(v) if v < p.min || v > p.max => Some(FaultKind::OutOfRange),
            // Faster than the physics allows since the last good sample: the device, not the
            // room. Not checked on the first sample after silence (there is no "before";
            // the slope window restarts there too).
            Reading::Value(v)
                if s.last_change != NONE
                    && now > s.last_good
                    && (v - s.value).abs() > p.max_step * (now - s.last_good) as f64 =>
            {
                Some(FaultKind::ImplausibleRate)
            }
            // Same value as before (exactly) for `frozen_after`: a stuck sensor or a stuck
            // register block, not a quiet room.
            Reading::Value(v)
                if v == s.value
                    && s.last_change != NONE
                    && now.saturating_sub(s.last_change) >= p.frozen_after =>
            {
                Some(FaultKind::Frozen)
            }
            Reading::Value(_) => None,
        };
        let before = s.state;
        let changed = match (fault, sample.reading) {
            (Some(f), reading) => {
                s.last_fault = now;
                if f != FaultKind::Frozen {
                    s.last_change = NONE;
                }
                if s.state != SensorState::Fault || s.reason != Reason::Fault(f) {
                    s.silence();
                    let value = match reading {
                        Reading::Value(v) if v.is_finite() => Some(v),
                        _ => None,
                    };
                    s.state = SensorState::Fault;
                    s.vote_since = vote_start(s.vote_since, s.state, now);
                    s.quiet = false;
                    s.reason = Reason::Fault(f);
                    self.out.push(Output::Sensor {
                        sensor: i as u32,
                        from: before,
                        to: SensorState::Fault,
                        value,
                        reason: Reason::Fault(f),
                    });
                }
                s.state != before
            }
            (None, Reading::Value(v)) => {
                // Design: the steady state of a quiet site is "ok, nothing pending, value
                // well inside its thresholds"; then the threshold conditions cannot change
                // and are not evaluated (the rise window still is). The property test
                // `fast_path_matches_the_full_evaluation` checks this against the full path.
                let quick = fast && s.quiet && v >= s.band.0 && v <= s.band.1;
                if matches!(s.state, SensorState::Stale | SensorState::Fault) {
                    // Back from silence: old conditions and slope no longer describe it.
                    s.reset_conditions();
                    s.silenced_in_alarm = false;
                    s.state = SensorState::Ok;
                    s.vote_since = vote_start(s.vote_since, s.state, now);
                    s.reason = Reason::Cleared;
                }
                if v != s.value || s.last_change == NONE {
                    s.last_change = now;
                }
                // Power kinds drive the zone's power rule through their value, not only
                // their state.
                // Runtime only counts while the zone is on battery (a change of the
                // on-battery value marks the zone itself), so the jitter of an idle UPS's
                // runtime does not re-evaluate its zone on every poll.
                let power_changed = match s.spec.kind {
                    Kind::OnBattery => v.to_bits() != s.value.to_bits(),
                    Kind::Runtime => {
                        v.to_bits() != s.value.to_bits()
                            && self.zones[s.spec.zone as usize].on_battery_since != NONE
                    }
                    _ => false,
                };
                s.last_good = now;
                s.value = v;
                if !quick {
                    s.update_thresholds(v, now);
                }
                s.update_rise(v, now);
                let rise_pending = s.rise_since != [NONE; 2];
                let (level, reason) = if quick && !rise_pending {
                    (Level::Ok, Reason::Cleared)
                } else {
                    s.evaluate(now)
                };
                let to = SensorState::from_level(level);
                s.reason = reason;
                s.quiet = if quick {
                    to == SensorState::Ok && !rise_pending
                } else {
                    to == SensorState::Ok && !s.has_pending()
                };
                if to != before {
                    s.state = to;
                    s.vote_since = vote_start(s.vote_since, s.state, now);
                    self.out.push(Output::Sensor {
                        sensor: i as u32,
                        from: before,
                        to,
                        value: Some(v),
                        reason,
                    });
                }
                to != before || power_changed
            }
            (None, Reading::Fault(_)) => unreachable!("a fault reading always has a fault kind"),
        };
        self.due[i] = self.sensors[i].due();
        let mut changed = changed;
        // Only a zero, a fault or a return can make a source suspect: a quiet sample does
        // not touch the source's state (nor `spec.source`, outside the hot cache lines).
        let returned = fault.is_none() && matches!(before, SensorState::Stale | SensorState::Fault);
        if fault.is_some() || returned || sample.reading == Reading::Value(0.0) {
            if let Some(src) = self.sensors[i].spec.source {
                changed |= self.note_source(src, now, sample.reading, fault, returned, was_nonzero);
            }
        }
        if changed {
            let zone = self.sensors[i].spec.zone;
            self.mark(zone);
        }
    }

    /// Records a zero, a fault or a return of one sensor of `src` at `now` (other samples
    /// are not passed: they cannot make the source suspect); returns whether the source
    /// just became (or stays) suspect of a device glitch.
    fn note_source(
        &mut self,
        src: u32,
        now: Nanos,
        reading: Reading,
        fault: Option<FaultKind>,
        returned: bool,
        was_nonzero: bool,
    ) -> bool {
        let Some(r) = self.sources.get_mut(src as usize) else {
            return false;
        };
        if r.sensors < 2 {
            return false;
        }
        if r.at != now {
            r.at = now;
            r.zeros = 0;
            r.zeroed = 0;
            r.faults = 0;
            r.fault = None;
            r.returned = 0;
        }
        match (fault, reading) {
            (Some(f), _) if r.faults == 0 || r.fault == Some(f) => {
                r.fault = Some(f);
                r.faults += 1;
            }
            (None, Reading::Value(0.0)) => {
                r.zeros += 1;
                r.zeroed += u32::from(was_nonzero);
            }
            _ => {}
        }
        r.returned += u32::from(returned);
        let all = r.sensors;
        // Each sensor reports once per instant, so a count reaching `all` means every one.
        // All zeros start a suspicion when one of them is new, and keep one going.
        let zeroes = r.zeros == all && (r.zeroed > 0 || now <= r.suspect_until);
        if zeroes || r.faults == all || r.returned == all {
            if r.suspect_from == NONE || now > r.suspect_until {
                r.suspect_from = now;
            }
            r.suspect_until = now.saturating_add(r.window.max(1));
            return true;
        }
        false
    }

    /// Advances time: stale sensors, holds that expired without a new sample, the
    /// on-battery timer. Zones changed by earlier samples are evaluated first, at their
    /// time.
    pub fn tick(&mut self, now: Nanos) {
        self.flush();
        self.now = self.now.max(now);
        for i in 0..self.sensors.len() {
            if self.fast && self.due[i] > now {
                continue;
            }
            self.tick_sensor(i, now);
            self.due[i] = self.sensors[i].due();
        }
        for z in 0..self.zones.len() {
            if self.zones[z].on_battery_since != NONE && self.zones[z].spec.max_on_battery.is_some()
            {
                self.mark(z as u32);
            }
        }
        self.flush();
    }

    /// Stale check and expired holds for one sensor.
    fn tick_sensor(&mut self, i: usize, now: Nanos) {
        let s = &mut self.sensors[i];
        let before = s.state;
        let last = if before == SensorState::Fault {
            s.last_good.max(s.last_fault)
        } else {
            s.last_good
        };
        if before != SensorState::Stale && now.saturating_sub(last) > s.spec.params.stale_after {
            s.silence();
            s.last_change = NONE;
            s.state = SensorState::Stale;
            s.vote_since = vote_start(s.vote_since, s.state, now);
            s.quiet = false;
            s.reason = Reason::Stale;
            let value = s.value.is_finite().then_some(s.value);
            self.out.push(Output::Sensor {
                sensor: i as u32,
                from: before,
                to: SensorState::Stale,
                value,
                reason: Reason::Stale,
            });
            let zone = s.spec.zone;
            self.mark(zone);
            return;
        }
        if matches!(before, SensorState::Stale | SensorState::Fault) || !s.has_pending() {
            return;
        }
        let (level, reason) = s.evaluate(now);
        let to = SensorState::from_level(level);
        if to != before {
            s.state = to;
            s.vote_since = vote_start(s.vote_since, s.state, now);
            s.quiet = to == SensorState::Ok && !s.has_pending();
            s.reason = reason;
            let value = s.value.is_finite().then_some(s.value);
            self.out.push(Output::Sensor {
                sensor: i as u32,
                from: before,
                to,
                value,
                reason,
            });
            let zone = s.spec.zone;
            self.mark(zone);
        }
    }

    /// Operator reset: ends the incident latch and re-evaluates the zone from its sensors.
    /// If the zone is still critical, that is a new incident (a new `Critical` output).
    pub fn reset(&mut self, zone: u32, now: Nanos) {
        self.flush();
        self.now = self.now.max(now);
        if let Some(z) = self.zones.get_mut(zone as usize) {
            z.latched = false;
            self.evaluate_zone(zone, self.now);
        }
    }

    /// Marks a zone critical from outside the sensors (manual failover): latches it. The
    /// caller starts the runbook; the zone's level change is reported on the next
    /// evaluation, with the sensors' evidence.
    pub fn latch(&mut self, zone: u32) {
        if let Some(z) = self.zones.get_mut(zone as usize) {
            z.latched = true;
            self.mark(zone);
        }
    }

    fn mark(&mut self, zone: u32) {
        if let Some(z) = self.zones.get_mut(zone as usize) {
            if !z.dirty {
                z.dirty = true;
                self.dirty.push(zone);
            }
        }
    }

    /// Evaluates the zones marked dirty, in zone order, at the latest time seen.
    fn flush(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        // In zone order, so that the outputs do not depend on which sample came first.
        self.dirty.sort_unstable();
        let now = self.now;
        for k in 0..self.dirty.len() {
            let z = self.dirty[k];
            self.zones[z as usize].dirty = false;
            self.evaluate_zone(z, now);
        }
        self.dirty.clear();
    }

    fn evaluate_zone(&mut self, zone: u32, now: Nanos) {
        let Some(z) = self.zones.get(zone as usize) else {
            return;
        };
        let mut alarm_votes = 0u32;
        let mut any_critical = false;
        let mut warnish = false;
        let mut stale_or_fault = 0u32;
        let mut silenced_in_alarm = false;
        let mut on_battery = false;
        let mut min_runtime = f64::INFINITY;
        let mut runtime_sensor = None;
        let across = z.spec.confirm_across;
        for (k, &si) in z.sensors.iter().enumerate() {
            let s = &self.sensors[si as usize];
            match s.state {
                SensorState::Critical | SensorState::Alarm => {
                    any_critical |= s.state == SensorState::Critical;
                    if !counted_before(&self.sensors, &self.sources, &z.sensors, k, across) {
                        alarm_votes += 1;
                    }
                }
                SensorState::Warn => warnish = true,
                SensorState::Stale | SensorState::Fault => {
                    // Under "sources", a device's silent sensors vote once, and not at
                    // all when another of its sensors votes already.
                    let repeated = across == ConfirmAcross::Sources
                        && s.spec.source.is_some()
                        && z.sensors.iter().enumerate().any(|(j, &o)| {
                            let t = &self.sensors[o as usize];
                            t.spec.source == s.spec.source
                                && (votes(t.state)
                                    || (j < k
                                        && matches!(
                                            t.state,
                                            SensorState::Stale | SensorState::Fault
                                        )))
                        });
                    if !repeated {
                        stale_or_fault += 1;
                    }
                    warnish = true;
                    silenced_in_alarm |= s.silenced_in_alarm;
                }
                SensorState::Ok => {}
            }
            let usable =
                !matches!(s.state, SensorState::Stale | SensorState::Fault) && s.value.is_finite();
            match s.spec.kind {
                Kind::OnBattery if usable && s.value >= 0.5 => on_battery = true,
                Kind::Runtime if usable && s.value < min_runtime => {
                    min_runtime = s.value;
                    runtime_sensor = Some(si);
                }
                _ => {}
            }
        }
        let votes = alarm_votes
            + if z.spec.stale_votes && alarm_votes > 0 {
                stale_or_fault
            } else {
                0
            };
        let fire = any_critical || votes >= z.spec.confirm;
        let on_battery_since = match (on_battery, z.on_battery_since) {
            (true, NONE) => now,
            (true, since) => since,
            (false, _) => NONE,
        };
        let runtime_low = on_battery && min_runtime < z.spec.runtime_floor_s;
        let too_long = on_battery
            && z.spec
                .max_on_battery
                .is_some_and(|max| now.saturating_sub(on_battery_since) >= max);
        let power = runtime_low || too_long;
        let computed = if fire || power {
            ZoneLevel::Critical
        } else if alarm_votes > 0 || silenced_in_alarm {
            ZoneLevel::Alarm
        } else if warnish {
            ZoneLevel::Warning
        } else {
            ZoneLevel::Normal
        };
        let cause = if fire || !power {
            Cause::Fire
        } else {
            Cause::Power
        };
        let z = &mut self.zones[zone as usize];
        z.on_battery_since = on_battery_since;
        let to = if z.latched {
            ZoneLevel::Critical
        } else {
            computed
        };
        if to == z.level {
            if to == ZoneLevel::Critical && !z.latched {
                // Reset while the evidence is still there: a new incident.
                z.latched = true;
                self.out.push(Output::Critical { zone, cause });
            }
            return;
        }
        let from = z.level;
        z.level = to;
        let mut evidence: Vec<Evidence> = z
            .sensors
            .iter()
            .map(|&si| (si, &self.sensors[si as usize]))
            .filter(|(_, s)| s.state != SensorState::Ok)
            .map(|(si, s)| Evidence {
                sensor: si,
                state: s.state,
                value: s.value.is_finite().then_some(s.value),
                reason: s.reason,
                common_mode: common_mode(&self.sensors, &self.sources, &z.sensors, si),
            })
            .collect();
        if power {
            let reason = if runtime_low {
                Reason::RuntimeBelowReserve
            } else {
                Reason::OnBatteryTooLong
            };
            let sensor = if runtime_low {
                runtime_sensor
            } else {
                z.sensors
                    .iter()
                    .copied()
                    .find(|&si| self.sensors[si as usize].spec.kind == Kind::OnBattery)
            };
            if let Some(si) = sensor {
                let s = &self.sensors[si as usize];
                evidence.push(Evidence {
                    sensor: si,
                    state: s.state,
                    value: s.value.is_finite().then_some(s.value),
                    reason,
                    common_mode: false,
                });
            }
        }
        self.out.push(Output::Zone {
            zone,
            from,
            to,
            evidence,
        });
        if to == ZoneLevel::Critical && !z.latched {
            z.latched = true;
            self.out.push(Output::Critical { zone, cause });
        }
    }
}

/// When a sensor's vote toward `confirm` began, once its state is `to` at `now`: kept
/// while it stays at alarm or above, `NONE` below.
fn vote_start(since: Nanos, to: SensorState, now: Nanos) -> Nanos {
    match to {
        SensorState::Alarm | SensorState::Critical if since == NONE => now,
        SensorState::Alarm | SensorState::Critical => since,
        _ => NONE,
    }
}

fn votes(state: SensorState) -> bool {
    matches!(state, SensorState::Alarm | SensorState::Critical)
}

/// Whether sensor `si` votes as part of a common-mode group of its zone: its vote and
/// another's of its source both began while the source was suspect of a device glitch
/// (`SourceRt`). A device that reboots, or a gateway that fills the registers of a lost
/// device with zeros, moves all its sensors at once, and what follows is not evidence.
fn common_mode(sensors: &[SensorRt], sources: &[SourceRt], zone_sensors: &[u32], si: u32) -> bool {
    let s = &sensors[si as usize];
    let Some(source) = s.spec.source else {
        return false;
    };
    let Some(r) = sources.get(source as usize) else {
        return false;
    };
    votes(s.state)
        && r.tainted(s.vote_since)
        && zone_sensors.iter().any(|&o| {
            let t = &sensors[o as usize];
            o != si && t.spec.source == Some(source) && votes(t.state) && r.tainted(t.vote_since)
        })
}

/// Whether the vote of the sensor at `k` in `zone_sensors` is already counted by an
/// earlier one: one vote per source under `confirm_across = "sources"`, one per
/// common-mode group otherwise.
fn counted_before(
    sensors: &[SensorRt],
    sources: &[SourceRt],
    zone_sensors: &[u32],
    k: usize,
    across: ConfirmAcross,
) -> bool {
    let s = &sensors[zone_sensors[k] as usize];
    let Some(source) = s.spec.source else {
        return false;
    };
    let same = |o: &u32| {
        let t = &sensors[*o as usize];
        t.spec.source == Some(source) && votes(t.state)
    };
    match across {
        ConfirmAcross::Sources => zone_sensors[..k].iter().any(same),
        ConfirmAcross::Sensors => {
            let Some(r) = sources.get(source as usize) else {
                return false;
            };
            r.tainted(s.vote_since)
                && zone_sensors[..k]
                    .iter()
                    .any(|o| same(o) && r.tainted(sensors[*o as usize].vote_since))
        }
    }
}

impl SensorRt {
    /// The earliest time `tick` can change this sensor: its stale deadline when nothing is
    /// pending, never while stale (only a sample revives it), and every tick while a hold
    /// is running.
    fn due(&self) -> Nanos {
        let stale_at = |last: Nanos| last.saturating_add(self.spec.params.stale_after);
        match self.state {
            SensorState::Stale => NONE,
            SensorState::Fault => stale_at(self.last_good.max(self.last_fault)),
            // `quiet` implies nothing pending (and saves reading the conditions).
            SensorState::Ok if self.quiet => stale_at(self.last_good),
            _ if self.has_pending() => 0,
            _ => stale_at(self.last_good),
        }
    }

    /// Stops trusting the sensor (stale or fault): pending conditions and the slope go.
    fn silence(&mut self) {
        if matches!(self.state, SensorState::Alarm | SensorState::Critical) {
            self.silenced_in_alarm = true;
        }
        self.reset_conditions();
    }

    fn reset_conditions(&mut self) {
        self.above_since = [NONE; 3];
        self.below_since = [NONE; 3];
        self.rise_since = [NONE; 2];
        if let Some(w) = &mut self.window {
            w.clear();
        }
    }

    fn has_pending(&self) -> bool {
        self.above_since
            .iter()
            .chain(&self.below_since)
            .chain(&self.rise_since)
            .any(|&t| t != NONE)
    }

    fn update_thresholds(&mut self, v: f64, now: Nanos) {
        let p = &self.spec.params;
        let h = p.hysteresis;
        // A condition that has been counted (held for `for`) clears only `hysteresis`
        // beyond its threshold; one still pending clears at the threshold, so a spike
        // cannot leave behind a condition that the hysteresis band keeps alive.
        let counted = |since: Nanos| since != NONE && now.saturating_sub(since) >= p.hold;
        for l in 0..3 {
            let active = counted(self.above_since[l]);
            let on = if active {
                v > p.above[l] - h
            } else {
                v > p.above[l]
            };
            self.above_since[l] = if on {
                self.above_since[l].min(now)
            } else {
                NONE
            };
            let active = counted(self.below_since[l]);
            let on = if active {
                v < p.below[l] + h
            } else {
                v < p.below[l]
            };
            self.below_since[l] = if on {
                self.below_since[l].min(now)
            } else {
                NONE
            };
        }
    }

    fn update_rise(&mut self, v: f64, now: Nanos) {
        let p = &self.spec.params;
        if let Some(w) = &mut self.window {
            // Design: a least-squares slope is pulled hard by one outlier, and the pull
            // lasts as long as the outlier stays in the window, far longer than `for`. So
            // the window is fed a slew-limited copy of the value (at most SLEW_FACTOR times
            // the highest rise threshold): a spike shorter than `for` moves it by a
            // fraction of a degree, while a real fire still reads as a rise of at least
            // SLEW_FACTOR x rise_alarm. Thresholds see the raw value.
            let fed = if w.is_empty() || !self.rise_input.is_finite() {
                v
            } else {
                let dt = now.saturating_sub(self.rise_input_at) as f64 * 1e-9;
                let max = p.slew * dt;
                self.rise_input + (v - self.rise_input).clamp(-max, max)
            };
            self.rise_input = fed;
            self.rise_input_at = now;
            w.push(now, fed);
            let slope = w.slope(w.window() / 2);
            for l in 0..2 {
                let on = slope.is_some_and(|s| s > p.rise[l]);
                self.rise_since[l] = if on {
                    self.rise_since[l].min(now)
                } else {
                    NONE
                };
            }
        }
    }

    /// The highest level whose condition has held for `for`.
    fn evaluate(&self, now: Nanos) -> (Level, Reason) {
        let hold = self.spec.params.hold;
        let held = |since: Nanos| since != NONE && now.saturating_sub(since) >= hold;
        let levels = [Level::Warn, Level::Alarm, Level::Critical];
        let mut best = (Level::Ok, Reason::Cleared);
        for (l, level) in levels.iter().enumerate() {
            if held(self.above_since[l]) && *level > best.0 {
                best = (*level, Reason::Above(*level));
            }
            if held(self.below_since[l]) && *level > best.0 {
                best = (*level, Reason::Below(*level));
            }
            if l < 2 && held(self.rise_since[l]) && *level > best.0 {
                best = (*level, Reason::Rise(*level));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests;
