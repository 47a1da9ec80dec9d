//! Jobs, files and their enumerations as they appear on the wire.

use serde::{Deserialize, Serialize};

/// A job's state (BITS `BG_JOB_STATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Runnable, waiting for the scheduler or a retry.
    Queued,
    /// Connecting to the server.
    Connecting,
    /// Moving bytes.
    Transferring,
    /// Parked until the owner resumes it; every new job starts here.
    Suspended,
    /// A fatal error; needs the owner to resume, complete or cancel.
    Error,
    /// A recoverable error; retried after the retry delay.
    TransientError,
    /// Every file transferred; waiting for `job.complete`.
    Transferred,
    /// Completed by the owner (final).
    Acknowledged,
    /// Cancelled (final).
    Cancelled,
}

impl JobState {
    /// Every state, in BITS numeric order.
    pub const ALL: [JobState; 9] = [
        JobState::Queued,
        JobState::Connecting,
        JobState::Transferring,
        JobState::Suspended,
        JobState::Error,
        JobState::TransientError,
        JobState::Transferred,
        JobState::Acknowledged,
        JobState::Cancelled,
    ];

    /// True for `acknowledged` and `cancelled`: nothing can change the job any more.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Acknowledged | JobState::Cancelled)
    }

    /// True for the states in which the daemon owes the job work (queued, connecting, transferring).
    pub fn is_action(self) -> bool {
        matches!(
            self,
            JobState::Queued | JobState::Connecting | JobState::Transferring
        )
    }

    /// The wire name (`transient_error`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Connecting => "connecting",
            JobState::Transferring => "transferring",
            JobState::Suspended => "suspended",
            JobState::Error => "error",
            JobState::TransientError => "transient_error",
            JobState::Transferred => "transferred",
            JobState::Acknowledged => "acknowledged",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's priority (BITS `BG_JOB_PRIORITY`); `Ord` puts foreground first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Starts at once, never throttled by the background limits.
    Foreground,
    /// Background, before normal.
    High,
    /// Background, the default.
    #[default]
    Normal,
    /// Background, last.
    Low,
}

impl Priority {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Foreground => "foreground",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Priority> {
        [
            Priority::Foreground,
            Priority::High,
            Priority::Normal,
            Priority::Low,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// A job's type (BITS `BG_JOB_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// Server to client.
    #[default]
    Download,
    /// Client to server (one file).
    Upload,
    /// Upload followed by a reply download (one file).
    UploadReply,
}

impl JobType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Download => "download",
            JobType::Upload => "upload",
            JobType::UploadReply => "upload_reply",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<JobType> {
        [JobType::Download, JobType::Upload, JobType::UploadReply]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// Where an error happened (BITS `BG_ERROR_CONTEXT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorContext {
    /// No error.
    None,
    /// Unknown origin.
    Unknown,
    /// The daemon's own queue logic (e.g. max download time).
    GeneralQueueManager,
    /// Notifying the client failed.
    QueueManagerNotification,
    /// The local file system.
    LocalFile,
    /// The remote file or server answer.
    RemoteFile,
    /// The network transport.
    GeneralTransport,
    /// The upload server's application.
    RemoteApplication,
}

/// One byte range of a ranged file (`length: null` means to the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRange {
    /// Offset in the remote file.
    pub offset: u64,
    /// Length in bytes, or `None` for "to the end of the remote file".
    #[serde(default)]
    pub length: Option<u64>,
}

/// A file to add to a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// `http`, `https` or `file` URL.
    pub remote_url: String,
    /// Absolute local path the file is delivered to on complete.
    pub local_path: String,
    /// Expected SHA-256 of the content, lowercase or uppercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Ranges to fetch and concatenate (BITS `AddFileWithRanges`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<FileRange>>,
}

/// A file's validation state (BITS `SetValidationState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// The application said nothing yet.
    #[default]
    Unset,
    /// The application accepted the content.
    Valid,
    /// The application rejected the content.
    Invalid,
}

impl Validation {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Validation::Unset => "unset",
            Validation::Valid => "valid",
            Validation::Invalid => "invalid",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Validation> {
        [Validation::Unset, Validation::Valid, Validation::Invalid]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Byte and file counts of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Progress {
    /// Sum of the files' sizes; `None` while any size is unknown.
    pub bytes_total: Option<u64>,
    /// Bytes transferred so far.
    pub bytes_transferred: u64,
    /// Number of files in the job.
    pub files_total: u64,
    /// Number of files fully transferred.
    pub files_transferred: u64,
}

/// A job's timestamps (RFC 3339 UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JobTimes {
    /// When the job was created.
    pub created: String,
    /// When anything about the job last changed.
    pub modified: String,
    /// When the job reached `transferred`, if it has.
    pub transfer_completed: Option<String>,
}

/// Why a queued or transient-error job is not moving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// `retry_delay`, `slots_busy`, `host_backoff`, `retry_after`, …
    pub reason: String,
    /// When the wait ends, if known (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// How many jobs are ahead of this one, for `slots_busy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ahead: Option<u64>,
}

/// Error info of a job in `error` or `transient_error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Where the error happened.
    pub context: ErrorContext,
    /// A stable code such as `HTTP_404` or `CONNECT_FAILED`.
    pub code: String,
    /// The HTTP status, when the server answered one.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Whether the daemon retries it by itself.
    pub transient: bool,
    /// A sentence for humans naming what failed.
    pub description: String,
    /// The file concerned, if any.
    #[serde(default)]
    pub file_index: Option<u64>,
    /// `http`, `https` or `file`, when the error came from a transfer.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// A job as returned by `job.get`, `job.list` and every callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's UUID.
    pub job_id: String,
    /// Download, upload or upload-reply.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The uid that owns the job.
    pub owner_uid: u32,
    /// Current state.
    pub state: JobState,
    /// Byte and file counts.
    pub progress: Progress,
    /// Timestamps.
    pub times: JobTimes,
    /// The current error, in `error` / `transient_error`.
    pub error: Option<ErrorInfo>,
    /// How many times the job went to an error state (never reset).
    pub error_count: u64,
    /// Why the job is not moving, when queued or in transient error.
    pub waiting: Option<Waiting>,
    /// Whether a live callback connection is registered.
    pub notify_interface: bool,
    /// Whether credentials were set (they are never returned).
    pub credentials_set: bool,
    /// What the owner set (display name, priority, notify settings, headers, …), flattened:
    /// each is a field of the job on the wire.
    #[serde(flatten)]
    pub settings: crate::JobSettings,
}

/// A file as returned by `job.files` and file callbacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// 0-based index in the order files were added.
    pub file_index: u64,
    /// Source URL.
    pub remote_url: String,
    /// Destination path.
    pub local_path: String,
    /// Size, when known.
    pub bytes_total: Option<u64>,
    /// Bytes durably transferred.
    pub bytes_transferred: u64,
    /// Whether every byte arrived (and verified).
    pub transferred: bool,
    /// Whether `job.complete` handed the file over.
    pub completed: bool,
    /// The requested ranges, for ranged files.
    pub ranges: Option<Vec<FileRange>>,
    /// Expected SHA-256, when given.
    pub sha256: Option<String>,
    /// The application's verdict.
    pub validation: Validation,
    /// Whether any byte came from a peer.
    pub from_peer: bool,
    /// Bytes that came from peers.
    pub bytes_from_peers: u64,
    /// Bytes that came from the origin server (an addition to protocol 1; old daemons omit it).
    #[serde(default)]
    pub bytes_from_origin: u64,
    /// Where the bytes are staged before complete.
    pub temporary_path: Option<String>,
}
