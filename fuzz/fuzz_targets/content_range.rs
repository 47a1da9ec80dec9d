//! Fuzzes the byte-range arithmetic of resumed and ranged downloads (`ferry_core::range`):
//! the `Content-Range` parsers on arbitrary header text, and the decisions and range
//! helpers on arbitrary numbers, checking the invariants the transfer engine relies on.

#![no_main]

use arbitrary::Arbitrary;
use ferry_core::range::{
    ContentRange, Location, RangeAsk, RangedDecision, ResumeDecision, check_ranges, check_within,
    decide_ranged, decide_resume, locate, output_len, output_start, parse_content_range,
    parse_unsatisfied_range, resolve_output, resolve_remote,
};
use ferry_proto::FileRange;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Raw header text.
    header: &'a str,
    /// Also parse `bytes a-b/t` built from numbers (reaches the arithmetic checks at once).
    built: Option<(u64, u64, Option<u64>)>,
    requested_offset: u64,
    status: u16,
    expected_total: Option<u64>,
    ask_from: u64,
    ask_to: Option<u64>,
    if_range: bool,
    ranges: Vec<(u64, Option<u64>)>,
    size: u64,
    output_offset: u64,
    index: usize,
}

/// Mostly the statuses the decisions care about, sometimes any.
fn status(raw: u16) -> u16 {
    match raw % 8 {
        0 | 1 => 200,
        2..=4 => 206,
        5 => 416,
        _ => raw,
    }
}

fn check_parsed(cr: &ContentRange) {
    assert!(cr.start <= cr.end_inclusive, "{cr:?}");
    if let Some(t) = cr.total {
        assert!(cr.end_inclusive < t, "{cr:?}");
    }
    assert_ne!(cr.len(), 0, "{cr:?}");
    assert!(!cr.is_empty());
    assert!(cr.end_exclusive() >= cr.end_inclusive);
    // What we print is what a server would send, and parses back to the same range.
    assert_eq!(parse_content_range(&cr.to_string()).as_ref(), Ok(cr));
}

fn content_range(header: &str) -> Option<ContentRange> {
    let parsed = parse_content_range(header);
    if let Ok(cr) = &parsed {
        check_parsed(cr);
    }
    if let Some(n) = parse_unsatisfied_range(header) {
        assert_eq!(parse_unsatisfied_range(&format!("bytes */{n}")), Some(n));
        assert!(parsed.is_err(), "{header:?} is both forms");
    }
    parsed.ok()
}

fn decisions(input: &Input, cr: Option<&ContentRange>) {
    let status = status(input.status);
    let d = decide_resume(input.requested_offset, status, cr, input.expected_total);
    if d == ResumeDecision::Append {
        assert!(status == 200 || status == 206);
        if status == 206 {
            let cr = cr.expect("an appended 206 has a Content-Range");
            assert_eq!(
                cr.start, input.requested_offset,
                "appended at another offset"
            );
        } else {
            assert_eq!(
                input.requested_offset, 0,
                "a 200 is appended only to nothing"
            );
        }
    }
    let ask = RangeAsk {
        from: input.ask_from,
        to_inclusive: input.ask_to,
        if_range: input.if_range,
    };
    if decide_ranged(ask, status, cr, input.expected_total) == RangedDecision::Append {
        assert_eq!(status, 206);
        let cr = cr.expect("an appended 206 has a Content-Range");
        assert_eq!(cr.start, ask.from, "bytes of another range spliced in");
        if let Some(to) = ask.to_inclusive {
            assert_eq!(
                cr.end_inclusive, to,
                "bytes past the asked range spliced in"
            );
        }
    }
}

fn ranges(input: &Input) {
    let ranges: Vec<FileRange> = input
        .ranges
        .iter()
        .map(|&(offset, length)| FileRange { offset, length })
        .collect();
    let valid = check_ranges(&ranges).is_ok();
    if valid {
        assert!(!ranges.is_empty());
        assert!(ranges.iter().filter(|r| r.length.is_none()).count() <= 1);
    }
    // The helpers are called on checked ranges; with unchecked ones they must still not panic.
    let _ = check_within(&ranges, input.size);
    if let Ok(resolved) = resolve_remote(&ranges, input.size) {
        assert_eq!(resolved.len(), ranges.len());
        for r in &resolved {
            let len = r.length.expect("resolved ranges are bounded");
            assert!(r.offset < input.size);
            // `offset + length` fits only for checked ranges (`check_ranges` rejects overflow;
            // `check_within` saturates, as documented).
            if valid {
                assert!(
                    r.offset
                        .checked_add(len)
                        .is_some_and(|end| end <= input.size)
                );
            }
        }
    }
    if let Some(filled) = resolve_output(&ranges, input.output_offset) {
        assert_eq!(output_len(&filled), Some(input.output_offset));
    }
    let _ = output_start(&ranges, input.index);
    match locate(&ranges, input.output_offset) {
        Location::In(pos) => {
            let r = ranges[pos.index];
            assert!(
                r.length.is_none_or(|l| pos.within < l),
                "{pos:?} outside {r:?}"
            );
            assert_eq!(r.offset.checked_add(pos.within), Some(pos.remote));
            if let Some(start) = output_start(&ranges, pos.index) {
                assert_eq!(start.checked_add(pos.within), Some(input.output_offset));
            }
        }
        Location::End => assert_eq!(output_len(&ranges), Some(input.output_offset)),
        Location::Past => {}
    }
}

fuzz_target!(|input: Input| {
    let cr = content_range(input.header);
    if let Some((a, b, t)) = input.built {
        let text = match t {
            Some(t) => format!("bytes {a}-{b}/{t}"),
            None => format!("bytes {a}-{b}/*"),
        };
        let built = content_range(&text);
        assert_eq!(
            built.is_some(),
            a <= b && t.is_none_or(|t| b < t),
            "{text:?} parsed as {built:?}"
        );
        decisions(&input, built.as_ref());
    }
    decisions(&input, cr.as_ref());
    decisions(&input, None);
    ranges(&input);
});
