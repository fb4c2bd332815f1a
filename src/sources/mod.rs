//! Sources: tasks that read devices and send samples to the detection core through a
//! bounded channel. A source never blocks another.

pub mod modbus;

use crate::detect::Sample;
use tokio::sync::mpsc;

/// Where sources send samples. Bounded: when detection falls behind, sources wait (their
/// next poll is late) rather than memory growing.
pub type SampleTx = mpsc::Sender<Sample>;
