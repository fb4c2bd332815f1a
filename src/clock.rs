//! Time, injected: logic reads the clock it is given, never `Instant::now()` itself.

use crate::detect::rise::Nanos;
use std::time::{Instant, SystemTime};

pub trait Clock: Send + Sync + 'static {
    /// Monotonic nanoseconds since an arbitrary origin: for rates, holds, timeouts.
    fn mono(&self) -> Nanos;
    /// Wall-clock time: only for what people read (event timestamps).
    fn wall(&self) -> SystemTime;
}

/// The real clocks of the machine.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn mono(&self) -> Nanos {
        self.origin.elapsed().as_nanos() as Nanos
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}
