//! Ferry's transfer engine for one file: download an `http`, `https` or `file` URL into a
//! staging file, resuming from the bytes already durable there, and report durable checkpoints.
//!
//! The daemon drives it: it creates the staging file ([`staging::create_temp`]), calls
//! [`Fetcher::fetch`] with the committed offset and validator, commits each
//! [`FetchEvent::Checkpoint`] to its store (the bytes it names are already synced), and
//! finalizes or removes the staging file later. Resume uses `Range` plus
//! `If-Range` (strong ETag, else Last-Modified); an answer that does not fit the bytes on disk
//! restarts the file from zero. Errors come back classified ([`FetchError`]).
//!
//! Ranged files (BITS `AddFileWithRanges`, [`FetchRequest::ranges`]) concatenate several
//! ranges of the remote file into the staging file; offsets, checkpoints and the SHA-256 then
//! refer to that concatenation (`ranged.rs`).
//!
//! Not here: retry timing, scheduling, bandwidth limits, several files at once, uploads,
//! and which peers to ask; those live in the daemon. Fetching from a peer is `peer.rs`.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod error;
mod http;
pub mod identity;
mod local;
mod peer;
mod ranged;
mod rate;
pub mod safe_open;
mod sink;
pub mod staging;
pub mod throttle;

pub use error::{FetchError, FetchErrorKind, FetchSetupError};
/// The HTTP helpers the upload engine (`ferry-send`) shares: failure classification, URL
/// redaction for messages, custom-header checks.
pub use http::{
    body_error, custom_headers, header_str, parse_retry_after, redact, redact_url_str, send_error,
    status_error,
};
pub use local::file_url_path;
pub use peer::{PeerAnswer, PeerSource, Probe, SPOT_CHECK_BYTES};

use ferry_core::range;
use ferry_proto::{ErrorContext, FileRange};
use sink::Sink;

/// How often, at most, a [`FetchEvent::Progress`] is sent.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// What proves that bytes fetched earlier still belong to the same remote file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Validator {
    /// A strong entity tag, quotes included (`"abc"`); weak (`W/`) tags are never recorded.
    #[serde(rename = "etag")]
    ETag(String),
    /// A `Last-Modified` date as the server sent it (for `file://`: `<mtime_nanos>:<size>`).
    LastModified(String),
}

impl Validator {
    /// The value to send in `If-Range`.
    pub fn to_header_value(&self) -> &str {
        match self {
            Validator::ETag(v) | Validator::LastModified(v) => v,
        }
    }

    /// Whether `If-Range` may carry it: RFC 9110 forbids weak entity tags there.
    fn usable_for_if_range(&self) -> bool {
        match self {
            Validator::ETag(v) => v.starts_with('"') && v.len() >= 2,
            Validator::LastModified(v) => !v.trim().is_empty(),
        }
    }
}

/// Settings shared by every fetch of one [`Fetcher`].
#[derive(Debug, Clone)]
pub struct FetcherOptions {
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Limit on establishing a connection (TCP plus TLS).
    pub connect_timeout: Duration,
    /// The TLS configuration towards peer caches (the fleet's identity, `ferry_peer::tls`);
    /// `None` when this host has no peer cache.
    pub peer_tls: Option<rustls::ClientConfig>,
}

impl Default for FetcherOptions {
    fn default() -> FetcherOptions {
        FetcherOptions {
            user_agent: concat!("ferry/", env!("CARGO_PKG_VERSION")).to_owned(),
            connect_timeout: Duration::from_secs(30),
            peer_tls: None,
        }
    }
}

/// The window over which [`FetchRequest::min_rate_bps`] is judged.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

/// One file to fetch (or to resume).
#[derive(Clone)]
pub struct FetchRequest {
    /// `http`, `https` or `file` URL.
    pub url: String,
    /// The staging file (see [`staging::create_temp`]).
    pub temp_path: PathBuf,
    /// Bytes already durable in `temp_path` (the committed offset).
    pub offset: u64,
    /// The validator recorded when those bytes were fetched.
    pub validator: Option<Validator>,
    /// The size recorded earlier, if any.
    pub expected_total: Option<u64>,
    /// Expected SHA-256 (hex, any case); verified before the fetch succeeds.
    pub sha256: Option<String>,
    /// Compute the content's SHA-256 even without `sha256` ([`FetchDone::sha256`]), and its
    /// piece hashes ([`FetchDone::pieces`]): for content that may be published to peers. Off,
    /// and without `sha256`, nothing is hashed.
    pub hash: bool,
    /// The piece list (`ferry_peer::pieces`) recorded with the committed `offset`. With `hash`,
    /// the bytes kept in the staging file are checked against it before the fetch goes on: a
    /// prefix that no longer matches was written by someone else and is fetched again; one
    /// without a recorded list is kept, but the file's pieces are then unknown (`None`).
    pub pieces: Option<String>,
    /// Custom request headers, sent on every request to the URL's origin (scheme, host and
    /// port; never to a redirect target elsewhere). `Range`, `If-Range`, `Accept-Encoding` and
    /// hop-by-hop headers are not overridable.
    pub headers: Vec<(String, String)>,
    /// Basic-auth user and password, sent to the original origin only.
    pub basic_auth: Option<(String, String)>,
    /// Whether a redirect from https to http is followed.
    pub allow_https_to_http: bool,
    /// No body byte for this long (or no answer) is a transient `STALLED`; zero disables it.
    pub stall_timeout: Duration,
    /// Fewer bytes per second than this over any [`RATE_WINDOW`] (windows in which our own
    /// bandwidth limit made it wait excepted) is a transient `TOO_SLOW`; for peers.
    pub min_rate_bps: Option<u64>,
    /// A durable checkpoint at least every this many bytes …
    pub checkpoint_bytes: u64,
    /// … or every this long, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Most redirects followed before `REDIRECT_REFUSED`.
    pub max_redirects: u32,
    /// Bandwidth limits to honour while reading the body.
    pub throttle: throttle::Throttle,
    /// Whom the kernel checks file access against (system mode: the job's owner).
    pub identity: Option<identity::FsIdentity>,
    /// Send every request through this proxy instead of the environment's.
    pub proxy: Option<String>,
    /// Ranges of the remote file to concatenate, in this order, into the staging file (BITS
    /// `AddFileWithRanges`; a `length` of `None` reaches to the end of the remote file); `None`
    /// fetches the whole file. With ranges, `offset`, `expected_total`, the checkpoints and
    /// `sha256` all refer to the concatenation.
    pub ranges: Option<Vec<FileRange>>,
    /// Fetch the bytes from this peer instead of the origin (whole files only; set `sha256` to
    /// the peer's advertised SHA-256 so wrong bytes fail the fetch).
    pub peer: Option<PeerSource>,
}

impl FetchRequest {
    /// A fresh fetch of `url` into `temp_path` with default limits (60 s stall timeout,
    /// checkpoints every 8 MiB or 1 s, 10 redirects).
    pub fn new(url: impl Into<String>, temp_path: impl Into<PathBuf>) -> FetchRequest {
        FetchRequest {
            url: url.into(),
            temp_path: temp_path.into(),
            offset: 0,
            validator: None,
            expected_total: None,
            sha256: None,
            hash: false,
            pieces: None,
            headers: Vec::new(),
            basic_auth: None,
            allow_https_to_http: false,
            stall_timeout: Duration::from_secs(60),
            min_rate_bps: None,
            checkpoint_bytes: 8 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(1),
            max_redirects: 10,
            throttle: throttle::Throttle::default(),
            identity: None,
            proxy: None,
            ranges: None,
            peer: None,
        }
    }
}

impl std::fmt::Debug for FetchRequest {
    /// Like a derived `Debug`, but never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchRequest")
            .field("url", &self.url)
            .field("temp_path", &self.temp_path)
            .field("offset", &self.offset)
            .field("validator", &self.validator)
            .field("expected_total", &self.expected_total)
            .field("sha256", &self.sha256)
            .field("hash", &self.hash)
            .field("pieces", &self.pieces.as_ref().map(|p| p.len() / 64))
            .field("headers", &self.headers)
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .field("allow_https_to_http", &self.allow_https_to_http)
            .field("stall_timeout", &self.stall_timeout)
            .field("min_rate_bps", &self.min_rate_bps)
            .field("checkpoint_bytes", &self.checkpoint_bytes)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("max_redirects", &self.max_redirects)
            .field("ranges", &self.ranges)
            .field("peer", &self.peer.as_ref().map(|p| &p.peer))
            .finish()
    }
}

/// What a running fetch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// Live, not yet durable byte count (for progress display); at most every ~50 ms.
    Progress {
        /// Bytes received so far (including the resumed prefix).
        bytes: u64,
        /// The file's size, when known.
        total: Option<u64>,
    },
    /// Bytes `0..offset` of the staging file are synced to disk (synced *before* this is sent).
    Checkpoint {
        /// The durable length of the staging file.
        offset: u64,
        /// The size the current answer declared, when known.
        total: Option<u64>,
        /// The validator the current answer established (record it with `offset`).
        validator: Option<Validator>,
        /// The server forced a restart from zero: earlier bytes were dropped.
        restarted: bool,
        /// The piece list of bytes `0..offset`, hashed as they arrived (with
        /// [`FetchRequest::hash`], and when every byte's origin is known): record it with
        /// `offset`, so a resume can check the bytes on disk.
        pieces: Option<String>,
    },
}

/// A finished fetch: the staging file holds exactly the content, synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchDone {
    /// The file's size.
    pub bytes: u64,
    /// The validator of the content (for later revalidation).
    pub validator: Option<Validator>,
    /// Lowercase hex SHA-256 of the whole content, when it was computed (`sha256` or `hash` in
    /// the request).
    pub sha256: Option<String>,
    /// The content's piece list, with `hash` in the request and when every byte is one this
    /// fetch (or an earlier one, checked against its recorded pieces) received; `None`
    /// otherwise, and then the content must not be published.
    pub pieces: Option<String>,
}

/// Downloads single files; one per daemon, shared by every transfer so connections are reused.
#[derive(Debug, Clone)]
pub struct Fetcher {
    /// Redirects are disabled in the client and followed by hand, so each hop can be checked
    /// (scheme downgrade, loops) and credentials kept to their origin.
    client: reqwest::Client,
    /// Clients for per-job proxies, built on first use (each keeps its own connection pool).
    proxied: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, reqwest::Client>>>,
    /// For peer caches on the LAN: never through a proxy, and (with
    /// [`FetcherOptions::peer_tls`]) only over TLS to a holder of the fleet's key.
    peer_client: reqwest::Client,
    opts: FetcherOptions,
}

impl Fetcher {
    /// Builds the HTTP client (rustls, HTTP/2 by ALPN, no transparent decompression: byte
    /// offsets must be wire bytes).
    pub fn new(opts: FetcherOptions) -> Result<Fetcher, FetchSetupError> {
        let client = Self::builder(&opts).build()?;
        let mut peer = Self::builder(&opts).no_proxy();
        if let Some(tls) = opts.peer_tls.clone() {
            // Only the fleet's key is trusted, and nothing goes to a peer in plain text.
            peer = peer.tls_backend_preconfigured(tls).https_only(true);
        }
        let peer_client = peer.build()?;
        Ok(Fetcher {
            client,
            proxied: std::sync::Arc::default(),
            peer_client,
            opts,
        })
    }

    fn builder(opts: &FetcherOptions) -> reqwest::ClientBuilder {
        // The default client honours http_proxy/https_proxy/no_proxy from the environment.
        reqwest::Client::builder()
            .user_agent(opts.user_agent.clone())
            .connect_timeout(opts.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
    }

    /// The HTTP client settings every Ferry transfer uses (user agent, connect timeout, no
    /// automatic redirects), for other engines that build their own client (uploads).
    pub fn client_builder(opts: &FetcherOptions) -> reqwest::ClientBuilder {
        Self::builder(opts)
    }

    /// The client for a job: the shared one, or one that sends everything through `proxy`.
    fn client_for(&self, proxy: Option<&str>) -> Result<reqwest::Client, FetchError> {
        let Some(proxy) = proxy else {
            return Ok(self.client.clone());
        };
        let mut cache = self.proxied.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(proxy) {
            return Ok(c.clone());
        }
        let bad = |e: reqwest::Error| {
            FetchError::invalid_request(format!("the job's proxy {proxy:?} cannot be used: {e}"))
        };
        let client = Self::builder(&self.opts)
            .proxy(reqwest::Proxy::all(proxy).map_err(bad)?)
            .build()
            .map_err(bad)?;
        cache.insert(proxy.to_owned(), client.clone());
        Ok(client)
    }

    /// Fetches `req.url` into `req.temp_path`, resuming from `req.offset`.
    ///
    /// Sends [`FetchEvent`]s on `events` (a dropped receiver is fine). When `cancel` fires, the
    /// bytes written so far are synced, a final checkpoint is sent, and the result is an error
    /// with kind [`FetchErrorKind::Cancelled`]. On success the staging file is synced and verified.
    pub async fn fetch(
        &self,
        req: &FetchRequest,
        events: &UnboundedSender<FetchEvent>,
        cancel: &CancellationToken,
    ) -> Result<FetchDone, FetchError> {
        let url = reqwest::Url::parse(&req.url)
            .map_err(|e| FetchError::invalid_request(format!("invalid URL {:?}: {e}", req.url)))?;
        let protocol = match url.scheme() {
            "http" => "http",
            "https" => "https",
            "file" => "file",
            other => {
                return Err(FetchError::invalid_request(format!(
                    "unsupported URL scheme {other:?} (only http, https and file)"
                )));
            }
        };
        if let Some(ranges) = &req.ranges {
            range::check_ranges(ranges).map_err(|e| {
                FetchError::invalid_request(format!("invalid ranges: {e}")).on(protocol)
            })?;
        }
        if req.peer.is_some() && (req.ranges.is_some() || protocol == "file") {
            return Err(FetchError::invalid_request(
                "only whole http(s) files are fetched from peers",
            ));
        }
        let client = match &req.peer {
            Some(_) => self.peer_client.clone(),
            None => self
                .client_for(req.proxy.as_deref())
                .map_err(|e| e.on(protocol))?,
        };
        let hash = if req.hash {
            sink::Hashing::Pieces {
                recorded: req.pieces.clone(),
            }
        } else if req.sha256.is_some() {
            sink::Hashing::Whole
        } else {
            sink::Hashing::Off
        };
        // A staging file whose open hangs must not hold up a cancel.
        let (sink, lost) = tokio::select! {
            r = Sink::open(&req.temp_path, req.offset, req.identity, hash) => r,
            () = cancel.cancelled() => Err(FetchError::cancelled()),
        }
        .map_err(|e| e.on(protocol))?;
        let mut run = Run {
            client: &client,
            req,
            events,
            cancel,
            sink,
            total: initial_total(req),
            validator: req.validator.clone(),
            protocol,
            last_checkpoint: Instant::now(),
            last_progress: None,
        };
        if lost {
            // The committed prefix is not on disk (the file is shorter): tell the daemon.
            run.validator = None;
            // A ranged file's bounded lengths still tell its size; nothing else does.
            run.total = req.ranges.as_deref().and_then(range::output_len);
            run.restart().await.map_err(|e| e.on(protocol))?;
        }
        let result = match (protocol, req.ranges.as_deref(), &req.peer) {
            (_, None, Some(peer)) => run.fetch_peer(peer).await,
            ("file", None, _) => run.fetch_file(&url).await,
            ("file", Some(ranges), _) => run.fetch_file_ranged(&url, ranges).await,
            (_, None, _) => run.fetch_http(url).await,
            (_, Some(ranges), _) => run.fetch_http_ranged(url, ranges).await,
        };
        result.map_err(|e| e.on(run.protocol))
    }
}

/// The size known before any answer: the recorded one; for a ranged file the sum of the
/// lengths, with an open-ended range's length taken from the recorded total when it fits.
fn initial_total(req: &FetchRequest) -> Option<u64> {
    match &req.ranges {
        None => req.expected_total,
        Some(ranges) => range::output_len(ranges).or_else(|| {
            req.expected_total
                .and_then(|t| range::resolve_output(ranges, t))
                .and_then(|r| range::output_len(&r))
        }),
    }
}

/// The state of one fetch in progress.
pub(crate) struct Run<'a> {
    client: &'a reqwest::Client,
    req: &'a FetchRequest,
    events: &'a UnboundedSender<FetchEvent>,
    cancel: &'a CancellationToken,
    sink: Sink,
    /// The size the current answer declared (or the recorded one until an answer came).
    total: Option<u64>,
    /// The validator covering the bytes in the sink.
    validator: Option<Validator>,
    /// The scheme in use (changes on redirects between http and https).
    protocol: &'static str,
    last_checkpoint: Instant,
    last_progress: Option<Instant>,
}

/// A body being read: a response stream or a local file.
pub(crate) enum Source {
    /// An HTTP response body.
    Http(std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>),
    /// A `file://` source.
    File(local::FileSource),
}

impl Source {
    /// The next chunk, `None` at the end. Cancel-safe: dropping the future loses no data.
    async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, FetchError> {
        match self {
            Source::Http(stream) => match stream.next().await {
                None => Ok(None),
                Some(Ok(b)) => Ok(Some(b)),
                Some(Err(e)) => Err(http::body_error(&e)),
            },
            Source::File(f) => f.next_chunk().await,
        }
    }
}

/// One turn of the body loop.
enum Step {
    Cancel,
    Checkpoint,
    Synced,
    Stalled,
    Data(bytes::Bytes),
    Eof,
    Failed(FetchError),
}

impl Run<'_> {
    fn emit(&self, ev: FetchEvent) {
        // The daemon may have stopped listening (shutting down); the fetch itself still
        // reports its outcome through the return value.
        let _ = self.events.send(ev);
    }

    /// Syncs, then reports the durable offset.
    async fn checkpoint(&mut self, restarted: bool) -> Result<(), FetchError> {
        self.sink.sync().await?;
        self.report_durable(restarted);
        Ok(())
    }

    /// Reports the durable offset (the sink synced it).
    fn report_durable(&mut self, restarted: bool) {
        self.last_checkpoint = Instant::now();
        self.emit(FetchEvent::Checkpoint {
            offset: self.sink.durable(),
            total: self.total,
            validator: self.validator.clone(),
            restarted,
            pieces: self.sink.durable_pieces(),
        });
    }

    /// Drops every byte on disk and reports it (set `total`/`validator` first).
    async fn restart(&mut self) -> Result<(), FetchError> {
        self.sink.restart().await?;
        self.checkpoint(true).await
    }

    /// Makes what was written durable before reporting `err` (transient errors and
    /// cancellation resume from there); a failing sync replaces `err`.
    async fn salvage(&mut self, err: FetchError) -> FetchError {
        match self.checkpoint(false).await {
            Ok(()) => err,
            Err(io) => io,
        }
    }

    fn progress(&mut self, force: bool) {
        let now = Instant::now();
        if force || self.last_progress.is_none_or(|t| now - t >= PROGRESS_EVERY) {
            self.last_progress = Some(now);
            self.emit(FetchEvent::Progress {
                bytes: self.sink.position(),
                total: self.total,
            });
        }
    }

    /// The instant a stall is declared if nothing arrives after `since`.
    fn stall_deadline(&self, since: Instant) -> Instant {
        // Zero disables stall detection; a year is "never" for a transfer.
        let stall = match self.req.stall_timeout {
            Duration::ZERO => Duration::from_secs(365 * 24 * 3600),
            d => d,
        };
        since + stall
    }

    /// The error for a stall, after salvaging what was written.
    fn stalled_error(&self) -> FetchError {
        FetchError::new(
            ErrorContext::GeneralTransport,
            FetchErrorKind::Stalled,
            true,
            format!(
                "no data arrived for {:?} while fetching {} (at byte {})",
                self.req.stall_timeout,
                http::redact_url_str(&self.req.url),
                self.sink.position()
            ),
        )
    }

    fn too_slow_error(&self, rate: u64) -> FetchError {
        FetchError::new(
            ErrorContext::GeneralTransport,
            FetchErrorKind::TooSlow,
            true,
            format!(
                "{} sent {rate} bytes/s over {RATE_WINDOW:?}, slower than the {} bytes/s asked \
                 for (at byte {})",
                http::redact_url_str(&self.req.url),
                self.req.min_rate_bps.unwrap_or(0),
                self.sink.position()
            ),
        )
    }

    /// Copies `source` into the sink until its end, which must be `end` when declared.
    /// Checkpoints by bytes and time; honours cancellation and the stall timeout.
    async fn pump(&mut self, source: &mut Source, end: Option<u64>) -> Result<(), FetchError> {
        let mut last_byte = Instant::now();
        let mut floor = self
            .req
            .min_rate_bps
            .map(|min| rate::RateFloor::new(min, RATE_WINDOW, last_byte.into_std()));
        let every_bytes = self.req.checkpoint_bytes.max(1);
        self.progress(true);
        loop {
            let syncing = self.sink.syncing();
            let unsynced = !syncing && self.sink.position() > self.sink.durable();
            let checkpoint_at = self.last_checkpoint + self.req.checkpoint_interval;
            let stall_at = self.stall_deadline(last_byte);
            let step = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => Step::Cancel,
                r = self.sink.sync_finished(), if syncing => match r {
                    Ok(_) => Step::Synced,
                    Err(e) => Step::Failed(e),
                },
                _ = tokio::time::sleep_until(checkpoint_at), if unsynced => Step::Checkpoint,
                r = tokio::time::timeout_at(stall_at, source.next_chunk()) => match r {
                    Err(_) => Step::Stalled,
                    Ok(Err(e)) => Step::Failed(e),
                    Ok(Ok(None)) => Step::Eof,
                    Ok(Ok(Some(b))) => Step::Data(b),
                },
            };
            match step {
                Step::Cancel => return Err(self.salvage(FetchError::cancelled()).await),
                // The sync runs while the body keeps coming; `Synced` reports it.
                Step::Checkpoint => self.sink.start_sync().await?,
                Step::Synced => self.report_durable(false),
                Step::Stalled => {
                    let err = self.stalled_error();
                    return Err(self.salvage(err).await);
                }
                Step::Failed(e) => return Err(self.salvage(e).await),
                Step::Eof => {
                    let pos = self.sink.position();
                    if let Some(end) = end
                        && pos < end
                    {
                        let err = FetchError::new(
                            ErrorContext::GeneralTransport,
                            FetchErrorKind::ConnectionReset,
                            true,
                            format!(
                                "the body of {} ended at byte {pos}, before the declared end {end}",
                                http::redact_url_str(&self.req.url)
                            ),
                        );
                        return Err(self.salvage(err).await);
                    }
                    self.progress(true);
                    return Ok(());
                }
                Step::Data(mut chunk) => {
                    last_byte = Instant::now();
                    let pos = self.sink.position();
                    if let Some(end) = end
                        && pos + chunk.len() as u64 > end
                    {
                        // Never write past the declared end; what came before it is sound.
                        chunk.truncate(usize::try_from(end - pos).unwrap_or(0));
                        self.sink.push(chunk).await?;
                        let err = FetchError::invalid_response(format!(
                            "the body of {} is longer than the {end} bytes declared",
                            http::redact_url_str(&self.req.url)
                        ));
                        return Err(self.salvage(err).await);
                    }
                    let len = chunk.len() as u64;
                    if !chunk.is_empty() {
                        self.sink.push(chunk).await?;
                    }
                    if let Some(rate) = floor
                        .as_mut()
                        .and_then(|f| f.on_bytes(len, last_byte.into_std()))
                    {
                        let err = self.too_slow_error(rate);
                        return Err(self.salvage(err).await);
                    }
                    // Bandwidth limits: wait before reading on, so the sender slows down.
                    let wait = self.req.throttle.take(len);
                    if !wait.is_zero() {
                        if let Some(f) = floor.as_mut() {
                            f.excuse();
                        }
                        tokio::select! {
                            biased;
                            _ = self.cancel.cancelled() => {
                                return Err(self.salvage(FetchError::cancelled()).await);
                            }
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    if self.sink.position() - self.sink.durable() >= every_bytes {
                        self.sink.start_sync().await?;
                    }
                    self.progress(false);
                }
            }
        }
    }

    /// Syncs, verifies the size and SHA-256, sends the final checkpoint.
    async fn finish(&mut self) -> Result<FetchDone, FetchError> {
        self.sink.sync().await?;
        let bytes = self.sink.position();
        if let Some(total) = self.total
            && total != bytes
        {
            return Err(FetchError::invalid_response(format!(
                "{} declared {total} bytes but {bytes} arrived",
                http::redact_url_str(&self.req.url)
            )));
        }
        self.total = Some(bytes);
        let sha256 = self.sink.digest().await?;
        if let Some(want) = &self.req.sha256
            && !sha256
                .as_deref()
                .is_some_and(|got| want.trim().eq_ignore_ascii_case(got))
        {
            // Every byte was read and synced: report it, so the file shows what was read
            // (not the last periodic checkpoint) next to the mismatch.
            self.report_durable(false);
            return Err(FetchError::new(
                ErrorContext::RemoteFile,
                FetchErrorKind::Sha256Mismatch,
                false,
                format!(
                    "the content of {} has SHA-256 {}, expected {}",
                    http::redact_url_str(&self.req.url),
                    sha256.as_deref().unwrap_or("(not computed)"),
                    want.trim().to_ascii_lowercase()
                ),
            ));
        }
        self.checkpoint(false).await?;
        Ok(FetchDone {
            bytes,
            validator: self.validator.clone(),
            sha256,
            pieces: self.sink.pieces().await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validator_wire_form_is_tagged() {
        let v = Validator::ETag("\"abc\"".into());
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"{"kind":"etag","value":"\"abc\""}"#);
        assert_eq!(serde_json::from_str::<Validator>(&json).unwrap(), v);
        let lm = Validator::LastModified("Tue, 01 Jan 2030 00:00:00 GMT".into());
        let json = serde_json::to_string(&lm).unwrap();
        assert!(json.starts_with(r#"{"kind":"last_modified""#), "{json}");
        assert_eq!(serde_json::from_str::<Validator>(&json).unwrap(), lm);
        assert_eq!(lm.to_header_value(), "Tue, 01 Jan 2030 00:00:00 GMT");
    }

    #[test]
    fn debug_hides_the_password() {
        let mut req = FetchRequest::new("http://h/x", "/tmp/x");
        req.basic_auth = Some(("me".into(), "hunter2".into()));
        let text = format!("{req:?}");
        assert!(text.contains("me") && !text.contains("hunter2"), "{text}");
    }
}
