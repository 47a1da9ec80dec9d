//! The rows the store keeps. Each is serialized as one JSON document next to the few columns
//! queries need, so a field added by a later feature needs no schema migration (`#[serde(default)]`).

use ferry_proto::{ErrorInfo, EventKind, FileRange, JobSettings, JobState, JobType, Validation};
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
    /// Job type.
    pub job_type: JobType,
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
    /// What the owner set, flattened into the row's document; credentials included (they
    /// never leave the daemon, but must survive a restart), in the `(user, password)` form rows
    /// have always had.
    #[serde(flatten, with = "stored_settings")]
    pub settings: JobSettings,
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
            job_type: JobType::Download,
            state: JobState::Suspended,
            created: String::new(),
            modified: String::new(),
            transfer_completed: None,
            error: None,
            error_count: 0,
            settings: JobSettings::default(),
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

/// The store's form of [`JobSettings`]: the wire form plus the credentials, which the wire
/// form never carries.
mod stored_settings {
    use ferry_proto::JobSettings;
    use ferry_proto::params::Credentials;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        settings: &'a JobSettings,
        credentials: Option<(&'a str, &'a str)>,
    }

    #[derive(Deserialize)]
    struct In {
        #[serde(flatten)]
        settings: JobSettings,
        #[serde(default)]
        credentials: Option<(String, String)>,
    }

    pub fn serialize<S: Serializer>(s: &JobSettings, ser: S) -> Result<S::Ok, S::Error> {
        Out {
            settings: s,
            credentials: s
                .credentials
                .as_ref()
                .map(|c| (c.user.as_str(), c.password.as_str())),
        }
        .serialize(ser)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<JobSettings, D::Error> {
        let In {
            mut settings,
            credentials,
        } = In::deserialize(de)?;
        settings.credentials = credentials.map(|(user, password)| Credentials {
            scheme: "basic".into(),
            user,
            password,
        });
        Ok(settings)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A job row as stores wrote it before the settings had their own type: every setting at
    /// the top level, credentials as `[user, password]`.
    fn old_row() -> serde_json::Value {
        json!({
            "seq": 3, "id": "j", "owner_uid": 1000, "display_name": "nightly",
            "description": "d", "job_type": "download", "priority": "high",
            "state": "suspended", "created": "c", "modified": "m",
            "transfer_completed": null, "error": null, "error_count": 0,
            "notify_flags": 3, "notify_handler": "h", "notify_cmdline": ["/bin/true"],
            "minimum_retry_delay_s": 60, "no_progress_timeout_s": 120,
            "max_download_time_s": 3600, "minimum_notification_interval_ms": 250,
            "custom_headers": ["X-Token: abc"], "bandwidth_limit_bps": 1000,
            "max_parallel_files": 2, "credentials": ["u", "p"],
            "proxy": "http://proxy:3128", "allow_https_to_http": true,
            "peer_caching": false, "auto_complete": true, "cost_policy": null,
            "power_policy": null, "bytes_total": 0, "bytes_transferred": 0,
            "files_total": 0, "size_known_bytes": 0, "size_unknown_files": 0,
            "files_transferred": 0, "active_ms": 0, "retry_at": null,
            "no_progress_since": null, "final_at": null
        })
    }

    #[test]
    fn rows_written_before_job_settings_load_and_are_written_back_the_same() {
        let row: JobRow = serde_json::from_value(old_row()).unwrap();
        let s = &row.settings;
        assert_eq!(s.display_name, "nightly");
        assert_eq!(s.priority, ferry_proto::Priority::High);
        assert_eq!(s.custom_headers[0].name, "X-Token");
        assert_eq!(s.custom_headers[0].value, "abc");
        let cr = s.credentials.as_ref().unwrap();
        assert_eq!(
            (cr.scheme.as_str(), cr.user.as_str(), cr.password.as_str()),
            ("basic", "u", "p")
        );
        assert!(!s.peer_caching && s.allow_https_to_http && s.auto_complete);
        assert_eq!(serde_json::to_value(&row).unwrap(), old_row());
    }

    #[test]
    fn a_row_missing_settings_gets_the_defaults() {
        let row: JobRow = serde_json::from_value(json!({"seq": 1, "id": "j"})).unwrap();
        assert_eq!(row.settings, JobSettings::default());
        assert_eq!(row.state, JobState::Suspended);
    }
}
