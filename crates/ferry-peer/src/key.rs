//! Content keys: a peer is asked only for exactly the version the origin serves now.
//!
//! The key hashes the URL with the origin's validator (a strong ETag, else Last-Modified) and the
//! size, so another version of the same URL has another key, and the key reveals neither.

use sha2::{Digest, Sha256};

/// The origin's proof of which version of a URL it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator<'a> {
    /// A strong entity tag, quotes included.
    ETag(&'a str),
    /// A `Last-Modified` value as the origin sent it (combined with the size in the key).
    LastModified(&'a str),
}

impl Validator<'_> {
    /// A readable form for listings: `etag "…"` or `last-modified …`.
    pub fn describe(&self) -> String {
        match self {
            Validator::ETag(v) => format!("etag {v}"),
            Validator::LastModified(v) => format!("last-modified {v}"),
        }
    }

    /// Whether it identifies one version: weak ETags (`W/…`) and empty values do not.
    pub fn is_usable(&self) -> bool {
        match self {
            Validator::ETag(v) => v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
            Validator::LastModified(v) => !v.trim().is_empty(),
        }
    }
}

/// The content key (64 lowercase hex digits) of `url` at `validator` with `size` bytes, or `None`
/// when the validator cannot identify a version.
pub fn content_key(url: &str, validator: Validator<'_>, size: u64) -> Option<String> {
    if !validator.is_usable() {
        return None;
    }
    let (kind, value) = match validator {
        Validator::ETag(v) => ("etag", v),
        Validator::LastModified(v) => ("last-modified", v),
    };
    let mut h = Sha256::new();
    for part in ["ferry-peer-v1", url, kind, value, &size.to_string()] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    Some(hex::encode(h.finalize()))
}

/// Whether `s` has the shape of a content key (so a request path can be trusted to name one).
pub fn is_key(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_version_or_size_is_another_key() {
        let a = content_key("http://h/f", Validator::ETag("\"1\""), 10).unwrap();
        assert!(is_key(&a));
        assert_ne!(
            Some(a.clone()),
            content_key("http://h/f", Validator::ETag("\"2\""), 10)
        );
        assert_ne!(
            Some(a.clone()),
            content_key("http://h/f", Validator::ETag("\"1\""), 11)
        );
        assert_ne!(
            Some(a.clone()),
            content_key("http://h/g", Validator::ETag("\"1\""), 10)
        );
        assert_ne!(
            Some(a.clone()),
            content_key("http://h/f", Validator::LastModified("\"1\""), 10)
        );
        assert_eq!(
            Some(a),
            content_key("http://h/f", Validator::ETag("\"1\""), 10)
        );
    }

    #[test]
    fn weak_or_empty_validators_give_no_key() {
        assert_eq!(content_key("u", Validator::ETag("W/\"1\""), 1), None);
        assert_eq!(content_key("u", Validator::ETag(""), 1), None);
        assert_eq!(content_key("u", Validator::LastModified("  "), 1), None);
        assert!(
            content_key(
                "u",
                Validator::LastModified("Tue, 01 Jan 2030 00:00:00 GMT"),
                1
            )
            .is_some()
        );
    }

    #[test]
    fn key_shape() {
        assert!(!is_key("../etc/passwd"));
        assert!(!is_key(&"A".repeat(64)));
        assert!(is_key(&"0".repeat(64)));
    }
}
