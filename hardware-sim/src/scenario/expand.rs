//! The room model (`[room]`) written out as plain timeline entries and device events
//! before validation, so that the generated entries are checked like hand-written ones.
//!
//! A scenario with a coil that follows `charging` is closed loop: clients may stop and
//! resume the charge, so what is written out here is only what happens if nobody does.
//! Its player follows the room live ([`crate::room::LiveRoom`]), and its UPS units in the
//! room get no `gone` event here: the run decides whether they are lost.

use std::time::Duration;

use super::duration::parse_duration;
use super::error::Issues;
use super::raw::{RawDevice, RawEvent, RawSegment};

/// Replaces every `{ at = "0s", room = ROLE }` entry with the room model's segments for
/// that role, merged in time order with the entry's other (non-value) segments, and adds
/// `gone` events to the UPS units in the room.
pub(super) fn expand_room(
    devices: &mut [RawDevice],
    room: Option<&crate::room::Room>,
    duration: Duration,
    issues: &mut Issues,
) {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let closed_loop = is_closed_loop(devices);
    let expand = |path: &str,
                  timeline: &mut Vec<RawSegment>,
                  issues: &mut Issues|
     -> Option<crate::room::Role> {
        let i = timeline.iter().position(|s| s.room.is_some())?;
        let role_text = timeline[i].room.clone().unwrap_or_default();
        let entry = format!("{path}.timeline[{i}]");
        let Some(room) = room else {
            issues.push(format!("{entry}.room"), "needs a [room] section");
            return None;
        };
        let Some(role) = crate::room::Role::parse(&role_text) else {
            issues.push(
                format!("{entry}.room"),
                format!(
                    "unknown role `{role_text}` (expected {})",
                    crate::room::Role::NAMES
                ),
            );
            return None;
        };
        if parse_duration(&timeline[i].at) != Ok(Duration::ZERO) {
            issues.push(format!("{entry}.at"), "a `room` entry starts at 0s");
            return None;
        }
        if timeline.iter().filter(|s| s.room.is_some()).count() > 1
            || timeline
                .iter()
                .any(|s| s.set.is_some() || s.ramp.is_some() || s.exponential.is_some())
        {
            issues.push(
                format!("{path}.timeline"),
                "a timeline that follows the room takes no other room, set, ramp or exponential entry",
            );
            return None;
        }
        let points = room.breakpoints(role, duration);
        let mut generated = vec![RawSegment {
            at: "0s".into(),
            set: Some(points[0].1),
            ..RawSegment::default()
        }];
        if role == crate::room::Role::Charging {
            // On or off: a `set` where it switches, never a ramp between the two.
            let mut last = points[0].1;
            for (at, on) in room.charge_switches() {
                let v = f64::from(u8::from(on));
                if v != last && at <= duration {
                    generated.push(RawSegment {
                        at: ms(at.max(Duration::from_millis(1))),
                        set: Some(v),
                        ..RawSegment::default()
                    });
                    last = v;
                }
            }
        } else {
            for pair in points.windows(2) {
                // The first ramp starts 1 ms in: a `set` holds the instant 0.
                let from = pair[0].0.max(Duration::from_millis(1));
                generated.push(RawSegment {
                    at: ms(from),
                    ramp: Some(pair[1].1),
                    over: Some(ms(pair[1].0 - from)),
                    ..RawSegment::default()
                });
            }
        }
        timeline.remove(i);
        // Generated first at equal times, then the file's own entries in their order.
        let mut all: Vec<(Duration, usize, RawSegment)> = generated
            .into_iter()
            .chain(timeline.drain(..))
            .enumerate()
            .map(|(k, s)| (parse_duration(&s.at).unwrap_or(Duration::ZERO), k, s))
            .collect();
        all.sort_by_key(|(at, k, _)| (*at, *k));
        *timeline = all.into_iter().map(|(_, _, s)| s).collect();
        Some(role)
    };
    for (d, dev) in devices.iter_mut().enumerate() {
        for (r, reg) in dev.registers.iter_mut().enumerate() {
            reg.follows = expand(
                &format!("devices[{d}].registers[{r}]"),
                &mut reg.timeline,
                issues,
            );
        }
        for (f, field) in dev.fields.iter_mut().enumerate() {
            field.follows = expand(
                &format!("devices[{d}].fields[{f}]"),
                &mut field.timeline,
                issues,
            );
        }
    }
    let Some(room) = room else { return };
    for (i, name) in room.ups_in_room.iter().enumerate() {
        let Some(dev) = devices.iter_mut().find(|d| &d.name == name) else {
            issues.push(
                format!("room.ups_in_room[{i}]"),
                format!("no device named `{name}`"),
            );
            continue;
        };
        if closed_loop {
            dev.room_ups = true;
            continue;
        }
        if let Some(at) = room.ups_lost_at().filter(|at| *at <= duration) {
            dev.events.push(RawEvent {
                at: ms(at),
                gone: true,
                mode: None,
            });
            dev.events
                .sort_by_key(|e| parse_duration(&e.at).unwrap_or(Duration::ZERO));
        }
    }
}

/// Whether a client can stop the charge: some coil follows the room's `charging`.
fn is_closed_loop(devices: &[RawDevice]) -> bool {
    devices.iter().flat_map(|d| &d.registers).any(|r| {
        r.table == "coil"
            && r.timeline
                .iter()
                .any(|s| s.room.as_deref() == Some("charging"))
    })
}
