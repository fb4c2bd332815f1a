//! Sources: tasks that read devices and send samples to the detection core through a
//! bounded channel. A source never blocks another.

pub mod bacnet;
pub mod config;
pub mod metrics;
pub mod modbus;
pub mod mqtt;
pub mod nut;
pub mod snmp;
pub mod tls;

use crate::detect::Sample;
use tokio::sync::mpsc;

/// Where sources send samples. Bounded: when detection falls behind, sources wait (their
/// next poll is late) rather than memory growing.
pub type SampleTx = mpsc::Sender<Sample>;

/// Small xorshift for backoff jitter: no need for a cryptographic source here.
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        Jitter(seed | 1)
    }

    /// A factor in 0.8 .. 1.2, so that many sources do not retry in lockstep.
    pub(crate) fn next_factor(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        0.8 + (self.0 % 1000) as f64 / 2500.0
    }
}
