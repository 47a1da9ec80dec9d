//! Bandwidth limits applied while bytes arrive: a set of shared token buckets (the daemon's
//! global background limit, the job's own limit) that a transfer consults after every chunk.
//! Waiting slows the reader, and TCP back-pressure slows the server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::bandwidth::TokenBucket;
use tokio::time::Instant;

/// One limit shared by every transfer it covers; its rate can change while they run.
#[derive(Debug)]
pub struct Bucket {
    epoch: Instant,
    state: Mutex<Option<TokenBucket>>,
}

impl Bucket {
    /// A bucket limited to `rate` bytes per second (`None`: unlimited).
    pub fn new(rate: Option<u64>) -> Arc<Bucket> {
        let b = Arc::new(Bucket {
            epoch: Instant::now(),
            state: Mutex::new(None),
        });
        b.set_rate(rate);
        b
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Changes the limit; `None` removes it.
    pub fn set_rate(&self, rate: Option<u64>) {
        let now = self.now_us();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *st = match (st.take(), rate) {
            (_, None) => None,
            (Some(mut b), Some(r)) => {
                b.set_rate(r, now);
                Some(b)
            }
            (None, Some(r)) => Some(TokenBucket::new(r, now)),
        };
    }

    /// The current limit.
    pub fn rate(&self) -> Option<u64> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.as_ref().map(TokenBucket::rate)
    }

    fn take(&self, n: u64) -> Duration {
        let now = self.now_us();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.as_mut() {
            Some(b) => Duration::from_micros(b.take(n, now)),
            None => Duration::ZERO,
        }
    }
}

/// The buckets one transfer is subject to.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    buckets: Vec<Arc<Bucket>>,
}

impl Throttle {
    /// A throttle over these buckets (empty: unlimited).
    pub fn new(buckets: Vec<Arc<Bucket>>) -> Throttle {
        Throttle { buckets }
    }

    /// The tightest limit of its buckets, bytes per second (`None`: unlimited).
    pub fn rate(&self) -> Option<u64> {
        self.buckets.iter().filter_map(|b| b.rate()).min()
    }

    /// Accounts `n` bytes in every bucket; returns how long to wait before reading more.
    pub fn take(&self, n: u64) -> Duration {
        self.buckets
            .iter()
            .map(|b| b.take(n))
            .max()
            .unwrap_or(Duration::ZERO)
    }
}
