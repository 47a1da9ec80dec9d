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

/// Declares one uninhabited type per method, its [`Method`] impl and its name constant.
macro_rules! methods {
    ($($(#[$doc:meta])* $ty:ident, $konst:ident = $name:literal: $params:ty => $result:ty;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub enum $ty {}

        impl Method for $ty {
            const NAME: &'static str = $name;
            type Params = $params;
            type Result = $result;
        }

        #[doc = concat!("`", $name, "`")]
        pub const $konst: &str = $name;
    )*};
}

methods! {
    /// `ferry.hello`: the protocol version and who the daemon is.
    Hello, HELLO = "ferry.hello": HelloParams => HelloResult;
    /// `job.create`: a new suspended job, optionally with files.
    JobCreate, JOB_CREATE = "job.create": CreateParams => CreateResult;
    /// `job.add_files`: appends files to a job.
    JobAddFiles, JOB_ADD_FILES = "job.add_files": AddFilesParams => AddFilesResult;
    /// `job.get`: one job.
    JobGet, JOB_GET = "job.get": JobIdParams => Job;
    /// `job.files`: a job's files, paged.
    JobFiles, JOB_FILES = "job.files": FilesParams => FilesResult;
    /// `job.get_error`: the current error of a job in `error`/`transient_error`, else null.
    JobGetError, JOB_GET_ERROR = "job.get_error": JobIdParams => Option<ErrorInfo>;
    /// `job.list`: the caller's jobs (or everyone's, for root), paged.
    JobList, JOB_LIST = "job.list": ListParams => ListResult;
    /// `job.resume`
    JobResume, JOB_RESUME = "job.resume": JobIdParams => StateResult;
    /// `job.suspend`
    JobSuspend, JOB_SUSPEND = "job.suspend": JobIdParams => StateResult;
    /// `job.cancel`
    JobCancel, JOB_CANCEL = "job.cancel": JobIdParams => StateResult;
    /// `job.complete`: hands the transferred files over.
    JobComplete, JOB_COMPLETE = "job.complete": JobIdParams => CompleteResult;
    /// `job.set`: changes job settings; answers the job.
    JobSet, JOB_SET = "job.set": SetParams => Job;
    /// `job.set_notify_interface`: this connection receives the job's callbacks.
    JobSetNotifyInterface, JOB_SET_NOTIFY_INTERFACE = "job.set_notify_interface": JobIdParams => Ack;
    /// `job.clear_notify_interface`
    JobClearNotifyInterface, JOB_CLEAR_NOTIFY_INTERFACE = "job.clear_notify_interface": JobIdParams => Ack;
    /// `job.take_ownership`: root takes a job over.
    JobTakeOwnership, JOB_TAKE_OWNERSHIP = "job.take_ownership": JobIdParams => Job;
    /// `file.set_validation_state`: the application's verdict on a file; answers the file.
    FileSetValidationState, FILE_SET_VALIDATION_STATE = "file.set_validation_state": ValidationParams => File;
    /// `file.set_remote_url`: replaces a file's URL; answers the file.
    FileSetRemoteUrl, FILE_SET_REMOTE_URL = "file.set_remote_url": SetRemoteUrlParams => File;
    /// `handler.register`
    HandlerRegister, HANDLER_REGISTER = "handler.register": HandlerRegisterParams => Ack;
    /// `handler.unregister`
    HandlerUnregister, HANDLER_UNREGISTER = "handler.unregister": HandlerNameParams => Ack;
    /// `handler.list`
    HandlerList, HANDLER_LIST = "handler.list": Empty => HandlerListResult;
    /// `handler.attach`: this connection serves a handler's jobs.
    HandlerAttach, HANDLER_ATTACH = "handler.attach": HandlerAttachParams => HandlerAttachResult;
    /// `events.read`: a page of the event log.
    EventsRead, EVENTS_READ = "events.read": EventsReadParams => EventsReadResult;
    /// `events.follow`: events are pushed to this connection as `events.event`.
    EventsFollow, EVENTS_FOLLOW = "events.follow": EventsFollowParams => Ack;
    /// `events.unfollow`
    EventsUnfollow, EVENTS_UNFOLLOW = "events.unfollow": Empty => Ack;
    /// `cache.list`: the peer cache's entries.
    CacheList, CACHE_LIST = "cache.list": CacheListParams => CacheListResult;
    /// `cache.info`: the peer cache's configuration and size.
    CacheInfo, CACHE_INFO = "cache.info": Empty => CacheInfoResult;
    /// `cache.delete`: removes cache entries.
    CacheDelete, CACHE_DELETE = "cache.delete": CacheDeleteParams => CacheDeleteResult;
    /// `cache.clear`: empties the peer cache.
    CacheClear, CACHE_CLEAR = "cache.clear": Empty => CacheDeleteResult;
    /// `peers.list`: the peers this host knows.
    PeersList, PEERS_LIST = "peers.list": Empty => PeersListResult;
    /// `daemon.conditions`: the network and power state the daemon sees.
    DaemonConditions, DAEMON_CONDITIONS = "daemon.conditions": Empty => ConditionsResult;
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
