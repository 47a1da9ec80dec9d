//! The peer cache: validated files shared between Ferry hosts, so a fleet fetches each
//! file from the origin about once.
//!
//! - `config`: the `[peer_cache]` section of the configuration file (off by default).
//! - `index`: the content this host holds (a copy of each validated file under the cache
//!   directory, indexed in the job store), publication and eviction.
//! - `server`: the HTTP server peers fetch from, over TLS with the fleet's key on both sides;
//!   every request is also authenticated and accepted once.
//! - `discovery`: finding peers by mDNS (static peers come from the configuration).
//! - this module: the shared state, and the client side — asking peers for a version the origin
//!   serves now, and remembering which peers failed.
//!
//! Contract between hosts (keys, credentials, paths, eviction and health rules): `ferry-peer`.
//! Fetching the bytes and checking them against the peer's SHA-256: `ferry-fetch`. Deciding per
//! file whether to ask peers: `transfer.rs`.

pub mod config;
pub mod discovery;
mod index;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_fetch::{Fetcher, PeerAnswer, Validator};
use ferry_peer::health::Health;
use ferry_proto::EventKind;
use ferry_proto::cache::PeerInfo;
use ferry_store::{Reader, Writer};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

pub use config::{Config, PeerCacheConfig};

use crate::error::DaemonError;

/// The peer cache of this daemon (only exists when enabled).
pub struct PeerCache {
    /// `[peer_cache]` of ferryd.toml: listening address, limits, trust, what may be shared.
    pub cfg: PeerCacheConfig,
    /// The configuration file it came from.
    pub config_file: Option<PathBuf>,
    /// The address the server is bound to (the configured one, with the real port).
    pub listen: SocketAddr,
    store: Writer,
    index: Mutex<index::Index>,
    health: Mutex<Health>,
    discovery: Mutex<Option<discovery::MdnsDiscovery>>,
    bytes_served: AtomicU64,
    refused: AtomicU64,
    uploads: Arc<Semaphore>,
    upload_bucket: Arc<ferry_fetch::throttle::Bucket>,
    /// Wakes the eviction timer when entries change.
    changed: Notify,
    /// Keys whose copy is being checked after a peer reported it wrong.
    verifying: Mutex<std::collections::HashSet<String>>,
    /// Request nonces accepted within the clock-skew window (replays are refused).
    nonces: Mutex<ferry_peer::auth::NonceWindow>,
}

/// A peer that holds the version a file needs.
#[derive(Debug, Clone)]
pub struct Choice {
    /// `address:port`.
    pub peer: String,
    /// The content key.
    pub key: String,
    /// The SHA-256 the peer advertises.
    pub sha256: String,
    /// The content's length in bytes, as the peer advertises it.
    pub size: u64,
    /// The origin's validator of that version.
    pub validator: Validator,
    /// The peer's piece list of the content (each piece is checked as it arrives).
    pub pieces: Option<String>,
}

/// A peer that could not help, and how long asking it took.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `address:port`.
    pub peer: String,
    /// Why, in words.
    pub why: String,
    /// Milliseconds spent on it.
    pub waited_ms: u64,
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl PeerCache {
    /// Opens the cache directory and index, binds the peer server and starts discovery.
    pub async fn start(
        config: &Config,
        store: Writer,
        reader: &Reader,
        shutdown: CancellationToken,
    ) -> Result<Option<Arc<PeerCache>>, DaemonError> {
        let Some(cfg) = config.peer_cache.clone() else {
            return Ok(None);
        };
        let file_hint = config
            .file
            .as_ref()
            .map(|f| format!(" in {}", f.display()))
            .unwrap_or_default();
        let (index, stale) = index::Index::open(&cfg.dir, reader)?;
        if !stale.is_empty() {
            store
                .submit(move |tx| tx.delete_cache_entries(&stale))
                .wait()
                .await?;
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| {
                DaemonError::Config(format!(
                    "cannot serve peers on {}: {e}; change [peer_cache] listen{file_hint} or stop what uses that port",
                    cfg.listen
                ))
            })?;
        let listen = listener.local_addr().map_err(|e| {
            DaemonError::Config(format!("cannot read the peer server's address: {e}"))
        })?;
        let tls = cfg
            .tls
            .server_config()
            .map_err(|e| DaemonError::Config(e.to_string()))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let pc = Arc::new(PeerCache {
            uploads: Arc::new(Semaphore::new(cfg.max_uploads)),
            upload_bucket: ferry_fetch::throttle::Bucket::new(cfg.upload_limit_bps),
            cfg,
            config_file: config.file.clone(),
            listen,
            store,
            index: Mutex::new(index),
            health: Mutex::new(Health::default()),
            discovery: Mutex::new(None),
            bytes_served: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            changed: Notify::new(),
            verifying: Mutex::default(),
            nonces: Mutex::default(),
        });
        if pc.cfg.discovery == config::Discovery::Mdns {
            let ip = listen.ip();
            let addrs = if ip.is_unspecified() {
                vec![]
            } else {
                vec![ip]
            };
            let instance = uuid::Uuid::new_v4().simple().to_string();
            let d = discovery::MdnsDiscovery::start(&instance, listen.port(), &addrs).map_err(
                |e| DaemonError::Config(format!("cannot start mDNS discovery: {e}; use discovery = \"static\"{file_hint} with a peers list instead")),
            )?;
            *pc.discovery.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
        }
        tokio::spawn(server::serve(
            pc.clone(),
            listener,
            acceptor,
            shutdown.clone(),
        ));
        tokio::spawn(index::expire(pc.clone(), shutdown.clone()));
        pc.evict_now();
        tracing::info!(listen = %listen, discovery = pc.cfg.discovery.as_str(), "peer cache enabled");
        Ok(Some(pc))
    }

    /// Stops advertising on mDNS (shutdown).
    pub fn stop(&self) {
        if let Some(d) = self
            .discovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            d.shutdown();
        }
    }

    /// Peers to ask: the configured ones and those discovered, never this host itself.
    fn peers(&self) -> Vec<(SocketAddr, &'static str)> {
        let mut out: Vec<(SocketAddr, &'static str)> =
            self.cfg.peers.iter().map(|p| (*p, "static")).collect();
        if let Some(d) = self
            .discovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            for p in d.peers() {
                if !out.iter().any(|(a, _)| *a == p) {
                    out.push((p, "mdns"));
                }
            }
        }
        out.retain(|(a, _)| *a != self.listen);
        out
    }

    /// Whether any peer may be asked now.
    pub fn has_usable_peers(&self) -> bool {
        let now = unix_ms();
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        self.peers()
            .iter()
            .any(|(a, _)| health.usable(&a.to_string(), now))
    }

    /// `peers.list`: every known peer with its health.
    pub fn peer_infos(&self) -> Vec<PeerInfo> {
        let now = unix_ms();
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<PeerInfo> = self
            .peers()
            .into_iter()
            .map(|(addr, source)| {
                let addr = addr.to_string();
                let r = health.record(&addr).cloned().unwrap_or_default();
                let bad = r.bad_until_ms > now;
                PeerInfo {
                    state: if bad {
                        "bad"
                    } else if r.asked {
                        "ok"
                    } else {
                        "unknown"
                    }
                    .into(),
                    bad_until: bad.then(|| {
                        crate::clock::rfc3339_in(Duration::from_millis(r.bad_until_ms - now))
                    }),
                    last_error: r.last_error,
                    bytes_fetched: r.bytes_fetched,
                    files_fetched: r.files_fetched,
                    source: source.into(),
                    addr,
                }
            })
            .collect();
        out.sort_by(|a, b| a.addr.cmp(&b.addr));
        out
    }

    /// The nonces seen within the replay window.
    fn nonces(&self) -> std::sync::MutexGuard<'_, ferry_peer::auth::NonceWindow> {
        self.nonces.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Authorization` header for a request to a peer.
    pub fn credential(&self, method: &str, path: &str) -> (String, String) {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let value = ferry_peer::auth::sign(&self.cfg.secret, method, path, unix_now(), &nonce);
        (ferry_peer::auth::HEADER.to_owned(), value)
    }

    /// Skips `peer` for the configured time.
    pub fn mark_bad(&self, peer: &str, why: &str) {
        tracing::warn!(peer, why, "peer marked bad");
        let penalty = u64::try_from(self.cfg.bad_peer.as_millis()).unwrap_or(u64::MAX);
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .mark_bad(peer, unix_ms(), penalty, why);
    }

    /// Tells `peer` that its copy of `key` was wrong, so it checks (and evicts) it.
    pub fn report(&self, fetcher: &Arc<Fetcher>, peer: &str, key: &str) {
        let path = ferry_peer::wire::verify_path(key);
        let url = peer_url(peer, &path);
        let headers = vec![self.credential("POST", &path)];
        let (fetcher, timeout) = (fetcher.clone(), self.cfg.peer_timeout);
        tokio::spawn(async move { fetcher.tell_peer(&url, &headers, timeout).await });
    }

    /// Counts a file fetched from `peer`.
    pub fn fetched(&self, peer: &str, bytes: u64) {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fetched(peer, bytes);
    }

    /// Asks every usable peer at once whether it holds `key` (with `want_sha`, when the file
    /// names one), for at most the configured peer timeout; the first that does wins. Peers
    /// that fail are marked bad and reported.
    pub async fn find(
        &self,
        fetcher: &Fetcher,
        key: &str,
        validator: &Validator,
        want_sha: Option<&str>,
    ) -> (Option<Choice>, Vec<Failure>) {
        let now = unix_ms();
        let peers: Vec<String> = {
            let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            let usable: Vec<String> = self
                .peers()
                .into_iter()
                .map(|(a, _)| a.to_string())
                .filter(|a| health.usable(a, now))
                .collect();
            for p in &usable {
                health.asked(p);
            }
            usable
        };
        let path = ferry_peer::wire::content_path(key);
        let timeout = self.cfg.peer_timeout;
        let started = Instant::now();
        let mut asks: FuturesUnordered<_> = peers
            .into_iter()
            .map(|peer| {
                let url = peer_url(&peer, &path);
                let headers = vec![self.credential("HEAD", &path)];
                async move {
                    let answer =
                        tokio::time::timeout(timeout, fetcher.ask_peer(&url, &headers, timeout))
                            .await
                            .unwrap_or_else(|_| {
                                PeerAnswer::Failed(format!("no answer within {timeout:?}"))
                            });
                    (peer, answer)
                }
            })
            .collect();
        let mut failures = Vec::new();
        while let Some((peer, answer)) = asks.next().await {
            let answer = match answer {
                PeerAnswer::Has { sha256, size } => {
                    if want_sha.is_some_and(|w| !w.trim().eq_ignore_ascii_case(&sha256)) {
                        // Another content than the owner expects: not this peer's fault.
                        continue;
                    }
                    // Only the peer chosen is asked for its piece hashes (a list of 64 bytes
                    // per MiB: worth one request, not one per peer).
                    match self.pieces_of(fetcher, &peer, key, size).await {
                        Ok(list) => {
                            let choice = Choice {
                                peer,
                                key: key.to_owned(),
                                sha256,
                                size,
                                validator: validator.clone(),
                                pieces: Some(list),
                            };
                            return (Some(choice), failures);
                        }
                        Err(why) => PeerAnswer::Failed(why),
                    }
                }
                other => other,
            };
            if let PeerAnswer::Failed(why) = answer {
                self.mark_bad(&peer, &why);
                let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                failures.push(Failure {
                    peer,
                    why,
                    waited_ms,
                });
            }
        }
        (None, failures)
    }

    /// The piece hashes `peer` holds for `key` (of `size` bytes), within the peer timeout.
    async fn pieces_of(
        &self,
        fetcher: &Fetcher,
        peer: &str,
        key: &str,
        size: u64,
    ) -> Result<String, String> {
        let path = ferry_peer::wire::pieces_path(key);
        let headers = vec![self.credential("GET", &path)];
        let timeout = self.cfg.peer_timeout;
        let url = peer_url(peer, &path);
        let ask = fetcher.peer_pieces(&url, &headers, size, timeout);
        tokio::time::timeout(timeout, ask)
            .await
            .unwrap_or_else(|_| Err(format!("no piece hashes within {timeout:?}")))
    }

    /// Logs a `peer_cache` event for a job (queued; not awaited).
    pub fn event(&self, job_id: &str, owner_uid: u32, kind: EventKind) {
        let (id, time) = (job_id.to_owned(), crate::clock::now_rfc3339());
        drop(
            self.store
                .submit(move |tx| tx.append_event(&id, owner_uid, &time, kind).map(drop)),
        );
    }

    /// Bytes served and requests refused since start.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.bytes_served.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// Whether a job's files may ever be shared: it allows peer caching, authenticates to its
/// origin by neither credentials nor custom headers (those may guard private content), and
/// fetches without a proxy of its own (whoever runs that proxy chooses the bytes, and the job's
/// owner may run it).
pub fn may_share(job: &ferry_store::JobRow) -> bool {
    job.settings.peer_caching
        && job.settings.credentials.is_none()
        && job.settings.custom_headers.is_empty()
        && job.settings.proxy.is_none()
}

/// The URL of `path` on `peer` (`address:port`): always TLS.
fn peer_url(peer: &str, path: &str) -> String {
    format!("https://{peer}{path}")
}

/// The TLS client configuration the fetcher uses towards peers, when the cache is enabled.
pub fn client_tls(config: &Config) -> Result<Option<rustls::ClientConfig>, DaemonError> {
    config
        .peer_cache
        .as_ref()
        .map(|c| c.tls.client_config())
        .transpose()
        .map_err(|e| DaemonError::Config(e.to_string()))
}

impl PeerCache {
    /// Offers a validated file to the cache (BITS: validation, explicit or through complete,
    /// makes content eligible for peers). Shared only when it is a whole http(s) file of a job
    /// that [`may_share`], with a version-identifying validator, and whose every piece has a
    /// hash recorded from the bytes as the daemon received them (the copy is checked against
    /// those pieces, so bytes anyone else wrote are never published).
    pub fn offer(
        self: &Arc<Self>,
        job: &ferry_store::JobRow,
        file: &ferry_store::FileRow,
        source: PathBuf,
        identity: Option<ferry_fetch::identity::FsIdentity>,
    ) {
        if !may_share(job)
            || file.ranges.is_some()
            || !file.transferred
            || file.validation != ferry_proto::Validation::Valid
        {
            return;
        }
        let (Some(sha256), Some(size), Some(validator)) = (
            file.content_sha256.clone(),
            file.bytes_total,
            file.validator
                .clone()
                .and_then(|v| serde_json::from_value::<Validator>(v).ok()),
        ) else {
            return;
        };
        let Some(pieces) = file
            .pieces
            .clone()
            .filter(|p| ferry_peer::pieces::covers(p, size))
        else {
            tracing::info!(
                job = %job.id,
                file = file.file_index,
                "not published to the peer cache: where some of its bytes came from is not recorded"
            );
            return;
        };
        let Some((key, validator)) = content_key(&file.remote_url, &validator, size) else {
            return;
        };
        self.publish(index::Publish {
            key,
            validator,
            url: file.remote_url.clone(),
            size,
            sha256,
            pieces,
            owner_uid: job.owner_uid,
            job_id: job.id.clone(),
            file_index: file.file_index,
            source,
            identity,
        });
    }

    /// The key of a transferred file's content, if it has one.
    pub fn key_of(file: &ferry_store::FileRow) -> Option<String> {
        let validator = file
            .validator
            .clone()
            .and_then(|v| serde_json::from_value::<Validator>(v).ok())?;
        content_key(&file.remote_url, &validator, file.bytes_total?).map(|(k, _)| k)
    }
}

/// The key and readable validator of a file's content, when it can be shared: a whole http(s)
/// file with a size and a validator that identifies one version.
pub fn content_key(url: &str, validator: &Validator, size: u64) -> Option<(String, String)> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    let v = match validator {
        Validator::ETag(v) => ferry_peer::key::Validator::ETag(v),
        Validator::LastModified(v) => ferry_peer::key::Validator::LastModified(v),
    };
    Some((ferry_peer::key::content_key(url, v, size)?, v.describe()))
}
