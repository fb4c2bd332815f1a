//! Timeline entries and device events: each entry parsed on its own (exactly one kind,
//! its companion keys, its durations), then the order of the whole timeline checked by
//! `crate::timeline`, whose errors are given their key paths here.

use std::time::Duration;

use super::duration::format_duration;
use super::error::Issues;
use super::model::DEFAULT_NOISE_EVERY;
use super::raw::{RawEvent, RawSegment};
use crate::timeline::{
    self, DeviceEvent, DeviceTimeline, Fault, GoneMode, Presence, Segment, SegmentKind, Timeline,
};

pub(super) fn validate_timeline(
    reg_path: &str,
    raws: Vec<RawSegment>,
    duration: Option<Duration>,
    issues: &mut Issues,
) -> Option<Timeline> {
    let before = issues.0.len();
    if raws.is_empty() {
        issues.push(
            format!("{reg_path}.timeline"),
            "needs at least one segment, starting with { at = \"0s\", set = ... }",
        );
        return None;
    }
    let mut segments = Vec::new();
    for (i, raw) in raws.into_iter().enumerate() {
        let path = format!("{reg_path}.timeline[{i}]");
        if let Some(segment) = parse_segment(&path, raw, duration, issues) {
            segments.push(segment);
        }
    }
    if issues.0.len() != before {
        return None;
    }
    for e in timeline::check(&segments) {
        let path = match (e.index(), e.field()) {
            (Some(i), Some(field)) => format!("{reg_path}.timeline[{i}].{field}"),
            (Some(i), None) => format!("{reg_path}.timeline[{i}]"),
            _ => format!("{reg_path}.timeline"),
        };
        issues.push(path, e.to_string());
    }
    if issues.0.len() != before {
        return None;
    }
    Timeline::new(segments).ok()
}

fn check_at(path: &str, at: Duration, duration: Option<Duration>, issues: &mut Issues) {
    if let Some(duration) = duration {
        if at > duration {
            issues.push(
                format!("{path}.at"),
                format!(
                    "{} is after the end of the scenario ({})",
                    format_duration(at),
                    format_duration(duration)
                ),
            );
        }
    }
}

fn parse_segment(
    path: &str,
    raw: RawSegment,
    duration: Option<Duration>,
    issues: &mut Issues,
) -> Option<Segment> {
    let before = issues.0.len();
    let at = issues.duration(format!("{path}.at"), &raw.at);
    if let Some(at) = at {
        check_at(path, at, duration, issues);
    }

    let kinds: Vec<&str> = [
        ("set", raw.set.is_some()),
        ("ramp", raw.ramp.is_some()),
        ("exponential", raw.exponential.is_some()),
        ("spike", raw.spike.is_some()),
        ("noise", raw.noise.is_some()),
        ("fault", raw.fault.is_some()),
        ("freeze", raw.freeze.is_some()),
        ("dropout", raw.dropout.is_some()),
        ("silence", raw.silence.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();

    // Companion keys belong to exactly one kind; anything else is a mistake worth naming.
    let companions = [
        ("over", raw.over.is_some(), "ramp"),
        ("tau", raw.tau.is_some(), "exponential"),
        ("for", raw.hold.is_some(), "spike"),
        ("seed", raw.seed.is_some(), "noise"),
        ("every", raw.every.is_some(), "noise"),
    ];
    for (key, present, owner) in companions {
        if present && !kinds.contains(&owner) {
            issues.push(
                format!("{path}.{key}"),
                format!("`{key}` only goes with `{owner}`"),
            );
        }
    }

    let kind = match kinds.as_slice() {
        [] => {
            issues.push(
                path,
                "says nothing: expected one of set, ramp, exponential, spike, noise, fault, freeze, dropout, silence",
            );
            None
        }
        [_, _, ..] => {
            issues.push(
                path,
                format!(
                    "has more than one kind ({}): write one entry per kind",
                    kinds.join(", ")
                ),
            );
            None
        }
        [kind] => {
            let mut required = |key: &str, value: &Option<String>| match value {
                None => {
                    issues.push(format!("{path}.{key}"), format!("`{kind}` needs `{key}`"));
                    None
                }
                Some(text) => issues.duration(format!("{path}.{key}"), text),
            };
            match *kind {
                "set" => raw.set.map(|value| SegmentKind::Set { value }),
                "ramp" => required("over", &raw.over).map(|over| SegmentKind::Ramp {
                    target: raw.ramp.unwrap_or_default(),
                    over,
                }),
                "exponential" => required("tau", &raw.tau).map(|tau| SegmentKind::Exponential {
                    target: raw.exponential.unwrap_or_default(),
                    tau,
                }),
                "spike" => required("for", &raw.hold).map(|hold| SegmentKind::Spike {
                    value: raw.spike.unwrap_or_default(),
                    hold,
                }),
                "freeze" => raw
                    .freeze
                    .as_deref()
                    .and_then(|t| issues.duration(format!("{path}.freeze"), t))
                    .map(|hold| SegmentKind::Freeze { hold }),
                "dropout" | "silence" => raw
                    .dropout
                    .as_deref()
                    .or(raw.silence.as_deref())
                    .and_then(|t| issues.duration(format!("{path}.{kind}"), t))
                    .map(|hold| SegmentKind::Dropout { hold }),
                "noise" => {
                    let every = match &raw.every {
                        None => Some(DEFAULT_NOISE_EVERY),
                        Some(text) => issues.duration(format!("{path}.every"), text),
                    };
                    every.map(|every| SegmentKind::Noise {
                        amplitude: raw.noise.unwrap_or_default(),
                        seed: raw.seed.unwrap_or(0),
                        every,
                    })
                }
                _ => {
                    let text = raw.fault.as_deref().unwrap_or_default();
                    match Fault::parse(text) {
                        Some(f) => Some(SegmentKind::Fault(f)),
                        None => {
                            issues.push(
                                format!("{path}.fault"),
                                format!("unknown fault `{text}` (expected {})", Fault::NAMES),
                            );
                            None
                        }
                    }
                }
            }
        }
    };
    match (at, kind) {
        (Some(at), Some(kind)) if issues.0.len() == before => Some(Segment::new(at, kind)),
        _ => None,
    }
}

pub(super) fn validate_events(
    dev_path: &str,
    raws: Vec<RawEvent>,
    duration: Option<Duration>,
    issues: &mut Issues,
) -> Option<DeviceTimeline> {
    let before = issues.0.len();
    let mut events = Vec::new();
    for (i, raw) in raws.into_iter().enumerate() {
        let path = format!("{dev_path}.events[{i}]");
        let at = issues.duration(format!("{path}.at"), &raw.at);
        if let Some(at) = at {
            check_at(&path, at, duration, issues);
        }
        let presence = match (raw.gone, raw.mode.as_deref()) {
            (false, None) => Some(Presence::Present),
            (false, Some(_)) => {
                issues.push(
                    format!("{path}.mode"),
                    "`mode` only goes with `gone = true`",
                );
                None
            }
            (true, None) => Some(Presence::Gone(GoneMode::Silent)),
            (true, Some(text)) => match GoneMode::parse(text) {
                Some(mode) => Some(Presence::Gone(mode)),
                None => {
                    issues.push(
                        format!("{path}.mode"),
                        format!("unknown mode `{text}` (expected silent or refuse)"),
                    );
                    None
                }
            },
        };
        if let (Some(at), Some(presence)) = (at, presence) {
            events.push(DeviceEvent { at, presence });
        }
    }
    if issues.0.len() != before {
        return None;
    }
    for e in timeline::check_events(&events) {
        let path = match e.index() {
            Some(i) => format!("{dev_path}.events[{i}].at"),
            None => format!("{dev_path}.events"),
        };
        issues.push(path, e.to_string());
    }
    if issues.0.len() != before {
        return None;
    }
    DeviceTimeline::new(events).ok()
}
