//! The HTTP exchange between hosts.
//!
//! - `HEAD {CONTENT_PREFIX}{key}` → `200` with [`SHA256_HEADER`] and [`SIZE_HEADER`] when the host
//!   holds that validated content, `404` when not, `401` (empty body) without a valid credential,
//!   `503` when it serves too many peers at once.
//! - `GET {CONTENT_PREFIX}{key}` with an optional `Range: bytes=FROM-` → `200`/`206` and the bytes.
//!
//! - `GET {PIECES_PREFIX}{key}` → `200` with the content's piece list (`ferry_peer::pieces`, one
//!   string of hex) as the body, so the asking host checks every piece as it arrives.
//!
//! - `POST {VERIFY_PREFIX}{key}` → `202`: the caller found that content wrong; the host
//!   re-hashes its copy and evicts it if it no longer matches its SHA-256.
//!
//! All of it runs over TLS with the fleet's key ([`crate::tls`]), and every request carries
//! [`auth::HEADER`](crate::auth::HEADER).

/// Path prefix of content requests.
pub const CONTENT_PREFIX: &str = "/ferry-peer/v1/content/";
/// Path prefix of piece-list requests.
pub const PIECES_PREFIX: &str = "/ferry-peer/v1/pieces/";
/// Path prefix of "please check your copy" reports.
pub const VERIFY_PREFIX: &str = "/ferry-peer/v1/verify/";
/// Response header: SHA-256 of the whole content (lowercase hex).
pub const SHA256_HEADER: &str = "x-ferry-sha256";
/// Response header: size of the whole content in bytes.
pub const SIZE_HEADER: &str = "x-ferry-size";

/// The request path for `key`.
pub fn content_path(key: &str) -> String {
    format!("{CONTENT_PREFIX}{key}")
}

/// The key a request path names, if it is a well-formed content path.
pub fn parse_content_path(path: &str) -> Option<&str> {
    path.strip_prefix(CONTENT_PREFIX)
        .filter(|k| crate::key::is_key(k))
}

/// The piece-list path for `key`.
pub fn pieces_path(key: &str) -> String {
    format!("{PIECES_PREFIX}{key}")
}

/// The key a piece-list path names, if it is a well-formed piece-list path.
pub fn parse_pieces_path(path: &str) -> Option<&str> {
    path.strip_prefix(PIECES_PREFIX)
        .filter(|k| crate::key::is_key(k))
}

/// The report path for `key`.
pub fn verify_path(key: &str) -> String {
    format!("{VERIFY_PREFIX}{key}")
}

/// The key a report path names, if it is a well-formed report path.
pub fn parse_verify_path(path: &str) -> Option<&str> {
    path.strip_prefix(VERIFY_PREFIX)
        .filter(|k| crate::key::is_key(k))
}

/// Parses `Range: bytes=FROM-` (the only form peers send); `None` for anything else.
pub fn parse_range_from(value: &str) -> Option<u64> {
    let from = value.trim().strip_prefix("bytes=")?.strip_suffix('-')?;
    from.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_and_reject_junk() {
        let key = "a".repeat(64);
        assert_eq!(parse_content_path(&content_path(&key)), Some(key.as_str()));
        assert_eq!(parse_content_path("/ferry-peer/v1/content/../../x"), None);
        assert_eq!(parse_content_path("/other"), None);
        assert_eq!(parse_verify_path(&verify_path(&key)), Some(key.as_str()));
        assert_eq!(parse_verify_path(&content_path(&key)), None);
        assert_eq!(parse_pieces_path(&pieces_path(&key)), Some(key.as_str()));
        assert_eq!(parse_pieces_path(&content_path(&key)), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range_from("bytes=10-"), Some(10));
        assert_eq!(parse_range_from("bytes=0-"), Some(0));
        assert_eq!(parse_range_from("bytes=0-5"), None);
        assert_eq!(parse_range_from("bytes=-5"), None);
        assert_eq!(parse_range_from("items=1-"), None);
    }
}
