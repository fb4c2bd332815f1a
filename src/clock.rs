//! Time, injected: logic reads the clock it is given, never `Instant::now()` itself.
//!
//! The one module allowed to read the machine's clocks (`clippy.toml`'s `disallowed-methods`).
#![allow(clippy::disallowed_methods)]

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

// Design: the I/O edges (sources, sinks, runbook steps, the cluster, the API) need real
// time for timeouts, backoff and deadlines, but not an injected `Clock`: they get it here,
// from tokio's clock, so a test on paused time (`#[tokio::test(start_paused = true)]`)
// controls every timeout and pause of the code it runs. Outside a runtime (or without
// paused time) these are the machine's clocks. `clippy.toml` forbids `Instant::now`,
// `SystemTime::now` and `tokio::time::sleep` everywhere else in the agent.

/// Now, on tokio's clock (paused time in tests that pause it).
pub fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Wait `d` on tokio's clock.
pub fn sleep(d: std::time::Duration) -> tokio::time::Sleep {
    tokio::time::sleep(d)
}

/// The wall clock, for timestamps people and peers read (event `ts`, TSIG time signed).
pub fn wall_now() -> SystemTime {
    SystemTime::now()
}
