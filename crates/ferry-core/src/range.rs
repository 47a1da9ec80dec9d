//! Byte-range arithmetic for resumed downloads: parsing `Content-Range` and deciding whether a
//! server's answer to a ranged request can be appended to the bytes already on disk.
//!
//! Pure functions over plain values, so they can be property-tested; the transfer engine
//! (`ferry-fetch`) does the HTTP and the file I/O and asks these functions what the answer means.
//! Not here: building `Range` request headers (trivial), multi-range (`multipart/byteranges`)
//! answers (Ferry never asks for more than one range at a time), and any retry policy.

use std::fmt;

/// A parsed `Content-Range: bytes start-end/total` header of a 206 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// Offset of the first byte of the body in the whole resource.
    pub start: u64,
    /// Offset of the last byte of the body (inclusive, as on the wire).
    pub end_inclusive: u64,
    /// Size of the whole resource, `None` when the server sent `*`.
    pub total: Option<u64>,
}

impl ContentRange {
    /// Number of body bytes the range covers (`end - start + 1`).
    pub fn len(&self) -> u64 {
        // The parser guarantees end_inclusive >= start; only `0-(2^64-1)` would overflow the
        // `+ 1`, and saturating is the honest answer for that degenerate range.
        (self.end_inclusive - self.start).saturating_add(1)
    }

    /// Always false: a valid range covers at least one byte (present for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The offset just past the last byte (`end_inclusive + 1`), where the next range would start.
    pub fn end_exclusive(&self) -> u64 {
        self.end_inclusive.saturating_add(1)
    }
}

impl fmt::Display for ContentRange {
    /// Formats the header value exactly as a server would send it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.total {
            Some(total) => write!(f, "bytes {}-{}/{}", self.start, self.end_inclusive, total),
            None => write!(f, "bytes {}-{}/*", self.start, self.end_inclusive),
        }
    }
}

/// Why a `Content-Range` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not of the form `bytes a-b/N` or `bytes a-b/*`.
    #[error("malformed Content-Range {0:?}")]
    Malformed(String),
    /// The last byte comes before the first.
    #[error("Content-Range ends at {end} before it starts at {start}")]
    EndBeforeStart {
        /// First byte.
        start: u64,
        /// Last byte.
        end: u64,
    },
    /// The last byte lies at or past the declared total size.
    #[error("Content-Range ends at byte {end} but the resource has only {total} bytes")]
    EndBeyondTotal {
        /// Last byte.
        end: u64,
        /// Declared size.
        total: u64,
    },
}

/// Parses a decimal `u64` made of ASCII digits only (no sign, no spaces, no overflow).
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits off the `bytes` unit (case-insensitive, as RFC 9110 says range units are) and the
/// mandatory whitespace after it; returns the rest.
fn strip_bytes_unit(s: &str) -> Option<&str> {
    let s = s.trim();
    let (unit, rest) = s.split_at_checked(5)?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let trimmed = rest.trim_start_matches([' ', '\t']);
    // "bytes5-9/10" has no separator: not a valid header.
    if trimmed.len() == rest.len() {
        return None;
    }
    Some(trimmed)
}

/// Parses `bytes a-b/N` or `bytes a-b/*`; rejects anything malformed, `b < a`, and `b >= N`.
pub fn parse_content_range(s: &str) -> Result<ContentRange, RangeError> {
    let malformed = || RangeError::Malformed(s.to_owned());
    let rest = strip_bytes_unit(s).ok_or_else(malformed)?;
    let (span, total) = rest.split_once('/').ok_or_else(malformed)?;
    let (start, end) = span.split_once('-').ok_or_else(malformed)?;
    let start = parse_digits(start).ok_or_else(malformed)?;
    let end = parse_digits(end).ok_or_else(malformed)?;
    let total = match total {
        "*" => None,
        t => Some(parse_digits(t).ok_or_else(malformed)?),
    };
    if end < start {
        return Err(RangeError::EndBeforeStart { start, end });
    }
    if let Some(total) = total
        && end >= total
    {
        return Err(RangeError::EndBeyondTotal { end, total });
    }
    Ok(ContentRange {
        start,
        end_inclusive: end,
        total,
    })
}

/// Parses the `bytes */N` form a server sends with 416 (range not satisfiable) and returns `N`.
pub fn parse_unsatisfied_range(s: &str) -> Option<u64> {
    let rest = strip_bytes_unit(s)?;
    let total = rest.strip_prefix("*/")?;
    parse_digits(total)
}

/// What to do with the body of an answer to a (possibly ranged) GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeDecision {
    /// The body continues exactly where the bytes on disk end: append it.
    Append,
    /// The bytes on disk no longer belong to this resource (or the server ignored the range):
    /// drop them and take the file from offset zero.
    Restart,
    /// The answer makes no sense for what was asked; the text names the mismatch.
    Invalid(String),
}

/// Decides how an answer fits the bytes already on disk.
///
/// `requested_offset > 0` means a `Range: bytes=requested_offset-` (with `If-Range`) was sent;
/// `0` means no range was sent. `expected_total` is the size recorded when the earlier bytes
/// were fetched, if known.
///
/// - range sent, 206 starting exactly at `requested_offset` (total matching when both are
///   known) → `Append`; a 206 whose total differs → `Restart` (the file changed under a
///   validator that still matched, e.g. a coarse Last-Modified); a 206 starting elsewhere or
///   without a `Content-Range` → `Invalid`;
/// - range sent, 200 → `Restart` (the server ignored the range or the validator changed);
/// - no range sent: 200 → `Append` (a fresh file), 206 → `Invalid`;
/// - any other status → `Invalid` (callers handle errors, redirects and 416 before asking).
pub fn decide_resume(
    requested_offset: u64,
    status: u16,
    content_range: Option<&ContentRange>,
    expected_total: Option<u64>,
) -> ResumeDecision {
    match (requested_offset, status) {
        (0, 200) => ResumeDecision::Append,
        (0, 206) => ResumeDecision::Invalid(match content_range {
            Some(cr) => format!("the server answered 206 ({cr}) to a request without a range"),
            None => "the server answered 206 to a request without a range".to_owned(),
        }),
        (_, 200) => ResumeDecision::Restart,
        (offset, 206) => match content_range {
            None => ResumeDecision::Invalid(format!(
                "the server answered 206 without Content-Range to a request for bytes {offset}-"
            )),
            Some(cr) if cr.start != offset => ResumeDecision::Invalid(format!(
                "requested bytes from offset {offset} but the server sent {cr} (starting at {})",
                cr.start
            )),
            Some(cr) => match (cr.total, expected_total) {
                (Some(got), Some(want)) if got != want => ResumeDecision::Restart,
                _ => ResumeDecision::Append,
            },
        },
        (_, other) => ResumeDecision::Invalid(format!(
            "status {other} is not an answer with a body to append"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_known_and_unknown_totals() {
        assert_eq!(
            parse_content_range("bytes 0-499/1234"),
            Ok(ContentRange {
                start: 0,
                end_inclusive: 499,
                total: Some(1234)
            })
        );
        assert_eq!(
            parse_content_range("  BYTES 5-5/*"),
            Ok(ContentRange {
                start: 5,
                end_inclusive: 5,
                total: None
            })
        );
        assert_eq!(parse_content_range("bytes 0-0/1").map(|c| c.len()), Ok(1));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "bytes",
            "bytes ",
            "bytes0-1/2",
            "items 0-1/2",
            "bytes 0-1",
            "bytes -1/2",
            "bytes 0-/2",
            "bytes +0-1/2",
            "bytes 0-1/-2",
            "bytes 0-1/2/3",
            "bytes */10",
            "bytes 0 - 1/2",
            "bytes 0-99999999999999999999/*",
            "bytes a-b/c",
        ] {
            assert!(
                matches!(parse_content_range(s), Err(RangeError::Malformed(_))),
                "{s:?} should be malformed"
            );
        }
    }

    #[test]
    fn rejects_inverted_and_overlong_ranges() {
        assert_eq!(
            parse_content_range("bytes 10-9/100"),
            Err(RangeError::EndBeforeStart { start: 10, end: 9 })
        );
        assert_eq!(
            parse_content_range("bytes 0-100/100"),
            Err(RangeError::EndBeyondTotal {
                end: 100,
                total: 100
            })
        );
        assert!(parse_content_range("bytes 0-0/0").is_err());
    }

    #[test]
    fn unsatisfied_range() {
        assert_eq!(parse_unsatisfied_range("bytes */1000"), Some(1000));
        assert_eq!(parse_unsatisfied_range("bytes */0"), Some(0));
        assert_eq!(parse_unsatisfied_range("bytes */*"), None);
        assert_eq!(parse_unsatisfied_range("bytes 0-1/2"), None);
        assert_eq!(parse_unsatisfied_range("*/5"), None);
    }

    #[test]
    fn decisions() {
        let cr = |start, end, total| ContentRange {
            start,
            end_inclusive: end,
            total,
        };
        assert_eq!(decide_resume(0, 200, None, None), ResumeDecision::Append);
        assert_eq!(decide_resume(0, 200, None, Some(5)), ResumeDecision::Append);
        assert!(matches!(
            decide_resume(0, 206, Some(&cr(0, 9, Some(10))), None),
            ResumeDecision::Invalid(_)
        ));
        assert_eq!(
            decide_resume(100, 206, Some(&cr(100, 199, Some(200))), Some(200)),
            ResumeDecision::Append
        );
        assert_eq!(
            decide_resume(100, 206, Some(&cr(100, 199, None)), Some(200)),
            ResumeDecision::Append
        );
        assert_eq!(
            decide_resume(100, 206, Some(&cr(100, 199, Some(300))), Some(200)),
            ResumeDecision::Restart
        );
        assert_eq!(
            decide_resume(100, 200, None, Some(200)),
            ResumeDecision::Restart
        );
        match decide_resume(100, 206, Some(&cr(50, 199, Some(200))), Some(200)) {
            ResumeDecision::Invalid(msg) => {
                assert!(msg.contains("100") && msg.contains("50"), "{msg}")
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert!(matches!(
            decide_resume(100, 206, None, None),
            ResumeDecision::Invalid(_)
        ));
        assert!(matches!(
            decide_resume(100, 416, None, None),
            ResumeDecision::Invalid(_)
        ));
    }

    fn arb_range() -> impl Strategy<Value = ContentRange> {
        (any::<u64>(), any::<u64>(), any::<Option<u64>>()).prop_map(|(a, b, extra)| {
            let (start, end) = if a <= b { (a, b) } else { (b, a) };
            // A total, when present, must lie past the end.
            let total = extra.and_then(|x| end.checked_add(1)?.checked_add(x % 1_000_000));
            ContentRange {
                start,
                end_inclusive: end,
                total,
            }
        })
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(cr in arb_range()) {
            prop_assert_eq!(parse_content_range(&cr.to_string()), Ok(cr));
        }

        #[test]
        fn unsatisfied_round_trip(total in any::<u64>()) {
            prop_assert_eq!(parse_unsatisfied_range(&format!("bytes */{total}")), Some(total));
        }

        #[test]
        fn parser_never_accepts_invalid_bounds(s in "bytes [0-9]{1,4}-[0-9]{1,4}/([0-9]{1,4}|\\*)") {
            if let Ok(cr) = parse_content_range(&s) {
                prop_assert!(cr.start <= cr.end_inclusive);
                if let Some(t) = cr.total { prop_assert!(cr.end_inclusive < t); }
            }
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,40}") {
            let _ = parse_content_range(&s);
            let _ = parse_unsatisfied_range(&s);
        }

        #[test]
        fn never_append_when_start_differs(
            offset in 1u64..u64::MAX, cr in arb_range(), expected in any::<Option<u64>>(),
        ) {
            prop_assume!(cr.start != offset);
            prop_assert_ne!(decide_resume(offset, 206, Some(&cr), expected), ResumeDecision::Append);
        }

        #[test]
        fn append_iff_start_and_total_fit(
            offset in 1u64..u64::MAX, cr in arb_range(), expected in any::<Option<u64>>(),
        ) {
            let cr = ContentRange { start: offset, end_inclusive: cr.end_inclusive.max(offset), total: cr.total.filter(|t| *t > cr.end_inclusive.max(offset)) };
            let fits = match (cr.total, expected) { (Some(a), Some(b)) => a == b, _ => true };
            let d = decide_resume(offset, 206, Some(&cr), expected);
            prop_assert_eq!(d == ResumeDecision::Append, fits);
            prop_assert!(fits || d == ResumeDecision::Restart);
        }

        #[test]
        fn ranged_200_always_restarts(offset in 1u64.., expected in any::<Option<u64>>()) {
            prop_assert_eq!(decide_resume(offset, 200, None, expected), ResumeDecision::Restart);
        }

        #[test]
        fn unranged_206_is_invalid(cr in proptest::option::of(arb_range()), expected in any::<Option<u64>>()) {
            prop_assert!(matches!(decide_resume(0, 206, cr.as_ref(), expected), ResumeDecision::Invalid(_)));
        }

        #[test]
        fn other_statuses_are_invalid(offset in any::<u64>(), status in 100u16..600) {
            prop_assume!(status != 200 && status != 206);
            prop_assert!(matches!(decide_resume(offset, status, None, None), ResumeDecision::Invalid(_)));
        }
    }
}
