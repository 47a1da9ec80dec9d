//! Request authentication between peers: an HMAC-SHA256 of the request with the fleet secret.
//!
//! The header is `Authorization: Ferry-HMAC ts=<unix seconds>,nonce=<hex>,mac=<hex>`, where
//! `mac = HMAC-SHA256(secret, "ferry-peer-v1\n" METHOD "\n" PATH "\n" ts "\n" nonce)`. The secret
//! never crosses the network; a request whose time is more than [`MAX_SKEW_S`] away from the
//! server's clock is refused, so a captured header is useless after a few minutes.

use sha2::{Digest, Sha256};

/// The request header that carries the credential.
pub const HEADER: &str = "authorization";
/// The authorization scheme.
pub const SCHEME: &str = "Ferry-HMAC";
/// How far a request's timestamp may be from the server's clock, in seconds.
pub const MAX_SKEW_S: u64 = 300;
/// The shortest fleet secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

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
}

/// The `Authorization` value for `method path` at `now` (unix seconds) with `nonce` (any
/// printable token without commas, e.g. random hex).
pub fn sign(secret: &[u8], method: &str, path: &str, now: u64, nonce: &str) -> String {
    let mac = hex::encode(mac(secret, method, path, now, nonce));
    format!("{SCHEME} ts={now},nonce={nonce},mac={mac}")
}

/// Checks an `Authorization` value (`None`: the header was absent) for `method path` at `now`.
pub fn verify(
    secret: &[u8],
    method: &str,
    path: &str,
    header: Option<&str>,
    now: u64,
) -> Result<(), AuthError> {
    let rest = header
        .and_then(|h| h.trim().strip_prefix(SCHEME))
        .ok_or(AuthError::Missing)?;
    let (mut ts, mut nonce, mut given) = (None, None, None);
    for part in rest.trim().split(',') {
        match part.trim().split_once('=') {
            Some(("ts", v)) => ts = v.parse::<u64>().ok(),
            Some(("nonce", v)) => nonce = Some(v),
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
    let want = mac(secret, method, path, ts, nonce);
    if given.len() != want.len() || !constant_time_eq(&given, &want) {
        return Err(AuthError::BadMac);
    }
    Ok(())
}

fn mac(secret: &[u8], method: &str, path: &str, ts: u64, nonce: &str) -> [u8; 32] {
    let msg = format!("ferry-peer-v1\n{method}\n{path}\n{ts}\n{nonce}");
    hmac_sha256(secret, msg.as_bytes())
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Compares without an early exit, so timing does not reveal how much of a MAC matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 && a.len() == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a fleet secret of enough length";

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_signed_request_verifies() {
        let h = sign(SECRET, "GET", "/p", 1000, "n1");
        assert_eq!(
            verify(SECRET, "GET", "/p", Some(&h), 1000 + MAX_SKEW_S),
            Ok(())
        );
    }

    #[test]
    fn wrong_secret_method_path_or_time_is_refused() {
        let h = sign(SECRET, "GET", "/p", 1000, "n1");
        assert_eq!(
            verify(
                b"another secret, same length..!",
                "GET",
                "/p",
                Some(&h),
                1000
            ),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            verify(SECRET, "HEAD", "/p", Some(&h), 1000),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            verify(SECRET, "GET", "/q", Some(&h), 1000),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            verify(SECRET, "GET", "/p", Some(&h), 1000 + MAX_SKEW_S + 1),
            Err(AuthError::Skew(MAX_SKEW_S + 1))
        );
        assert_eq!(
            verify(SECRET, "GET", "/p", None, 1000),
            Err(AuthError::Missing)
        );
        assert_eq!(
            verify(SECRET, "GET", "/p", Some("Basic abc"), 1000),
            Err(AuthError::Missing)
        );
        assert_eq!(
            verify(SECRET, "GET", "/p", Some("Ferry-HMAC ts=1"), 1000),
            Err(AuthError::Malformed)
        );
        let tampered = h.replace("nonce=n1", "nonce=n2");
        assert_eq!(
            verify(SECRET, "GET", "/p", Some(&tampered), 1000),
            Err(AuthError::BadMac)
        );
    }
}
