//! Every method of protocol 1 and its extensions, each bound to its params and result types.
//!
//! A [`Method`] is a type per method: the daemon decodes a
//! request's params and encodes its result through it, and the Rust client calls it with
//! `Client::call::<M>(params)`, so a method's name, params and result are written once, here.
//! The name constants stay for code that names a method without calling it (logs, matches).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{
    CacheDeleteParams, CacheDeleteResult, CacheInfo as CacheInfoResult, CacheListParams,
    CacheListResult, PeersListResult,
};
use crate::job::{ErrorInfo, File, Job};
use crate::params::{
    Ack, AddFilesParams, AddFilesResult, CompleteResult, CreateParams, CreateResult, Empty,
    EventsFollowParams, EventsReadParams, EventsReadResult, FilesParams, FilesResult,
    HandlerAttachParams, HandlerAttachResult, HandlerListResult, HandlerNameParams,
    HandlerRegisterParams, HelloParams, HelloResult, JobIdParams, ListParams, ListResult,
    SetParams, SetRemoteUrlParams, StateResult, ValidationParams,
};
use crate::policy::ConditionsResult;

/// One client → daemon method: its wire name, what it takes and what it answers.
pub trait Method {
    /// The method's name on the wire.
    const NAME: &'static str;
    /// Its params (strict: unknown fields are refused).
    type Params: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Its result (tolerant: fields added within protocol 1 are ignored by old clients).
    type Result: Serialize + DeserializeOwned + Send + Sync + 'static;
}

/// Declares one uninhabited type per method and its [`Method`] impl, named by its constant.
macro_rules! methods {
    ($($(#[$doc:meta])* $ty:ident = $konst:ident: $params:ty => $result:ty;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub enum $ty {}

        impl Method for $ty {
            const NAME: &'static str = $konst;
            type Params = $params;
            type Result = $result;
        }
    )*};
}

// The names, as constants (also read by the Python client's tests).
/// `ferry.hello`
pub const HELLO: &str = "ferry.hello";
/// `job.create`
pub const JOB_CREATE: &str = "job.create";
/// `job.add_files`
pub const JOB_ADD_FILES: &str = "job.add_files";
/// `job.get`
pub const JOB_GET: &str = "job.get";
/// `job.files`
pub const JOB_FILES: &str = "job.files";
/// `job.get_error`
pub const JOB_GET_ERROR: &str = "job.get_error";
/// `job.list`
pub const JOB_LIST: &str = "job.list";
/// `job.resume`
pub const JOB_RESUME: &str = "job.resume";
/// `job.suspend`
pub const JOB_SUSPEND: &str = "job.suspend";
/// `job.cancel`
pub const JOB_CANCEL: &str = "job.cancel";
/// `job.complete`
pub const JOB_COMPLETE: &str = "job.complete";
/// `job.set`
pub const JOB_SET: &str = "job.set";
/// `job.set_notify_interface`
pub const JOB_SET_NOTIFY_INTERFACE: &str = "job.set_notify_interface";
/// `job.clear_notify_interface`
pub const JOB_CLEAR_NOTIFY_INTERFACE: &str = "job.clear_notify_interface";
/// `job.take_ownership`
pub const JOB_TAKE_OWNERSHIP: &str = "job.take_ownership";
/// `file.set_validation_state`
pub const FILE_SET_VALIDATION_STATE: &str = "file.set_validation_state";
/// `file.set_remote_url`
pub const FILE_SET_REMOTE_URL: &str = "file.set_remote_url";
/// `handler.register`
pub const HANDLER_REGISTER: &str = "handler.register";
/// `handler.unregister`
pub const HANDLER_UNREGISTER: &str = "handler.unregister";
/// `handler.list`
pub const HANDLER_LIST: &str = "handler.list";
/// `handler.attach`
pub const HANDLER_ATTACH: &str = "handler.attach";
/// `events.read`
pub const EVENTS_READ: &str = "events.read";
/// `events.follow`
pub const EVENTS_FOLLOW: &str = "events.follow";
/// `events.unfollow`
pub const EVENTS_UNFOLLOW: &str = "events.unfollow";
/// `cache.list`
pub const CACHE_LIST: &str = "cache.list";
/// `cache.info`
pub const CACHE_INFO: &str = "cache.info";
/// `cache.delete`
pub const CACHE_DELETE: &str = "cache.delete";
/// `cache.clear`
pub const CACHE_CLEAR: &str = "cache.clear";
/// `peers.list`
pub const PEERS_LIST: &str = "peers.list";
/// `daemon.conditions`
pub const DAEMON_CONDITIONS: &str = "daemon.conditions";

methods! {
    /// `ferry.hello`: the protocol version and who the daemon is.
    Hello = HELLO: HelloParams => HelloResult;
    /// `job.create`: a new suspended job, optionally with files.
    JobCreate = JOB_CREATE: CreateParams => CreateResult;
    /// `job.add_files`: appends files to a job.
    JobAddFiles = JOB_ADD_FILES: AddFilesParams => AddFilesResult;
    /// `job.get`: one job.
    JobGet = JOB_GET: JobIdParams => Job;
    /// `job.files`: a job's files, paged.
    JobFiles = JOB_FILES: FilesParams => FilesResult;
    /// `job.get_error`: the current error of a job in `error`/`transient_error`, else null.
    JobGetError = JOB_GET_ERROR: JobIdParams => Option<ErrorInfo>;
    /// `job.list`: the caller's jobs (or everyone's, for root), paged.
    JobList = JOB_LIST: ListParams => ListResult;
    /// `job.resume`
    JobResume = JOB_RESUME: JobIdParams => StateResult;
    /// `job.suspend`
    JobSuspend = JOB_SUSPEND: JobIdParams => StateResult;
    /// `job.cancel`
    JobCancel = JOB_CANCEL: JobIdParams => StateResult;
    /// `job.complete`: hands the transferred files over.
    JobComplete = JOB_COMPLETE: JobIdParams => CompleteResult;
    /// `job.set`: changes job settings; answers the job.
    JobSet = JOB_SET: SetParams => Job;
    /// `job.set_notify_interface`: this connection receives the job's callbacks.
    JobSetNotifyInterface = JOB_SET_NOTIFY_INTERFACE: JobIdParams => Ack;
    /// `job.clear_notify_interface`
    JobClearNotifyInterface = JOB_CLEAR_NOTIFY_INTERFACE: JobIdParams => Ack;
    /// `job.take_ownership`: root takes a job over.
    JobTakeOwnership = JOB_TAKE_OWNERSHIP: JobIdParams => Job;
    /// `file.set_validation_state`: the application's verdict on a file; answers the file.
    FileSetValidationState = FILE_SET_VALIDATION_STATE: ValidationParams => File;
    /// `file.set_remote_url`: replaces a file's URL; answers the file.
    FileSetRemoteUrl = FILE_SET_REMOTE_URL: SetRemoteUrlParams => File;
    /// `handler.register`
    HandlerRegister = HANDLER_REGISTER: HandlerRegisterParams => Ack;
    /// `handler.unregister`
    HandlerUnregister = HANDLER_UNREGISTER: HandlerNameParams => Ack;
    /// `handler.list`
    HandlerList = HANDLER_LIST: Empty => HandlerListResult;
    /// `handler.attach`: this connection serves a handler's jobs.
    HandlerAttach = HANDLER_ATTACH: HandlerAttachParams => HandlerAttachResult;
    /// `events.read`: a page of the event log.
    EventsRead = EVENTS_READ: EventsReadParams => EventsReadResult;
    /// `events.follow`: events are pushed to this connection as `events.event`.
    EventsFollow = EVENTS_FOLLOW: EventsFollowParams => Ack;
    /// `events.unfollow`
    EventsUnfollow = EVENTS_UNFOLLOW: Empty => Ack;
    /// `cache.list`: the peer cache's entries.
    CacheList = CACHE_LIST: CacheListParams => CacheListResult;
    /// `cache.info`: the peer cache's configuration and size.
    CacheInfo = CACHE_INFO: Empty => CacheInfoResult;
    /// `cache.delete`: removes cache entries.
    CacheDelete = CACHE_DELETE: CacheDeleteParams => CacheDeleteResult;
    /// `cache.clear`: empties the peer cache.
    CacheClear = CACHE_CLEAR: Empty => CacheDeleteResult;
    /// `peers.list`: the peers this host knows.
    PeersList = PEERS_LIST: Empty => PeersListResult;
    /// `daemon.conditions`: the network and power state the daemon sees.
    DaemonConditions = DAEMON_CONDITIONS: Empty => ConditionsResult;
}

/// Daemon → client notification carrying one followed event.
pub const EVENTS_EVENT: &str = "events.event";

/// Daemon → client callback: a file finished.
pub const CALLBACK_FILE_TRANSFERRED: &str = "callback.file_transferred";
/// Daemon → client callback: the job reached `transferred`.
pub const CALLBACK_JOB_TRANSFERRED: &str = "callback.job_transferred";
/// Daemon → client callback: the job reached `error`.
pub const CALLBACK_JOB_ERROR: &str = "callback.job_error";
/// Daemon → client callback: the job changed.
pub const CALLBACK_JOB_MODIFICATION: &str = "callback.job_modification";
/// Daemon → client callback: ranges of a ranged file arrived.
pub const CALLBACK_FILE_RANGES_TRANSFERRED: &str = "callback.file_ranges_transferred";

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the wire names of protocol 1, unchanged, and each names one method.
    #[test]
    fn method_names_are_the_wire_names_and_distinct() {
        let names = [
            Hello::NAME,
            JobCreate::NAME,
            JobAddFiles::NAME,
            JobGet::NAME,
            JobFiles::NAME,
            JobGetError::NAME,
            JobList::NAME,
            JobResume::NAME,
            JobSuspend::NAME,
            JobCancel::NAME,
            JobComplete::NAME,
            JobSet::NAME,
            JobSetNotifyInterface::NAME,
            JobClearNotifyInterface::NAME,
            JobTakeOwnership::NAME,
            FileSetValidationState::NAME,
            FileSetRemoteUrl::NAME,
            HandlerRegister::NAME,
            HandlerUnregister::NAME,
            HandlerList::NAME,
            HandlerAttach::NAME,
            EventsRead::NAME,
            EventsFollow::NAME,
            EventsUnfollow::NAME,
            CacheList::NAME,
            CacheInfo::NAME,
            CacheDelete::NAME,
            CacheClear::NAME,
            PeersList::NAME,
            DaemonConditions::NAME,
        ];
        let mut sorted = names.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert_eq!(JobSetNotifyInterface::NAME, "job.set_notify_interface");
        assert_eq!(JOB_CREATE, "job.create");
        assert_eq!(DAEMON_CONDITIONS, "daemon.conditions");
    }
}
