//! Ferry's wire contract, shared by the daemon and every Rust client.
//!
//! One definition of every method name, parameter set, result, event and error code of protocol 1
//! (`docs/protocol.md`). It is plain data with serde: no I/O, no
//! async runtime, no daemon logic. Parameters are strict (`deny_unknown_fields`); results are
//! tolerant, so new result fields never break an old client.

pub mod cache;
pub mod error;
pub mod event;
pub mod job;
pub mod method;
pub mod notify;
pub mod params;
pub mod policy;
pub mod settings;

pub use error::{ErrorCode, ErrorKind, ProtoError};
pub use event::{Event, EventKind};
pub use job::{
    ErrorContext, ErrorInfo, File, FileRange, FileSpec, Job, JobState, JobTimes, JobType, Priority,
    Progress, Validation, Waiting,
};
pub use notify::NotifyFlags;
pub use policy::{CostPolicy, PowerPolicy};
pub use settings::{Header, JobSettings, SettingsChange, SettingsError};

/// The protocol version this crate speaks (`ferry.hello` answers it).
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line either side accepts, in bytes, newline excluded.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
