//! Parameters and results of every client → daemon method.
//!
//! Params deny unknown fields (the daemon answers `-32602` naming the field); results accept
//! unknown fields so that fields added within protocol 1 do not break old clients.

use serde::{Deserialize, Deserializer, Serialize};

use crate::event::Event;
use crate::job::{File, FileSpec, Job, JobState, JobType, Priority};

/// `ferry.hello` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloParams {
    /// Free-form client name for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// `ferry.hello` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloResult {
    /// Protocol version (1).
    pub protocol: u32,
    /// Server name and version.
    pub server: String,
    /// The caller's uid as the kernel reported it.
    pub uid: u32,
    /// `user` or `system`.
    pub mode: String,
    /// The daemon's process id (absent from daemons older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Seconds since the daemon started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    /// The socket the daemon listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// The daemon's state directory (its store, lock and log file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// Where the daemon writes its log: a file path, or `stderr` (a terminal or the journal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// `job.create` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    /// Human name (≤ 256 characters).
    pub display_name: String,
    /// Job type, default download.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub job_type: Option<JobType>,
    /// Priority, default normal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Free text (≤ 1024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Files to add at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileSpec>>,
    /// Which network costs the job may use (default: by priority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_policy: Option<crate::CostPolicy>,
    /// Whether the job waits for mains power (default: the daemon's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_policy: Option<crate::PowerPolicy>,
}

/// `{job_id}` result of `job.create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateResult {
    /// The new job's id.
    pub job_id: String,
}

/// `job.add_files` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddFilesParams {
    /// The job.
    pub job_id: String,
    /// Files to append.
    pub files: Vec<FileSpec>,
}

/// `job.add_files` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddFilesResult {
    /// Index of the first file added.
    pub first_index: u64,
    /// How many were added.
    pub count: u64,
}

/// `{job_id}` params shared by many methods.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobIdParams {
    /// The job.
    pub job_id: String,
}

/// `job.files` params (`from`/`limit` page through a large job; without them, every file).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesParams {
    /// The job.
    pub job_id: String,
    /// First file index to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Most files to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// `job.files` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilesResult {
    /// Files in index order.
    pub files: Vec<File>,
    /// The `from` of the next page, when `limit` cut the answer short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// `job.list` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Every user's jobs (root only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_users: Option<bool>,
    /// Only jobs in these states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<JobState>>,
    /// Include acknowledged and cancelled jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_final: Option<bool>,
    /// Continue after this job id (pagination cursor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// `job.list` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResult {
    /// One page of jobs.
    pub jobs: Vec<Job>,
    /// Cursor for the next page, or `None` at the end.
    pub next: Option<String>,
}

/// `{state}` result of resume/suspend/cancel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateResult {
    /// The job's state after the call.
    pub state: JobState,
}

/// `job.complete` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteResult {
    /// The job's state after the call.
    pub state: JobState,
    /// Whether some files were not transferred and were dropped.
    pub partial: bool,
}

/// HTTP credentials for `job.set` (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Only `basic` is supported.
    pub scheme: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log line.
        f.debug_struct("Credentials")
            .field("scheme", &self.scheme)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Distinguishes "absent" (`None`) from "null" (`Some(None)`) in `job.set`.
fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// `job.set` params; for nullable properties `Some(None)` clears them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetParams {
    /// The job.
    pub job_id: String,
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// New notify flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_flags: Option<u32>,
    /// New notify command line, or null to clear.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub notify_cmdline: Option<Option<Vec<String>>>,
    /// New handler name, or null to clear.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub notify_handler: Option<Option<String>>,
    /// New retry delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_retry_delay_s: Option<u64>,
    /// New no-progress timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_progress_timeout_s: Option<u64>,
    /// New max download time, or null for the default.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_download_time_s: Option<Option<u64>>,
    /// New coalescing interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_notification_interval_ms: Option<u64>,
    /// New custom headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_headers: Option<Vec<String>>,
    /// New bandwidth limit, or null for none.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub bandwidth_limit_bps: Option<Option<u64>>,
    /// New file parallelism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_files: Option<u32>,
    /// New credentials, or null to remove.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub credentials: Option<Option<Credentials>>,
    /// New proxy URL, or null for the environment's.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub proxy: Option<Option<String>>,
    /// Allow https → http redirects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_https_to_http: Option<bool>,
    /// Allow the peer cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_caching: Option<bool>,
    /// Complete the job as soon as it is transferred (see [`crate::Job::auto_complete`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_complete: Option<bool>,
    /// New network cost policy, or null for the default of the job's priority.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub cost_policy: Option<Option<crate::CostPolicy>>,
    /// New power policy, or null for the daemon's default.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub power_policy: Option<Option<crate::PowerPolicy>>,
}

/// `file.set_validation_state` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationParams {
    /// The job.
    pub job_id: String,
    /// The file.
    pub file_index: u64,
    /// The application's verdict.
    pub valid: bool,
}

/// `file.set_remote_url` params (BITS `SetRemoteName`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRemoteUrlParams {
    /// The job.
    pub job_id: String,
    /// The file, not transferred yet.
    pub file_index: u64,
    /// Its new URL (http, https or file, as in `job.add_files`).
    pub remote_url: String,
}

/// `handler.register` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerRegisterParams {
    /// Handler name, per uid.
    pub name: String,
    /// Program and arguments; `argv[0]` absolute.
    pub argv: Vec<String>,
    /// Seconds the program has to attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_timeout_s: Option<u64>,
}

/// `{name}` params of `handler.unregister`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerNameParams {
    /// Handler name.
    pub name: String,
}

/// A registered handler (`handler.list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerInfo {
    /// Handler name.
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Seconds the program has to attach.
    pub activation_timeout_s: u64,
}

/// `handler.list` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandlerListResult {
    /// The caller's handlers.
    pub handlers: Vec<HandlerInfo>,
}

/// `handler.attach` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerAttachParams {
    /// Handler name.
    pub name: String,
    /// One-time activation token from `FERRY_ACTIVATION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `handler.attach` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandlerAttachResult {
    /// Jobs this connection now serves.
    pub jobs: Vec<String>,
}

/// `events.read` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsReadParams {
    /// Return events after this sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Only this job's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Page size (default 1000, clamped to 10 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// `events.read` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsReadResult {
    /// Events in `seq` order.
    pub events: Vec<Event>,
    /// Pass as the next `after`.
    pub next: u64,
}

/// `events.follow` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsFollowParams {
    /// Replay events after this sequence number first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Only this job's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// `events.event` notification params.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventNotification {
    /// The event.
    pub event: Event,
}

/// `{}` params or result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// The `{}` result of a method that answers nothing but success; unlike [`Empty`] it accepts
/// fields a later daemon may add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::decode_params;
    use serde_json::json;

    #[test]
    fn set_distinguishes_null_from_absent() {
        let p: SetParams =
            decode_params(Some(json!({"job_id": "x", "notify_cmdline": null}))).unwrap();
        assert_eq!(p.notify_cmdline, Some(None));
        assert_eq!(p.proxy, None);
        let p: SetParams =
            decode_params(Some(json!({"job_id": "x", "proxy": "http://p:1"}))).unwrap();
        assert_eq!(p.proxy, Some(Some("http://p:1".into())));
    }

    #[test]
    fn credentials_debug_hides_password() {
        let c = Credentials {
            scheme: "basic".into(),
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
