//! The integration tests, in one test binary so that a change links one executable, not one
//! per file. Each module was a file of its own and keeps its name: `cargo test --test it
//! dns_knot::` runs one of them. The harness for real peers is `support/`.
//!
//! `tests/detect_alloc.rs` stays a binary of its own: it installs a counting global
//! allocator.
// Tests and benches time real peers and real work (clippy.toml).
#![allow(clippy::disallowed_methods)]

mod detect_support;
mod support;

mod bgp_bird;
mod broken_configs;
mod charge_stop_e2e;
mod cluster_etcd;
mod command_step;
mod config_contract;
mod config_reload;
#[cfg(feature = "demo")] // `firebreak demo` and the scenario fitting exist only with it
mod dashboard_queries;
mod dashboards;
#[cfg(feature = "demo")] // `firebreak demo` and the scenario fitting exist only with it
mod demo;
mod detect_props;
mod detect_replay;
mod detect_scenarios;
mod dns_knot;
mod event_contract;
mod failover_e2e;
mod faults;
mod fuzz_dns;
mod fuzz_inputs;
mod modbus_write;
mod nut_client;
mod nut_fsd;
mod outages;
mod paging;
mod power_map;
mod powerdns_api;
mod runbook_peers;
mod security;
mod sim_clients;
#[cfg(feature = "demo")] // `firebreak demo` and the scenario fitting exist only with it
mod sim_library;
mod sim_rtu;
mod sources_bacnet;
mod sources_modbus;
mod sources_modbus_bits;
mod sources_mqtt;
mod sources_nut;
mod sources_probe;
mod sources_snmp;
mod staged_e2e;
mod staged_replay;
mod staged_runbook;
mod status_page;
mod systemd_notify;
mod telemetry_influx;
mod telemetry_mqtt;
mod telemetry_prometheus;
mod ups_failover;
