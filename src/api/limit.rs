//! A token bucket for operator actions (POSTs): a burst of `capacity`, then one request
//! per `refill`. Pure, with time passed in, so tests need no clock.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub struct Bucket {
    capacity: f64,
    refill: Duration,
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    pub fn new(capacity: u32, refill: Duration) -> Self {
        Bucket {
            capacity: capacity as f64,
            refill,
            tokens: capacity as f64,
            at: None,
        }
    }

    /// Takes one token at `now`; `Err(wait)` when none is left, with the time until one is.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(at) = self.at {
            let earned = now.saturating_duration_since(at).as_secs_f64()
                / self.refill.as_secs_f64().max(1e-9);
            self.tokens = (self.tokens + earned).min(self.capacity);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.refill.mul_f64(1.0 - self.tokens))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_requests_wait_for_the_refill() {
        let t0 = crate::clock::now();
        let mut b = Bucket::new(3, Duration::from_secs(2));
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(2));
        // Half a token earned: still refused, and told to wait the other half.
        let wait = b.take(t0 + Duration::from_secs(1)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(b.take(t0 + Duration::from_secs(2)).is_ok());
        assert!(b.take(t0 + Duration::from_secs(2)).is_err());
    }

    #[test]
    fn tokens_never_exceed_the_burst() {
        let t0 = crate::clock::now();
        let mut b = Bucket::new(2, Duration::from_secs(1));
        let later = t0 + Duration::from_secs(3600);
        assert!(b.take(t0).is_ok());
        assert!(b.take(later).is_ok());
        assert!(b.take(later).is_ok());
        assert!(b.take(later).is_err());
    }
}
