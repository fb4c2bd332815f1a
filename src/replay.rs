//! `firebreak replay`: recorded telemetry through the same detection core, in virtual time.
//!
//! Input is CSV (`ts,sensor,value`, optional header) or JSON lines
//! (`{"ts":..,"sensor":..,"value":..}`); `ts` is RFC 3339 or epoch milliseconds; `value` is
//! a number, empty / `null` (no data), `nan`, or a fault reason (`fault:modbus_exception`).
//! The monotonic clock is the recorded timestamps; the core is ticked every
//! `[agent] tick_interval` between samples so stale sensors and hold times behave as live.
//! Events come out in the event log's shape with the recorded wall time. No network.

use crate::config::Config;
use crate::detect::rise::Nanos;
use crate::detect::{Detector, FaultKind, Output, Reading, Sample};
use crate::events::{self, Event, EvidenceItem};
use crate::staged::Effect;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}:{line}: {message}")]
    Parse {
        origin: String,
        line: u64,
        message: String,
    },
    #[error("cannot write {what}: {source}")]
    Write {
        what: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    /// By extension (`.csv`; `.jsonl`, `.ndjson`, `.json`), else by the first line.
    pub fn detect(path: &Path, first_line: &str) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv,
            Some("jsonl" | "ndjson" | "json") => Format::JsonLines,
            _ if first_line.trim_start().starts_with('{') => Format::JsonLines,
            _ => Format::Csv,
        }
    }
}

/// A zone that went critical during the replay.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CriticalAt {
    pub zone: String,
    pub ts: String,
    pub cause: &'static str,
    pub evidence: Vec<EvidenceItem>,
}

/// A staged-response decision the live agent would have taken.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct StageDecision {
    pub zone: String,
    pub ts: String,
    /// `prepare`, `failover` or `undo`.
    pub stage: &'static str,
    pub runbook: String,
    pub incident: String,
}

/// What a replay found. Serialised as the `--json` export.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub input: String,
    pub samples: u64,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    /// Sensor ids in the input that the config does not know, with how often they came.
    pub unknown_sensors: BTreeMap<String, u64>,
    pub criticals: Vec<CriticalAt>,
    /// Runbooks the agent would have started or undone, in order (prepare, failover, undo).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<StageDecision>,
    /// Every event, as written to the event log.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<serde_json::Value>,
}

impl Report {
    /// The human summary printed after the events.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "replayed {} sample(s) from {} ({} .. {})\n",
            self.samples,
            self.input,
            self.first_ts.as_deref().unwrap_or("-"),
            self.last_ts.as_deref().unwrap_or("-"),
        );
        if !self.unknown_sensors.is_empty() {
            let total: u64 = self.unknown_sensors.values().sum();
            let names: Vec<String> = self
                .unknown_sensors
                .iter()
                .map(|(id, n)| format!("{id} ({n})"))
                .collect();
            s += &format!(
                "ignored {total} sample(s) of {} sensor(s) not in the config: {}\n",
                self.unknown_sensors.len(),
                names.join(", ")
            );
        }
        if self.criticals.is_empty() {
            s += "no zone would have gone critical\n";
        }
        // Staged response: said only when a prepare is part of the story, so that rooms
        // without one read as before.
        if self.decisions.iter().any(|d| d.stage == "prepare") {
            for d in &self.decisions {
                let what = match d.stage {
                    "prepare" => "would have started its prepare runbook",
                    "failover" => "would have started its failover runbook",
                    _ => "would have undone its prepare runbook",
                };
                s += &format!(
                    "zone {} {what} `{}` at {} (incident {})\n",
                    d.zone, d.runbook, d.ts, d.incident
                );
            }
        }
        for c in &self.criticals {
            let evidence: Vec<String> = c
                .evidence
                .iter()
                .map(|e| match e.value {
                    Some(v) => format!("{} {} ({}, {v})", e.sensor, e.state, e.reason),
                    None => format!("{} {} ({})", e.sensor, e.state, e.reason),
                })
                .collect();
            s += &format!(
                "zone {} would have gone critical at {} ({}) on evidence {}\n",
                c.zone,
                c.ts,
                c.cause,
                evidence.join("; ")
            );
        }
        s
    }
}

/// One parsed input line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts: i64,
    pub sensor: &'a str,
    pub reading: Reading,
}

/// The replay engine: feed records in file order, then `finish`.
pub struct Replay<'c> {
    config: &'c Config,
    detector: Detector,
    /// Sensor id to index (a fast non-cryptographic hash: the keys come from the config).
    ids: rustc_hash::FxHashMap<&'c str, u32>,
    tick: Nanos,
    /// Wall time (ns since epoch) of monotonic 0: the first record.
    origin: Option<i64>,
    next_tick: Nanos,
    last_mono: Nanos,
    incidents: u32,
    keep_events: bool,
    /// Evidence of the `zone_level` change to critical that precedes a `Critical` output.
    critical_evidence: Option<Vec<EvidenceItem>>,
    /// Staged response, as the agent runs it (nothing runs here: prepares count as done).
    stager: crate::staged::Stager,
    /// The incident of each zone's prepare, until undone.
    prepared: Vec<Option<String>>,
    report: Report,
}

impl<'c> Replay<'c> {
    /// `keep_events`: also collect every event into the report (for `--json`).
    pub fn new(config: &'c Config, input: &str, keep_events: bool) -> Self {
        let ids = config
            .sensors
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i as u32))
            .collect();
        Replay {
            config,
            detector: Detector::from_config(config, 0),
            ids,
            tick: (config.agent.tick_interval.as_nanos() as Nanos).max(1),
            origin: None,
            next_tick: 0,
            last_mono: 0,
            incidents: 0,
            keep_events,
            critical_evidence: None,
            stager: crate::staged::Stager::from_config(config),
            prepared: vec![None; config.zones.len()],
            report: Report {
                input: input.to_string(),
                ..Report::default()
            },
        }
    }

    fn wall(&self, mono: Nanos) -> SystemTime {
        let ns = self.origin.unwrap_or(0).saturating_add(mono as i64);
        if ns >= 0 {
            UNIX_EPOCH + Duration::from_nanos(ns as u64)
        } else {
            UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
        }
    }

    /// Feeds one record; events go to `out` as event-log lines.
    pub fn push(&mut self, rec: Record<'_>, out: &mut dyn Write) -> std::io::Result<()> {
        let Some(&sensor) = self.ids.get(rec.sensor) else {
            match self.report.unknown_sensors.get_mut(rec.sensor) {
                Some(n) => *n += 1,
                None => {
                    self.report
                        .unknown_sensors
                        .insert(rec.sensor.to_string(), 1);
                }
            }
            return Ok(());
        };
        let origin = *self.origin.get_or_insert(rec.ts);
        // Samples older than the first one are clamped to it (the core ignores what
        // goes backwards in a rise window anyway).
        let mono = rec.ts.saturating_sub(origin).max(0) as Nanos;
        if self.report.samples == 0 {
            self.report.first_ts = Some(events::format_ts(self.wall(mono)));
        }
        self.report.samples += 1;
        while self.next_tick <= mono {
            let t = self.next_tick;
            self.detector.tick(t);
            self.emit(t, out)?;
            self.next_tick += self.tick;
        }
        self.last_mono = self.last_mono.max(mono);
        self.detector.observe(Sample {
            sensor,
            at: mono,
            reading: rec.reading,
        });
        Ok(())
    }

    fn emit(&mut self, mono: Nanos, out: &mut dyn Write) -> std::io::Result<()> {
        // Outputs are rare (state changes only); collecting them is not the hot path.
        let outputs: Vec<Output> = self.detector.drain().collect();
        // The agent's decisions, in the agent's order: the outputs, then time (prepares
        // undone after their cooldown; nothing runs here, so none is running).
        let mut effects = self.stager.respond(&outputs, mono);
        effects.extend(self.stager.elapse(mono, |_| false));
        if effects.is_empty() {
            return Ok(());
        }
        let wall = self.wall(mono);
        let mut evs = Vec::new();
        for effect in effects {
            match effect {
                Effect::Record(o) => evs.extend(self.record(o)),
                Effect::Prepare { zone, cause } => {
                    evs.push(self.prepare(zone as usize, cause, wall))
                }
                Effect::Failover { zone, cause, .. } => {
                    evs.push(self.failover(zone as usize, cause, wall))
                }
                Effect::Undo { zone } => evs.extend(self.undo(zone as usize, wall)),
            }
        }
        for event in evs {
            let line = events::render(&self.config.agent.name, wall, &event);
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
            if self.keep_events {
                if let Ok(v) = serde_json::from_str(&line) {
                    self.report.events.push(v);
                }
            }
        }
        Ok(())
    }

    /// What the live agent writes when it starts a zone's prepare runbook.
    fn prepare(&mut self, zone: usize, cause: crate::detect::Cause, wall: SystemTime) -> Event {
        let c = self.config;
        let z = &c.zones[zone];
        let runbook = z
            .prepare_runbook
            .map(|r| c.runbooks[r].name.clone())
            .unwrap_or_default();
        self.incidents += 1;
        let incident = format!("{}-replay-{}", z.id, self.incidents);
        self.prepared[zone] = Some(incident.clone());
        self.report.decisions.push(StageDecision {
            zone: z.id.clone(),
            ts: events::format_ts(wall),
            stage: "prepare",
            runbook: runbook.clone(),
            incident: incident.clone(),
        });
        Event::RunbookStarted {
            runbook,
            zone: z.id.clone(),
            incident,
            cause,
            dry_run: true,
            resumed: false,
            stage: crate::incident::Stage::Prepare,
        }
    }

    /// What the live agent writes when a prepare has been undone after its cooldown.
    fn undo(&mut self, zone: usize, wall: SystemTime) -> Option<Event> {
        let c = self.config;
        let z = &c.zones[zone];
        let incident = self.prepared[zone].take()?;
        self.report.decisions.push(StageDecision {
            zone: z.id.clone(),
            ts: events::format_ts(wall),
            stage: "undo",
            runbook: z
                .prepare_runbook
                .map(|r| c.runbooks[r].name.clone())
                .unwrap_or_default(),
            incident: incident.clone(),
        });
        Some(Event::PrepareUndone {
            zone: z.id.clone(),
            incident,
            by: events::UndoneBy::Cooldown,
            ok: true,
        })
    }

    /// The event of a sensor state or zone level change.
    fn record(&mut self, o: &Output) -> Option<Event> {
        let event = events::from_output(self.config, o)?;
        if let (
            Output::Zone {
                to: crate::detect::ZoneLevel::Critical,
                ..
            },
            Event::ZoneLevel { evidence, .. },
        ) = (o, &event)
        {
            // The evidence of the failover that follows.
            self.critical_evidence = Some(evidence.clone());
        }
        Some(event)
    }

    /// What the live agent writes when it starts a zone's failover runbook.
    fn failover(&mut self, zone: usize, cause: crate::detect::Cause, wall: SystemTime) -> Event {
        let c = self.config;
        let z = &c.zones[zone];
        let incident = match self.prepared[zone].take() {
            // The failover continues its prepare's incident, as live.
            Some(id) => id,
            None => {
                self.incidents += 1;
                format!("{}-replay-{}", z.id, self.incidents)
            }
        };
        self.report.decisions.push(StageDecision {
            zone: z.id.clone(),
            ts: events::format_ts(wall),
            stage: "failover",
            runbook: c.runbooks[z.runbook].name.clone(),
            incident: incident.clone(),
        });
        let evidence = self
            .critical_evidence
            .take()
            .unwrap_or_else(|| self.current_evidence(zone as u32));
        self.report.criticals.push(CriticalAt {
            zone: z.id.clone(),
            ts: events::format_ts(wall),
            cause: cause.as_str(),
            evidence,
        });
        // What the live agent would have started; nothing runs in a replay.
        Event::RunbookStarted {
            runbook: c.runbooks[z.runbook].name.clone(),
            zone: z.id.clone(),
            incident,
            cause,
            dry_run: true,
            resumed: false,
            stage: crate::incident::Stage::Failover,
        }
    }

    /// The zone's sensors that are not ok, as they are now.
    fn current_evidence(&self, zone: u32) -> Vec<EvidenceItem> {
        let c = self.config;
        c.sensors
            .iter()
            .enumerate()
            .filter(|(_, s)| s.zone == zone as usize)
            .filter_map(|(i, s)| {
                let (state, value) = self.detector.sensor_state(i as u32);
                (state != crate::detect::SensorState::Ok).then(|| EvidenceItem {
                    sensor: s.id.clone(),
                    state,
                    value,
                    reason: self.detector.sensor_reason(i as u32),
                    common_mode: false,
                })
            })
            .collect()
    }

    /// Ends the replay: one last tick at the last sample's time, then the report.
    pub fn finish(mut self, out: &mut dyn Write) -> std::io::Result<Report> {
        if self.report.samples > 0 {
            let t = self.last_mono;
            self.detector.tick(t);
            self.emit(t, out)?;
            self.report.last_ts = Some(events::format_ts(self.wall(t)));
        }
        Ok(self.report)
    }
}

/// Parses a timestamp: epoch milliseconds or RFC 3339. Returns ns since the epoch.
pub fn parse_ts(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = s.parse().map_err(|e| format!("bad epoch ms `{s}`: {e}"))?;
        return ms
            .checked_mul(1_000_000)
            .ok_or_else(|| format!("epoch ms `{s}` out of range"));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("bad timestamp `{s}` (RFC 3339 or epoch ms): {e}"))?;
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("timestamp `{s}` out of range"))
}

/// Parses a value field: number, empty (no data), `nan`, or a fault reason.
pub fn parse_value(s: &str) -> Result<Reading, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("null") {
        return Ok(Reading::Fault(FaultKind::NoData));
    }
    if s.eq_ignore_ascii_case("nan") {
        return Ok(Reading::Value(f64::NAN));
    }
    if s.starts_with("fault:") {
        return FaultKind::parse(s)
            .map(Reading::Fault)
            .ok_or_else(|| format!("unknown fault `{s}`"));
    }
    s.parse::<f64>()
        .map(Reading::Value)
        .map_err(|_| format!("bad value `{s}` (a number, empty, nan or fault:...)"))
}

/// Parses one CSV line `ts,sensor,value`.
pub fn parse_csv(line: &str) -> Result<Record<'_>, String> {
    let mut it = line.splitn(3, ',');
    let (Some(ts), Some(sensor), Some(value)) = (it.next(), it.next(), it.next()) else {
        return Err(format!("expected `ts,sensor,value`, got `{line}`"));
    };
    let sensor = sensor.trim();
    if sensor.is_empty() {
        return Err("empty sensor id".into());
    }
    Ok(Record {
        ts: parse_ts(ts)?,
        sensor,
        reading: parse_value(value)?,
    })
}

#[derive(serde::Deserialize)]
struct JsonLine<'a> {
    ts: serde_json::Value,
    #[serde(borrow)]
    sensor: std::borrow::Cow<'a, str>,
    #[serde(default)]
    value: serde_json::Value,
}

/// Parses one JSON line into owned parts (the sensor id may be escaped).
pub fn parse_json(line: &str) -> Result<(i64, String, Reading), String> {
    let j: JsonLine = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
    let ts = match &j.ts {
        serde_json::Value::String(s) => parse_ts(s)?,
        serde_json::Value::Number(n) => {
            let ms = n
                .as_i64()
                .ok_or_else(|| format!("bad epoch ms `{n}`: not an integer"))?;
            ms.checked_mul(1_000_000)
                .ok_or_else(|| format!("epoch ms `{n}` out of range"))?
        }
        other => return Err(format!("bad ts `{other}`: a string or epoch ms")),
    };
    let reading = match &j.value {
        serde_json::Value::Null => Reading::Fault(FaultKind::NoData),
        serde_json::Value::Number(n) => Reading::Value(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => parse_value(s)?,
        other => return Err(format!("bad value `{other}`")),
    };
    Ok((ts, j.sensor.into_owned(), reading))
}

/// Replays everything `input` holds. `origin` names the input in errors.
pub fn replay_reader(
    config: &Config,
    input: &mut dyn BufRead,
    origin: &str,
    format: Option<Format>,
    keep_events: bool,
    out: &mut dyn Write,
) -> Result<Report, ReplayError> {
    let mut engine = Replay::new(config, origin, keep_events);
    // Design: lines are read as bytes and only the short fields are checked as UTF-8, so
    // the CSV path (the bulk format: a day of 1,000 sensors is 86 M rows) does not
    // validate and search each line several times.
    let mut line: Vec<u8> = Vec::with_capacity(128);
    let mut n: u64 = 0;
    let mut format = format;
    let mut last_ts_text: Vec<u8> = Vec::new();
    let mut last_ts = 0i64;
    let mut latest: Option<i64> = None;
    let write_err = |source| ReplayError::Write {
        what: "the events".into(),
        source,
    };
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .map_err(|source| ReplayError::Read {
                path: PathBuf::from(origin),
                source,
            })?;
        if read == 0 {
            break;
        }
        n += 1;
        let parse_err = |message: String| ReplayError::Parse {
            origin: origin.to_string(),
            line: n,
            message,
        };
        let mut bytes = line.as_slice();
        while let [rest @ .., b'\n' | b'\r'] = bytes {
            bytes = rest;
        }
        if bytes.trim_ascii().is_empty() || bytes.first() == Some(&b'#') {
            continue;
        }
        let fmt = match format {
            Some(f) => f,
            None => {
                let text = utf8(bytes).map_err(parse_err)?;
                *format.insert(Format::detect(Path::new(origin), text))
            }
        };
        match fmt {
            Format::Csv => {
                let bad_shape = || {
                    parse_err(format!(
                        "expected `ts,sensor,value`, got `{}`",
                        String::from_utf8_lossy(bytes)
                    ))
                };
                let (ts_text, rest) = split_comma(bytes).ok_or_else(bad_shape)?;
                if n == 1 && ts_text.trim_ascii() == b"ts" {
                    continue; // header
                }
                // Rows of one instant share the timestamp text: parse it once.
                let ts = if ts_text == last_ts_text.as_slice() {
                    last_ts
                } else {
                    let ts = parse_ts(utf8(ts_text).map_err(parse_err)?).map_err(parse_err)?;
                    last_ts_text.clear();
                    last_ts_text.extend_from_slice(ts_text);
                    last_ts = ts;
                    ts
                };
                let (sensor, value) = split_comma(rest).ok_or_else(bad_shape)?;
                let sensor = utf8(sensor.trim_ascii()).map_err(parse_err)?;
                if sensor.is_empty() {
                    return Err(parse_err("empty sensor id".into()));
                }
                let reading = parse_value(utf8(value).map_err(parse_err)?).map_err(parse_err)?;
                check_gap(&mut latest, ts).map_err(parse_err)?;
                engine
                    .push(
                        Record {
                            ts,
                            sensor,
                            reading,
                        },
                        out,
                    )
                    .map_err(write_err)?;
            }
            Format::JsonLines => {
                let text = utf8(bytes).map_err(parse_err)?;
                let (ts, sensor, reading) = parse_json(text).map_err(parse_err)?;
                check_gap(&mut latest, ts).map_err(parse_err)?;
                engine
                    .push(
                        Record {
                            ts,
                            sensor: &sensor,
                            reading,
                        },
                        out,
                    )
                    .map_err(write_err)?;
            }
        }
    }
    engine.finish(out).map_err(write_err)
}

/// The longest step forward in time between a sample and the latest one before it.
/// The replay ticks the detector through every interval in between, so one mistyped
/// timestamp (a 2 for a 1 puts it 30 years ahead) would otherwise keep it busy for
/// hours; a real recording with a longer pause is replayed as two files.
pub const MAX_GAP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Refuses a timestamp more than [`MAX_GAP`] after the latest one so far.
fn check_gap(latest: &mut Option<i64>, ts: i64) -> Result<(), String> {
    if let Some(prev) = *latest {
        let gap = ts.saturating_sub(prev);
        if gap > MAX_GAP.as_nanos() as i64 {
            return Err(format!(
                "timestamp is {} days after the latest one before it (more than {} days: a \
                 mistyped timestamp? replay a recording with a longer pause as two files)",
                gap / 86_400_000_000_000,
                MAX_GAP.as_secs() / 86_400
            ));
        }
    }
    *latest = Some(latest.map_or(ts, |p| p.max(ts)));
    Ok(())
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))
}

/// Splits at the first comma.
fn split_comma(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|&b| b == b',')?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

/// `firebreak replay`: replays the file, prints events and the summary to `out`, and
/// writes the JSON export to `json` when asked.
pub fn run(
    config: &Config,
    input: &Path,
    json: Option<&Path>,
    out: &mut dyn Write,
) -> Result<Report, ReplayError> {
    let file = std::fs::File::open(input).map_err(|source| ReplayError::Read {
        path: input.to_path_buf(),
        source,
    })?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let origin = input.display().to_string();
    let report = replay_reader(config, &mut reader, &origin, None, json.is_some(), out)?;
    let write_err = |what: String| move |source| ReplayError::Write { what, source };
    out.write_all(report.summary().as_bytes())
        .map_err(write_err("the summary".into()))?;
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(write_err(path.display().to_string()))?;
    }
    Ok(report)
}
