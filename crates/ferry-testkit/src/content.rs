//! Deterministic pseudo-random test content: the same seed and length always give the same
//! bytes, so a test can regenerate what it expects instead of storing fixtures.
//!
//! Not cryptographic and not meant to be: it only has to be cheap (a 1 GiB payload is generated
//! in about a second) and free of the repeating patterns that would hide an offset bug.

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// A generated payload together with its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestContent {
    /// The bytes.
    pub bytes: Bytes,
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
}

impl TestContent {
    /// Generates `len` bytes from `seed` and hashes them.
    pub fn new(seed: u64, len: usize) -> TestContent {
        let bytes = Bytes::from(pseudo_random(seed, len));
        let sha256 = sha256_hex(&bytes);
        TestContent { bytes, sha256 }
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True for a zero-length payload.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// `len` pseudo-random bytes from `seed` (SplitMix64; different seeds give unrelated streams).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut state = seed;
    while out.len() < len {
        // SplitMix64: one add and a few multiplies per 8 bytes, good enough statistics for tests.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&z.to_le_bytes()[..take]);
    }
    out
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// SHA-256 (lowercase hex) of a file on disk, read in chunks; panics naming the file when it
/// cannot be read (test support).
#[allow(clippy::panic)]
pub fn sha256_file(p: &std::path::Path) -> String {
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    hex::encode(h.finalize())
}

/// The staging files (`.ferry-…`) in a directory.
pub fn staging_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(".ferry-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        assert_eq!(pseudo_random(7, 1000), pseudo_random(7, 1000));
        assert_ne!(pseudo_random(7, 1000), pseudo_random(8, 1000));
        // A prefix of a longer stream is the shorter stream.
        assert_eq!(pseudo_random(3, 13)[..], pseudo_random(3, 100)[..13]);
        assert!(pseudo_random(1, 0).is_empty());
    }

    #[test]
    fn hash_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let c = TestContent::new(42, 4097);
        assert_eq!(c.len(), 4097);
        assert_eq!(c.sha256, sha256_hex(&c.bytes));
    }
}
