//! Token-bucket arithmetic for bandwidth limits: how long a sender must wait before `n` more
//! bytes may pass. Pure: time is passed in (microseconds on any monotonic clock).
//!
//! The bucket may go into debt: a chunk larger than what is available passes at once and the
//! *next* chunk waits until the debt is paid. That keeps the long-run rate exact without
//! splitting chunks, and the small burst (a tenth of a second of rate) keeps any window of a few
//! seconds within a few percent of the limit.

/// A byte-rate limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    rate: u64,
    burst: i128,
    tokens: i128,
    last_us: u64,
}

impl TokenBucket {
    /// A bucket for `rate` bytes per second, starting full at time `now_us`.
    pub fn new(rate: u64, now_us: u64) -> TokenBucket {
        let burst = Self::burst_for(rate);
        TokenBucket {
            rate: rate.max(1),
            burst,
            tokens: burst,
            last_us: now_us,
        }
    }

    fn burst_for(rate: u64) -> i128 {
        // A tenth of a second of traffic, but at least one typical read chunk.
        i128::from((rate / 10).max(16 * 1024))
    }

    /// The limit in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Changes the rate; accumulated tokens are capped at the new burst.
    pub fn set_rate(&mut self, rate: u64, now_us: u64) {
        self.refill(now_us);
        self.rate = rate.max(1);
        self.burst = Self::burst_for(self.rate);
        self.tokens = self.tokens.min(self.burst);
    }

    fn refill(&mut self, now_us: u64) {
        let elapsed = i128::from(now_us.saturating_sub(self.last_us));
        self.last_us = self.last_us.max(now_us);
        let added = elapsed * i128::from(self.rate) / 1_000_000;
        self.tokens = (self.tokens + added).min(self.burst);
    }

    /// Takes `n` bytes; returns how many microseconds the sender must wait before sending more.
    pub fn take(&mut self, n: u64, now_us: u64) -> u64 {
        self.refill(now_us);
        self.tokens -= i128::from(n);
        if self.tokens >= 0 {
            return 0;
        }
        let debt = -self.tokens;
        let rate = i128::from(self.rate);
        let wait = (debt * 1_000_000 + rate - 1) / rate;
        u64::try_from(wait).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn within_the_burst_nothing_waits() {
        let mut b = TokenBucket::new(1_000_000, 0);
        assert_eq!(b.take(50_000, 0), 0);
    }

    #[test]
    fn debt_is_paid_at_the_rate() {
        let mut b = TokenBucket::new(1_000_000, 0);
        // Burst is 100 000 bytes; 1 100 000 bytes leave a debt of one second.
        assert_eq!(b.take(1_100_000, 0), 1_000_000);
        assert_eq!(b.take(0, 1_000_000), 0);
    }

    #[test]
    fn lowering_the_rate_takes_effect_at_once() {
        let mut b = TokenBucket::new(10_000_000, 0);
        b.set_rate(100_000, 0);
        // Burst shrank to 16 KiB.
        assert!(b.take(100_000, 0) > 800_000);
    }

    proptest! {
        /// A sender that always waits as told never exceeds rate × time + burst.
        #[test]
        fn long_run_rate_is_held(rate in 10_000u64..50_000_000, chunks in proptest::collection::vec(1u64..200_000, 1..200)) {
            let mut b = TokenBucket::new(rate, 0);
            let mut now = 0u64;
            let mut sent = 0u64;
            for c in chunks {
                let wait = b.take(c, now);
                sent += c;
                now += wait;
            }
            let allowed = u128::from(rate) * u128::from(now) / 1_000_000 + (rate / 10).max(16 * 1024) as u128;
            prop_assert!(u128::from(sent) <= allowed + 200_000, "sent {sent} in {now} us at {rate}");
        }
    }
}
