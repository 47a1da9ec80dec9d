//! The peer cache's administration (BITS `bitsadmin /cache` and `/peers`): `cache.list`,
//! `cache.info`, `cache.delete`, `cache.clear`, `peers.list`. With the cache disabled, `info`
//! and `peers.list` say so and the others are empty. In system mode a user sees and deletes
//! only the entries their own jobs published; root sees all.

use std::sync::Arc;

use ferry_proto::ProtoError;
use ferry_proto::cache::{
    CacheDeleteParams, CacheDeleteResult, CacheInfo, CacheListParams, CacheListResult,
    PeersListResult,
};
use ferry_proto::params::Empty;

use super::{Answer, ApiResult};
use crate::daemon::{Caller, Daemon};

/// Whose entries the caller may see: root all, everyone else their own.
fn scope(caller: &Caller) -> Option<u32> {
    (!caller.is_root()).then_some(caller.uid)
}

/// `cache.list`
pub fn list(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    _: CacheListParams,
) -> ApiResult<ferry_proto::method::CacheList> {
    let entries = daemon
        .peer_cache()
        .map(|pc| pc.list(scope(caller)))
        .unwrap_or_default();
    Answer::now(CacheListResult {
        entries,
        enabled: Some(daemon.peer_cache().is_some()),
    })
}

/// `cache.info`
pub fn info(
    daemon: &Arc<Daemon>,
    _: &Caller,
    _: Empty,
) -> ApiResult<ferry_proto::method::CacheInfo> {
    let Some(pc) = daemon.peer_cache() else {
        return Answer::now(CacheInfo {
            config_file: daemon
                .opts()
                .config_file
                .as_ref()
                .filter(|f| f.exists())
                .map(|f| f.display().to_string()),
            ..CacheInfo::default()
        });
    };
    let (entries, used_bytes) = pc.usage();
    let (bytes_served, requests_refused) = pc.counters();
    Answer::now(CacheInfo {
        enabled: true,
        config_file: pc.config_file.as_ref().map(|f| f.display().to_string()),
        listen: Some(pc.listen.to_string()),
        discovery: Some(pc.cfg.discovery.as_str().into()),
        dir: Some(pc.cfg.dir.display().to_string()),
        entries,
        used_bytes,
        max_size_bytes: pc.cfg.max_size_bytes,
        max_age_s: pc.cfg.max_age.as_secs(),
        upload_limit_bps: pc.cfg.upload_limit_bps,
        bytes_served,
        requests_refused,
    })
}

/// `cache.delete`: by key or by URL (every version), within the caller's scope.
pub fn delete(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    params: CacheDeleteParams,
) -> ApiResult<ferry_proto::method::CacheDelete> {
    let (key, url) = match (params.key, params.url) {
        (Some(k), None) if ferry_peer::key::is_key(&k.to_ascii_lowercase()) => {
            (Some(k.to_ascii_lowercase()), None)
        }
        (Some(_), None) => {
            return Err(ProtoError::invalid_params(
                "key",
                "a cache key is 64 hexadecimal digits (see cache.list)",
            ));
        }
        (None, Some(u)) => (None, Some(u)),
        _ => {
            return Err(ProtoError::invalid_params(
                "key",
                "give exactly one of key (from cache.list) or url",
            ));
        }
    };
    let Some(pc) = daemon.peer_cache() else {
        return Answer::now(CacheDeleteResult::default());
    };
    let scope = scope(caller);
    let (deleted, bytes) = pc.remove(
        |r| {
            scope.is_none_or(|u| r.owner_uid == u)
                && key.as_ref().is_none_or(|k| &r.key == k)
                && url.as_ref().is_none_or(|u| &r.url == u)
        },
        "deleted",
    );
    Answer::now(CacheDeleteResult { deleted, bytes })
}

/// `cache.clear`: every entry in the caller's scope.
pub fn clear(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    _: Empty,
) -> ApiResult<ferry_proto::method::CacheClear> {
    let Some(pc) = daemon.peer_cache() else {
        return Answer::now(CacheDeleteResult::default());
    };
    let scope = scope(caller);
    let (deleted, bytes) = pc.remove(|r| scope.is_none_or(|u| r.owner_uid == u), "cleared");
    Answer::now(CacheDeleteResult { deleted, bytes })
}

/// `peers.list`
pub fn peers(
    daemon: &Arc<Daemon>,
    _: &Caller,
    _: Empty,
) -> ApiResult<ferry_proto::method::PeersList> {
    Answer::now(match daemon.peer_cache() {
        Some(pc) => PeersListResult {
            enabled: true,
            peers: pc.peer_infos(),
        },
        None => PeersListResult::default(),
    })
}
