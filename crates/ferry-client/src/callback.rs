//! Live callbacks: the [`Callback`] trait an application implements, and the dispatch of the
//! daemon's `callback.*` requests to it.
//!
//! The daemon sends a callback as a request on the connection that is the job's notify target
//! (`job.set_notify_interface`, or `handler.attach` for a handler). This module decodes the
//! request, picks the [`Callback`] registered for the job (else the connection's default
//! callback, which a handler uses to serve every job), runs it, and answers `{}` on success or a
//! [`CallbackError`] (code [`CallbackError::CODE`]) on failure, after which the daemon retries
//! later with the same `delivery_id`.
//!
//! Callbacks run concurrently with the connection: the reader keeps routing the answers to the
//! client's own calls while a callback runs, so a callback may call the daemon on the same
//! connection (typically `job.complete` from [`Callback::job_transferred`]).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use ferry_proto::error::decode_params;
use ferry_proto::{ErrorCode, ErrorInfo, File, FileRange, Job, ProtoError, method};
use ferry_rpc::{Handled, Peer, Service};
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::{Client, ClientError, Inner};

/// What every callback method returns: `Ok(())` acknowledges the notification; an error makes
/// the daemon try again later (BITS: a failure HRESULT).
pub type CallbackFuture = BoxFuture<'static, Result<(), CallbackError>>;

/// The notifications of a job, as BITS `IBackgroundCopyCallback3` has them.
///
/// Every method has a default that acknowledges the notification, so an implementation overrides
/// only what it wants. The returned future is `'static`: clone from `self` what it needs (keep
/// shared state in an `Arc`). The [`CallbackContext`] carries a [`Client`] on the same
/// connection for calls back to the daemon. Keep callbacks short: at most 4 are outstanding per
/// user, and one not answered within 60 s counts as failed.
pub trait Callback: Send + Sync + 'static {
    /// `callback.job_transferred`: every file arrived; usually answered by `job.complete`.
    fn job_transferred(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
        let _ = (ctx, job);
        acknowledge()
    }

    /// `callback.job_error`: the job reached `error` (never for transient errors).
    fn job_error(&self, ctx: CallbackContext, job: Job, error: ErrorInfo) -> CallbackFuture {
        let _ = (ctx, job, error);
        acknowledge()
    }

    /// `callback.job_modification`: something about the job changed (coalesced, not retried).
    fn job_modification(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
        let _ = (ctx, job);
        acknowledge()
    }

    /// `callback.file_transferred`: one file finished; per job one at a time, in index order.
    fn file_transferred(&self, ctx: CallbackContext, job: Job, file: File) -> CallbackFuture {
        let _ = (ctx, job, file);
        acknowledge()
    }

    /// `callback.file_ranges_transferred`: ranges of a ranged file arrived (coalesced).
    fn file_ranges_transferred(
        &self,
        ctx: CallbackContext,
        job: Job,
        file: File,
        ranges: Vec<FileRange>,
    ) -> CallbackFuture {
        let _ = (ctx, job, file, ranges);
        acknowledge()
    }
}

/// A future that acknowledges at once (what the default methods return).
pub fn acknowledge() -> CallbackFuture {
    Box::pin(std::future::ready(Ok(())))
}

/// What a callback gets besides its typed params.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallbackContext {
    /// The same on every retry of one notification, so handling can be made idempotent.
    pub delivery_id: String,
    /// The connection the callback arrived on, for calls back to the daemon.
    pub client: Client,
}

/// A callback's failure: sent back as a JSON-RPC error, so the daemon retries the notification
/// later (after the job's `minimum_retry_delay_s`) with the same `delivery_id`, or falls
/// through to the job's next target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallbackError {
    /// A sentence saying what failed; it shows up in the daemon's `notification` event.
    pub message: String,
}

impl CallbackError {
    /// The JSON-RPC error code of a failed callback (`data.kind`: `callback_failed`). It lies in
    /// the implementation-defined range but outside the codes the daemon itself answers with.
    pub const CODE: i64 = -32010;

    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> CallbackError {
        CallbackError {
            message: message.into(),
        }
    }

    /// The error object sent to the daemon.
    pub fn to_proto(&self) -> ProtoError {
        ProtoError::new(ErrorCode(Self::CODE), self.message.clone()).with("kind", "callback_failed")
    }
}

impl From<ClientError> for CallbackError {
    fn from(e: ClientError) -> CallbackError {
        CallbackError::new(e.to_string())
    }
}

impl From<std::io::Error> for CallbackError {
    fn from(e: std::io::Error) -> CallbackError {
        CallbackError::new(e.to_string())
    }
}

impl From<String> for CallbackError {
    fn from(message: String) -> CallbackError {
        CallbackError::new(message)
    }
}

impl From<&str> for CallbackError {
    fn from(message: &str) -> CallbackError {
        CallbackError::new(message)
    }
}

/// How many callbacks run, and how many have started so far (a handler's idle clock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Activity {
    /// Callbacks started and not yet answered.
    pub in_flight: usize,
    /// Callbacks started since the connection opened.
    pub started: u64,
}

/// The callbacks of one connection: per job, and the default for every other job.
pub(crate) struct Registry {
    jobs: Mutex<HashMap<String, Arc<dyn Callback>>>,
    default: Mutex<Option<Arc<dyn Callback>>>,
    activity: watch::Sender<Activity>,
}

/// A poisoned lock still holds a valid map: no callback runs while it is held.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry {
            jobs: Mutex::new(HashMap::new()),
            default: Mutex::new(None),
            activity: watch::channel(Activity::default()).0,
        }
    }

    /// Registers `callback` for `job_id`; returns the one it replaces.
    pub fn set_job(&self, job_id: &str, callback: Arc<dyn Callback>) -> Option<Arc<dyn Callback>> {
        // Ids are UUIDs, which the daemon sends in lowercase; a caller may have typed capitals.
        lock(&self.jobs).insert(job_id.to_ascii_lowercase(), callback)
    }

    /// Forgets the callback of `job_id`.
    pub fn clear_job(&self, job_id: &str) -> Option<Arc<dyn Callback>> {
        lock(&self.jobs).remove(&job_id.to_ascii_lowercase())
    }

    /// Sets (or clears) the callback for jobs without their own.
    pub fn set_default(&self, callback: Option<Arc<dyn Callback>>) -> Option<Arc<dyn Callback>> {
        std::mem::replace(&mut *lock(&self.default), callback)
    }

    /// The callback that serves `job_id`.
    fn find(&self, job_id: &str) -> Option<Arc<dyn Callback>> {
        if let Some(cb) = lock(&self.jobs).get(&job_id.to_ascii_lowercase()) {
            return Some(cb.clone());
        }
        lock(&self.default).clone()
    }

    /// Watches [`Activity`].
    pub fn activity(&self) -> watch::Receiver<Activity> {
        self.activity.subscribe()
    }

    /// Counts a callback as running until the guard drops.
    fn start(self: &Arc<Self>) -> InFlight {
        self.activity.send_modify(|a| {
            a.in_flight += 1;
            a.started += 1;
        });
        InFlight(self.clone())
    }
}

/// A running callback; dropping it (even when the callback panicked) ends the count.
struct InFlight(Arc<Registry>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .activity
            .send_modify(|a| a.in_flight = a.in_flight.saturating_sub(1));
    }
}

/// Params of `callback.job_transferred` and `callback.job_modification`. Unknown fields are
/// ignored (as in results), so a newer daemon adding one does not make every delivery fail.
#[derive(Deserialize)]
struct JobParams {
    delivery_id: String,
    job: Job,
}

/// Params of `callback.job_error`; `error` falls back to the job's own copy.
#[derive(Deserialize)]
struct ErrorParams {
    delivery_id: String,
    job: Job,
    #[serde(default)]
    error: Option<ErrorInfo>,
}

/// Params of `callback.file_transferred`.
#[derive(Deserialize)]
struct FileParams {
    delivery_id: String,
    job: Job,
    file: File,
}

/// Params of `callback.file_ranges_transferred`; null `ranges` is read as none.
#[derive(Deserialize)]
struct RangesParams {
    delivery_id: String,
    job: Job,
    file: File,
    #[serde(default)]
    ranges: Option<Vec<FileRange>>,
}

/// One decoded callback request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Delivery {
    /// `callback.job_transferred`
    JobTransferred(Job),
    /// `callback.job_error`
    JobError(Job, ErrorInfo),
    /// `callback.job_modification`
    JobModification(Job),
    /// `callback.file_transferred`
    FileTransferred(Job, File),
    /// `callback.file_ranges_transferred`
    FileRangesTransferred(Job, File, Vec<FileRange>),
}

impl Delivery {
    /// The job the callback is about.
    fn job(&self) -> &Job {
        match self {
            Delivery::JobTransferred(j)
            | Delivery::JobError(j, _)
            | Delivery::JobModification(j)
            | Delivery::FileTransferred(j, _)
            | Delivery::FileRangesTransferred(j, _, _) => j,
        }
    }

    /// Calls the matching method of `cb`.
    fn invoke(self, cb: &dyn Callback, ctx: CallbackContext) -> CallbackFuture {
        match self {
            Delivery::JobTransferred(j) => cb.job_transferred(ctx, j),
            Delivery::JobError(j, e) => cb.job_error(ctx, j, e),
            Delivery::JobModification(j) => cb.job_modification(ctx, j),
            Delivery::FileTransferred(j, f) => cb.file_transferred(ctx, j, f),
            Delivery::FileRangesTransferred(j, f, r) => cb.file_ranges_transferred(ctx, j, f, r),
        }
    }
}

/// Decodes a `callback.*` request: `Ok(None)` for a method that is not a callback, `-32602`
/// (with `data.field`) for malformed params.
pub(crate) fn decode(
    method: &str,
    params: Option<Value>,
) -> Result<Option<(String, Delivery)>, ProtoError> {
    let (delivery_id, delivery) = match method {
        method::CALLBACK_JOB_TRANSFERRED => {
            let p: JobParams = decode_params(params)?;
            (p.delivery_id, Delivery::JobTransferred(p.job))
        }
        method::CALLBACK_JOB_MODIFICATION => {
            let p: JobParams = decode_params(params)?;
            (p.delivery_id, Delivery::JobModification(p.job))
        }
        method::CALLBACK_JOB_ERROR => {
            let p: ErrorParams = decode_params(params)?;
            let error = p.error.or_else(|| p.job.error.clone()).ok_or_else(|| {
                ProtoError::invalid_params("error", "invalid params: `error`: missing")
            })?;
            (p.delivery_id, Delivery::JobError(p.job, error))
        }
        method::CALLBACK_FILE_TRANSFERRED => {
            let p: FileParams = decode_params(params)?;
            (p.delivery_id, Delivery::FileTransferred(p.job, p.file))
        }
        method::CALLBACK_FILE_RANGES_TRANSFERRED => {
            let p: RangesParams = decode_params(params)?;
            let ranges = p.ranges.unwrap_or_default();
            (
                p.delivery_id,
                Delivery::FileRangesTransferred(p.job, p.file, ranges),
            )
        }
        _ => return Ok(None),
    };
    if delivery_id.is_empty() {
        return Err(ProtoError::invalid_params(
            "delivery_id",
            "invalid params: `delivery_id`: empty",
        ));
    }
    if delivery.job().job_id.is_empty() {
        return Err(ProtoError::invalid_params(
            "job.job_id",
            "invalid params: `job.job_id`: empty",
        ));
    }
    Ok(Some((delivery_id, delivery)))
}

/// The service of a client connection: followed events and callbacks.
pub(crate) struct Inbound {
    /// Where `events.event` notifications go.
    pub events: mpsc::UnboundedSender<ferry_proto::Event>,
    /// The connection's callbacks.
    pub registry: Arc<Registry>,
    /// The client, to hand to callbacks; weak so that dropping the last `Client` closes the
    /// connection.
    pub client: Weak<Inner>,
}

impl Inbound {
    /// Decides what to do with a request without waiting on anything: the callback itself runs
    /// deferred, so the next request (and the reader) never wait for it.
    fn dispatch(&self, method: &str, params: Option<Value>) -> Handled {
        let (delivery_id, delivery) = match decode(method, params) {
            Ok(Some(d)) => d,
            Ok(None) => {
                return Handled::Reply(Err(ProtoError::new(
                    ErrorCode::METHOD_NOT_FOUND,
                    format!("this client does not serve {method}"),
                )));
            }
            Err(e) => return Handled::Reply(Err(e)),
        };
        let job_id = delivery.job().job_id.clone();
        let Some(callback) = self.registry.find(&job_id) else {
            return Handled::Reply(Err(CallbackError::new(format!(
                "this connection has no callback for job {job_id}"
            ))
            .to_proto()));
        };
        let Some(inner) = self.client.upgrade() else {
            return Handled::Reply(Err(
                CallbackError::new("the client is shutting down").to_proto()
            ));
        };
        let ctx = CallbackContext {
            delivery_id,
            client: Client { inner },
        };
        let method = method.to_owned();
        let guard = self.registry.start();
        // A panic must not kill ferry-rpc's request worker (the connection would stop serving)
        // nor leave the daemon waiting 60 s for an answer: both become a failed callback.
        let fut = std::panic::catch_unwind(AssertUnwindSafe(|| delivery.invoke(&*callback, ctx)));
        Handled::Deferred(Box::pin(async move {
            let _guard = guard;
            let result = match fut {
                Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
                Err(p) => Err(p),
            };
            match result {
                Ok(Ok(())) => Ok(json!({})),
                Ok(Err(e)) => Err(e.to_proto()),
                Err(_) => Err(CallbackError::new(format!(
                    "the {method} callback for job {job_id} panicked"
                ))
                .to_proto()),
            }
        }))
    }
}

impl Service for Inbound {
    fn request(
        &self,
        _: Arc<Peer>,
        method: String,
        params: Option<Value>,
    ) -> BoxFuture<'static, Handled> {
        let handled = self.dispatch(&method, params);
        Box::pin(std::future::ready(handled))
    }

    fn notification(&self, _: Arc<Peer>, method: String, params: Option<Value>) {
        if method == method::EVENTS_EVENT
            && let Some(n) = params.and_then(|p| {
                serde_json::from_value::<ferry_proto::params::EventNotification>(p).ok()
            })
        {
            let _ = self.events.send(n.event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job object as the daemon sends it, with `error` set when given.
    fn job_json(id: &str, error: Value) -> Value {
        json!({"job_id": id, "display_name": "d", "description": "", "type": "download",
            "owner_uid": 1000, "priority": "normal", "state": "transferred",
            "progress": {"bytes_total": 10, "bytes_transferred": 10, "files_total": 1,
                "files_transferred": 1},
            "times": {"created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z",
                "transfer_completed": null},
            "error": error, "error_count": 0, "waiting": null, "notify_flags": 3,
            "notify_interface": true, "notify_handler": null, "notify_cmdline": null,
            "minimum_retry_delay_s": 600, "no_progress_timeout_s": 1209600,
            "max_download_time_s": 7776000, "minimum_notification_interval_ms": 500,
            "custom_headers": [], "bandwidth_limit_bps": null, "max_parallel_files": 8,
            "credentials_set": false, "proxy": null, "allow_https_to_http": false,
            "peer_caching": true, "a_field_from_the_future": 1})
    }

    fn file_json() -> Value {
        json!({"file_index": 0, "remote_url": "https://h/a", "local_path": "/tmp/a",
            "bytes_total": 10, "bytes_transferred": 10, "transferred": true, "completed": false,
            "ranges": [{"offset": 0, "length": 5}], "sha256": null, "validation": "unset",
            "from_peer": false, "bytes_from_peers": 0, "temporary_path": "/tmp/.ferry-a.part"})
    }

    fn error_json() -> Value {
        json!({"context": "remote_file", "code": "HTTP_404", "http_status": 404,
            "transient": false, "description": "404", "file_index": 0, "protocol": "https"})
    }

    #[test]
    fn every_callback_decodes() {
        let job = job_json("j", Value::Null);
        let (id, d) = decode(
            method::CALLBACK_JOB_TRANSFERRED,
            Some(json!({"delivery_id": "d1", "job": job})),
        )
        .unwrap()
        .unwrap();
        assert_eq!(id, "d1");
        assert!(matches!(d, Delivery::JobTransferred(j) if j.job_id == "j"));
        let (_, d) = decode(
            method::CALLBACK_JOB_MODIFICATION,
            Some(json!({"delivery_id": "d", "job": job})),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(d, Delivery::JobModification(_)));
        let (_, d) = decode(
            method::CALLBACK_JOB_ERROR,
            Some(json!({"delivery_id": "d", "job": job, "error": error_json()})),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(d, Delivery::JobError(_, e) if e.code == "HTTP_404"));
        let (_, d) = decode(
            method::CALLBACK_FILE_TRANSFERRED,
            Some(json!({"delivery_id": "d", "job": job, "file": file_json()})),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(d, Delivery::FileTransferred(_, f) if f.file_index == 0));
        let (_, d) = decode(
            method::CALLBACK_FILE_RANGES_TRANSFERRED,
            Some(json!({"delivery_id": "d", "job": job, "file": file_json(),
                "ranges": [{"offset": 0, "length": 5}]})),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(d, Delivery::FileRangesTransferred(_, _, r) if r.len() == 1));
    }

    #[test]
    fn other_methods_are_not_callbacks() {
        assert_eq!(decode("job.get", None).unwrap(), None);
        assert_eq!(decode("callback.nonsense", Some(json!({}))).unwrap(), None);
    }

    #[test]
    fn malformed_params_name_the_field() {
        let field = |m: &str, p: Value| {
            let e = decode(m, Some(p)).unwrap_err();
            assert_eq!(e.code, -32602, "{e:?}");
            e.data.unwrap()["field"].as_str().unwrap().to_owned()
        };
        let job = job_json("j", Value::Null);
        assert_eq!(
            field(method::CALLBACK_JOB_TRANSFERRED, json!({"job": job})),
            "delivery_id"
        );
        assert_eq!(
            field(
                method::CALLBACK_JOB_TRANSFERRED,
                json!({"delivery_id": ""  , "job": job})
            ),
            "delivery_id"
        );
        assert_eq!(
            field(
                method::CALLBACK_JOB_TRANSFERRED,
                json!({"delivery_id": "d", "job": {"job_id": "j"}})
            )
            .split('.')
            .next()
            .unwrap(),
            "job"
        );
        assert_eq!(
            field(
                method::CALLBACK_FILE_TRANSFERRED,
                json!({"delivery_id": "d", "job": job})
            ),
            "file"
        );
        assert_eq!(
            field(
                method::CALLBACK_JOB_ERROR,
                json!({"delivery_id": "d", "job": job, "error": null})
            ),
            "error"
        );
        let e = decode(method::CALLBACK_JOB_ERROR, Some(json!([1]))).unwrap_err();
        assert_eq!(e.code, -32602);
        let e = decode(method::CALLBACK_JOB_ERROR, None).unwrap_err();
        assert_eq!(e.code, -32602);
    }

    #[test]
    fn job_error_falls_back_to_the_jobs_error() {
        let job = job_json("j", error_json());
        let (_, d) = decode(
            method::CALLBACK_JOB_ERROR,
            Some(json!({"delivery_id": "d", "job": job})),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(d, Delivery::JobError(_, e) if e.http_status == Some(404)));
    }

    #[test]
    fn null_ranges_read_as_none() {
        let (_, d) = decode(
            method::CALLBACK_FILE_RANGES_TRANSFERRED,
            Some(
                json!({"delivery_id": "d", "job": job_json("j", Value::Null),
                "file": file_json(), "ranges": null}),
            ),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(d, Delivery::FileRangesTransferred(_, _, r) if r.is_empty()));
    }

    #[test]
    fn callback_errors_carry_the_documented_code() {
        let e = CallbackError::from("disk full").to_proto();
        assert_eq!(e.code, CallbackError::CODE);
        assert_eq!(e.message, "disk full");
        assert_eq!(e.data_kind(), Some("callback_failed"));
    }
}
