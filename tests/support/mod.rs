//! Test harness: real peers and the real agent binary, on loopback with temp dirs.
#![allow(dead_code)]

pub mod agent;
pub mod knot;
pub mod mosquitto;
pub mod pymodbus;
