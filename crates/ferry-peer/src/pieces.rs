//! Piece hashes: the SHA-256 of every [`PIECE_BYTES`] of a file, computed from the bytes as they
//! arrived from the network, recorded with each checkpoint, and the proof that bytes on disk are
//! the ones the daemon received.
//!
//! A file's list covers bytes `0..len`: one hash per whole piece, and one for a last, partial
//! piece. It is kept as one string of concatenated lowercase hex (64 digits per piece). A staging
//! file is trusted only where its bytes hash to the recorded list ([`verify_plan`]); a file whose
//! list is missing or does not cover it ([`covers`]) is never published to peers.

use std::ops::Range;

use sha2::{Digest, Sha256};

/// Bytes per piece.
pub const PIECE_BYTES: u64 = 1024 * 1024;
/// Hex digits per piece hash.
pub const HEX_LEN: usize = 64;

/// How many pieces `len` bytes make (the last may be partial).
pub fn count(len: u64) -> u64 {
    len.div_ceil(PIECE_BYTES)
}

/// The byte range of piece `index` in a file of `len` bytes (empty past the end).
pub fn span(index: u64, len: u64) -> Range<u64> {
    let start = index.saturating_mul(PIECE_BYTES).min(len);
    start..start.saturating_add(PIECE_BYTES).min(len)
}

/// Whether `list` is a well-formed piece list for exactly `len` bytes.
pub fn covers(list: &str, len: u64) -> bool {
    well_formed(list) && (list.len() / HEX_LEN) as u64 == count(len)
}

fn well_formed(list: &str) -> bool {
    list.len().is_multiple_of(HEX_LEN)
        && list.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The hash of piece `index` in `list`, if there is one.
pub fn get(list: &str, index: u64) -> Option<&str> {
    let at = usize::try_from(index).ok()?.checked_mul(HEX_LEN)?;
    list.get(at..at.checked_add(HEX_LEN)?)
}

/// Why bytes on disk cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No hash was recorded for some of them (e.g. a checkpoint from before piece hashes).
    #[error("no piece hash was recorded for bytes {0}..")]
    Unrecorded(u64),
}

/// Which pieces of a `prefix`-byte staging file to hash and compare with `recorded` before its
/// bytes are trusted: every piece of the prefix, each with its range and expected hash.
pub fn verify_plan(
    recorded: Option<&str>,
    prefix: u64,
) -> Result<Vec<(Range<u64>, &str)>, PlanError> {
    let Some(list) = recorded.filter(|l| well_formed(l)) else {
        return if prefix == 0 {
            Ok(Vec::new())
        } else {
            Err(PlanError::Unrecorded(0))
        };
    };
    (0..count(prefix))
        .map(|i| {
            let want = get(list, i).ok_or(PlanError::Unrecorded(span(i, prefix).start))?;
            Ok((span(i, prefix), want))
        })
        .collect()
}

/// Hashes a stream into pieces as it goes.
#[derive(Debug, Clone, Default)]
pub struct PieceHasher {
    done: String,
    current: Sha256,
    current_len: u64,
}

impl PieceHasher {
    /// A hasher with nothing hashed yet.
    pub fn new() -> PieceHasher {
        PieceHasher::default()
    }

    /// Hashes the next bytes of the stream.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = usize::try_from(PIECE_BYTES - self.current_len).unwrap_or(usize::MAX);
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.current.update(now);
            self.current_len += now.len() as u64;
            bytes = rest;
            if self.current_len == PIECE_BYTES {
                let h = std::mem::take(&mut self.current).finalize();
                self.done.push_str(&hex::encode(h));
                self.current_len = 0;
            }
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        (self.done.len() / HEX_LEN) as u64 * PIECE_BYTES + self.current_len
    }

    /// Whether nothing was hashed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The piece list of everything hashed so far (the partial last piece included).
    pub fn list(&self) -> String {
        let mut out = self.done.clone();
        if self.current_len > 0 {
            out.push_str(&hex::encode(self.current.clone().finalize()));
        }
        out
    }

    /// The hash of whole piece `index`, once completed.
    pub fn piece(&self, index: u64) -> Option<&str> {
        get(&self.done, index)
    }

    /// Whole pieces completed so far.
    pub fn whole(&self) -> u64 {
        (self.done.len() / HEX_LEN) as u64
    }
}

/// The piece list of `bytes` (for tests and checks of whole buffers).
pub fn list_of(bytes: &[u8]) -> String {
    let mut h = PieceHasher::new();
    h.update(bytes);
    h.list()
}

/// The index of the first whole piece where `got` differs from `want` (both lists), if any;
/// only pieces present in both are compared.
pub fn first_mismatch(want: &str, got: &str) -> Option<u64> {
    let n = (want.len().min(got.len()) / HEX_LEN) as u64;
    (0..n).find(|&i| get(want, i) != get(got, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: usize = PIECE_BYTES as usize;

    #[test]
    fn arithmetic() {
        assert_eq!(count(0), 0);
        assert_eq!(count(1), 1);
        assert_eq!(count(PIECE_BYTES), 1);
        assert_eq!(count(PIECE_BYTES + 1), 2);
        assert_eq!(span(1, PIECE_BYTES + 5), PIECE_BYTES..PIECE_BYTES + 5);
        assert_eq!(span(3, 10), 10..10);
    }

    #[test]
    fn lists_cover_exactly_their_length() {
        let bytes = vec![7u8; P + 10];
        let list = list_of(&bytes);
        assert!(covers(&list, bytes.len() as u64));
        assert!(!covers(&list, P as u64));
        assert!(!covers(&list, 2 * P as u64 + 1));
        assert!(!covers("xyz", 0));
        assert!(covers("", 0));
        assert_eq!(
            get(&list, 1),
            Some(hex::encode(Sha256::digest(&bytes[P..])).as_str())
        );
    }

    #[test]
    fn a_prefix_without_recorded_hashes_is_not_trusted() {
        assert_eq!(verify_plan(None, 0), Ok(vec![]));
        assert_eq!(verify_plan(None, 5), Err(PlanError::Unrecorded(0)));
        let one = list_of(&vec![1u8; P]);
        assert_eq!(
            verify_plan(Some(&one), PIECE_BYTES + 1),
            Err(PlanError::Unrecorded(PIECE_BYTES))
        );
        assert_eq!(
            verify_plan(Some("not hex"), 1),
            Err(PlanError::Unrecorded(0))
        );
        let plan = verify_plan(Some(&one), PIECE_BYTES).unwrap();
        assert_eq!(plan, vec![(0..PIECE_BYTES, one.as_str())]);
    }

    proptest! {
        // Each case hashes megabytes: fewer cases than the default keep the suite quick.
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn chunking_never_changes_the_list(
            len in 0usize..(3 * P + 100),
            cuts in proptest::collection::vec(1usize..(P + 7), 0..8),
        ) {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let whole = list_of(&bytes);
            let mut h = PieceHasher::new();
            let mut at = 0;
            for c in cuts {
                let end = (at + c).min(len);
                h.update(&bytes[at..end]);
                at = end;
            }
            h.update(&bytes[at..]);
            prop_assert_eq!(h.len(), len as u64);
            prop_assert_eq!(h.list(), whole.clone());
            prop_assert!(covers(&whole, len as u64));
            // The plan for any prefix checks exactly the list of that prefix.
            let prefix = (len / 2) as u64;
            let list = list_of(&bytes[..prefix as usize]);
            let plan = verify_plan(Some(&list), prefix).unwrap();
            prop_assert_eq!(plan.len() as u64, count(prefix));
            for (r, want) in plan {
                let got = hex::encode(Sha256::digest(&bytes[r.start as usize..r.end as usize]));
                prop_assert_eq!(got.as_str(), want);
            }
        }

        #[test]
        fn one_changed_byte_is_found_in_its_piece(len in 1usize..(3 * P), at in 0usize..(3 * P)) {
            let at = at % len;
            let bytes: Vec<u8> = (0..len).map(|i| (i % 256) as u8).collect();
            let mut other = bytes.clone();
            other[at] ^= 1;
            prop_assert_eq!(
                first_mismatch(&list_of(&bytes), &list_of(&other)),
                Some((at / P) as u64)
            );
        }
    }
}
