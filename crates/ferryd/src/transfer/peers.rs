//! A file's transfer and the peer cache: whether to ask peers for it, pointing the fetch at the
//! chosen peer, telling peer bytes from origin bytes, and recording what peers did.
//!
//! The policy — which peers, their credentials and health — is `crate::peer_cache`; the bytes
//! and their SHA-256 check are `ferry_fetch`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::source::{self, OriginReason, Probed, Source, SourceFacts};
use ferry_fetch::{FetchError, FetchRequest, PeerSource};
use ferry_proto::EventKind;
use ferry_store::FileRow;

use crate::daemon::Daemon;
pub use crate::peer_cache::Choice;
use crate::peer_cache::PeerCache;

use super::RunSettings;

/// How long the origin may take to say which version it serves before peers are skipped.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that sends nothing for this long is given up (the origin takes over).
const PEER_STALL: Duration = Duration::from_secs(5);

/// The peer to fetch `file` from in fetch round `round`, if peers may be asked and one holds
/// the version the origin serves now. [`ferry_core::source::choose`] decides whether to ask;
/// asking costs one `HEAD` to the origin plus one to each usable peer, in parallel and bounded
/// by the peer timeout; nothing is asked when no peer is usable.
pub(super) async fn choose(
    d: &Arc<Daemon>,
    job_id: &str,
    file: &FileRow,
    req: &FetchRequest,
    settings: &RunSettings,
    round: u32,
) -> Option<Choice> {
    let pc = d.peer_cache();
    let facts = SourceFacts {
        cache_enabled: pc.is_some(),
        round,
        job_allows_peers: settings.peer_caching,
        origin_only: file.origin_only,
        ranged: file.ranges.is_some(),
        http: file.remote_url.starts_with("http://") || file.remote_url.starts_with("https://"),
        usable_peers: pc.is_some_and(|pc| pc.has_usable_peers()),
        known_size: file.bytes_total,
        min_file_size: pc.map_or(0, |pc| pc.cfg.min_file_size),
    };
    let pc = match (source::choose(&facts, None), pc) {
        (Source::Probe, Some(pc)) => pc,
        (Source::Origin(why), Some(_)) => return origin(job_id, file, why),
        _ => return None,
    };
    // A failing origin is reported by the origin fetch that follows, with its own error.
    let probe = d.fetcher().probe(req, PROBE_TIMEOUT).await;
    let probed = match &probe {
        Ok(p) => Probed::Answered {
            validator: p.validator.is_some(),
            size: p.size,
        },
        Err(_) => Probed::Failed,
    };
    let (size, probe) = match (source::choose(&facts, Some(probed)), probe) {
        (Source::AskPeers { size }, Ok(probe)) => (size, probe),
        (Source::Origin(why), _) => return origin(job_id, file, why),
        _ => return None,
    };
    let validator = probe.validator?;
    let (key, _) = crate::peer_cache::content_key(&file.remote_url, &validator, size)?;
    let (choice, failures) = pc
        .find(d.fetcher(), &key, &validator, file.sha256.as_deref())
        .await;
    for f in failures {
        pc.event(
            job_id,
            settings.owner_uid,
            EventKind::PeerCache {
                action: "peer_failed".into(),
                file_index: file.file_index,
                key: Some(key.clone()),
                peer: Some(f.peer),
                bytes: 0,
                waited_ms: f.waited_ms,
                detail: Some(f.why),
            },
        );
    }
    choice
}

/// Notes why a file goes to the origin although the cache is enabled (a debug line: it answers
/// "why did this not come from a peer?").
fn origin(job_id: &str, file: &FileRow, why: OriginReason) -> Option<Choice> {
    tracing::debug!(
        job = job_id,
        file = file.file_index,
        why = why.name(),
        "fetching from the origin, not a peer"
    );
    None
}

/// Points `req` at the chosen peer: its URL and credential, its SHA-256 (so wrong bytes fail
/// the fetch), a short stall limit and the slowest rate accepted from it.
pub(super) fn aim(pc: &PeerCache, req: &mut FetchRequest, c: &Choice) {
    let path = ferry_peer::wire::content_path(&c.key);
    req.peer = Some(PeerSource {
        url: format!("https://{}{path}", c.peer),
        peer: c.peer.clone(),
        headers: vec![pc.credential("GET", &path)],
        validator: c.validator.clone(),
        size: c.size,
        pieces: c.pieces.clone(),
    });
    if req.sha256.is_none() {
        req.sha256 = Some(c.sha256.clone());
    }
    req.stall_timeout = PEER_STALL;
    req.min_rate_bps = pc.cfg.min_peer_rate_bps;
}

/// Counts a checkpoint's new bytes as the peer's or the origin's; a restart forgets both.
pub(super) fn attribute(file: &mut FileRow, offset: u64, restarted: bool, source: Option<&Choice>) {
    if restarted {
        file.from_peer = false;
        file.bytes_from_peers = 0;
        file.bytes_from_origin = 0;
        file.peer_sha256 = None;
        file.peer = None;
    }
    let before = if restarted { 0 } else { file.bytes_transferred };
    let new = offset.saturating_sub(before);
    match source {
        Some(c) => {
            file.bytes_from_peers += new;
            if new > 0 {
                file.from_peer = true;
                file.peer_sha256 = Some(c.sha256.clone());
                file.peer = Some(c.peer.clone());
            }
        }
        None => file.bytes_from_origin += new,
    }
}

/// Records a file fetched (at least partly) from `c`.
pub(super) fn fetched(pc: &PeerCache, job_id: &str, owner: u32, file: &FileRow, c: &Choice) {
    pc.fetched(&c.peer, file.bytes_from_peers);
    pc.event(
        job_id,
        owner,
        EventKind::PeerCache {
            action: "from_peer".into(),
            file_index: file.file_index,
            key: Some(c.key.clone()),
            peer: Some(c.peer.clone()),
            bytes: file.bytes_from_peers,
            waited_ms: 0,
            detail: None,
        },
    );
}

/// Whether a file a peer supplied is the version the origin serves: a window of it, placed
/// by chance, compared with the origin's bytes ([`ferry_fetch::Fetcher::spot_check`]).
pub(super) async fn same_as_origin(
    d: &Daemon,
    req: &FetchRequest,
    c: &Choice,
) -> Result<bool, FetchError> {
    let len = ferry_fetch::SPOT_CHECK_BYTES.min(c.size);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| u64::from(t.subsec_nanos()));
    let offset = nanos % (c.size - len + 1);
    let mut origin = req.clone();
    origin.peer = None;
    d.fetcher()
        .spot_check(&origin, &c.validator, offset, len)
        .await
}

/// Marks a peer bad after its bytes failed, and logs it.
pub(super) fn failed(
    pc: &PeerCache,
    job_id: &str,
    owner: u32,
    file: &FileRow,
    peer: &str,
    why: &str,
    started: Instant,
) {
    pc.mark_bad(peer, why);
    pc.event(
        job_id,
        owner,
        EventKind::PeerCache {
            action: "peer_failed".into(),
            file_index: file.file_index,
            key: None,
            peer: Some(peer.to_owned()),
            bytes: file.bytes_from_peers,
            waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            detail: Some(why.to_owned()),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice() -> Choice {
        Choice {
            peer: "127.0.0.2:7170".into(),
            key: "k".into(),
            sha256: "s".into(),
            size: 100,
            validator: ferry_fetch::Validator::ETag("\"v\"".into()),
            pieces: None,
        }
    }

    #[test]
    fn bytes_are_counted_for_their_source_and_a_restart_forgets_them() {
        let mut f = FileRow::default();
        attribute(&mut f, 40, false, Some(&choice()));
        f.bytes_transferred = 40;
        assert_eq!(
            (f.bytes_from_peers, f.bytes_from_origin, f.from_peer),
            (40, 0, true)
        );
        assert_eq!(f.peer.as_deref(), Some("127.0.0.2:7170"));
        attribute(&mut f, 100, false, None);
        f.bytes_transferred = 100;
        assert_eq!((f.bytes_from_peers, f.bytes_from_origin), (40, 60));
        attribute(&mut f, 10, true, None);
        assert_eq!(
            (f.bytes_from_peers, f.bytes_from_origin, f.from_peer),
            (0, 10, false)
        );
        assert_eq!(f.peer_sha256, None);
    }
}
