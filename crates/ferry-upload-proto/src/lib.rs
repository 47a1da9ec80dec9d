//! The rules of the BITS Upload Protocol (see docs/UPLOAD-SERVER.md) as pure functions: parsing a request into a
//! typed packet, checking its headers, the `Content-Range` arithmetic of fragments, mapping URL
//! paths to safe components, and which status and error code answer each refusal. Nothing here
//! does I/O, so every rule is unit-tested (and fuzzed, `fuzz/fuzz_targets/bits_packet.rs`) and
//! the server's HTTP layer (`ferry-upload-server`) only moves bytes.
//!
//! The client side lives here too: [`bits_client`] (what a BITS client sends and does after
//! each answer), [`tus`] (the same for tus 1.0) and [`offset`] (the rule both share for the
//! offset a server acknowledges); `ferry-send` does their I/O.

use std::fmt;

pub mod bits_client;
pub mod offset;
pub mod tus;

/// The only upload protocol ever defined ("BITS 1.5 Upload Protocol").
pub const PROTOCOL_GUID: &str = "{7df0354d-249b-430f-820d-3d2a9bef4931}";

/// The extension method every packet uses.
pub const METHOD: &str = "BITS_POST";

/// Longest header value accepted; Windows servers refuse longer ones too.
pub const MAX_HEADER_VALUE: usize = 4096;

/// Most protocol GUIDs a Create-Session may list (the Windows server's limit).
pub const MAX_PROTOCOLS: usize = 100;

/// Longest session id accepted from a client (the Win32 documentation's limit).
pub const MAX_SESSION_ID: usize = 100;

/// HRESULT for an unknown (or expired, or foreign) session.
pub const BG_E_SESSION_NOT_FOUND: u32 = 0x8020_001F;
/// HRESULT for "not allowed": overwrite refused or caller not authorised.
pub const E_ACCESSDENIED: u32 = 0x8007_0005;
/// HRESULT for any malformed or inconsistent request.
pub const E_INVALIDARG: u32 = 0x8007_0057;
/// HRESULT for an upload larger than the directory allows.
pub const BG_E_TOO_LARGE: u32 = 0x8020_0020;
/// HRESULT for a server whose disk is full.
pub const ERROR_DISK_FULL: u32 = 0x8007_0070;
/// HRESULT for any other server-side failure.
pub const E_FAIL: u32 = 0x8000_4005;

/// Who failed, as the `BITS-Error-Context` header says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorContext {
    /// The upload server itself (`0x5`).
    Server,
    /// The server application it notified (`0x7`).
    Application,
}

impl ErrorContext {
    /// The header value.
    pub fn header(self) -> &'static str {
        match self {
            ErrorContext::Server => "0x5",
            ErrorContext::Application => "0x7",
        }
    }
}

/// A request's packet type. Compared case-insensitively: the specification writes the values
/// upper-case while Windows sends `Create-Session`, `Fragment`, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Liveness check; needs no session.
    Ping,
    /// Starts a session for the URL.
    CreateSession,
    /// Carries a range of the file.
    Fragment,
    /// Commits the upload.
    CloseSession,
    /// Abandons the upload.
    CancelSession,
}

impl PacketType {
    /// Parses a `BITS-Packet-Type` value.
    pub fn parse(value: &str) -> Option<PacketType> {
        const ALL: [(&str, PacketType); 5] = [
            ("ping", PacketType::Ping),
            ("create-session", PacketType::CreateSession),
            ("fragment", PacketType::Fragment),
            ("close-session", PacketType::CloseSession),
            ("cancel-session", PacketType::CancelSession),
        ];
        let v = value.trim();
        ALL.iter()
            .find(|(name, _)| v.eq_ignore_ascii_case(name))
            .map(|&(_, t)| t)
    }
}

/// A `Content-Range: bytes first-last/total` of a fragment (inclusive, zero-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentRange {
    /// First byte of the fragment.
    pub first: u64,
    /// Last byte of the fragment (inclusive).
    pub last: u64,
    /// Size of the whole file.
    pub total: u64,
}

impl FragmentRange {
    /// How many bytes the fragment carries.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a parsed range holds at least one byte. Present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for FragmentRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes {}-{}/{}", self.first, self.last, self.total)
    }
}

/// Parses a fragment's `Content-Range`. The unit is compared case-insensitively (the Win32
/// pages write `Bytes`); the range must lie inside the total. Anything else is `None`.
pub fn parse_fragment_range(value: &str) -> Option<FragmentRange> {
    let v = value.trim();
    let (unit, rest) = v.split_once([' ', '\t'])?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, total) = rest.trim_start().split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let first = parse_digits(first)?;
    let last = parse_digits(last)?;
    let total = parse_digits(total)?;
    (first <= last && last < total).then_some(FragmentRange { first, last, total })
}

/// Plain decimal digits only: no sign, no spaces, no `+` (what `u64::from_str` would take).
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The headers of one request, as the HTTP layer hands them over: lower-case names.
pub trait Headers {
    /// Every value of the header `name` (lower-case), as text; a value that is not visible
    /// ASCII or UTF-8 comes back as `Err(())`.
    fn values(&self, name: &str) -> Vec<Result<&str, ()>>;
    /// Every header value's length, to enforce [`MAX_HEADER_VALUE`].
    fn longest_value(&self) -> usize;
}

/// The headers of a request or answer as the `http` crate holds them (hyper, axum, reqwest).
impl Headers for http::HeaderMap {
    fn values(&self, name: &str) -> Vec<Result<&str, ()>> {
        self.get_all(name)
            .iter()
            .map(|v| v.to_str().map_err(|_| ()))
            .collect()
    }
    fn longest_value(&self) -> usize {
        self.values().map(http::HeaderValue::len).max().unwrap_or(0)
    }
}

/// The first text value of header `name`, trimmed, if not empty (answers are read leniently:
/// a server's repeated or odd header does not make the client give up).
pub(crate) fn first_value<'a>(h: &'a impl Headers, name: &str) -> Option<&'a str> {
    h.values(name)
        .into_iter()
        .find_map(Result::ok)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Headers for the unit tests of every module: `(lower-case name, value)` pairs.
#[cfg(test)]
pub(crate) mod test_headers {
    use super::Headers;

    /// A header list.
    pub(crate) struct H(pub(crate) Vec<(&'static str, String)>);

    impl Headers for H {
        fn values(&self, name: &str) -> Vec<Result<&str, ()>> {
            self.0
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| Ok(v.as_str()))
                .collect()
        }
        fn longest_value(&self) -> usize {
            self.0.iter().map(|(_, v)| v.len()).max().unwrap_or(0)
        }
    }

    /// `H` from borrowed pairs.
    pub(crate) fn h(pairs: &[(&'static str, &str)]) -> H {
        H(pairs.iter().map(|(n, v)| (*n, (*v).to_owned())).collect())
    }
}

/// A request parsed into what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Ping.
    Ping,
    /// Create-Session; the client offered [`PROTOCOL_GUID`].
    CreateSession,
    /// Fragment of a session.
    Fragment {
        /// The session id as the client sent it.
        session: String,
        /// Its range.
        range: FragmentRange,
        /// Its body length.
        content_length: u64,
    },
    /// Close-Session.
    CloseSession {
        /// The session id.
        session: String,
    },
    /// Cancel-Session.
    CancelSession {
        /// The session id.
        session: String,
    },
}

/// Why a request is refused, each mapped to its status and HRESULT by [`Refusal::answer`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A malformed request: the text says what was wrong.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The request has no `Content-Length` (a chunked body counts as none).
    #[error("the request has no Content-Length")]
    NoContentLength,
    /// No offered protocol is one this server speaks.
    #[error("no protocol in common with the client")]
    NoCommonProtocol,
    /// The session does not exist (never did, expired, cancelled, closed or someone else's).
    #[error("no such session")]
    SessionNotFound,
    /// The destination exists and the directory does not allow overwriting.
    #[error("the destination exists and may not be overwritten")]
    Exists,
    /// The URL is not under an upload directory.
    #[error("uploads are not enabled for this URL")]
    NotEnabled,
    /// The URL names a path the server will not write (`..`, hidden, a directory, a link).
    #[error("the URL does not name a file the server may write: {0}")]
    BadPath(&'static str),
    /// The fragment is larger than the server takes in one request.
    #[error("the fragment is larger than the server accepts")]
    FragmentTooLarge,
    /// The file is larger than the directory's maximum upload size.
    #[error("the upload is larger than the directory's maximum upload size")]
    UploadTooLarge,
    /// The fragment does not continue where the server is; the client resumes at `expected`.
    #[error("out of sync: the server expects byte {expected} next")]
    OutOfSync {
        /// The next byte the server expects.
        expected: u64,
    },
    /// Close-Session before every byte arrived.
    #[error("the upload is not complete: {received} of {total} bytes")]
    Incomplete {
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        total: u64,
    },
    /// The server's disk is full.
    #[error("the server is out of disk space")]
    DiskFull,
    /// The directory holds as many open sessions as it allows; the client retries later.
    #[error("too many open sessions; try again later")]
    TooManySessions,
    /// The parent directory of the destination does not exist.
    #[error("the destination's directory does not exist")]
    NoParent,
    /// The session's temporary file vanished before Close-Session.
    #[error("the session's data is gone")]
    DataGone,
    /// The server application refused or failed.
    #[error("the server application failed: {0}")]
    Application(String),
    /// The server application did not answer in time.
    #[error("the server application did not answer in time")]
    ApplicationTimeout,
    /// Any other server failure (I/O); logged, answered as E_FAIL.
    #[error("server failure")]
    Internal,
}

/// The status, HRESULT and context of an error Ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// HTTP status.
    pub status: u16,
    /// HRESULT for `BITS-Error-Code`; `None` where the status alone says it (416).
    pub code: Option<u32>,
    /// Who failed.
    pub context: ErrorContext,
    /// The next byte the server expects, sent as `BITS-Received-Content-Range`.
    pub received: Option<u64>,
}

impl Refusal {
    /// The answer the protocol's error table gives for this refusal.
    pub fn answer(&self) -> ErrorAnswer {
        let (status, code, context, received) = match *self {
            Refusal::Malformed(_)
            | Refusal::NoContentLength
            | Refusal::NoCommonProtocol
            | Refusal::BadPath(_)
            | Refusal::Incomplete { .. } => (400, Some(E_INVALIDARG), ErrorContext::Server, None),
            Refusal::SessionNotFound => (
                500,
                Some(BG_E_SESSION_NOT_FOUND),
                ErrorContext::Server,
                None,
            ),
            Refusal::Exists => (403, Some(E_ACCESSDENIED), ErrorContext::Server, None),
            Refusal::NotEnabled => (501, Some(E_ACCESSDENIED), ErrorContext::Server, None),
            Refusal::FragmentTooLarge => (413, Some(BG_E_TOO_LARGE), ErrorContext::Server, None),
            Refusal::UploadTooLarge => (500, Some(BG_E_TOO_LARGE), ErrorContext::Server, None),
            Refusal::OutOfSync { expected } => (416, None, ErrorContext::Server, Some(expected)),
            Refusal::DiskFull => (500, Some(ERROR_DISK_FULL), ErrorContext::Server, None),
            Refusal::TooManySessions => (503, Some(E_FAIL), ErrorContext::Server, None),
            Refusal::NoParent | Refusal::DataGone => {
                (404, Some(E_INVALIDARG), ErrorContext::Server, None)
            }
            Refusal::Application(_) => (500, Some(E_FAIL), ErrorContext::Application, None),
            Refusal::ApplicationTimeout => (408, Some(E_FAIL), ErrorContext::Application, None),
            Refusal::Internal => (500, Some(E_FAIL), ErrorContext::Server, None),
        };
        ErrorAnswer {
            status,
            code,
            context,
            received,
        }
    }
}

/// Formats an HRESULT as the header carries it (`0x8020001F`).
pub fn hresult(code: u32) -> String {
    format!("0x{code:08X}")
}

/// The single value of header `name`, or `None`; two values or a non-text one are malformed.
fn single<'a>(h: &'a impl Headers, name: &str) -> Result<Option<&'a str>, Refusal> {
    let values = h.values(name);
    match values.as_slice() {
        [] => Ok(None),
        [Ok(v)] => Ok(Some(v.trim())),
        [Err(())] => Err(Refusal::Malformed("a header value is not text")),
        _ => Err(Refusal::Malformed("a header is repeated")),
    }
}

/// Whether a `BITS-Supported-Protocols` list offers [`PROTOCOL_GUID`]. The list is space- or
/// comma-separated; GUIDs compare case-insensitively.
pub fn offers_protocol(list: &str) -> Result<bool, Refusal> {
    let guids: Vec<&str> = list
        .split([' ', ',', '\t'])
        .filter(|s| !s.is_empty())
        .collect();
    if guids.len() > MAX_PROTOCOLS {
        return Err(Refusal::Malformed("more than 100 protocols offered"));
    }
    Ok(guids.iter().any(|g| g.eq_ignore_ascii_case(PROTOCOL_GUID)))
}

/// Parses a request (its method and headers) into a [`Packet`], in the specification's order:
/// well-formed first, then `Content-Length`. Whether the session exists is the caller's check.
pub fn parse_packet(method: &str, h: &impl Headers) -> Result<Packet, Refusal> {
    if method != METHOD {
        return Err(Refusal::Malformed("the method is not BITS_POST"));
    }
    if h.longest_value() > MAX_HEADER_VALUE {
        return Err(Refusal::Malformed(
            "a header value is longer than 4096 bytes",
        ));
    }
    let kind = single(h, "bits-packet-type")?.ok_or(Refusal::Malformed("no BITS-Packet-Type"))?;
    let kind = PacketType::parse(kind).ok_or(Refusal::Malformed("unknown BITS-Packet-Type"))?;
    if !h.values("transfer-encoding").is_empty() {
        // A chunked body has no length to check fragments against.
        return Err(Refusal::NoContentLength);
    }
    let content_length = match single(h, "content-length")? {
        None => return Err(Refusal::NoContentLength),
        Some(v) => parse_digits(v).ok_or(Refusal::Malformed("Content-Length is not a number"))?,
    };
    if kind != PacketType::Fragment && content_length != 0 {
        return Err(Refusal::Malformed("only fragments carry a body"));
    }
    let session = || -> Result<String, Refusal> {
        let id = single(h, "bits-session-id")?.ok_or(Refusal::Malformed("no BITS-Session-Id"))?;
        if id.is_empty() || id.len() > MAX_SESSION_ID {
            return Err(Refusal::SessionNotFound);
        }
        Ok(id.to_owned())
    };
    Ok(match kind {
        PacketType::Ping => Packet::Ping,
        PacketType::CreateSession => {
            let list = single(h, "bits-supported-protocols")?
                .ok_or(Refusal::Malformed("no BITS-Supported-Protocols"))?;
            if !offers_protocol(list)? {
                return Err(Refusal::NoCommonProtocol);
            }
            Packet::CreateSession
        }
        PacketType::Fragment => {
            let session = session()?;
            if let Some(enc) = single(h, "content-encoding")?
                && !enc.eq_ignore_ascii_case("identity")
            {
                return Err(Refusal::Malformed("only the identity encoding is accepted"));
            }
            let range = single(h, "content-range")?
                .ok_or(Refusal::Malformed("a fragment has no Content-Range"))?;
            let range = parse_fragment_range(range)
                .ok_or(Refusal::Malformed("the Content-Range is malformed"))?;
            if range.len() != content_length {
                return Err(Refusal::Malformed(
                    "the Content-Range and Content-Length disagree",
                ));
            }
            Packet::Fragment {
                session,
                range,
                content_length,
            }
        }
        PacketType::CloseSession => Packet::CloseSession {
            session: session()?,
        },
        PacketType::CancelSession => Packet::CancelSession {
            session: session()?,
        },
    })
}

/// What to do with a fragment's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentPlan {
    /// Bytes at the start of the body the server already has: read and dropped.
    pub skip: u64,
    /// Bytes after those to write at offset `received`.
    pub write: u64,
    /// The offset to acknowledge once written (`BITS-Received-Content-Range`).
    pub ack: u64,
    /// Whether this fragment completes the file.
    pub completes: bool,
}

/// Limits of the directory a session uploads into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Largest file accepted, if limited.
    pub max_upload_size: Option<u64>,
    /// Largest fragment accepted in one request, if limited.
    pub max_fragment_size: Option<u64>,
}

/// Decides a fragment against the session's state: `received` bytes so far and the total an
/// earlier fragment announced. Overlap with bytes already held is dropped, never rewritten; a
/// fragment that starts beyond `received` is out of sync; a changed total is malformed.
pub fn plan_fragment(
    received: u64,
    known_total: Option<u64>,
    range: FragmentRange,
    limits: Limits,
) -> Result<FragmentPlan, Refusal> {
    if let Some(t) = known_total
        && t != range.total
    {
        return Err(Refusal::Malformed("the total size changed"));
    }
    if limits.max_upload_size.is_some_and(|m| range.total > m) {
        return Err(Refusal::UploadTooLarge);
    }
    if limits.max_fragment_size.is_some_and(|m| range.len() > m) {
        return Err(Refusal::FragmentTooLarge);
    }
    if range.first > received {
        return Err(Refusal::OutOfSync { expected: received });
    }
    // `received` never exceeds the total (every write is bounded by a range inside it).
    let end = range.last + 1;
    if end <= received {
        return Ok(FragmentPlan {
            skip: range.len(),
            write: 0,
            ack: received,
            completes: false,
        });
    }
    Ok(FragmentPlan {
        skip: received - range.first,
        write: end - received,
        ack: end,
        completes: end == range.total,
    })
}

/// A URL path mapped to a file under an upload directory: the directories to walk and the
/// file name, each a single component that is safe to pass to `openat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelativePath {
    /// Directory components from the upload directory down to the file's parent.
    pub dirs: Vec<String>,
    /// The file name.
    pub name: String,
}

/// Longest path component accepted (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Maps the part of a URL path after a directory's prefix (still percent-encoded) to a
/// [`RelativePath`]. Refuses `..` and `.`, hidden names (the session directory is one),
/// NUL, backslashes, empty components (`//`, a trailing `/`, which would name a directory)
/// and over-long names.
pub fn map_path(rest: &str) -> Result<RelativePath, Refusal> {
    let mut parts = Vec::new();
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(Refusal::BadPath("the URL names the directory itself"));
    }
    for raw in rest.split('/') {
        let part = percent_decode(raw).ok_or(Refusal::BadPath("bad percent-encoding"))?;
        if part.is_empty() {
            return Err(Refusal::BadPath("an empty path component"));
        }
        if part.starts_with('.') {
            return Err(Refusal::BadPath("a component starts with a dot"));
        }
        if part.contains(['\0', '\\', '/']) || part.chars().any(char::is_control) {
            return Err(Refusal::BadPath(
                "a component holds NUL, a slash, a backslash or a control character",
            ));
        }
        if part.len() > NAME_MAX {
            return Err(Refusal::BadPath("a component is longer than 255 bytes"));
        }
        parts.push(part);
    }
    let name = parts.pop().ok_or(Refusal::BadPath("no file name"))?;
    Ok(RelativePath { dirs: parts, name })
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a URL path is under `prefix` (a directory's URL prefix without a trailing `/`),
/// and the rest after it.
pub fn strip_url_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.starts_with('/') || prefix.ends_with('/')).then_some(rest)
}

/// A session id this server issues: a GUID, upper-case in braces, as Windows servers do.
pub fn format_session_id(uuid: &uuid::Uuid) -> String {
    format!("{{{}}}", uuid.hyphenated().to_string().to_ascii_uppercase())
}

/// The UUID inside a session id, if it is one this server could have issued. Anything else
/// is an unknown session; the id never reaches a path unless it passes this.
pub fn parse_session_id(id: &str) -> Option<uuid::Uuid> {
    let inner = id.strip_prefix('{')?.strip_suffix('}')?;
    if inner.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(inner).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::test_headers::h;

    #[test]
    fn packet_types_compare_case_insensitively() {
        assert_eq!(
            PacketType::parse("Create-Session"),
            Some(PacketType::CreateSession)
        );
        assert_eq!(
            PacketType::parse("CREATE-SESSION"),
            Some(PacketType::CreateSession)
        );
        assert_eq!(PacketType::parse("fragment"), Some(PacketType::Fragment));
        assert_eq!(PacketType::parse("Ack"), None);
    }

    #[test]
    fn content_range_parses_the_spec_forms() {
        let r = parse_fragment_range("bytes 0-4891/4892").unwrap();
        assert_eq!((r.first, r.last, r.total, r.len()), (0, 4891, 4892, 4892));
        assert!(parse_fragment_range("Bytes 128-212/300").is_some());
        for bad in [
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes 0-1/*",
            "bytes -1-2/5",
            "bytes 0-+1/5",
            "items 0-1/5",
            "bytes 0-18446744073709551616/5",
            "",
        ] {
            assert_eq!(parse_fragment_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn create_session_needs_the_guid_and_no_body() {
        let ok = h(&[
            ("bits-packet-type", "Create-Session"),
            (
                "bits-supported-protocols",
                "{7DF0354D-249B-430F-820D-3D2A9BEF4931}",
            ),
            ("content-length", "0"),
        ]);
        assert_eq!(parse_packet(METHOD, &ok), Ok(Packet::CreateSession));
        let other = h(&[
            ("bits-packet-type", "Create-Session"),
            (
                "bits-supported-protocols",
                "{00000000-0000-0000-0000-000000000000}",
            ),
            ("content-length", "0"),
        ]);
        assert_eq!(parse_packet(METHOD, &other), Err(Refusal::NoCommonProtocol));
        let no_len = h(&[
            ("bits-packet-type", "Create-Session"),
            ("bits-supported-protocols", PROTOCOL_GUID),
        ]);
        assert_eq!(parse_packet(METHOD, &no_len), Err(Refusal::NoContentLength));
        assert_eq!(parse_packet("POST", &ok).unwrap_err().answer().status, 400);
    }

    #[test]
    fn fragment_lengths_must_agree() {
        let f = |len: &str| {
            parse_packet(
                METHOD,
                &h(&[
                    ("bits-packet-type", "Fragment"),
                    ("bits-session-id", "{A}"),
                    ("content-range", "bytes 0-9/20"),
                    ("content-length", len),
                ]),
            )
        };
        assert!(matches!(
            f("10"),
            Ok(Packet::Fragment {
                content_length: 10,
                ..
            })
        ));
        assert!(matches!(f("11"), Err(Refusal::Malformed(_))));
        assert!(matches!(f("ten"), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn long_headers_and_unknown_types_are_malformed() {
        let long = "x".repeat(MAX_HEADER_VALUE + 1);
        let p = parse_packet(
            METHOD,
            &h(&[
                ("bits-packet-type", "Ping"),
                ("content-length", "0"),
                ("x", &long),
            ]),
        );
        assert!(matches!(p, Err(Refusal::Malformed(_))));
        let p = parse_packet(
            METHOD,
            &h(&[("bits-packet-type", "Bogus"), ("content-length", "0")]),
        );
        assert_eq!(p.unwrap_err().answer().code, Some(E_INVALIDARG));
    }

    #[test]
    fn fragments_follow_the_spec_on_overlap_and_gaps() {
        let r = |first, last| FragmentRange {
            first,
            last,
            total: 300,
        };
        let l = Limits::default();
        // In order.
        assert_eq!(
            plan_fragment(128, Some(300), r(128, 212), l),
            Ok(FragmentPlan {
                skip: 0,
                write: 85,
                ack: 213,
                completes: false
            })
        );
        // 0-100 then 50-150: only 101-150 is written.
        assert_eq!(
            plan_fragment(101, Some(300), r(50, 150), l),
            Ok(FragmentPlan {
                skip: 51,
                write: 50,
                ack: 151,
                completes: false
            })
        );
        // Entirely old: acknowledged, nothing written.
        assert_eq!(
            plan_fragment(200, Some(300), r(0, 99), l),
            Ok(FragmentPlan {
                skip: 100,
                write: 0,
                ack: 200,
                completes: false
            })
        );
        // A gap: out of sync with where to continue.
        assert_eq!(
            plan_fragment(100, Some(300), r(150, 160), l),
            Err(Refusal::OutOfSync { expected: 100 })
        );
        assert_eq!(
            Refusal::OutOfSync { expected: 100 }.answer().received,
            Some(100)
        );
        // The last byte completes it.
        assert!(
            plan_fragment(250, Some(300), r(250, 299), l)
                .unwrap()
                .completes
        );
        // A changed total.
        let changed = FragmentRange {
            first: 0,
            last: 9,
            total: 301,
        };
        assert!(matches!(
            plan_fragment(0, Some(300), changed, l),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn limits_answer_too_large() {
        let r = FragmentRange {
            first: 0,
            last: 99,
            total: 1000,
        };
        let big = Limits {
            max_upload_size: Some(999),
            max_fragment_size: None,
        };
        assert_eq!(plan_fragment(0, None, r, big), Err(Refusal::UploadTooLarge));
        assert_eq!(Refusal::UploadTooLarge.answer().status, 500);
        let frag = Limits {
            max_upload_size: None,
            max_fragment_size: Some(50),
        };
        assert_eq!(
            plan_fragment(0, None, r, frag),
            Err(Refusal::FragmentTooLarge)
        );
        assert_eq!(Refusal::FragmentTooLarge.answer().status, 413);
    }

    #[test]
    fn paths_stay_under_the_directory() {
        assert_eq!(
            map_path("/a/b%20c.txt"),
            Ok(RelativePath {
                dirs: vec!["a".into()],
                name: "b c.txt".into()
            })
        );
        for bad in [
            "/../etc/passwd",
            "/a/%2e%2e/b",
            "/.ferry-upload-sessions/x",
            "/a//b",
            "/a/",
            "/",
            "/a%00b",
            "/a%5cb",
            "/%ff",
            "/a%2",
        ] {
            assert!(matches!(map_path(bad), Err(Refusal::BadPath(_))), "{bad:?}");
        }
        // An encoded slash would make one component two for openat.
        assert!(map_path("/a%2fb").is_err());
    }

    #[test]
    fn prefixes_match_whole_components() {
        assert_eq!(strip_url_prefix("/upload/a", "/upload"), Some("/a"));
        assert_eq!(strip_url_prefix("/uploads/a", "/upload"), None);
        assert_eq!(strip_url_prefix("/a", "/"), Some("a"));
    }

    #[test]
    fn session_ids_round_trip_and_refuse_others() {
        let u = uuid::Uuid::new_v4();
        let id = format_session_id(&u);
        assert!(id.starts_with('{') && id.ends_with('}'));
        assert_eq!(parse_session_id(&id), Some(u));
        assert_eq!(parse_session_id(&id.to_ascii_lowercase()), Some(u));
        for bad in ["../x", "{../../etc}", "", "{}", &u.to_string()] {
            assert_eq!(parse_session_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_error_table() {
        assert_eq!(hresult(BG_E_SESSION_NOT_FOUND), "0x8020001F");
        let a = Refusal::SessionNotFound.answer();
        assert_eq!((a.status, a.code), (500, Some(BG_E_SESSION_NOT_FOUND)));
        assert_eq!(Refusal::Exists.answer().status, 403);
        assert_eq!(Refusal::NotEnabled.answer().status, 501);
        assert_eq!(Refusal::NoContentLength.answer().status, 400);
        assert_eq!(Refusal::DiskFull.answer().code, Some(ERROR_DISK_FULL));
        assert_eq!(Refusal::TooManySessions.answer().status, 503);
        assert_eq!(
            Refusal::Application("x".into()).answer().context,
            ErrorContext::Application
        );
    }

    proptest! {
        #[test]
        fn plans_never_write_outside_the_file(
            received in 0u64..1000, first in 0u64..1000, len in 1u64..500, extra in 0u64..200,
        ) {
            let last = first + len - 1;
            let total = last + 1 + extra;
            prop_assume!(received <= total);
            let range = FragmentRange { first, last, total };
            match plan_fragment(received, Some(total), range, Limits::default()) {
                Ok(p) => {
                    prop_assert_eq!(p.skip + p.write, range.len());
                    prop_assert!(p.ack >= received && p.ack <= total);
                    prop_assert_eq!(p.ack, received + p.write);
                    prop_assert_eq!(p.completes, p.write > 0 && p.ack == total);
                    // What is written starts exactly at `received`.
                    if p.write > 0 {
                        prop_assert_eq!(first + p.skip, received);
                    }
                }
                Err(Refusal::OutOfSync { expected }) => {
                    prop_assert!(first > received);
                    prop_assert_eq!(expected, received);
                }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }

        #[test]
        fn ranges_print_and_parse_back(first in 0u64..u64::MAX / 2, len in 1u64..1000, extra in 0u64..1000) {
            let r = FragmentRange { first, last: first + len - 1, total: first + len + extra };
            prop_assert_eq!(parse_fragment_range(&r.to_string()), Some(r));
        }

        #[test]
        fn mapped_paths_are_plain_components(s in "[/a-z.%0-9A-F\\\\]{0,40}") {
            if let Ok(p) = map_path(&s) {
                for c in p.dirs.iter().chain(std::iter::once(&p.name)) {
                    prop_assert!(!c.is_empty() && !c.starts_with('.') && !c.contains('\0'));
                    prop_assert!(!c.contains('\\') && !c.contains('/'));
                }
            }
        }
    }
}
