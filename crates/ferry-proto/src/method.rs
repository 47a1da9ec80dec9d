//! Method names of protocol 1, in both directions.

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
/// `daemon.conditions`: the network and power state the daemon sees.
pub const DAEMON_CONDITIONS: &str = "daemon.conditions";

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
