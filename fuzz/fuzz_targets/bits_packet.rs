//! Fuzzes the BITS Upload Protocol's packet parser and rules (`ferry_upload_proto`) on arbitrary
//! requests: whatever the headers, parsing never panics, a parsed fragment's range lies inside
//! its total and matches its body length, a fragment plan never writes outside the file or
//! rewrites held bytes, mapped paths are single safe components, and every refusal has an
//! answer from the error table.

#![no_main]

use arbitrary::Arbitrary;
use ferry_upload_proto::{
    FragmentRange, Headers, Limits, Packet, Refusal, map_path, parse_fragment_range, parse_packet,
    parse_session_id, plan_fragment,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    method: &'a str,
    /// Header names are drawn from the ones the parser reads, so the fuzzer reaches it.
    headers: Vec<(u8, &'a str)>,
    path: &'a str,
    session: &'a str,
    received: u64,
    known_total: Option<u64>,
    built: (u64, u64, u64),
    max_upload_size: Option<u64>,
    max_fragment_size: Option<u64>,
}

const NAMES: [&str; 9] = [
    "bits-packet-type",
    "bits-session-id",
    "bits-supported-protocols",
    "content-range",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "content-name",
    "x-other",
];

struct H<'a>(Vec<(&'static str, &'a str)>);

impl Headers for H<'_> {
    fn values(&self, name: &str) -> Vec<Result<&str, ()>> {
        self.0
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| Ok(*v))
            .collect()
    }
    fn longest_value(&self) -> usize {
        self.0.iter().map(|(_, v)| v.len()).max().unwrap_or(0)
    }
}

fn check_plan(received: u64, known: Option<u64>, range: FragmentRange, limits: Limits) {
    if received > range.total {
        // Not a state the server reaches (every write is bounded by a range inside the total).
        return;
    }
    match plan_fragment(received, known, range, limits) {
        Ok(p) => {
            assert_eq!(p.skip + p.write, range.len());
            assert_eq!(p.ack, received + p.write);
            assert!(p.ack <= range.total);
            if p.write > 0 {
                assert_eq!(range.first + p.skip, received, "held bytes rewritten");
            }
            assert_eq!(p.completes, p.write > 0 && p.ack == range.total);
        }
        Err(Refusal::OutOfSync { expected }) => {
            assert!(range.first > received);
            assert_eq!(expected, received);
        }
        Err(e) => {
            let _ = e.answer();
        }
    }
}

fuzz_target!(|input: Input| {
    let h = H(input
        .headers
        .iter()
        .map(|&(n, v)| (NAMES[usize::from(n) % NAMES.len()], v))
        .collect());
    let limits = Limits {
        max_upload_size: input.max_upload_size,
        max_fragment_size: input.max_fragment_size,
    };
    for method in [input.method, "BITS_POST"] {
        match parse_packet(method, &h) {
            Ok(Packet::Fragment {
                range,
                content_length,
                session,
            }) => {
                assert!(range.first <= range.last && range.last < range.total);
                assert_eq!(range.len(), content_length);
                assert!(!session.is_empty() && session.len() <= 100);
                assert_eq!(parse_fragment_range(&range.to_string()), Some(range));
                check_plan(input.received, input.known_total, range, limits);
            }
            Ok(_) => {}
            Err(e) => {
                let a = e.answer();
                assert!(
                    (400..=501).contains(&a.status),
                    "{e:?} answers {}",
                    a.status
                );
            }
        }
    }
    let (a, b, t) = input.built;
    if let Some(r) = parse_fragment_range(&format!("bytes {a}-{b}/{t}")) {
        assert!(a <= b && b < t);
        check_plan(input.received, input.known_total, r, limits);
    } else {
        assert!(a > b || b >= t);
    }
    if let Ok(p) = map_path(input.path) {
        for c in p.dirs.iter().chain(std::iter::once(&p.name)) {
            assert!(!c.is_empty() && !c.starts_with('.'));
            assert!(!c.contains(['/', '\\', '\0']));
        }
    }
    if let Some(u) = parse_session_id(input.session) {
        assert!(
            input
                .session
                .eq_ignore_ascii_case(&ferry_upload_proto::format_session_id(&u))
        );
    }
});
