//! SNMP polling of UPS network cards (UPS-MIB, RFC 1628) and other agents: v2c and v3 USM.

pub mod ber;
pub mod client;
pub mod message;
pub mod usm;
