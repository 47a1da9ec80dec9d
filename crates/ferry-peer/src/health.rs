//! Which peers are worth asking: a peer that failed (down, slow, wrong bytes, wrong credential) is
//! skipped until its penalty ends, so one bad peer costs its timeout once, not once per file.

use std::collections::BTreeMap;

/// What this host knows about one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerRecord {
    /// Skipped until this time (unix milliseconds); 0 when never bad.
    pub bad_until_ms: u64,
    /// Why it was last marked bad.
    pub last_error: Option<String>,
    /// Whether it was ever asked.
    pub asked: bool,
    /// Bytes fetched from it.
    pub bytes_fetched: u64,
    /// Files fetched from it.
    pub files_fetched: u64,
}

/// The health of every peer this host asked, keyed by `address:port`.
#[derive(Debug, Clone, Default)]
pub struct Health {
    peers: BTreeMap<String, PeerRecord>,
}

impl Health {
    /// Whether `peer` may be asked at `now_ms`.
    pub fn usable(&self, peer: &str, now_ms: u64) -> bool {
        self.peers
            .get(peer)
            .is_none_or(|r| r.bad_until_ms <= now_ms)
    }

    /// Records that `peer` was asked.
    pub fn asked(&mut self, peer: &str) {
        self.peers.entry(peer.to_owned()).or_default().asked = true;
    }

    /// Skips `peer` for `penalty_ms` from `now_ms`, remembering why.
    pub fn mark_bad(&mut self, peer: &str, now_ms: u64, penalty_ms: u64, why: impl Into<String>) {
        let r = self.peers.entry(peer.to_owned()).or_default();
        r.asked = true;
        r.bad_until_ms = now_ms.saturating_add(penalty_ms);
        r.last_error = Some(why.into());
    }

    /// Counts a file (and its bytes) fetched from `peer`.
    pub fn fetched(&mut self, peer: &str, bytes: u64) {
        let r = self.peers.entry(peer.to_owned()).or_default();
        r.bytes_fetched += bytes;
        r.files_fetched += 1;
    }

    /// What is known about `peer`.
    pub fn record(&self, peer: &str) -> Option<&PeerRecord> {
        self.peers.get(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_peer_is_skipped_until_its_penalty_ends() {
        let mut h = Health::default();
        assert!(h.usable("a:1", 0));
        h.mark_bad("a:1", 1000, 500, "refused");
        assert!(!h.usable("a:1", 1499));
        assert!(h.usable("a:1", 1500));
        assert!(h.usable("b:1", 1000));
        assert_eq!(
            h.record("a:1").and_then(|r| r.last_error.as_deref()),
            Some("refused")
        );
        h.fetched("b:1", 10);
        h.fetched("b:1", 5);
        let b = h.record("b:1").cloned().unwrap_or_default();
        assert_eq!((b.bytes_fetched, b.files_fetched), (15, 2));
    }
}
