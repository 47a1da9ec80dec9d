//! Request authentication between peers, inside the mutually authenticated TLS channel
//! ([`crate::tls`]): an HMAC-SHA256 of the request with the fleet secret, so a request is also
//! bound to its method, full target and time, and each one is accepted once.
//!
//! The header is `Authorization: Ferry-HMAC ts=<unix seconds>,nonce=<hex>,mac=<hex>`, where
//! `mac = HMAC-SHA256(secret, "ferry-peer-v2\n" METHOD "\n" TARGET "\n" ts "\n" nonce)` and TARGET
//! is the path with its query string, as sent. The secret never crosses the network; a request
//! whose time is more than [`MAX_SKEW_S`] from the server's clock is refused, and the server
//! remembers each accepted nonce for that long ([`NonceWindow`]), so a captured header is
//! accepted at most once.

use std::collections::{BTreeSet, HashSet};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The request header that carries the credential.
pub const HEADER: &str = "authorization";
/// The authorization scheme.
pub const SCHEME: &str = "Ferry-HMAC";
/// How far a request's timestamp may be from the server's clock, in seconds.
pub const MAX_SKEW_S: u64 = 60;
/// The shortest fleet secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;
/// The longest nonce accepted, in characters.
pub const MAX_NONCE_LEN: usize = 64;
/// Nonces remembered at most; beyond, requests are refused until old ones expire (a member
/// sending this many requests in two minutes is broken, and forgetting would allow replays).
pub const MAX_NONCES: usize = 100_000;

/// Why a request's credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or another scheme.
    #[error("no Ferry-HMAC credential")]
    Missing,
    /// The header is not `ts=…,nonce=…,mac=…`.
    #[error("malformed Ferry-HMAC credential")]
    Malformed,
    /// The timestamp is too far from now.
    #[error(
        "the credential's time is {0} s away from this host's clock (at most {MAX_SKEW_S} s allowed)"
    )]
    Skew(u64),
    /// The MAC does not match: another secret, or a modified request.
    #[error("the credential does not match this fleet's secret")]
    BadMac,
    /// The nonce was accepted before: a replayed request.
    #[error("the credential was used before (a replayed request)")]
    Replayed,
    /// Too many nonces remembered to accept another now.
    #[error("too many requests in the replay window")]
    Busy,
}

/// A verified credential: what the replay check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its time (unix seconds).
    pub ts: u64,
    /// Its nonce.
    pub nonce: String,
}

/// The `Authorization` value for `method target` (path and query) at `now` (unix seconds) with
/// `nonce` (random hex, at most [`MAX_NONCE_LEN`] characters).
pub fn sign(secret: &[u8], method: &str, target: &str, now: u64, nonce: &str) -> String {
    let mac = hex::encode(
        mac(secret, method, target, now, nonce)
            .finalize()
            .into_bytes(),
    );
    format!("{SCHEME} ts={now},nonce={nonce},mac={mac}")
}

/// Checks an `Authorization` value (`None`: the header was absent) for `method target` at
/// `now`: shape, time and MAC (compared in constant time). Replays are [`NonceWindow`]'s job.
pub fn verify(
    secret: &[u8],
    method: &str,
    target: &str,
    header: Option<&str>,
    now: u64,
) -> Result<Verified, AuthError> {
    let rest = header
        .and_then(|h| h.trim().strip_prefix(SCHEME))
        .ok_or(AuthError::Missing)?;
    let (mut ts, mut nonce, mut given) = (None, None, None);
    for part in rest.trim().split(',') {
        match part.trim().split_once('=') {
            Some(("ts", v)) => ts = v.parse::<u64>().ok(),
            Some(("nonce", v)) if is_nonce(v) => nonce = Some(v),
            Some(("mac", v)) => given = hex::decode(v).ok(),
            _ => return Err(AuthError::Malformed),
        }
    }
    let (Some(ts), Some(nonce), Some(given)) = (ts, nonce, given) else {
        return Err(AuthError::Malformed);
    };
    let skew = ts.abs_diff(now);
    if skew > MAX_SKEW_S {
        return Err(AuthError::Skew(skew));
    }
    mac(secret, method, target, ts, nonce)
        .verify_slice(&given)
        .map_err(|_| AuthError::BadMac)?;
    Ok(Verified {
        ts,
        nonce: nonce.to_owned(),
    })
}

fn is_nonce(v: &str) -> bool {
    (8..=MAX_NONCE_LEN).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn mac(secret: &[u8], method: &str, target: &str, ts: u64, nonce: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail; an empty key is the fallback.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    m.update(format!("ferry-peer-v2\n{method}\n{target}\n{ts}\n{nonce}").as_bytes());
    m
}

/// The nonces accepted within the skew window, so each credential is accepted once.
#[derive(Debug, Default)]
pub struct NonceWindow {
    seen: HashSet<String>,
    /// The same nonces by time, to forget them once their time is outside the window.
    by_time: BTreeSet<(u64, String)>,
}

impl NonceWindow {
    /// Accepts `v` at `now` unless its nonce was accepted before; forgets nonces whose time
    /// left the window (they would be refused for skew anyway).
    pub fn admit(&mut self, v: &Verified, now: u64) -> Result<(), AuthError> {
        let floor = now.saturating_sub(MAX_SKEW_S);
        while let Some((ts, _)) = self.by_time.first() {
            if *ts >= floor {
                break;
            }
            if let Some((_, n)) = self.by_time.pop_first() {
                self.seen.remove(&n);
            }
        }
        if self.seen.contains(&v.nonce) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= MAX_NONCES {
            return Err(AuthError::Busy);
        }
        self.seen.insert(v.nonce.clone());
        self.by_time.insert((v.ts, v.nonce.clone()));
        Ok(())
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"a fleet secret of enough length";
    const N1: &str = "0123456789abcdef";

    #[test]
    fn the_mac_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2, through the same construction.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_signed_request_verifies_within_the_skew() {
        let h = sign(SECRET, "GET", "/p", 1000, N1);
        let ok = Verified {
            ts: 1000,
            nonce: N1.into(),
        };
        assert_eq!(
            verify(SECRET, "GET", "/p", Some(&h), 1000 + MAX_SKEW_S),
            Ok(ok.clone())
        );
        assert_eq!(
            verify(SECRET, "GET", "/p", Some(&h), 1000 - MAX_SKEW_S),
            Ok(ok)
        );
    }

    #[test]
    fn wrong_secret_method_target_or_time_is_refused() {
        let h = sign(SECRET, "GET", "/p", 1000, N1);
        let v = |secret: &[u8], method, target, header: Option<&str>, now| {
            verify(secret, method, target, header, now)
        };
        let other = b"another secret, same length..!";
        assert_eq!(
            v(other, "GET", "/p", Some(&h), 1000),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            v(SECRET, "HEAD", "/p", Some(&h), 1000),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            v(SECRET, "GET", "/q", Some(&h), 1000),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            v(SECRET, "GET", "/p?anything", Some(&h), 1000),
            Err(AuthError::BadMac),
            "the query string is covered"
        );
        assert_eq!(
            v(SECRET, "GET", "/p", Some(&h), 1000 + MAX_SKEW_S + 1),
            Err(AuthError::Skew(MAX_SKEW_S + 1))
        );
        let future = sign(SECRET, "GET", "/p", 1299, N1);
        assert_eq!(
            v(SECRET, "GET", "/p", Some(&future), 1000),
            Err(AuthError::Skew(299))
        );
        assert_eq!(v(SECRET, "GET", "/p", None, 1000), Err(AuthError::Missing));
        assert_eq!(
            v(SECRET, "GET", "/p", Some("Basic abc"), 1000),
            Err(AuthError::Missing)
        );
        assert_eq!(
            v(SECRET, "GET", "/p", Some("Ferry-HMAC ts=1"), 1000),
            Err(AuthError::Malformed)
        );
        let odd_nonce = sign(SECRET, "GET", "/p", 1000, "a,b");
        assert_eq!(
            v(SECRET, "GET", "/p", Some(&odd_nonce), 1000),
            Err(AuthError::Malformed)
        );
        let tampered = h.replace(N1, "0123456789abcdee");
        assert_eq!(
            v(SECRET, "GET", "/p", Some(&tampered), 1000),
            Err(AuthError::BadMac)
        );
    }

    #[test]
    fn a_nonce_is_accepted_once_while_it_could_verify() {
        let mut w = NonceWindow::default();
        let at = |ts| Verified {
            ts,
            nonce: N1.into(),
        };
        assert_eq!(w.admit(&at(1000), 1000), Ok(()));
        assert_eq!(w.admit(&at(1000), 1000), Err(AuthError::Replayed));
        assert_eq!(
            w.admit(&at(1000), 1000 + MAX_SKEW_S),
            Err(AuthError::Replayed),
            "still inside the window"
        );
        // Once its time is outside the window it is forgotten; verify refuses it for skew.
        assert_eq!(w.admit(&at(1100), 1000 + MAX_SKEW_S + 1), Ok(()));
        assert_eq!(w.len(), 1);
    }

    proptest! {
        #[test]
        fn replays_within_the_window_are_always_refused(
            times in proptest::collection::vec(0u64..500, 1..60),
        ) {
            // Requests arrive in time order, each stamped within the skew of its arrival.
            let mut sorted = times.clone();
            sorted.sort_unstable();
            let mut w = NonceWindow::default();
            for (i, now) in sorted.iter().enumerate() {
                let v = Verified { ts: *now, nonce: format!("nonce{i:04}") };
                prop_assert_eq!(w.admit(&v, *now), Ok(()));
                prop_assert_eq!(w.admit(&v, *now), Err(AuthError::Replayed));
                prop_assert_eq!(w.admit(&v, now + MAX_SKEW_S), Err(AuthError::Replayed));
            }
            prop_assert!(w.len() <= sorted.len());
        }
    }
}
