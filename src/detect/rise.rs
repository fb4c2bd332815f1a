//! Least-squares slope over a sliding time window, O(1) per sample.
//!
//! Running sums of t, v, t², t·v over the samples in the window; samples leave from a ring
//! buffer as they age out. Time is kept relative to a base that is moved forward (and the
//! sums recomputed from the buffer) every so often, so the sums never grow large enough to
//! lose precision over long runs.

/// Nanoseconds on the monotonic clock.
pub type Nanos = u64;

#[derive(Debug, Clone)]
pub struct RiseWindow {
    window: Nanos,
    /// Ring buffer; its length is a power of two so that indices wrap with a mask.
    buf: Box<[(Nanos, f64)]>,
    // u32 indices keep the struct small (it sits in each sensor's hot state); the
    // capacity is bounded far below 2^32 (`new`).
    mask: u32,
    head: u32,
    len: u32,
    /// Times of the oldest and newest samples, kept here so that the common push (one in,
    /// one out) reads the buffer only for the sample that leaves: with thousands of
    /// sensors the buffers are not in cache, and each read is a miss.
    first_t: Nanos,
    last_t: Nanos,
    base: Nanos,
    n: f64,
    st: f64,
    sv: f64,
    stt: f64,
    stv: f64,
    updates_since_rebase: u32,
}

/// Recompute sums from the buffer after this many updates (bounds rounding drift).
const REBASE_EVERY: u32 = 4096;
/// ... or once the base is this many windows behind the newest sample.
const REBASE_WINDOWS: Nanos = 4;

impl RiseWindow {
    /// `capacity` (rounded up to a power of two) bounds memory; when more samples than that
    /// fall inside the window, the oldest leave early (the window shrinks a little) rather
    /// than allocating.
    /// The time the window covers (its configured `rise_window`).
    pub fn window(&self) -> Nanos {
        self.window
    }

    pub fn new(window: Nanos, capacity: usize) -> Self {
        let capacity = capacity.clamp(2, 1 << 24).next_power_of_two();
        RiseWindow {
            window,
            buf: vec![(0, 0.0); capacity].into_boxed_slice(),
            mask: capacity as u32 - 1,
            head: 0,
            len: 0,
            first_t: 0,
            last_t: 0,
            base: 0,
            n: 0.0,
            st: 0.0,
            sv: 0.0,
            stt: 0.0,
            stv: 0.0,
            updates_since_rebase: 0,
        }
    }

    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.n = 0.0;
        self.st = 0.0;
        self.sv = 0.0;
        self.stt = 0.0;
        self.stv = 0.0;
        self.updates_since_rebase = 0;
    }

    fn rel(&self, t: Nanos) -> f64 {
        (t.wrapping_sub(self.base) as i64) as f64 * 1e-9
    }

    fn add_sums(&mut self, t: Nanos, v: f64, sign: f64) {
        let x = self.rel(t);
        self.n += sign;
        self.st += sign * x;
        self.sv += sign * v;
        self.stt += sign * x * x;
        self.stv += sign * x * v;
    }

    fn pop_front(&mut self) {
        let (t, v) = self.buf[self.head as usize];
        self.add_sums(t, v, -1.0);
        self.head = (self.head + 1) & self.mask;
        self.len -= 1;
        if self.len > 0 {
            self.first_t = self.buf[self.head as usize].0;
        }
    }

    fn rebase(&mut self) {
        self.base = if self.len > 0 { self.first_t } else { 0 };
        self.n = 0.0;
        self.st = 0.0;
        self.sv = 0.0;
        self.stt = 0.0;
        self.stv = 0.0;
        for i in 0..self.len {
            let (t, v) = self.buf[((self.head + i) & self.mask) as usize];
            self.add_sums(t, v, 1.0);
        }
        self.updates_since_rebase = 0;
    }

    /// Adds a sample (times must not go backwards; an older sample is ignored).
    pub fn push(&mut self, t: Nanos, v: f64) {
        if self.len > 0 {
            if t < self.last_t {
                return;
            }
        } else {
            self.base = t;
        }
        self.expire(t);
        if self.len == self.mask + 1 {
            self.pop_front();
        }
        let idx = (self.head + self.len) & self.mask;
        self.buf[idx as usize] = (t, v);
        if self.len == 0 {
            self.first_t = t;
        }
        self.last_t = t;
        self.len += 1;
        self.add_sums(t, v, 1.0);
        self.updates_since_rebase += 1;
        // Re-centre when the base falls far behind the window too: sums of large offsets
        // over a short spread of times cancel badly. Amortised O(1): at most once per
        // REBASE_WINDOWS windows' worth of samples.
        if self.updates_since_rebase >= REBASE_EVERY
            || t.wrapping_sub(self.base) > REBASE_WINDOWS * self.window
        {
            self.rebase();
        }
    }

    /// Drops samples older than the window ending at `now`.
    pub fn expire(&mut self, now: Nanos) {
        while self.len > 0 && now.saturating_sub(self.first_t) > self.window {
            self.pop_front();
        }
    }

    /// Time between the oldest and newest sample in the window.
    pub fn span(&self) -> Nanos {
        if self.len < 2 {
            return 0;
        }
        self.last_t - self.first_t
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Least-squares slope in units per second, once the window holds at least three
    /// samples spanning at least `min_span`; `None` before that.
    pub fn slope(&self, min_span: Nanos) -> Option<f64> {
        if self.len < 3 || self.span() < min_span {
            return None;
        }
        let denom = self.n * self.stt - self.st * self.st;
        if denom <= f64::EPSILON * self.n * self.stt.abs().max(1.0) {
            return None;
        }
        Some((self.n * self.stv - self.st * self.sv) / denom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = 1_000_000_000;

    fn naive_slope(points: &[(f64, f64)]) -> f64 {
        let n = points.len() as f64;
        let mt = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mv = points.iter().map(|p| p.1).sum::<f64>() / n;
        let num: f64 = points.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
        let den: f64 = points.iter().map(|p| (p.0 - mt) * (p.0 - mt)).sum();
        num / den
    }

    #[test]
    fn slope_of_a_straight_line_is_exact() {
        let mut w = RiseWindow::new(60 * S, 256);
        for i in 0..30 {
            w.push(i * S, 20.0 + 0.5 * i as f64);
        }
        let s = w.slope(0).unwrap();
        assert!((s - 0.5).abs() < 1e-9, "{s}");
    }

    #[test]
    fn window_forgets_old_samples() {
        let mut w = RiseWindow::new(10 * S, 256);
        for i in 0..20 {
            w.push(i * S, 100.0);
        }
        for i in 20..40 {
            w.push(i * S, 100.0 + 2.0 * (i - 20) as f64);
        }
        let s = w.slope(0).unwrap();
        assert!((s - 2.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn slope_matches_naive_fit_with_irregular_sampling_over_a_long_run() {
        let mut w = RiseWindow::new(30 * S, 256);
        let mut t: Nanos = 1_000_000 * S; // far from zero: the re-centring matters
        let mut pts: Vec<(Nanos, f64)> = Vec::new();
        let mut x = 7u64;
        for i in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            t += 200_000_000 + (x >> 40) % 800_000_000;
            let v = 25.0 + (i as f64 * 0.01).sin() * 3.0 + ((x >> 20) % 100) as f64 * 0.001;
            w.push(t, v);
            pts.push((t, v));
        }
        let window: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| t - p.0 <= 30 * S)
            .map(|p| ((p.0 as f64 - t as f64) * 1e-9, p.1))
            .collect();
        let expected = naive_slope(&window);
        let got = w.slope(0).unwrap();
        assert!(
            (got - expected).abs() < 1e-6,
            "got {got}, expected {expected}"
        );
    }

    #[test]
    fn no_slope_until_the_window_has_enough_span() {
        let mut w = RiseWindow::new(60 * S, 64);
        w.push(0, 1.0);
        w.push(S, 2.0);
        assert_eq!(w.slope(0), None);
        w.push(2 * S, 3.0);
        assert!(w.slope(0).is_some());
        assert_eq!(w.slope(30 * S), None);
    }
}
