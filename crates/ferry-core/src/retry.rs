//! Which errors are retried and when (docs/protocol.md, error info code values).
//!
//! [`classify_http_status`] sorts a server's answer into transient or fatal; [`on_transient`]
//! decides, after a transient error, when the job is retried or whether it has gone without
//! progress for too long and fails with `NO_PROGRESS_TIMEOUT`.

use crate::schedule::Millis;

/// Whether an error is retried by the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Retried after the retry delay (`transient_error`).
    Transient,
    /// Needs the owner (`error`).
    Fatal,
}

/// HTTP status for a download: 3xx transient except 300–305 and 307 (fatal); 4xx fatal except 408, 409 and 429 (transient); 5xx transient except 501 and 505 (fatal); 1xx/other → transient.
///
/// This is BITS's upload server-application table, which suits downloads too,
/// plus 429 (Too Many Requests), which asks the client to come back later.
pub fn classify_http_status(status: u16) -> Class {
    match status {
        300..=305 | 307 => Class::Fatal,
        408 | 409 | 429 => Class::Transient,
        400..=499 => Class::Fatal,
        501 | 505 => Class::Fatal,
        _ => Class::Transient,
    }
}

/// When should a job that just hit a transient error be retried, or should it fail?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransientInput {
    /// When the error happened.
    pub now: Millis,
    /// Start of the current no-progress window; `None` = this is the first transient error.
    pub first_transient_at: Option<Millis>,
    /// When the job last made progress (a byte became durable), if ever.
    pub last_progress_at: Option<Millis>,
    /// The job's `minimum_retry_delay`, in milliseconds.
    pub minimum_retry_delay_ms: u64,
    /// The job's `no_progress_timeout`, in milliseconds; 0 makes every transient error fatal.
    pub no_progress_timeout_ms: u64,
    /// The server's `Retry-After`, in milliseconds, if it sent one.
    pub retry_after_ms: Option<u64>,
}

/// What to do with a job that just hit a transient error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransientDecision {
    /// Stay in `transient_error` and go back to `queued` at this time.
    RetryAt(Millis),
    /// Go to `error` with `NO_PROGRESS_TIMEOUT`.
    Fail,
}

/// Start of the no-progress window: the first transient error, restarted by any later progress.
pub fn no_progress_window_start(input: &TransientInput) -> Millis {
    let first = input.first_transient_at.unwrap_or(input.now);
    match input.last_progress_at {
        Some(progress) if progress > first => progress,
        _ => first,
    }
}

/// Decides between retrying and failing after a transient error.
///
/// Fails when the no-progress timeout is 0, when the minimum retry delay exceeds the timeout
/// (BITS never retries such a job), when the window (see [`no_progress_window_start`]) has
/// already lasted the timeout, or when the retry would only come after the window ends (BITS's
/// timer would fire first, so waiting for it gains nothing). Otherwise retries at
/// `now + max(minimum_retry_delay, retry_after)`.
pub fn on_transient(input: &TransientInput) -> TransientDecision {
    let timeout = input.no_progress_timeout_ms;
    if timeout == 0 || input.minimum_retry_delay_ms > timeout {
        return TransientDecision::Fail;
    }
    let window_start = no_progress_window_start(input);
    let deadline = window_start.saturating_add(timeout);
    if input.now >= deadline {
        return TransientDecision::Fail;
    }
    let delay = input
        .minimum_retry_delay_ms
        .max(input.retry_after_ms.unwrap_or(0));
    let retry_at = input.now.saturating_add(delay);
    if retry_at > deadline {
        TransientDecision::Fail
    } else {
        TransientDecision::RetryAt(retry_at)
    }
}

/// What a retry scheduled by [`on_transient`] waits for, as `waiting.reason` names it:
/// `"retry_after"` only when the server's `Retry-After` is longer than the job's own minimum
/// retry delay (then it sets the time), else `"retry_delay"`.
pub fn waiting_reason(minimum_retry_delay_ms: u64, retry_after_ms: Option<u64>) -> &'static str {
    match retry_after_ms {
        Some(after) if after > minimum_retry_delay_ms => "retry_after",
        _ => "retry_delay",
    }
}

/// A requested retry delay in seconds, raised to `floor_s` when below it.
pub fn retry_delay_floor(requested_s: u64, floor_s: u64) -> u64 {
    requested_s.max(floor_s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(now: Millis) -> TransientInput {
        TransientInput {
            now,
            first_transient_at: None,
            last_progress_at: None,
            minimum_retry_delay_ms: 1_000,
            no_progress_timeout_ms: 10_000,
            retry_after_ms: None,
        }
    }

    #[test]
    fn http_status_table() {
        use Class::*;
        let cases = [
            (100, Transient),
            (200, Transient),
            (206, Transient),
            (300, Fatal),
            (301, Fatal),
            (304, Fatal),
            (305, Fatal),
            (306, Transient),
            (307, Fatal),
            (308, Transient),
            (400, Fatal),
            (401, Fatal),
            (403, Fatal),
            (404, Fatal),
            (407, Fatal),
            (408, Transient),
            (409, Transient),
            (410, Fatal),
            (416, Fatal),
            (429, Transient),
            (499, Fatal),
            (500, Transient),
            (501, Fatal),
            (502, Transient),
            (503, Transient),
            (504, Transient),
            (505, Fatal),
            (599, Transient),
            (600, Transient),
            (0, Transient),
        ];
        for (status, class) in cases {
            assert_eq!(classify_http_status(status), class, "{status}");
        }
    }

    #[test]
    fn first_transient_error_retries_after_minimum_delay() {
        assert_eq!(
            on_transient(&input(5_000)),
            TransientDecision::RetryAt(6_000)
        );
    }

    #[test]
    fn waiting_reason_names_the_longer_delay() {
        assert_eq!(waiting_reason(1_000, None), "retry_delay");
        assert_eq!(waiting_reason(30_000, Some(1_000)), "retry_delay");
        assert_eq!(waiting_reason(30_000, Some(30_000)), "retry_delay");
        assert_eq!(waiting_reason(1_000, Some(30_000)), "retry_after");
    }

    #[test]
    fn retry_after_longer_than_minimum_delay_wins() {
        let i = TransientInput {
            retry_after_ms: Some(3_000),
            ..input(5_000)
        };
        assert_eq!(on_transient(&i), TransientDecision::RetryAt(8_000));
        let shorter = TransientInput {
            retry_after_ms: Some(10),
            ..input(5_000)
        };
        assert_eq!(on_transient(&shorter), TransientDecision::RetryAt(6_000));
    }

    #[test]
    fn zero_no_progress_timeout_fails_at_once() {
        let i = TransientInput {
            no_progress_timeout_ms: 0,
            minimum_retry_delay_ms: 0,
            ..input(5_000)
        };
        assert_eq!(on_transient(&i), TransientDecision::Fail);
    }

    #[test]
    fn retry_delay_over_timeout_is_never_retried() {
        let i = TransientInput {
            minimum_retry_delay_ms: 10_001,
            ..input(0)
        };
        assert_eq!(on_transient(&i), TransientDecision::Fail);
        let equal = TransientInput {
            minimum_retry_delay_ms: 10_000,
            ..input(0)
        };
        assert_eq!(on_transient(&equal), TransientDecision::RetryAt(10_000));
    }

    #[test]
    fn window_elapsed_without_progress_fails() {
        let i = TransientInput {
            first_transient_at: Some(1_000),
            ..input(11_000)
        };
        assert_eq!(on_transient(&i), TransientDecision::Fail);
        let just_before = TransientInput {
            first_transient_at: Some(1_000),
            ..input(10_000)
        };
        assert_eq!(
            on_transient(&just_before),
            TransientDecision::RetryAt(11_000)
        );
    }

    #[test]
    fn progress_after_first_error_restarts_the_window() {
        let i = TransientInput {
            first_transient_at: Some(1_000),
            last_progress_at: Some(8_000),
            ..input(15_000)
        };
        assert_eq!(no_progress_window_start(&i), 8_000);
        assert_eq!(on_transient(&i), TransientDecision::RetryAt(16_000));
    }

    #[test]
    fn progress_before_first_error_does_not_extend_the_window() {
        let i = TransientInput {
            first_transient_at: Some(1_000),
            last_progress_at: Some(500),
            ..input(11_000)
        };
        assert_eq!(no_progress_window_start(&i), 1_000);
        assert_eq!(on_transient(&i), TransientDecision::Fail);
    }

    #[test]
    fn retry_after_past_the_window_end_fails() {
        let i = TransientInput {
            first_transient_at: Some(0),
            retry_after_ms: Some(6_000),
            ..input(5_000)
        };
        assert_eq!(on_transient(&i), TransientDecision::Fail);
    }

    #[test]
    fn retry_delay_floor_raises_small_values() {
        assert_eq!(retry_delay_floor(1, 5), 5);
        assert_eq!(retry_delay_floor(600, 5), 600);
        assert_eq!(retry_delay_floor(5, 5), 5);
        assert_eq!(retry_delay_floor(0, 0), 0);
    }

    proptest! {
        #[test]
        fn retry_is_never_early(
            now in 0u64..1_000_000,
            first in proptest::option::of(0u64..1_000_000),
            progress in proptest::option::of(0u64..1_000_000),
            delay in 0u64..100_000,
            timeout in 0u64..200_000,
            retry_after in proptest::option::of(0u64..100_000),
        ) {
            let i = TransientInput {
                now,
                first_transient_at: first.map(|f| f.min(now)),
                last_progress_at: progress.map(|p| p.min(now)),
                minimum_retry_delay_ms: delay,
                no_progress_timeout_ms: timeout,
                retry_after_ms: retry_after,
            };
            match on_transient(&i) {
                TransientDecision::RetryAt(at) => {
                    prop_assert!(at >= now + delay);
                    prop_assert!(at >= now + retry_after.unwrap_or(0));
                    // A retry is only granted inside the no-progress window.
                    prop_assert!(timeout > 0 && delay <= timeout);
                    prop_assert!(at <= no_progress_window_start(&i) + timeout);
                }
                TransientDecision::Fail => {
                    let start = no_progress_window_start(&i);
                    let wait = delay.max(retry_after.unwrap_or(0));
                    prop_assert!(
                        timeout == 0 || delay > timeout || now + wait > start + timeout
                    );
                }
            }
        }
    }
}
