//! Wall-clock timestamps for the wire, and a monotonic millisecond clock for timers.

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as an RFC 3339 UTC string.
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// Formats a time as RFC 3339 (UTC).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The wall-clock time `d` from now, as RFC 3339.
pub fn rfc3339_in(d: Duration) -> String {
    let d = time::Duration::try_from(d).unwrap_or(time::Duration::ZERO);
    rfc3339(OffsetDateTime::now_utc().saturating_add(d))
}

/// How long until an RFC 3339 time (zero if past or unparsable).
pub fn until(s: &str) -> Duration {
    match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => Duration::try_from(t - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO),
        Err(_) => Duration::ZERO,
    }
}

/// How long ago an RFC 3339 time was (zero if future or unparsable).
pub fn since(s: &str) -> Duration {
    match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => Duration::try_from(OffsetDateTime::now_utc() - t).unwrap_or(Duration::ZERO),
        Err(_) => Duration::ZERO,
    }
}

/// Milliseconds on a monotonic clock that starts with the daemon (`ferry-core` timers).
#[derive(Debug, Clone, Copy)]
pub struct Mono(Instant);

impl Mono {
    /// Starts the clock.
    pub fn start() -> Mono {
        Mono(Instant::now())
    }

    /// Milliseconds since start.
    pub fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The instant `ms` milliseconds after start.
    pub fn instant(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}
