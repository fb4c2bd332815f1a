//! The scenario library shipped with the simulator, compiled in so that `firebreak demo`
//! and an installed binary can play it without the source tree.

/// `(name, TOML text)` of every scenario under `scenarios/`.
pub const LIBRARY: &[(&str, &str)] = &[
    (
        "charge-stopped-by-agent",
        include_str!("../scenarios/charge-stopped-by-agent.toml"),
    ),
    (
        "device-reboot",
        include_str!("../scenarios/device-reboot.toml"),
    ),
    ("dropout", include_str!("../scenarios/dropout.toml")),
    ("emi-spike", include_str!("../scenarios/emi-spike.toml")),
    ("encoding", include_str!("../scenarios/encoding.toml")),
    (
        "gateway-zero-fill",
        include_str!("../scenarios/gateway-zero-fill.toml"),
    ),
    (
        "frozen-sensor",
        include_str!("../scenarios/frozen-sensor.toml"),
    ),
    (
        "hvac-failure",
        include_str!("../scenarios/hvac-failure.toml"),
    ),
    (
        "li-ion-runaway",
        include_str!("../scenarios/li-ion-runaway.toml"),
    ),
    (
        "normal-day-full",
        include_str!("../scenarios/normal-day-full.toml"),
    ),
    ("normal-day", include_str!("../scenarios/normal-day.toml")),
    (
        "nuisance-spike",
        include_str!("../scenarios/nuisance-spike.toml"),
    ),
    (
        "nuisance-spikes",
        include_str!("../scenarios/nuisance-spikes.toml"),
    ),
    (
        "offgas-clears",
        include_str!("../scenarios/offgas-clears.toml"),
    ),
    (
        "offgas-then-heat",
        include_str!("../scenarios/offgas-then-heat.toml"),
    ),
    (
        "pangyo-replay",
        include_str!("../scenarios/pangyo-replay.toml"),
    ),
    (
        "room-charge-stopped",
        include_str!("../scenarios/room-charge-stopped.toml"),
    ),
    (
        "room-runaway",
        include_str!("../scenarios/room-runaway.toml"),
    ),
    (
        "utility-loss",
        include_str!("../scenarios/utility-loss.toml"),
    ),
];

/// The TOML text of the library scenario `name`.
pub fn find(name: &str) -> Option<&'static str> {
    LIBRARY.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The names of the library's scenarios.
pub fn names() -> impl Iterator<Item = &'static str> {
    LIBRARY.iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_library_is_every_file_of_the_scenarios_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut compiled: Vec<&str> = names().collect();
        compiled.sort();
        assert_eq!(
            compiled, on_disk,
            "add new scenario files to src/library.rs"
        );
    }

    #[test]
    fn every_library_scenario_parses_and_is_named_after_its_file() {
        for (name, text) in LIBRARY {
            let s = crate::Scenario::from_toml_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&s.name, name);
        }
    }
}
