//! The power map: which feeds (breakers, PDUs) are safe to cut, from the zones' verdicts.
//!
//! At Pangyo the fire brigade asked for the whole building's power to be cut, because no
//! one could say which breakers fed only what had already been moved. A feed here is safe
//! to cut when every zone it powers has failed over and verified (`safe_to_cut_power`). Pure:
//! the engine, the status page, the metrics and the MQTT status all evaluate the same way
//! from the verdicts they hold. Firebreak never opens a breaker itself.

use crate::config::{Config, Feed};
use serde::{Deserialize, Serialize};

/// One feed as the operator reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedState {
    pub id: String,
    pub description: String,
    /// Every zone the feed powers, by id.
    pub zones: Vec<String>,
    pub safe_to_cut: bool,
    /// The zones that still hold it back (not failed over, or failed over without a
    /// verified verdict), by id.
    pub waiting_for: Vec<String>,
    /// What else it powers that needs no moving.
    pub loads: Vec<String>,
}

/// Every configured feed, given whether each zone (by index) is safe to cut.
pub fn evaluate(config: &Config, zone_safe: &[bool]) -> Vec<FeedState> {
    let zone_ids: Vec<&str> = config.zones.iter().map(|z| z.id.as_str()).collect();
    evaluate_feeds(&config.feeds, &zone_ids, zone_safe)
}

/// [`evaluate`] for a holder of the feeds and the zone ids only (the MQTT status).
pub fn evaluate_feeds(feeds: &[Feed], zone_ids: &[&str], zone_safe: &[bool]) -> Vec<FeedState> {
    let name = |z: usize| zone_ids.get(z).copied().unwrap_or("?").to_string();
    feeds
        .iter()
        .map(|f| {
            let waiting_for: Vec<String> = f
                .zones
                .iter()
                .filter(|&&z| !zone_safe.get(z).copied().unwrap_or(false))
                .map(|&z| name(z))
                .collect();
            FeedState {
                id: f.id.clone(),
                description: f.description.clone(),
                zones: f.zones.iter().map(|&z| name(z)).collect(),
                safe_to_cut: waiting_for.is_empty() && !f.zones.is_empty(),
                waiting_for,
                loads: f.loads.clone(),
            }
        })
        .collect()
}

/// Remembers which feeds were safe, so that each becoming safe is announced once.
#[derive(Debug, Default)]
pub struct Announcer {
    safe: Vec<bool>,
}

impl Announcer {
    /// Starts from feeds already safe (after a restart: announced before), so that they
    /// are not announced again.
    pub fn new(states: &[FeedState]) -> Self {
        Announcer {
            safe: states.iter().map(|f| f.safe_to_cut).collect(),
        }
    }

    /// The feeds that became safe since the last call; feeds no longer safe (a zone
    /// reset, a new incident) are forgotten so that they are announced again next time.
    pub fn newly_safe<'a>(&mut self, states: &'a [FeedState]) -> Vec<&'a FeedState> {
        self.safe.resize(states.len(), false);
        let mut out = Vec::new();
        for (was, f) in self.safe.iter_mut().zip(states) {
            if f.safe_to_cut && !*was {
                out.push(f);
            }
            *was = f.safe_to_cut;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-unit"

[[sources]]
name = "env"
type = "modbus"
url = "tcp://127.0.0.1:1502"

[[sensors]]
id = "a1"
zone = "a"
kind = "temperature"
source = "env"
register = { table = "input", address = 0, type = "i16" }

[[sensors]]
id = "b1"
zone = "b"
kind = "temperature"
source = "env"
register = { table = "input", address = 1, type = "i16" }

[[zones]]
id = "a"
runbook = "r"
confirm = 1

[[zones]]
id = "b"
runbook = "r"
confirm = 1

[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"

[[feeds]]
id = "pdu-a"
description = "PDU A, breaker 3-14"
zones = ["a"]
loads = ["lighting"]

[[feeds]]
id = "pdu-b"
zones = ["a", "b"]
"#;
        crate::config::load_str(text, "unit", Default::default())
            .unwrap_or_else(|e| panic!("{:?}", e.errors))
            .config
    }

    #[test]
    fn a_feed_is_safe_only_when_every_zone_on_it_has_failed_over() {
        let c = config();
        let s = evaluate(&c, &[true, false]);
        assert!(s[0].safe_to_cut);
        assert!(s[0].waiting_for.is_empty());
        assert_eq!(s[0].loads, ["lighting"]);
        assert!(!s[1].safe_to_cut);
        assert_eq!(s[1].waiting_for, ["b"]);
        assert_eq!(
            s[1].description, "pdu-b",
            "the id stands in for a missing description"
        );
        assert!(evaluate(&c, &[true, true]).iter().all(|f| f.safe_to_cut));
        assert!(evaluate(&c, &[false, false]).iter().all(|f| !f.safe_to_cut));
    }

    #[test]
    fn each_feed_is_announced_once_when_it_becomes_safe_and_again_after_a_reset() {
        let c = config();
        let mut a = Announcer::new(&evaluate(&c, &[false, false]));
        let s = evaluate(&c, &[true, false]);
        let ids: Vec<&str> = a.newly_safe(&s).iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["pdu-a"]);
        assert!(a.newly_safe(&s).is_empty(), "announced once");
        let s = evaluate(&c, &[true, true]);
        let ids: Vec<&str> = a.newly_safe(&s).iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["pdu-b"]);
        // Zone a reset: both feeds are no longer safe; its next failover announces them again.
        assert!(a.newly_safe(&evaluate(&c, &[false, true])).is_empty());
        assert_eq!(a.newly_safe(&evaluate(&c, &[true, true])).len(), 2);
    }

    #[test]
    fn feeds_must_name_known_zones_and_unique_ids() {
        let text = r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-unit"
[[zones]]
id = "a"
runbook = "r"
[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"
[[feeds]]
id = "f"
zones = ["a", "nowhere"]
[[feeds]]
id = "f"
zones = []
[[feeds]]
description = "no id"
"#;
        let e = crate::config::load_str(text, "unit", Default::default())
            .expect_err("refused")
            .errors;
        let e: Vec<String> = e.iter().map(ToString::to_string).collect();
        let has = |needle: &str| e.iter().any(|x| x.contains(needle));
        assert!(has("feeds[0].zones[1]: unknown zone `nowhere`"), "{e:?}");
        assert!(has("feeds[1].id: duplicate feed id `f`"), "{e:?}");
        assert!(has("feeds[1].zones: is empty"), "{e:?}");
        assert!(has("feeds[2].id: missing"), "{e:?}");
        assert!(has("feeds[2].zones: missing"), "{e:?}");
    }
}
