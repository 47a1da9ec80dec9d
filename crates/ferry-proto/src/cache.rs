//! The peer cache's local administration methods (`cache.*`, `peers.list`): params and
//! results. The peer-to-peer wire between hosts is not here; it lives in `ferry-peer`.

use serde::{Deserialize, Serialize};

/// `cache.list` params: none (non-root callers of a system daemon see their own entries).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheListParams {}

/// One validated file the cache holds and serves to peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Content key: SHA-256 over the URL and the origin's validator (what peers ask for).
    pub key: String,
    /// The URL the content was downloaded from.
    pub url: String,
    /// The origin's validator at download time (`etag "…"` or `last-modified …`).
    pub validator: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content (lowercase hex).
    pub sha256: String,
    /// The uid whose job published it.
    pub owner_uid: u32,
    /// The job and file it came from.
    pub job_id: String,
    /// The file's index in that job.
    pub file_index: u64,
    /// When it entered the cache (RFC 3339).
    pub published: String,
    /// When it was last published or served (RFC 3339); age and LRU count from here.
    pub last_access: String,
    /// Times it was served to a peer.
    pub times_served: u64,
}

/// `cache.list` result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheListResult {
    /// Entries, most recently used first.
    pub entries: Vec<CacheEntry>,
    /// Whether the peer cache is enabled (absent from daemons before it was added: ask
    /// `cache.info`), so an empty list can say why it is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `cache.info` result (params: none): the cache's settings and use.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheInfo {
    /// Whether the peer cache is enabled in the daemon's configuration.
    pub enabled: bool,
    /// The configuration file the daemon read, if any.
    pub config_file: Option<String>,
    /// `address:port` the cache serves peers on.
    pub listen: Option<String>,
    /// `static` or `mdns`.
    pub discovery: Option<String>,
    /// Where cached content is kept.
    pub dir: Option<String>,
    /// Entries held.
    pub entries: u64,
    /// Bytes held.
    pub used_bytes: u64,
    /// Size limit in bytes (least recently used entries are evicted beyond it).
    pub max_size_bytes: u64,
    /// Entries not used for this long are evicted (seconds).
    pub max_age_s: u64,
    /// Upload bandwidth limit towards peers, bytes per second (`None`: unlimited).
    pub upload_limit_bps: Option<u64>,
    /// Bytes served to peers since the daemon started.
    pub bytes_served: u64,
    /// Peer requests and connections refused since the daemon started (bad or replayed
    /// credential, failed TLS handshake).
    pub requests_refused: u64,
}

/// `cache.delete` params: exactly one of `key` or `url` (every version of that URL).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheDeleteParams {
    /// A content key from `cache.list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A URL: every entry downloaded from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `cache.delete` and `cache.clear` result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheDeleteResult {
    /// Entries removed.
    pub deleted: u64,
    /// Bytes freed.
    pub bytes: u64,
}

/// One peer this host knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// `address:port` of its peer cache.
    pub addr: String,
    /// `static` (configuration) or `mdns` (discovered).
    pub source: String,
    /// `ok`, `bad` (skipped until `bad_until`) or `unknown` (never asked).
    pub state: String,
    /// Until when it is skipped (RFC 3339), when bad.
    pub bad_until: Option<String>,
    /// Why it was last marked bad.
    pub last_error: Option<String>,
    /// Bytes fetched from it since the daemon started.
    pub bytes_fetched: u64,
    /// Files fetched from it since the daemon started.
    pub files_fetched: u64,
}

/// `peers.list` result (params: none).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeersListResult {
    /// Whether the peer cache is enabled.
    pub enabled: bool,
    /// Known peers, sorted by address.
    pub peers: Vec<PeerInfo>,
}
