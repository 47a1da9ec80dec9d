//! The rows the store keeps. Each is serialized as one JSON document next to the few columns
//! queries need, so a field added by a later feature needs no schema migration (`#[serde(default)]`).

use ferry_proto::{ErrorInfo, EventKind, FileRange, JobState, JobType, Priority, Validation};
use serde::{Deserialize, Serialize};

/// Everything the daemon persists about a job (except its files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobRow {
    /// Insertion order; the pagination key of `job.list`.
    pub seq: u64,
    /// UUID.
    pub id: String,
    /// Owner's uid.
    pub owner_uid: u32,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
    /// Job type.
    pub job_type: JobType,
    /// Priority.
    pub priority: Priority,
    /// State.
    pub state: JobState,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 last modification.
    pub modified: String,
    /// RFC 3339 time of reaching `transferred`.
    pub transfer_completed: Option<String>,
    /// Current error info.
    pub error: Option<ErrorInfo>,
    /// Errors so far (never reset).
    pub error_count: u64,
    /// BITS notify flags.
    pub notify_flags: u32,
    /// Handler name.
    pub notify_handler: Option<String>,
    /// Command line argv.
    pub notify_cmdline: Option<Vec<String>>,
    /// Retry delay (s).
    pub minimum_retry_delay_s: u64,
    /// No-progress timeout (s).
    pub no_progress_timeout_s: u64,
    /// Max active transfer time (s).
    pub max_download_time_s: u64,
    /// Coalescing interval (ms).
    pub minimum_notification_interval_ms: u64,
    /// Extra headers.
    pub custom_headers: Vec<String>,
    /// Per-job bandwidth limit.
    pub bandwidth_limit_bps: Option<u64>,
    /// Parallel files.
    pub max_parallel_files: u32,
    /// Basic credentials as `(user, password)`; never leaves the daemon.
    pub credentials: Option<(String, String)>,
    /// Proxy URL.
    pub proxy: Option<String>,
    /// Allow https → http redirects.
    pub allow_https_to_http: bool,
    /// Peer cache allowed.
    pub peer_caching: bool,
    /// The daemon completes the job once it is transferred.
    pub auto_complete: bool,
    /// Network cost policy as set (`None`: the default for the priority).
    pub cost_policy: Option<ferry_proto::CostPolicy>,
    /// Power policy as set (`None`: the daemon's default).
    pub power_policy: Option<ferry_proto::PowerPolicy>,
    /// Upload jobs: the protocol setting.
    #[serde(default)]
    pub upload_protocol: ferry_proto::UploadProtocol,
    /// Sum of file sizes, `None` while any is unknown.
    pub bytes_total: Option<u64>,
    /// Durable bytes transferred.
    pub bytes_transferred: u64,
    /// Number of files.
    pub files_total: u64,
    /// Sum of the sizes known so far.
    pub size_known_bytes: u64,
    /// Files whose size is not known yet (while > 0, `bytes_total` is unknown).
    pub size_unknown_files: u64,
    /// Files fully transferred.
    pub files_transferred: u64,
    /// Milliseconds spent connecting/transferring since the last resume (max download time).
    pub active_ms: u64,
    /// Wall-clock time of the next retry, in `transient_error` (RFC 3339).
    pub retry_at: Option<String>,
    /// Start of the current no-progress window, wall clock (RFC 3339).
    pub no_progress_since: Option<String>,
    /// When the job reached a final state (history retention).
    pub final_at: Option<String>,
}

impl JobRow {
    /// Recomputes `bytes_total` from the size counters.
    pub fn refresh_total(&mut self) {
        self.bytes_total = (self.size_unknown_files == 0).then_some(self.size_known_bytes);
    }
}

impl Default for JobRow {
    fn default() -> Self {
        JobRow {
            seq: 0,
            id: String::new(),
            owner_uid: 0,
            display_name: String::new(),
            description: String::new(),
            job_type: JobType::Download,
            priority: Priority::Normal,
            state: JobState::Suspended,
            created: String::new(),
            modified: String::new(),
            transfer_completed: None,
            error: None,
            error_count: 0,
            notify_flags: ferry_proto::NotifyFlags::DEFAULT,
            notify_handler: None,
            notify_cmdline: None,
            minimum_retry_delay_s: 600,
            no_progress_timeout_s: 1_209_600,
            max_download_time_s: 7_776_000,
            minimum_notification_interval_ms: 500,
            custom_headers: Vec::new(),
            bandwidth_limit_bps: None,
            max_parallel_files: 8,
            credentials: None,
            proxy: None,
            allow_https_to_http: false,
            peer_caching: true,
            auto_complete: false,
            cost_policy: None,
            power_policy: None,
            upload_protocol: ferry_proto::UploadProtocol::Auto,
            bytes_total: Some(0),
            bytes_transferred: 0,
            files_total: 0,
            size_known_bytes: 0,
            size_unknown_files: 0,
            files_transferred: 0,
            active_ms: 0,
            retry_at: None,
            no_progress_since: None,
            final_at: None,
        }
    }
}

/// Everything the daemon persists about one file of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct FileRow {
    /// 0-based index.
    pub file_index: u64,
    /// Source URL.
    pub remote_url: String,
    /// Destination path.
    pub local_path: String,
    /// Expected SHA-256 (lowercase hex).
    pub sha256: Option<String>,
    /// Requested ranges.
    pub ranges: Option<Vec<FileRange>>,
    /// Size, when known.
    pub bytes_total: Option<u64>,
    /// Durable bytes in the temp file.
    pub bytes_transferred: u64,
    /// Every byte arrived and verified.
    pub transferred: bool,
    /// Handed over by complete.
    pub completed: bool,
    /// Application verdict.
    pub validation: Validation,
    /// Any byte from a peer.
    pub from_peer: bool,
    /// Bytes from peers.
    pub bytes_from_peers: u64,
    /// Bytes from the origin server.
    pub bytes_from_origin: u64,
    /// The SHA-256 a peer advertised for the bytes it sent (checked before the file counts as
    /// transferred, even when the origin sent the rest).
    pub peer_sha256: Option<String>,
    /// The peer (`address:port`) the peer bytes came from.
    pub peer: Option<String>,
    /// Peers are not asked for this file any more (its peer content was rejected).
    pub origin_only: bool,
    /// The staging file, once created.
    pub temp_path: Option<String>,
    /// The origin's validator for the bytes in the temp file (JSON of `ferry_fetch::Validator`).
    pub validator: Option<serde_json::Value>,
    /// SHA-256 of the transferred content, once transferred.
    pub content_sha256: Option<String>,
    /// Piece hashes (`ferry_peer::pieces`, concatenated hex) of bytes `0..bytes_transferred`
    /// as the daemon received them; of the whole content once transferred. `None`: some bytes'
    /// origin was never recorded (e.g. resumed from a store older than piece hashes), and the
    /// file is never published to peers.
    pub pieces: Option<String>,
    /// Upload jobs: the source file as it was when the job was made (JSON of
    /// `ferry_send::SourceIdentity`); the upload fails if it changes.
    pub upload_source: Option<serde_json::Value>,
    /// Upload jobs: the server-side upload (JSON of `ferry_send::ServerState`: the BITS
    /// session or tus upload URL and the offset the server acknowledged), from before its
    /// first byte is sent until the server has put the file in place or the upload was
    /// abandoned.
    pub upload_session: Option<serde_json::Value>,
    /// Upload jobs: the protocol in use once known (`auto`'s probe recorded, so it runs once).
    pub upload_protocol: Option<ferry_proto::UploadProtocol>,
}

/// One event-log entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Sequence number.
    pub seq: u64,
    /// RFC 3339 time.
    pub time: String,
    /// Job concerned.
    pub job_id: String,
    /// Owner of the job at the time (who may read it).
    pub owner_uid: u32,
    /// What happened.
    pub kind: EventKind,
}

impl EventRow {
    /// The wire form.
    pub fn to_event(&self) -> ferry_proto::Event {
        ferry_proto::Event {
            seq: self.seq,
            time: self.time.clone(),
            job_id: self.job_id.clone(),
            kind: self.kind.clone(),
        }
    }
}

/// A registered notification handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerRow {
    /// Owner uid.
    pub uid: u32,
    /// Name, unique per uid.
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Seconds to attach.
    pub activation_timeout_s: u64,
}

/// A notification the daemon owes (the durable outbox, ordered per job by `id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct OutboxRow {
    /// Order of creation (daemon-wide).
    pub id: u64,
    /// The job.
    pub job_id: String,
    /// `job_transferred`, `job_error`, `file_transferred`, `file_ranges_transferred`.
    pub kind: String,
    /// The file, for file-level notifications.
    pub file_index: Option<u64>,
    /// Stable across retries, so a client can make its handling idempotent.
    pub delivery_id: String,
    /// Delivery attempts so far.
    pub attempts: u64,
    /// RFC 3339 creation time.
    pub created: String,
}

/// A validated file held by the peer cache (its bytes live in the cache directory as `<key>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CacheRow {
    /// Content key (URL + origin validator + size).
    pub key: String,
    /// The URL it was downloaded from.
    pub url: String,
    /// The origin's validator, readable (`etag "…"`, `last-modified …`).
    pub validator: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content (lowercase hex).
    pub sha256: String,
    /// Piece hashes of the content, served to peers so they check every piece (`None`:
    /// published before piece hashes were recorded; such an entry is dropped at start).
    pub pieces: Option<String>,
    /// Whose job published it.
    pub owner_uid: u32,
    /// The job it came from.
    pub job_id: String,
    /// The file's index in that job.
    pub file_index: u64,
    /// Publication time, unix milliseconds.
    pub published: u64,
    /// Last publication or use, unix milliseconds.
    pub last_access: u64,
    /// Times served to peers.
    pub times_served: u64,
}
