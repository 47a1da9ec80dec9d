//! The client side of tus 1.0 (core plus the creation, termination, checksum and expiration
//! extensions) as pure rules: the headers each request carries, how an answer is read, and
//! what the client does next. The I/O crate (`ferry-send`) sends what these rules say.
//!
//! The crash-safe order: OPTIONS once, POST without data, the caller commits the upload URL,
//! then PATCH from the acknowledged offset; after any failure HEAD says where to go on; 404
//! or 410 (an expired or removed upload) starts one new upload, a bounded number of times.

use std::time::SystemTime;

use base64::Engine;
use ferry_core::retry::{Class, classify_http_status};

use crate::{Headers, first_value};

/// The protocol version spoken (`Tus-Resumable`).
pub const VERSION: &str = "1.0.0";

/// The content type of a PATCH body.
pub const PATCH_CONTENT_TYPE: &str = "application/offset+octet-stream";

/// The chunk size of one PATCH: a failed checksum or a cut connection costs at most this.
pub const DEFAULT_CHUNK: u64 = 8 * 1024 * 1024;

/// How many new uploads one attempt creates after the server lost the current one.
pub const MAX_NEW_UPLOADS: u32 = 3;

/// How many times one chunk is sent again after a checksum mismatch (460).
pub const MAX_CHECKSUM_RETRIES: u32 = 3;

/// What the server's OPTIONS answer offers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `Tus-Extension`, lower-case.
    pub extensions: Vec<String>,
    /// `Tus-Max-Size`.
    pub max_size: Option<u64>,
    /// `Tus-Checksum-Algorithm`, lower-case.
    pub checksum_algorithms: Vec<String>,
}

impl Capabilities {
    /// Whether the server offers extension `name`.
    pub fn has(&self, name: &str) -> bool {
        self.extensions.iter().any(|e| e == name)
    }
}

/// A checksum algorithm the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// SHA-1, the one every checksum-capable server must support.
    Sha1,
}

fn list(v: Option<&str>) -> Vec<String> {
    v.map(|v| {
        v.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// Whether an answer comes from a tus server speaking 1.0.0 (`Tus-Version` lists it, or
/// `Tus-Resumable` says it).
pub fn is_tus(h: &impl Headers) -> bool {
    list(first_value(h, "tus-version"))
        .iter()
        .any(|v| v == VERSION)
        || first_value(h, "tus-resumable") == Some(VERSION)
}

/// Reads an OPTIONS answer; `None` when it is not a tus 1.0.0 server.
pub fn parse_options(status: u16, h: &impl Headers) -> Option<Capabilities> {
    if !(200..300).contains(&status) || !is_tus(h) {
        return None;
    }
    Some(Capabilities {
        extensions: list(first_value(h, "tus-extension")),
        max_size: first_value(h, "tus-max-size").and_then(|v| v.parse().ok()),
        checksum_algorithms: list(first_value(h, "tus-checksum-algorithm")),
    })
}

/// The checksum to send with each PATCH: SHA-1 when the server offers the checksum extension
/// and lists `sha1`; none otherwise (a server without the extension might refuse the header).
pub fn checksum_for(caps: &Capabilities) -> Option<Checksum> {
    (caps.has("checksum") && caps.checksum_algorithms.iter().any(|a| a == "sha1"))
        .then_some(Checksum::Sha1)
}

/// The `Upload-Checksum` value for a chunk whose digest is `digest`.
pub fn checksum_header(algo: Checksum, digest: &[u8]) -> String {
    let name = match algo {
        Checksum::Sha1 => "sha1",
    };
    format!(
        "{name} {}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Headers of the creation POST: the length and, when given, the file name as metadata.
pub fn creation_headers(length: u64, filename: Option<&str>) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("Tus-Resumable", VERSION.to_owned()),
        ("Upload-Length", length.to_string()),
    ];
    if let Some(name) = filename {
        h.push((
            "Upload-Metadata",
            format!(
                "filename {}",
                base64::engine::general_purpose::STANDARD.encode(name.as_bytes())
            ),
        ));
    }
    h
}

/// Headers of a PATCH at `offset`.
pub fn patch_headers(offset: u64, checksum: Option<String>) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("Tus-Resumable", VERSION.to_owned()),
        ("Content-Type", PATCH_CONTENT_TYPE.to_owned()),
        ("Upload-Offset", offset.to_string()),
    ];
    if let Some(c) = checksum {
        h.push(("Upload-Checksum", c));
    }
    h
}

/// Headers of HEAD, DELETE and OPTIONS requests (OPTIONS needs none, but servers accept it).
pub fn plain_headers() -> Vec<(&'static str, String)> {
    vec![("Tus-Resumable", VERSION.to_owned())]
}

/// Why a tus attempt stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The server does not speak tus 1.0.0 (412, or no `Tus-Version`).
    #[error("the server does not speak tus 1.0.0")]
    NotTus,
    /// The server does not offer the creation extension.
    #[error(
        "the tus server does not offer the creation extension; Ferry cannot start an upload there"
    )]
    NoCreation,
    /// The file is larger than `Tus-Max-Size` or the server said 413.
    #[error("the file is larger than the tus server accepts")]
    TooLarge,
    /// A creation answer without a usable `Location`.
    #[error("the tus server's creation answer has no usable Location ({0})")]
    NoLocation(String),
    /// An answer without (or with a bad) `Upload-Offset` where one is required.
    #[error("the tus server's answer has no valid Upload-Offset")]
    NoOffset,
    /// The server's upload has another length than the file.
    #[error("the tus upload has length {server}, the file {file}: it is not this file's upload")]
    LengthMismatch {
        /// `Upload-Length` of the server.
        server: u64,
        /// The file's size.
        file: u64,
    },
    /// The server lost the upload more often than [`MAX_NEW_UPLOADS`].
    #[error("the tus server lost the upload {0} times in a row")]
    UploadsLost(u32),
    /// Checksums kept failing.
    #[error("the tus server refused the checksum of one chunk {0} times (460)")]
    ChecksumsFailed(u32),
    /// The acknowledged offset is refused.
    #[error("{0}")]
    Offset(#[from] crate::offset::OffsetError),
    /// Any other status.
    #[error("the tus server answered {0}")]
    Status(u16),
}

/// What the client does after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The upload exists at this URL (`Location`, resolved): record it before any PATCH.
    Created(url::Url),
    /// The server holds bytes `0..offset`; `expires` is its `Upload-Expires`, if sent.
    Offset {
        /// The next byte to send.
        offset: u64,
        /// The upload's expiry as the server wrote it.
        expires: Option<String>,
    },
    /// 409: the offset was wrong; HEAD, then go on from the server's.
    Conflict,
    /// 460: the chunk arrived corrupted and was dropped; send it again.
    ChecksumMismatch,
    /// 404/410 (or 403 on HEAD): the upload expired or was removed; create a new one.
    Gone,
    /// The upload was terminated (DELETE answered).
    Terminated,
    /// Stop this attempt; retrying later may help.
    Transient(Failure),
    /// Stop; retrying cannot help.
    Fatal(Failure),
}

fn by_status(status: u16) -> Step {
    match status {
        412 => Step::Fatal(Failure::NotTus),
        413 => Step::Fatal(Failure::TooLarge),
        s => match classify_http_status(s) {
            Class::Transient => Step::Transient(Failure::Status(s)),
            Class::Fatal => Step::Fatal(Failure::Status(s)),
        },
    }
}

fn offset_of(h: &impl Headers) -> Option<u64> {
    let v = first_value(h, "upload-offset")?;
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The answer to the creation POST sent to `creation_url`.
pub fn on_create(status: u16, h: &impl Headers, creation_url: &url::Url) -> Step {
    match status {
        201 => {
            let Some(loc) = first_value(h, "location") else {
                return Step::Fatal(Failure::NoLocation("none".into()));
            };
            match creation_url.join(loc) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Step::Created(u),
                _ => Step::Fatal(Failure::NoLocation(loc.to_owned())),
            }
        }
        s => by_status(s),
    }
}

/// The answer to a HEAD of the upload; `total` is the file's size.
pub fn on_head(status: u16, h: &impl Headers, total: u64) -> Step {
    match status {
        200 | 204 => {
            if let Some(len) = first_value(h, "upload-length").and_then(|v| v.parse::<u64>().ok())
                && len != total
            {
                return Step::Fatal(Failure::LengthMismatch {
                    server: len,
                    file: total,
                });
            }
            match offset_of(h) {
                Some(offset) => Step::Offset {
                    offset,
                    expires: first_value(h, "upload-expires").map(str::to_owned),
                },
                None => Step::Fatal(Failure::NoOffset),
            }
        }
        // A missing upload answers 404, 410 or 403 without Upload-Offset.
        404 | 410 | 403 => Step::Gone,
        s => by_status(s),
    }
}

/// The answer to a PATCH.
pub fn on_patch(status: u16, h: &impl Headers) -> Step {
    match status {
        204 | 200 => match offset_of(h) {
            Some(offset) => Step::Offset {
                offset,
                expires: first_value(h, "upload-expires").map(str::to_owned),
            },
            None => Step::Fatal(Failure::NoOffset),
        },
        409 => Step::Conflict,
        460 => Step::ChecksumMismatch,
        404 | 410 => Step::Gone,
        s => by_status(s),
    }
}

/// The answer to a DELETE.
pub fn on_delete(status: u16) -> Step {
    match status {
        204 | 200 | 404 | 410 => Step::Terminated,
        s => by_status(s),
    }
}

/// Whether an upload whose `Upload-Expires` is `expires` has expired at `now` (an unreadable
/// date is taken as not expired: the HEAD will tell).
pub fn expired(expires: &str, now: SystemTime) -> bool {
    httpdate::parse_http_date(expires.trim()).is_ok_and(|t| t <= now)
}

/// Whether a file of `size` bytes fits the server's `Tus-Max-Size`.
pub fn fits(caps: &Capabilities, size: u64) -> bool {
    caps.max_size.is_none_or(|m| size <= m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    use crate::test_headers::h;

    #[test]
    fn options_are_read_and_checksums_sent_only_when_offered() {
        // @tus/server: no checksum extension.
        let node = h(&[
            ("tus-resumable", "1.0.0"),
            ("tus-version", "1.0.0"),
            (
                "tus-extension",
                "creation,creation-with-upload,creation-defer-length,termination,expiration",
            ),
        ]);
        let caps = parse_options(204, &node).unwrap();
        assert!(caps.has("termination") && caps.has("creation"));
        assert_eq!(checksum_for(&caps), None);
        // resumable-upload (PyPI): checksum with sha1.
        let py = h(&[
            ("tus-version", "1.0.0"),
            ("tus-extension", "creation, checksum, termination"),
            ("tus-checksum-algorithm", "md5,SHA1"),
            ("tus-max-size", "1000"),
        ]);
        let caps = parse_options(200, &py).unwrap();
        assert_eq!(checksum_for(&caps), Some(Checksum::Sha1));
        assert!(fits(&caps, 1000) && !fits(&caps, 1001));
        // Checksum offered without sha1: nothing sent.
        let md5 = h(&[
            ("tus-version", "1.0.0"),
            ("tus-extension", "checksum"),
            ("tus-checksum-algorithm", "md5"),
        ]);
        assert_eq!(checksum_for(&parse_options(200, &md5).unwrap()), None);
        // Not tus: a BITS server's 400 Ack, a plain 200.
        assert_eq!(parse_options(400, &h(&[("bits-packet-type", "Ack")])), None);
        assert_eq!(parse_options(200, &h(&[])), None);
        assert_eq!(parse_options(204, &h(&[("tus-version", "0.2.2")])), None);
    }

    #[test]
    fn the_checksum_header_is_base64_of_the_digest() {
        // The tus specification's example: sha1 of "hello world".
        let digest = [
            0x2a, 0xae, 0x6c, 0x35, 0xc9, 0x4f, 0xcf, 0xb4, 0x15, 0xdb, 0xe9, 0x5f, 0x40, 0x8b,
            0x9c, 0xe9, 0x1e, 0xe8, 0x46, 0xed,
        ];
        assert_eq!(
            checksum_header(Checksum::Sha1, &digest),
            "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="
        );
    }

    #[test]
    fn requests_carry_the_protocol_headers() {
        let c = creation_headers(11, Some("a b.txt"));
        assert_eq!(c[0], ("Tus-Resumable", "1.0.0".to_owned()));
        assert_eq!(c[1], ("Upload-Length", "11".to_owned()));
        assert_eq!(
            c[2],
            ("Upload-Metadata", "filename YSBiLnR4dA==".to_owned())
        );
        let p = patch_headers(5, None);
        assert!(p.contains(&("Content-Type", PATCH_CONTENT_TYPE.to_owned())));
        assert!(p.contains(&("Upload-Offset", "5".to_owned())));
        assert_eq!(patch_headers(5, Some("sha1 x".into())).len(), 4);
    }

    #[test]
    fn creation_resolves_relative_and_absolute_locations() {
        let base = url::Url::parse("http://127.0.0.1:8/files/").unwrap();
        assert_eq!(
            on_create(201, &h(&[("location", "/files/abc")]), &base),
            Step::Created(url::Url::parse("http://127.0.0.1:8/files/abc").unwrap())
        );
        assert_eq!(
            on_create(201, &h(&[("location", "http://h:9/files/x")]), &base),
            Step::Created(url::Url::parse("http://h:9/files/x").unwrap())
        );
        assert!(matches!(
            on_create(201, &h(&[]), &base),
            Step::Fatal(Failure::NoLocation(_))
        ));
        assert!(matches!(
            on_create(201, &h(&[("location", "ftp://x/y")]), &base),
            Step::Fatal(_)
        ));
        assert_eq!(
            on_create(413, &h(&[]), &base),
            Step::Fatal(Failure::TooLarge)
        );
        assert_eq!(on_create(412, &h(&[]), &base), Step::Fatal(Failure::NotTus));
        assert_eq!(
            on_create(503, &h(&[]), &base),
            Step::Transient(Failure::Status(503))
        );
    }

    #[test]
    fn head_and_patch_answers() {
        assert_eq!(
            on_head(
                200,
                &h(&[("upload-offset", "7"), ("upload-length", "10")]),
                10
            ),
            Step::Offset {
                offset: 7,
                expires: None
            }
        );
        assert!(matches!(
            on_head(
                200,
                &h(&[("upload-offset", "7"), ("upload-length", "11")]),
                10
            ),
            Step::Fatal(Failure::LengthMismatch { .. })
        ));
        for gone in [404, 410, 403] {
            assert_eq!(on_head(gone, &h(&[]), 10), Step::Gone);
        }
        assert_eq!(
            on_head(200, &h(&[("upload-offset", "-1")]), 10),
            Step::Fatal(Failure::NoOffset)
        );
        assert_eq!(
            on_patch(
                204,
                &h(&[
                    ("upload-offset", "9"),
                    ("upload-expires", "Wed, 25 Jun 2031 16:00:00 GMT")
                ])
            ),
            Step::Offset {
                offset: 9,
                expires: Some("Wed, 25 Jun 2031 16:00:00 GMT".into())
            }
        );
        assert_eq!(on_patch(409, &h(&[])), Step::Conflict);
        assert_eq!(
            on_patch(460, &h(&[("upload-offset", "0")])),
            Step::ChecksumMismatch
        );
        assert_eq!(on_patch(410, &h(&[])), Step::Gone);
        assert_eq!(on_patch(404, &h(&[])), Step::Gone);
        assert_eq!(
            on_patch(500, &h(&[])),
            Step::Transient(Failure::Status(500))
        );
        assert_eq!(on_patch(403, &h(&[])), Step::Fatal(Failure::Status(403)));
        assert_eq!(on_delete(204), Step::Terminated);
        assert_eq!(on_delete(404), Step::Terminated);
    }

    #[test]
    fn expiry_compares_with_now() {
        let t = httpdate::parse_http_date("Wed, 25 Jun 2031 16:00:00 GMT").unwrap();
        assert!(!expired(
            "Wed, 25 Jun 2031 16:00:00 GMT",
            t - Duration::from_secs(1)
        ));
        assert!(expired("Wed, 25 Jun 2031 16:00:00 GMT", t));
        assert!(!expired("garbage", t));
    }

    proptest! {
        /// Any PATCH answer has a decision and never an offset that is not the header's.
        #[test]
        fn patch_offsets_come_from_the_header(status in 100u16..600, off in proptest::option::of(any::<u64>())) {
            let v = off.map(|o| o.to_string());
            let hh = match &v {
                Some(v) => h(&[("upload-offset", v.as_str())]),
                None => h(&[]),
            };
            if let Step::Offset { offset, .. } = on_patch(status, &hh) {
                prop_assert_eq!(Some(offset), off);
            }
        }
    }
}
