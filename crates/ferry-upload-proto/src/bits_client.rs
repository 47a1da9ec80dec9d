//! The client side of the BITS Upload Protocol as pure rules: the packets a client sends (in
//! the header order and spelling Windows uses, so they match the golden transcripts), how it
//! reads an Ack, and what it does after each answer — every row of the error table sorted into
//! "go on", "start a new session", "smaller fragments", "retry later" or "give up". The I/O
//! crate (`ferry-send`) sends what these rules say and reports what came back.

use ferry_core::retry::{Class, classify_http_status};

use crate::{
    BG_E_SESSION_NOT_FOUND, BG_E_TOO_LARGE, E_ACCESSDENIED, E_INVALIDARG, ERROR_DISK_FULL,
    ErrorContext, FragmentRange, Headers, PROTOCOL_GUID, first_value, hresult,
};

/// The smallest fragment a client sends after a 413 (the specification's floor).
pub const MIN_FRAGMENT: u64 = 5 * 1024;

/// The fragment size a client starts with: large enough that the server's sync per fragment
/// costs little, small enough to hold in memory per upload.
pub const DEFAULT_FRAGMENT: u64 = 8 * 1024 * 1024;

/// The fragment size of an upload limited to `rate` bytes per second: about a second of
/// sending, so the server acknowledges an offset (the upload's checkpoint) about every second,
/// as a download checkpoints; [`DEFAULT_FRAGMENT`] without a limit or above it, and never
/// below [`MIN_FRAGMENT`].
pub fn fragment_for_rate(rate: Option<u64>) -> u64 {
    rate.map_or(DEFAULT_FRAGMENT, |r| {
        r.clamp(MIN_FRAGMENT, DEFAULT_FRAGMENT)
    })
}

/// How many times one attempt starts a new session after the server forgot the current one.
pub const MAX_NEW_SESSIONS: u32 = 3;

/// The header naming a packet's type.
pub const PACKET_HEADER: &str = "BITS-Packet-Type";

/// A packet the client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Asks for a session.
    CreateSession,
    /// Checks the server before resuming a session.
    Ping,
    /// Carries `range` of the file.
    Fragment {
        /// The session id, exactly as the server issued it.
        session: String,
        /// The bytes sent.
        range: FragmentRange,
    },
    /// Commits the upload.
    CloseSession {
        /// The session id.
        session: String,
    },
    /// Abandons the upload.
    CancelSession {
        /// The session id.
        session: String,
    },
}

impl Request {
    /// The `BITS-Packet-Type` value, spelled as Windows sends it.
    pub fn packet_type(&self) -> &'static str {
        match self {
            Request::CreateSession => "Create-Session",
            Request::Ping => "Ping",
            Request::Fragment { .. } => "Fragment",
            Request::CloseSession { .. } => "Close-Session",
            Request::CancelSession { .. } => "Cancel-Session",
        }
    }

    /// The packet's headers besides `Content-Length`, in the order of the specification's
    /// examples. `content_name` (the local file's name) goes on Create-Session and fragments,
    /// as the Windows client of the specification's example sends it.
    pub fn headers(&self, content_name: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = vec![(PACKET_HEADER, self.packet_type().to_owned())];
        let name = content_name.filter(|n| valid_content_name(n));
        match self {
            Request::CreateSession => {
                h.push(("BITS-Supported-Protocols", PROTOCOL_GUID.to_owned()));
                if let Some(name) = name {
                    h.push(("Content-Name", name.to_owned()));
                }
            }
            Request::Ping => {}
            Request::Fragment { session, range } => {
                h.push(("BITS-Session-Id", session.clone()));
                if let Some(name) = name {
                    h.push(("Content-Name", name.to_owned()));
                }
                h.push(("Content-Range", range.to_string()));
            }
            Request::CloseSession { session } | Request::CancelSession { session } => {
                h.push(("BITS-Session-Id", session.clone()));
            }
        }
        h
    }
}

/// Whether a file name may go in `Content-Name`: at most 260 characters, none of
/// `\ / : * ? " < >|` and no control characters (a name that is not is simply not sent).
pub fn valid_content_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 260
        && !name
            .chars()
            .any(|c| c.is_control() || "\\/:*?\"<>|".contains(c))
}

/// A server's answer, read from its status and headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `BITS-Packet-Type: Ack` was present (case-insensitively).
    pub is_ack: bool,
    /// `BITS-Session-Id`.
    pub session: Option<String>,
    /// `BITS-Protocol`.
    pub protocol: Option<String>,
    /// `BITS-Received-Content-Range`: the next byte the server expects. `Err` when present but
    /// not a number.
    pub received: Option<Result<u64, String>>,
    /// `BITS-Reply-URL`, non-empty.
    pub reply_url: Option<String>,
    /// `BITS-Error-Code`, else `BITS-Error`: the HRESULT.
    pub error: Option<u32>,
    /// `BITS-Error-Context`.
    pub context: Option<ErrorContext>,
    /// `BITS-Host-Id`: the host later packets go to.
    pub host_id: Option<String>,
    /// `BITS-Host-Id-Fallback-Timeout`, seconds.
    pub host_id_fallback_secs: Option<u64>,
}

/// Parses an HRESULT as servers write it: hexadecimal with or without `0x` (any case), or a
/// negative decimal (a signed 32-bit value, as some implementations print it).
pub fn parse_hresult(value: &str) -> Option<u32> {
    let v = value.trim();
    if let Some(neg) = v.strip_prefix('-') {
        let n: i64 = neg.parse().ok()?;
        return u32::try_from((1i64 << 32) - n).ok();
    }
    let hex = v
        .strip_prefix("0x")
        .or_else(|| v.strip_prefix("0X"))
        .unwrap_or(v);
    if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Reads an answer (header names lower-case, as [`Headers`] says).
pub fn parse_answer(status: u16, h: &impl Headers) -> Answer {
    let context = first_value(h, "bits-error-context")
        .and_then(parse_hresult)
        .and_then(|c| match c {
            5 => Some(ErrorContext::Server),
            7 => Some(ErrorContext::Application),
            _ => None,
        });
    Answer {
        status,
        is_ack: first_value(h, "bits-packet-type").is_some_and(|v| v.eq_ignore_ascii_case("ack")),
        session: first_value(h, "bits-session-id").map(str::to_owned),
        protocol: first_value(h, "bits-protocol").map(str::to_owned),
        received: first_value(h, "bits-received-content-range")
            .map(|v| v.parse::<u64>().map_err(|_| v.to_owned())),
        reply_url: first_value(h, "bits-reply-url").map(str::to_owned),
        error: first_value(h, "bits-error-code")
            .or_else(|| first_value(h, "bits-error"))
            .and_then(parse_hresult),
        context,
        host_id: first_value(h, "bits-host-id").map(str::to_owned),
        host_id_fallback_secs: first_value(h, "bits-host-id-fallback-timeout")
            .and_then(|v| v.parse().ok()),
    }
}

/// Why an answer ended an attempt, for the error the caller reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// 403 `E_ACCESSDENIED`: the destination exists and may not be overwritten, or the
    /// caller is not authorised.
    #[error(
        "the server refused the upload (403, E_ACCESSDENIED): the file exists there and may not be replaced, or you are not allowed to upload to this URL"
    )]
    AccessDenied,
    /// 501 (`E_ACCESSDENIED`): uploads are not enabled at this URL.
    #[error("uploads are not enabled at this URL (501); check the upload URL")]
    NotEnabled,
    /// 400 `E_INVALIDARG`: the server calls the request malformed.
    #[error("the server refused the request as malformed (400, E_INVALIDARG)")]
    InvalidArg,
    /// 500 `BG_E_TOO_LARGE`: the file is larger than the server takes.
    #[error("the file is larger than the server accepts (BG_E_TOO_LARGE)")]
    TooLarge,
    /// 413 at the smallest fragment size.
    #[error("the server refuses even {MIN_FRAGMENT}-byte fragments (413)")]
    FragmentsTooLarge,
    /// The server forgot the session more often than [`MAX_NEW_SESSIONS`].
    #[error("the server lost the upload session {0} times in a row (BG_E_SESSION_NOT_FOUND)")]
    SessionsLost(u32),
    /// 500 disk full.
    #[error("the server is out of disk space (0x80070070)")]
    DiskFull,
    /// 404 at Create-Session: the destination's directory does not exist.
    #[error("the destination's directory does not exist on the server (404)")]
    NoParent,
    /// 401/407: credentials missing or refused.
    #[error("the server wants credentials ({0}); set the job's credentials")]
    Unauthorized(u16),
    /// The server application failed or timed out (context `0x7`).
    #[error("the server application failed ({status}, {code})")]
    Application {
        /// HTTP status.
        status: u16,
        /// The HRESULT as text.
        code: String,
    },
    /// The answer is not a BITS Ack, or a 200 Ack lacks what it must carry.
    #[error("the server's answer is not a valid BITS Ack: {0}")]
    NotBits(String),
    /// The server chose a protocol this client did not offer.
    #[error("the server chose an upload protocol this client does not speak: {0}")]
    ProtocolMismatch(String),
    /// The server's acknowledged offset is refused.
    #[error("{0}")]
    Offset(#[from] crate::offset::OffsetError),
    /// Upload-reply: the final Ack has no `BITS-Reply-URL`.
    #[error("the server finished the upload without a reply URL, but the job wants a reply")]
    NoReply,
    /// The reply URL cannot be resolved against the destination.
    #[error("the server's reply URL {0:?} is not a usable http(s) URL")]
    BadReplyUrl(String),
    /// Any other status, sorted by the general HTTP table.
    #[error("the server answered {status}{}", code.map(|c| format!(" ({})", hresult(c))).unwrap_or_default())]
    Status {
        /// HTTP status.
        status: u16,
        /// The HRESULT, if any.
        code: Option<u32>,
    },
}

/// What the client does after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The session exists: record it (before sending a byte), then send from offset 0.
    Session {
        /// The session id, kept exactly.
        id: String,
        /// The host later packets go to, if the server named one.
        host_id: Option<String>,
        /// Seconds without progress after which the client falls back to the original host.
        host_id_fallback_secs: Option<u64>,
    },
    /// Go on from this offset (a fragment's Ack, 200 or 416; a Ping's Ack: the recorded one).
    Continue {
        /// The next byte to send.
        offset: u64,
    },
    /// Every byte is acknowledged; `reply_url` is the final Ack's `BITS-Reply-URL`.
    Complete {
        /// The reply's URL as the server wrote it (resolve with [`resolve_reply_url`]).
        reply_url: Option<String>,
    },
    /// Close-Session or Cancel-Session was acknowledged.
    Ended,
    /// The server forgot the session: start a new one and send from zero.
    NewSession,
    /// 413: send fragments of this size instead.
    Shrink {
        /// The new fragment size.
        fragment: u64,
    },
    /// Stop this attempt; retrying later may help (after `retry_after` when the server said).
    Transient(Failure),
    /// Stop; retrying cannot help.
    Fatal(Failure),
}

/// The class of an error answer: every row of the [MC-BUP] error table, then the general
/// HTTP table for the rest. `sent` is the packet answered.
pub fn classify_error(sent: &Request, a: &Answer, fragment: u64) -> Step {
    let code = a.error;
    let app = a.context == Some(ErrorContext::Application);
    match (a.status, code) {
        (416, _) => match a.received {
            Some(Ok(offset)) => Step::Continue { offset },
            _ => Step::Fatal(Failure::NotBits(
                "416 without a numeric BITS-Received-Content-Range".into(),
            )),
        },
        // Cancelling a session the server no longer knows has nothing left to cancel.
        (_, Some(BG_E_SESSION_NOT_FOUND)) if matches!(sent, Request::CancelSession { .. }) => {
            Step::Ended
        }
        (_, Some(BG_E_SESSION_NOT_FOUND)) => Step::NewSession,
        // A 404 on Close-Session: the session's data is gone, so the upload starts over.
        (404, _) if matches!(sent, Request::CloseSession { .. }) => Step::NewSession,
        (404, _) if matches!(sent, Request::CreateSession) => Step::Fatal(Failure::NoParent),
        (413, _) => {
            if fragment <= MIN_FRAGMENT {
                Step::Fatal(Failure::FragmentsTooLarge)
            } else {
                Step::Shrink {
                    fragment: (fragment / 2).max(MIN_FRAGMENT),
                }
            }
        }
        (403, _) => Step::Fatal(Failure::AccessDenied),
        (501, _) => Step::Fatal(Failure::NotEnabled),
        (401 | 407, _) => Step::Fatal(Failure::Unauthorized(a.status)),
        (_, Some(BG_E_TOO_LARGE)) => Step::Fatal(Failure::TooLarge),
        (_, Some(ERROR_DISK_FULL)) => Step::Transient(Failure::DiskFull),
        (400, _) | (_, Some(E_INVALIDARG)) => Step::Fatal(Failure::InvalidArg),
        (_, Some(E_ACCESSDENIED)) => Step::Fatal(Failure::AccessDenied),
        // The server application: its statuses follow the same table as BITS's (5xx and 408
        // are retried, other 4xx stop).
        (status, _) if app => {
            let f = Failure::Application {
                status,
                code: code.map(hresult).unwrap_or_else(|| "no code".into()),
            };
            match classify_http_status(status) {
                Class::Transient => Step::Transient(f),
                Class::Fatal => Step::Fatal(f),
            }
        }
        (status, code) => {
            let f = Failure::Status { status, code };
            match classify_http_status(status) {
                Class::Transient => Step::Transient(f),
                Class::Fatal => Step::Fatal(f),
            }
        }
    }
}

/// What the client does after the answer `a` to `sent`. `total` is the file's size (a
/// fragment's Ack that reaches it completes the upload).
pub fn on_answer(sent: &Request, a: &Answer, fragment: u64, total: u64) -> Step {
    if a.status != 200 && a.status != 201 {
        return classify_error(sent, a, fragment);
    }
    if !a.is_ack {
        return Step::Fatal(Failure::NotBits(format!(
            "a {} answer without BITS-Packet-Type: Ack",
            a.status
        )));
    }
    match sent {
        Request::CreateSession => {
            if let Some(p) = &a.protocol
                && !p.eq_ignore_ascii_case(PROTOCOL_GUID)
            {
                return Step::Fatal(Failure::ProtocolMismatch(p.clone()));
            }
            match &a.session {
                Some(id) if id.len() <= crate::MAX_SESSION_ID => Step::Session {
                    id: id.clone(),
                    host_id: a.host_id.clone(),
                    host_id_fallback_secs: a.host_id_fallback_secs,
                },
                Some(_) => Step::Fatal(Failure::NotBits("a session id over 100 bytes".into())),
                None => Step::Fatal(Failure::NotBits(
                    "the Create-Session Ack has no BITS-Session-Id".into(),
                )),
            }
        }
        Request::Ping => Step::Ended,
        Request::Fragment { .. } => match &a.received {
            Some(Ok(offset)) if *offset >= total => Step::Complete {
                reply_url: a.reply_url.clone(),
            },
            Some(Ok(offset)) => Step::Continue { offset: *offset },
            Some(Err(v)) => Step::Fatal(Failure::NotBits(format!(
                "BITS-Received-Content-Range {v:?} is not a number"
            ))),
            None => Step::Fatal(Failure::NotBits(
                "a fragment's Ack has no BITS-Received-Content-Range".into(),
            )),
        },
        Request::CloseSession { .. } | Request::CancelSession { .. } => Step::Ended,
    }
}

/// The range of the next fragment: `size` bytes from `offset`, cut at the end of the file;
/// `None` when `offset` is the end.
pub fn fragment_at(offset: u64, size: u64, total: u64) -> Option<FragmentRange> {
    if offset >= total {
        return None;
    }
    let last = offset.saturating_add(size.max(1)).min(total) - 1;
    Some(FragmentRange {
        first: offset,
        last,
        total,
    })
}

/// Resolves a `BITS-Reply-URL` against the destination URL: absolute http(s) URLs stand; a
/// relative one (which Windows servers write with backslashes, `BITS-Sessions\Replies\{…}\f`)
/// is joined to the destination's directory with `\` read as `/`, and braces and other
/// characters a path may not hold are percent-encoded.
pub fn resolve_reply_url(destination: &url::Url, reply: &str) -> Result<url::Url, Failure> {
    let bad = || Failure::BadReplyUrl(reply.to_owned());
    let slashed = reply.trim().replace('\\', "/");
    if slashed.is_empty() {
        return Err(bad());
    }
    let u = destination.join(&slashed).map_err(|_| bad())?;
    match u.scheme() {
        "http" | "https" => Ok(u),
        _ => Err(bad()),
    }
}

/// The URL later packets go to when the server named a `BITS-Host-Id`: the destination with
/// its host (and port, if the id names one) replaced.
pub fn host_id_url(destination: &url::Url, host_id: &str) -> Option<url::Url> {
    let parsed = url::Url::parse(&format!("{}://{}", destination.scheme(), host_id.trim())).ok()?;
    let mut u = destination.clone();
    u.set_host(parsed.host_str()).ok()?;
    u.set_port(parsed.port()).ok()?;
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{E_FAIL, Refusal};
    use proptest::prelude::*;

    use crate::test_headers::H;

    /// The answer the server sends for a refusal (as `ferry-upload-server` writes it).
    fn answer_for(r: &Refusal, error_header: &'static str) -> Answer {
        let a = r.answer();
        let mut h = vec![("bits-packet-type", "Ack".to_owned())];
        if let Some(c) = a.code {
            h.push((error_header, hresult(c)));
            h.push(("bits-error-context", a.context.header().to_owned()));
        }
        if let Some(n) = a.received {
            h.push(("bits-received-content-range", n.to_string()));
        }
        parse_answer(a.status, &H(h))
    }

    fn frag() -> Request {
        Request::Fragment {
            session: "{S}".into(),
            range: FragmentRange {
                first: 0,
                last: 9,
                total: 100,
            },
        }
    }

    #[test]
    fn packets_carry_the_windows_headers_in_order() {
        let h = Request::CreateSession.headers(Some("a.txt"));
        assert_eq!(
            h,
            vec![
                ("BITS-Packet-Type", "Create-Session".to_owned()),
                ("BITS-Supported-Protocols", PROTOCOL_GUID.to_owned()),
                ("Content-Name", "a.txt".to_owned()),
            ]
        );
        let h = frag().headers(Some("rfc2119.txt"));
        let names: Vec<_> = h.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "BITS-Packet-Type",
                "BITS-Session-Id",
                "Content-Name",
                "Content-Range"
            ]
        );
        assert_eq!(h[3].1, "bytes 0-9/100");
        // A name Windows could not send is left out.
        assert_eq!(frag().headers(Some("a:b")).len(), 3);
        assert_eq!(
            Request::CancelSession {
                session: "{S}".into()
            }
            .headers(None)[0]
                .1,
            "Cancel-Session"
        );
    }

    #[test]
    fn hresults_parse_in_every_spelling() {
        for v in [
            "0x8020001F",
            "0X8020001f",
            "8020001F",
            " 0x8020001F ",
            "-2145386465",
        ] {
            assert_eq!(parse_hresult(v), Some(BG_E_SESSION_NOT_FOUND), "{v:?}");
        }
        for v in ["", "0x", "zz", "0x123456789", "1-2"] {
            assert_eq!(parse_hresult(v), None, "{v:?}");
        }
    }

    #[test]
    fn both_error_headers_are_read() {
        for name in ["bits-error-code", "bits-error"] {
            let a = answer_for(&Refusal::SessionNotFound, name);
            assert_eq!(a.error, Some(BG_E_SESSION_NOT_FOUND));
            assert_eq!(
                on_answer(&frag(), &a, DEFAULT_FRAGMENT, 100),
                Step::NewSession
            );
        }
        // BITS-Error-Code wins when both are there.
        let h = H(vec![
            ("bits-error-code", "0x80070005".into()),
            ("bits-error", "0x8020001F".into()),
        ]);
        assert_eq!(parse_answer(403, &h).error, Some(E_ACCESSDENIED));
    }

    /// Every row of the error table, as `ferry-upload-server` answers it, and what the client
    /// does with it.
    #[test]
    fn every_row_of_the_error_table_is_classified() {
        let create = Request::CreateSession;
        let close = Request::CloseSession {
            session: "{S}".into(),
        };
        let cancel = Request::CancelSession {
            session: "{S}".into(),
        };
        let f = DEFAULT_FRAGMENT;
        let fr = frag();
        let cases: Vec<(Refusal, &Request, Step)> = vec![
            (Refusal::SessionNotFound, &fr, Step::NewSession),
            (Refusal::SessionNotFound, &close, Step::NewSession),
            (Refusal::SessionNotFound, &cancel, Step::Ended),
            (Refusal::Exists, &create, Step::Fatal(Failure::AccessDenied)),
            (
                Refusal::NotEnabled,
                &create,
                Step::Fatal(Failure::NotEnabled),
            ),
            (
                Refusal::OutOfSync { expected: 42 },
                &fr,
                Step::Continue { offset: 42 },
            ),
            (
                Refusal::Malformed("x"),
                &fr,
                Step::Fatal(Failure::InvalidArg),
            ),
            (
                Refusal::NoContentLength,
                &fr,
                Step::Fatal(Failure::InvalidArg),
            ),
            (
                Refusal::NoCommonProtocol,
                &create,
                Step::Fatal(Failure::InvalidArg),
            ),
            (
                Refusal::BadPath("x"),
                &create,
                Step::Fatal(Failure::InvalidArg),
            ),
            (
                Refusal::Incomplete {
                    received: 1,
                    total: 2,
                },
                &close,
                Step::Fatal(Failure::InvalidArg),
            ),
            (Refusal::UploadTooLarge, &fr, Step::Fatal(Failure::TooLarge)),
            (
                Refusal::FragmentTooLarge,
                &fr,
                Step::Shrink { fragment: f / 2 },
            ),
            (Refusal::DiskFull, &fr, Step::Transient(Failure::DiskFull)),
            (
                Refusal::TooManySessions,
                &create,
                Step::Transient(Failure::Status {
                    status: 503,
                    code: Some(E_FAIL),
                }),
            ),
            (Refusal::NoParent, &create, Step::Fatal(Failure::NoParent)),
            (Refusal::DataGone, &close, Step::NewSession),
            (
                Refusal::Application("x".into()),
                &fr,
                Step::Transient(Failure::Application {
                    status: 500,
                    code: "0x80004005".into(),
                }),
            ),
            (
                Refusal::ApplicationTimeout,
                &fr,
                Step::Transient(Failure::Application {
                    status: 408,
                    code: "0x80004005".into(),
                }),
            ),
            (
                Refusal::Internal,
                &fr,
                Step::Transient(Failure::Status {
                    status: 500,
                    code: Some(E_FAIL),
                }),
            ),
        ];
        for (refusal, sent, want) in cases {
            let a = answer_for(&refusal, "bits-error-code");
            assert_eq!(on_answer(sent, &a, f, 100), want, "{refusal:?}");
        }
    }

    #[test]
    fn shrinking_stops_at_five_kilobytes() {
        let a = answer_for(&Refusal::FragmentTooLarge, "bits-error-code");
        assert_eq!(
            on_answer(&frag(), &a, 8 * 1024, 100),
            Step::Shrink {
                fragment: MIN_FRAGMENT
            }
        );
        assert_eq!(
            on_answer(&frag(), &a, MIN_FRAGMENT, 100),
            Step::Fatal(Failure::FragmentsTooLarge)
        );
        // A 413 without any BITS headers (a proxy's) is read the same way.
        let bare = parse_answer(413, &H(vec![]));
        assert!(matches!(
            on_answer(&frag(), &bare, 1 << 20, 100),
            Step::Shrink { .. }
        ));
    }

    #[test]
    fn acks_move_the_offset_or_complete() {
        let ack = |received: &str, reply: Option<&str>| {
            let mut h = vec![
                ("bits-packet-type", "Ack".to_owned()),
                ("bits-received-content-range", received.to_owned()),
            ];
            if let Some(r) = reply {
                h.push(("bits-reply-url", r.to_owned()));
            }
            parse_answer(200, &H(h))
        };
        assert_eq!(
            on_answer(&frag(), &ack("10", None), 1, 100),
            Step::Continue { offset: 10 }
        );
        assert_eq!(
            on_answer(&frag(), &ack("100", Some("r")), 1, 100),
            Step::Complete {
                reply_url: Some("r".into())
            }
        );
        assert!(matches!(
            on_answer(&frag(), &ack("ten", None), 1, 100),
            Step::Fatal(Failure::NotBits(_))
        ));
        // A 200 that is no Ack (a plain web server) is not taken for progress.
        let plain = parse_answer(200, &H(vec![]));
        assert!(matches!(
            on_answer(&frag(), &plain, 1, 100),
            Step::Fatal(Failure::NotBits(_))
        ));
    }

    #[test]
    fn create_session_answers() {
        let ok = parse_answer(
            200,
            &H(vec![
                ("bits-packet-type", "Ack".into()),
                ("bits-protocol", PROTOCOL_GUID.to_ascii_uppercase()),
                ("bits-session-id", "{A0FF5911-0000}".into()),
                ("bits-host-id", "farm7:8080".into()),
                ("bits-host-id-fallback-timeout", "30".into()),
            ]),
        );
        assert_eq!(
            on_answer(&Request::CreateSession, &ok, 1, 1),
            Step::Session {
                id: "{A0FF5911-0000}".into(),
                host_id: Some("farm7:8080".into()),
                host_id_fallback_secs: Some(30),
            }
        );
        let other = parse_answer(
            200,
            &H(vec![
                ("bits-packet-type", "Ack".into()),
                (
                    "bits-protocol",
                    "{00000000-0000-0000-0000-000000000000}".into(),
                ),
                ("bits-session-id", "{A}".into()),
            ]),
        );
        assert!(matches!(
            on_answer(&Request::CreateSession, &other, 1, 1),
            Step::Fatal(Failure::ProtocolMismatch(_))
        ));
    }

    #[test]
    fn reply_urls_resolve_as_the_specification_shows() {
        let dest = url::Url::parse("http://frankcao8/upload-ref-isapi-WebFarm/file.txt").unwrap();
        let u = resolve_reply_url(
            &dest,
            "BITS-Sessions\\Replies\\{C85BE563-89A3-4D6F-85E9-9DB1D8F1F9E5}\\responsefile.bin",
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "http://frankcao8/upload-ref-isapi-WebFarm/BITS-Sessions/Replies/%7BC85BE563-89A3-4D6F-85E9-9DB1D8F1F9E5%7D/responsefile.bin"
        );
        let abs = resolve_reply_url(&dest, "https://other/.ferry-upload/replies/x").unwrap();
        assert_eq!(abs.as_str(), "https://other/.ferry-upload/replies/x");
        assert!(resolve_reply_url(&dest, "file:///etc/passwd").is_err());
        assert!(resolve_reply_url(&dest, "  ").is_err());
    }

    #[test]
    fn host_ids_replace_the_host() {
        let dest = url::Url::parse("https://farm/upload/a.bin").unwrap();
        assert_eq!(
            host_id_url(&dest, "node7:8443").unwrap().as_str(),
            "https://node7:8443/upload/a.bin"
        );
        assert_eq!(
            host_id_url(&dest, "node7").unwrap().as_str(),
            "https://node7/upload/a.bin"
        );
    }

    #[test]
    fn limited_uploads_send_about_a_second_per_fragment() {
        assert_eq!(fragment_for_rate(None), DEFAULT_FRAGMENT);
        assert_eq!(fragment_for_rate(Some(256 * 1024)), 256 * 1024);
        assert_eq!(fragment_for_rate(Some(10)), MIN_FRAGMENT);
        assert_eq!(fragment_for_rate(Some(u64::MAX)), DEFAULT_FRAGMENT);
    }

    proptest! {
        /// Fragments cover the file exactly, in order, never past the end.
        #[test]
        fn fragments_tile_the_file(total in 1u64..100_000, size in 1u64..10_000) {
            let mut offset = 0;
            let mut n = 0u64;
            while let Some(r) = fragment_at(offset, size, total) {
                prop_assert_eq!(r.first, offset);
                prop_assert!(r.len() <= size && r.last < total);
                offset = r.last + 1;
                n += 1;
            }
            prop_assert_eq!(offset, total);
            prop_assert_eq!(n, total.div_ceil(size));
        }

        /// Whatever the server answers, the client never sends smaller than the floor and
        /// every non-200 answer has a decision.
        #[test]
        fn any_answer_has_a_decision(status in 100u16..600, code in proptest::option::of(any::<u32>()), fragment in MIN_FRAGMENT..(1u64 << 30)) {
            let mut h = vec![("bits-packet-type", "Ack".to_owned())];
            if let Some(c) = code {
                h.push(("bits-error-code", hresult(c)));
            }
            let a = parse_answer(status, &H(h));
            if let Step::Shrink { fragment: f } = on_answer(&frag(), &a, fragment, 100) {
                prop_assert!((MIN_FRAGMENT..fragment).contains(&f));
            }
        }
    }
}
