//! The slowest a source may be: a floor on the bytes per second it delivers, judged over
//! consecutive windows. Used for peers: a peer that trickles keeps a file slow for ever, and
//! the origin can serve the rest instead.
//!
//! Not here: stalls (no byte at all for a while: `FetchRequest::stall_timeout`) and our own
//! bandwidth limits (`throttle`), whose waits excuse a slow window.

use std::time::{Duration, Instant};

/// Judges a source's rate window by window.
#[derive(Debug, Clone)]
pub(crate) struct RateFloor {
    min_bps: u64,
    window: Duration,
    start: Instant,
    bytes: u64,
    excused: bool,
}

impl RateFloor {
    /// A floor of `min_bps`, judged over every `window` from `now`.
    pub(crate) fn new(min_bps: u64, window: Duration, now: Instant) -> RateFloor {
        RateFloor {
            min_bps,
            window,
            start: now,
            bytes: 0,
            excused: false,
        }
    }

    /// Our own throttle made the source wait in this window: the window does not count.
    pub(crate) fn excuse(&mut self) {
        self.excused = true;
    }

    /// Records `bytes` arriving at `now`. When this closes a window that was below the floor
    /// (and not excused), returns the rate it had, in bytes per second.
    pub(crate) fn on_bytes(&mut self, bytes: u64, now: Instant) -> Option<u64> {
        self.bytes = self.bytes.saturating_add(bytes);
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed < self.window {
            return None;
        }
        let ms = u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let rate = self.bytes.saturating_mul(1000) / ms;
        let slow = !self.excused && rate < self.min_bps;
        *self = RateFloor::new(self.min_bps, self.window, now);
        slow.then_some(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const W: Duration = Duration::from_secs(5);

    #[test]
    fn a_window_below_the_floor_is_reported_once_it_closes() {
        let t0 = Instant::now();
        let mut f = RateFloor::new(1000, W, t0);
        assert_eq!(f.on_bytes(100, t0 + Duration::from_secs(1)), None);
        assert_eq!(f.on_bytes(100, t0 + Duration::from_secs(4)), None);
        // 300 bytes over 5 s: 60 B/s.
        assert_eq!(f.on_bytes(100, t0 + W), Some(60));
    }

    #[test]
    fn a_fast_window_resets_and_the_next_one_is_judged_alone() {
        let t0 = Instant::now();
        let mut f = RateFloor::new(1000, W, t0);
        assert_eq!(f.on_bytes(10_000, t0 + W), None);
        assert_eq!(f.on_bytes(10, t0 + W + Duration::from_secs(5)), Some(2));
    }

    #[test]
    fn our_own_throttle_excuses_a_window() {
        let t0 = Instant::now();
        let mut f = RateFloor::new(1000, W, t0);
        f.excuse();
        assert_eq!(f.on_bytes(1, t0 + W), None);
        // The excuse lasts one window.
        assert_eq!(f.on_bytes(1, t0 + W * 2), Some(0));
    }

    proptest! {
        /// Whatever the arrivals, a source at or above the floor in every window is never
        /// reported.
        #[test]
        fn a_source_above_the_floor_is_never_reported(
            gaps in proptest::collection::vec(1u64..2000, 1..200),
            min in 1u64..100_000,
        ) {
            let t0 = Instant::now();
            let mut f = RateFloor::new(min, W, t0);
            let mut t = t0;
            for gap in gaps {
                t += Duration::from_millis(gap);
                // Enough bytes for the floor over the gap, rounded up.
                let bytes = (min * gap).div_ceil(1000);
                prop_assert_eq!(f.on_bytes(bytes, t), None);
            }
        }
    }
}
