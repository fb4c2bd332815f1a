//! Firebreak hardware simulator: plays scripted server-room scenarios over real Modbus TCP.
//!
//! - [`scenario`]: parse and validate scenario files (pure).
//! - [`timeline`]: the value of a signal at a sim time (pure).
//! - [`registers`]: engineering values to 16-bit registers and back (pure).
//! - [`modbus`]: the Modbus TCP server of one device.
//! - [`broker`]: the embedded MQTT broker (rumqttd) for runs without one.
//! - [`mqtt`]: MQTT devices (JSON payloads, e.g. an aspirating smoke detector).
//! - [`runner`]: plays a scenario in real time × speed; [`play`] is the entry point for
//!   embedding the simulator in another crate's tests.
//! - [`control`]: the HTTP control API (start, pause, set a value, inject a fault).
//! - [`report`]: the `check` summary and the register map.

#![forbid(unsafe_code)]

pub mod broker;
pub mod control;
pub mod library;
pub mod modbus;
pub mod mqtt;
pub mod overrides;
pub mod registers;
pub mod report;
pub mod room;
pub mod runner;
pub mod scenario;
pub mod score;
pub mod timeline;

pub use runner::{
    play, play_with, BoundDevice, Control, ControlError, ControlStatus, PlayEvent, PlayExtras,
    PlayHandle, PlayOptions, RunnerError,
};
pub use scenario::{Scenario, ScenarioError};
