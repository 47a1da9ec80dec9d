//! Byte-range arithmetic for resumed downloads: parsing `Content-Range` and deciding whether a
//! server's answer to a ranged request can be appended to the bytes already on disk.
//!
//! Also the arithmetic of ranged files (BITS `AddFileWithRanges`): several ranges of one remote
//! file concatenated, in the order given, into one local file. The transfer engine only knows an
//! offset in that concatenation (the committed offset); [`locate`] maps it to a range and a
//! remote offset, [`output_start`] maps back, and [`decide_ranged`] judges the answer to one
//! range request.
//!
//! Pure functions over plain values, so they can be property-tested; the transfer engine
//! (`ferry-fetch`) does the HTTP and the file I/O and asks these functions what the answer means.
//! Not here: building `Range` request headers (trivial), multi-range (`multipart/byteranges`)
//! answers (Ferry never asks for more than one range at a time), and any retry policy.

use std::fmt;

use ferry_proto::FileRange;

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

/// Why the ranges of a ranged file are not acceptable (BITS `AddFileWithRanges` rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangesError {
    /// No range at all: a ranged file needs at least one.
    #[error("a ranged file needs at least one range")]
    Empty,
    /// A range of length zero (BITS has no such range; `null` means "to the end").
    #[error("range {index} has length 0")]
    ZeroLength {
        /// Index of the range in the given order.
        index: usize,
    },
    /// `offset + length` does not fit in 64 bits.
    #[error("range {index} ends past the largest possible offset")]
    Overflow {
        /// Index of the range in the given order.
        index: usize,
    },
    /// Two ranges share a byte (BITS `BG_E_OVERLAPPING_RANGES`); a `null` length reaches to
    /// infinity, so it overlaps every range at a higher offset.
    #[error("ranges {first} and {second} overlap")]
    Overlapping {
        /// The range with the lower offset (index in the given order).
        first: usize,
        /// The range that starts inside it (index in the given order).
        second: usize,
    },
    /// A range starts at or ends past the end of the remote file (BITS `BG_E_INVALID_RANGE`).
    #[error(
        "range {index} (offset {offset}) reaches beyond the end of the {size}-byte remote file"
    )]
    BeyondEnd {
        /// Index of the range in the given order.
        index: usize,
        /// Its offset in the remote file.
        offset: u64,
        /// The remote file's size.
        size: u64,
    },
}

/// The offset just past a range in the remote file; `None` for a `null` length (to the end).
/// Lengths are assumed checked by [`check_ranges`], so an overflow saturates.
fn range_end(r: &FileRange) -> Option<u64> {
    r.length.map(|l| r.offset.saturating_add(l))
}

/// Checks the ranges of a new ranged file: at least one, no zero length, no 64-bit overflow,
/// no overlap. Overlap is judged on a copy sorted by offset (ties in the given order), so
/// equal offsets always fail, as in BITS. The order given is kept for the output.
pub fn check_ranges(ranges: &[FileRange]) -> Result<(), RangesError> {
    if ranges.is_empty() {
        return Err(RangesError::Empty);
    }
    for (index, r) in ranges.iter().enumerate() {
        match r.length {
            Some(0) => return Err(RangesError::ZeroLength { index }),
            Some(l) if r.offset.checked_add(l).is_none() => {
                return Err(RangesError::Overflow { index });
            }
            _ => {}
        }
    }
    let mut sorted: Vec<usize> = (0..ranges.len()).collect();
    sorted.sort_by_key(|&i| (ranges[i].offset, i));
    for pair in sorted.windows(2) {
        let (a, b) = (&ranges[pair[0]], &ranges[pair[1]]);
        // Sorted by offset, so only the neighbour can start inside a range.
        if range_end(a).is_none_or(|end| end > b.offset) {
            return Err(RangesError::Overlapping {
                first: pair[0],
                second: pair[1],
            });
        }
    }
    Ok(())
}

/// Checks that every range lies inside a remote file of `size` bytes: it starts before the
/// end, and a bounded range ends at or before it.
pub fn check_within(ranges: &[FileRange], size: u64) -> Result<(), RangesError> {
    for (index, r) in ranges.iter().enumerate() {
        if r.offset >= size || range_end(r).is_some_and(|end| end > size) {
            return Err(RangesError::BeyondEnd {
                index,
                offset: r.offset,
                size,
            });
        }
    }
    Ok(())
}

/// The ranges with every `null` length replaced by "to the end of a `size`-byte remote file",
/// after [`check_within`].
pub fn resolve_remote(ranges: &[FileRange], size: u64) -> Result<Vec<FileRange>, RangesError> {
    check_within(ranges, size)?;
    Ok(ranges
        .iter()
        .map(|r| FileRange {
            offset: r.offset,
            length: Some(r.length.unwrap_or(size - r.offset)),
        })
        .collect())
}

/// The ranges with their one `null` length filled in so that the lengths add up to
/// `output_total` (the concatenated size an earlier attempt recorded). Returns the ranges as
/// they are when every length is known and adds up to it; `None` when no such filling exists
/// (several `null` lengths, bounded ranges already as long or longer, or a mismatched sum).
pub fn resolve_output(ranges: &[FileRange], output_total: u64) -> Option<Vec<FileRange>> {
    let mut bounded = 0u64;
    let mut open = None;
    for (i, r) in ranges.iter().enumerate() {
        match r.length {
            Some(l) => bounded = bounded.checked_add(l)?,
            None if open.is_some() => return None,
            None => open = Some(i),
        }
    }
    let Some(open) = open else {
        return (bounded == output_total).then(|| ranges.to_vec());
    };
    let length = output_total.checked_sub(bounded).filter(|l| *l > 0)?;
    ranges[open].offset.checked_add(length)?;
    let mut out = ranges.to_vec();
    out[open].length = Some(length);
    Some(out)
}

/// The size of the concatenation: the sum of the lengths; `None` while a length is unknown
/// (or if the sum overflows, which [`check_ranges`] cannot rule out for many huge ranges).
pub fn output_len(ranges: &[FileRange]) -> Option<u64> {
    ranges
        .iter()
        .try_fold(0u64, |sum, r| sum.checked_add(r.length?))
}

/// The output offset where range `index` begins: the lengths of the ranges before it; `None`
/// when one of those is unknown, or `index` is out of bounds.
pub fn output_start(ranges: &[FileRange], index: usize) -> Option<u64> {
    output_len(ranges.get(..index)?)
}

/// A position inside a ranged file, in both coordinate systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangePosition {
    /// Index of the range (in the given order) holding the next byte.
    pub index: usize,
    /// Bytes of that range already in the output (less than its length).
    pub within: u64,
    /// Offset of the next byte in the remote file (`offset + within`).
    pub remote: u64,
}

/// Where an output offset lies in the concatenation of `ranges`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Inside a range: the next byte to fetch.
    In(RangePosition),
    /// Exactly at the end of the concatenation: every byte is present.
    End,
    /// Past the end (or at a position no remote offset can express): the bytes on disk do
    /// not belong to these ranges.
    Past,
}

/// Maps an output offset to the range and remote offset of the next byte. A `null` length is
/// taken as unbounded, so an offset that reaches an unresolved open range lies inside it (fill
/// it in with [`resolve_remote`] or [`resolve_output`] first to map offsets beyond it). An
/// offset on the boundary of two ranges lies at the start of the later one.
pub fn locate(ranges: &[FileRange], output_offset: u64) -> Location {
    let mut start = 0u64;
    for (index, r) in ranges.iter().enumerate() {
        let within = output_offset - start;
        let inside = r.length.is_none_or(|l| within < l);
        if inside {
            return match r.offset.checked_add(within) {
                Some(remote) => Location::In(RangePosition {
                    index,
                    within,
                    remote,
                }),
                None => Location::Past,
            };
        }
        // Bounded here; `within >= l` means the offset lies past this range.
        start += r.length.unwrap_or(0);
    }
    if output_offset == start {
        Location::End
    } else {
        Location::Past
    }
}

/// One range request as sent: `Range: bytes=from-to` (or `from-` without `to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeAsk {
    /// First remote byte asked for.
    pub from: u64,
    /// Last remote byte asked for (inclusive, as on the wire); `None` for "to the end".
    pub to_inclusive: Option<u64>,
    /// Whether an `If-Range` validator went with it.
    pub if_range: bool,
}

/// What to do with the answer to one request of a ranged file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangedDecision {
    /// A 206 with exactly the bytes asked for (for an open-ended ask: starting at `from`,
    /// possibly capped short of the end): append the body.
    Append,
    /// A 200 to a request with `If-Range` (the validator changed), or a 206 declaring another
    /// size than before (the file changed under a validator that still matched): drop every
    /// byte and start the ranged file over from output offset 0, without `If-Range`.
    Restart,
    /// A 200 to a ranged request without `If-Range`: the server cannot serve ranges
    /// (BITS `BG_E_INSUFFICIENT_RANGE_SUPPORT`).
    Unsupported,
    /// The asked range reaches past the end of the remote file (a 416, or a 206 cut at the
    /// declared end; BITS `BG_E_INVALID_RANGE`).
    BeyondEnd,
    /// Anything else: the answer does not fit what was asked (BITS
    /// `BG_E_INVALID_SERVER_RESPONSE`); its bytes must never be spliced in. The text says why.
    Invalid(String),
}

/// Judges the answer to one range request of a ranged file.
///
/// `known_total` is the remote size an earlier answer of the same attempt declared. The
/// caller handles error statuses and redirects first, and also the one 416 that is good news:
/// resuming an open-ended range whose bytes all arrived (`bytes */N` with `N == from`).
pub fn decide_ranged(
    ask: RangeAsk,
    status: u16,
    content_range: Option<&ContentRange>,
    known_total: Option<u64>,
) -> RangedDecision {
    let asked = match ask.to_inclusive {
        Some(to) => format!("bytes {}-{to}", ask.from),
        None => format!("bytes {}-", ask.from),
    };
    match status {
        200 if ask.if_range => RangedDecision::Restart,
        200 => RangedDecision::Unsupported,
        416 => RangedDecision::BeyondEnd,
        206 => {
            let Some(cr) = content_range else {
                return RangedDecision::Invalid(format!(
                    "the server answered 206 without Content-Range to a request for {asked}"
                ));
            };
            if let (Some(got), Some(want)) = (cr.total, known_total)
                && got != want
            {
                return RangedDecision::Restart;
            }
            if cr.start != ask.from {
                return RangedDecision::Invalid(format!(
                    "requested {asked} but the server sent {cr} (starting at {})",
                    cr.start
                ));
            }
            match ask.to_inclusive {
                None => RangedDecision::Append,
                Some(to) if cr.end_inclusive == to => RangedDecision::Append,
                Some(to) if cr.end_inclusive < to && cr.total.is_some_and(|t| to >= t) => {
                    RangedDecision::BeyondEnd
                }
                Some(_) => {
                    RangedDecision::Invalid(format!("requested {asked} but the server sent {cr}"))
                }
            }
        }
        other => RangedDecision::Invalid(format!(
            "status {other} is not an answer to a request for {asked}"
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

#[cfg(test)]
mod ranged_tests {
    use super::*;
    use proptest::prelude::*;

    fn r(offset: u64, length: Option<u64>) -> FileRange {
        FileRange { offset, length }
    }

    fn pos(index: usize, within: u64, remote: u64) -> Location {
        Location::In(RangePosition {
            index,
            within,
            remote,
        })
    }

    #[test]
    fn checks_follow_bits() {
        assert_eq!(check_ranges(&[]), Err(RangesError::Empty));
        assert_eq!(
            check_ranges(&[r(0, Some(10)), r(20, Some(0))]),
            Err(RangesError::ZeroLength { index: 1 })
        );
        assert_eq!(
            check_ranges(&[r(u64::MAX - 1, Some(2))]),
            Err(RangesError::Overflow { index: 0 })
        );
        assert_eq!(check_ranges(&[r(u64::MAX - 1, Some(1))]), Ok(()));
        // Out of order is fine; touching is fine.
        assert_eq!(
            check_ranges(&[r(200, Some(100)), r(0, Some(100)), r(100, Some(100))]),
            Ok(())
        );
        assert_eq!(
            check_ranges(&[r(0, Some(100)), r(99, Some(5))]),
            Err(RangesError::Overlapping {
                first: 0,
                second: 1
            })
        );
        // Equal offsets always overlap, whatever the order given.
        assert_eq!(
            check_ranges(&[r(5, Some(1)), r(5, Some(3))]),
            Err(RangesError::Overlapping {
                first: 0,
                second: 1
            })
        );
        // A null length reaches to infinity.
        assert_eq!(
            check_ranges(&[r(1_000_000, Some(1)), r(10, None)]),
            Err(RangesError::Overlapping {
                first: 1,
                second: 0
            })
        );
        assert_eq!(check_ranges(&[r(1000, None), r(0, Some(1000))]), Ok(()));
    }

    #[test]
    fn within_and_resolution() {
        let rs = [r(900, None), r(0, Some(100))];
        assert_eq!(check_within(&rs, 1000), Ok(()));
        assert_eq!(
            check_within(&rs, 900),
            Err(RangesError::BeyondEnd {
                index: 0,
                offset: 900,
                size: 900
            })
        );
        assert_eq!(
            check_within(&[r(950, Some(51))], 1000),
            Err(RangesError::BeyondEnd {
                index: 0,
                offset: 950,
                size: 1000
            })
        );
        assert_eq!(check_within(&[r(950, Some(50))], 1000), Ok(()));
        assert_eq!(
            resolve_remote(&rs, 1000),
            Ok(vec![r(900, Some(100)), r(0, Some(100))])
        );
        assert_eq!(
            resolve_output(&rs, 200),
            Some(vec![r(900, Some(100)), r(0, Some(100))])
        );
        assert_eq!(resolve_output(&rs, 100), None);
        assert_eq!(resolve_output(&[r(0, None), r(10, None)], 100), None);
        assert_eq!(
            resolve_output(&[r(0, Some(5))], 5),
            Some(vec![r(0, Some(5))])
        );
        assert_eq!(resolve_output(&[r(0, Some(5))], 6), None);
        assert_eq!(output_len(&rs), None);
        assert_eq!(output_len(&[r(5, Some(3)), r(0, Some(4))]), Some(7));
        assert_eq!(output_len(&[r(0, Some(u64::MAX)), r(0, Some(1))]), None);
    }

    #[test]
    fn locate_maps_concatenation_offsets() {
        // 100 + 100 + 100 bytes from three places, given out of order.
        let rs = [r(500, Some(100)), r(0, Some(100)), r(1000, Some(100))];
        assert_eq!(locate(&rs, 0), pos(0, 0, 500));
        assert_eq!(locate(&rs, 99), pos(0, 99, 599));
        assert_eq!(locate(&rs, 100), pos(1, 0, 0));
        assert_eq!(locate(&rs, 250), pos(2, 50, 1050));
        assert_eq!(locate(&rs, 300), Location::End);
        assert_eq!(locate(&rs, 301), Location::Past);
        assert_eq!(output_start(&rs, 2), Some(200));
        assert_eq!(output_start(&rs, 3), Some(300));
        assert_eq!(output_start(&rs, 4), None);
        // An unresolved open range swallows everything from its start on.
        let open = [r(10, Some(5)), r(100, None), r(0, Some(3))];
        assert_eq!(locate(&open, 1_000), pos(1, 995, 1_095));
        assert_eq!(output_start(&open, 2), None);
        assert_eq!(locate(&[r(u64::MAX, None)], 1), Location::Past);
    }

    #[test]
    fn ranged_decisions() {
        let cr = |start, end, total| ContentRange {
            start,
            end_inclusive: end,
            total,
        };
        let bounded = RangeAsk {
            from: 100,
            to_inclusive: Some(199),
            if_range: false,
        };
        let open = RangeAsk {
            to_inclusive: None,
            ..bounded
        };
        let with_validator = RangeAsk {
            if_range: true,
            ..bounded
        };
        use RangedDecision::*;
        assert_eq!(
            decide_ranged(bounded, 206, Some(&cr(100, 199, Some(1000))), None),
            Append
        );
        assert_eq!(
            decide_ranged(open, 206, Some(&cr(100, 999, Some(1000))), Some(1000)),
            Append
        );
        assert_eq!(
            decide_ranged(open, 206, Some(&cr(100, 500, None)), Some(1000)),
            Append
        );
        assert_eq!(decide_ranged(bounded, 200, None, None), Unsupported);
        assert_eq!(decide_ranged(with_validator, 200, None, None), Restart);
        assert_eq!(decide_ranged(bounded, 416, None, None), BeyondEnd);
        assert_eq!(
            decide_ranged(bounded, 206, Some(&cr(100, 149, Some(150))), None),
            BeyondEnd
        );
        assert_eq!(
            decide_ranged(bounded, 206, Some(&cr(100, 199, Some(1000))), Some(900)),
            Restart
        );
        // Capped short of the asked end although the file is longer: never spliced.
        assert!(matches!(
            decide_ranged(bounded, 206, Some(&cr(100, 149, Some(1000))), None),
            Invalid(_)
        ));
        // Coalesced into a larger range.
        assert!(matches!(
            decide_ranged(bounded, 206, Some(&cr(0, 199, Some(1000))), None),
            Invalid(_)
        ));
        assert!(matches!(
            decide_ranged(bounded, 206, Some(&cr(100, 299, Some(1000))), None),
            Invalid(_)
        ));
        assert!(matches!(
            decide_ranged(bounded, 206, None, None),
            Invalid(_)
        ));
        assert!(matches!(
            decide_ranged(bounded, 204, None, None),
            Invalid(_)
        ));
    }

    /// 1..8 non-empty bounded ranges at arbitrary offsets (overlap does not matter to the
    /// offset arithmetic).
    fn arb_bounded() -> impl Strategy<Value = Vec<FileRange>> {
        prop::collection::vec((0u64..1 << 40, 1u64..10_000), 1..8).prop_map(|v| {
            v.into_iter()
                .map(|(offset, len)| r(offset, Some(len)))
                .collect()
        })
    }

    /// Ranges that pass [`check_ranges`]: disjoint pieces of a line, shuffled, maybe with the
    /// last piece by offset open-ended.
    fn arb_valid() -> impl Strategy<Value = Vec<FileRange>> {
        (
            prop::collection::vec((0u64..1000, 1u64..1000), 1..8),
            any::<bool>(),
            any::<u64>(),
        )
            .prop_map(|(gaps, open_last, seed)| {
                let mut at = 0u64;
                let mut out: Vec<FileRange> = gaps
                    .into_iter()
                    .map(|(gap, len)| {
                        let range = r(at + gap, Some(len));
                        at += gap + len;
                        range
                    })
                    .collect();
                if open_last && let Some(last) = out.last_mut() {
                    last.length = None;
                }
                // A cheap deterministic shuffle: the order given is free.
                let n = out.len();
                for i in (1..n).rev() {
                    let j = (seed.rotate_left(i as u32) % (i as u64 + 1)) as usize;
                    out.swap(i, j);
                }
                out
            })
    }

    fn overlaps(a: &FileRange, b: &FileRange) -> bool {
        let end = |x: &FileRange| x.length.map_or(u64::MAX, |l| x.offset + l);
        a.offset < end(b) && b.offset < end(a)
    }

    proptest! {
        #[test]
        fn locate_and_output_start_are_inverse(rs in arb_bounded(), probe in any::<u64>()) {
            let total = output_len(&rs).unwrap();
            let off = probe % (total + 2);
            match locate(&rs, off) {
                Location::In(p) => {
                    let len = rs[p.index].length.unwrap();
                    prop_assert!(p.within < len);
                    prop_assert_eq!(output_start(&rs, p.index).unwrap() + p.within, off);
                    prop_assert_eq!(p.remote, rs[p.index].offset + p.within);
                }
                Location::End => prop_assert_eq!(off, total),
                Location::Past => prop_assert!(off > total),
            }
        }

        #[test]
        fn every_range_position_maps_back(rs in arb_bounded(), pick in any::<usize>(), w in any::<u64>()) {
            let index = pick % rs.len();
            let within = w % rs[index].length.unwrap();
            let off = output_start(&rs, index).unwrap() + within;
            prop_assert_eq!(
                locate(&rs, off),
                Location::In(RangePosition { index, within, remote: rs[index].offset + within })
            );
        }

        #[test]
        fn output_len_is_the_sum(rs in arb_bounded()) {
            let sum: u64 = rs.iter().map(|r| r.length.unwrap()).sum();
            prop_assert_eq!(output_len(&rs), Some(sum));
            prop_assert_eq!(output_start(&rs, rs.len()), Some(sum));
        }

        #[test]
        fn check_ranges_accepts_exactly_disjoint_lists(
            rs in prop::collection::vec((0u64..200, proptest::option::of(1u64..100)), 1..6),
        ) {
            let rs: Vec<FileRange> = rs.into_iter().map(|(o, l)| r(o, l)).collect();
            let any_overlap = rs.iter().enumerate().any(|(i, a)| {
                rs.iter().enumerate().any(|(j, b)| i != j && overlaps(a, b))
            });
            match check_ranges(&rs) {
                Ok(()) => prop_assert!(!any_overlap),
                Err(RangesError::Overlapping { first, second }) => {
                    prop_assert!(any_overlap);
                    prop_assert!(overlaps(&rs[first], &rs[second]));
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }

        #[test]
        fn generated_valid_lists_pass(rs in arb_valid()) {
            prop_assert_eq!(check_ranges(&rs), Ok(()));
        }

        #[test]
        fn resolving_fills_the_open_length_consistently(rs in arb_valid(), extra in 1u64..5000) {
            let max_end = rs.iter().filter_map(range_end).max().unwrap_or(0);
            let min_open = rs.iter().filter(|r| r.length.is_none()).map(|r| r.offset + 1).max().unwrap_or(0);
            let size = max_end.max(min_open) + extra;
            let resolved = resolve_remote(&rs, size).unwrap();
            prop_assert!(resolved.iter().all(|r| r.length.is_some_and(|l| l > 0 && r.offset + l <= size)));
            for (a, b) in rs.iter().zip(&resolved) {
                prop_assert_eq!(a.offset, b.offset);
                if a.length.is_some() { prop_assert_eq!(a.length, b.length); }
                else { prop_assert_eq!(b.offset + b.length.unwrap(), size); }
            }
            // The recorded output total alone recovers the same lengths.
            let total = output_len(&resolved).unwrap();
            prop_assert_eq!(resolve_output(&rs, total), Some(resolved.clone()));
            prop_assert!(check_within(&resolved, size).is_ok());
            // And a file one byte too short for some range is refused.
            let shortest = rs.iter().map(|r| range_end(r).unwrap_or(r.offset + 1)).max().unwrap();
            let refused = matches!(resolve_remote(&rs, shortest - 1), Err(RangesError::BeyondEnd { .. }));
            prop_assert!(refused);
        }

        #[test]
        fn ranged_answers_start_exactly_where_asked(
            from in 0u64..1 << 40, len in proptest::option::of(1u64..1 << 20),
            start in 0u64..1 << 40, end_off in 0u64..1 << 20, total in proptest::option::of(0u64..1 << 41),
            if_range in any::<bool>(), known in proptest::option::of(0u64..1 << 41),
        ) {
            let ask = RangeAsk { from, to_inclusive: len.map(|l| from + l - 1), if_range };
            let end = start + end_off;
            let cr = ContentRange { start, end_inclusive: end, total: total.map(|t| t.max(end + 1)) };
            let d = decide_ranged(ask, 206, Some(&cr), known);
            if d == RangedDecision::Append {
                prop_assert_eq!(cr.start, from);
                if let Some(to) = ask.to_inclusive { prop_assert_eq!(cr.end_inclusive, to); }
                prop_assert!(known.is_none() || cr.total.is_none() || known == cr.total);
            }
            if cr.start != from {
                prop_assert_ne!(d, RangedDecision::Append);
            }
        }

        #[test]
        fn ranged_200_depends_only_on_if_range(from in any::<u64>(), to in proptest::option::of(any::<u64>()), known in proptest::option::of(any::<u64>())) {
            let ask = RangeAsk { from, to_inclusive: to, if_range: true };
            prop_assert_eq!(decide_ranged(ask, 200, None, known), RangedDecision::Restart);
            let ask = RangeAsk { if_range: false, ..ask };
            prop_assert_eq!(decide_ranged(ask, 200, None, known), RangedDecision::Unsupported);
        }
    }
}
