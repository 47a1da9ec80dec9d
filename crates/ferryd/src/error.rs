//! Why the daemon could not start or had to stop, with documented exit codes.

use std::path::PathBuf;

/// Exit code for a general failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad configuration (paths, flags).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code when another daemon already owns the state directory or socket.
pub const EXIT_ALREADY_RUNNING: u8 = 3;
/// Exit code when the job store cannot be used.
pub const EXIT_STORE: u8 = 4;
/// Exit code when one of the daemon's own tasks (scheduler, notifier, sweeper) died while it
/// ran: an internal error (sysexits' `EX_SOFTWARE`); the service manager should restart it.
pub const EXIT_TASK_DIED: u8 = 70;

/// A daemon failure.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Flags or environment do not make sense.
    #[error("{0}")]
    Config(String),
    /// A file-system action failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What the daemon was doing.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon is running.
    #[error("{0}")]
    AlreadyRunning(String),
    /// The store is unusable.
    #[error(transparent)]
    Store(#[from] ferry_store::StoreError),
    /// A task the daemon cannot run without ended while it ran.
    #[error("the {task} task died ({why}); ferryd stops so that its service manager restarts it")]
    TaskDied {
        /// The task that ended (scheduler, notifier, sweeper, conditions).
        task: &'static str,
        /// How it ended.
        why: String,
    },
    /// The transfer engine could not be set up.
    #[error("cannot set up the transfer engine: {0}")]
    Fetch(#[from] ferry_fetch::FetchSetupError),
}

impl DaemonError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) => EXIT_CONFIG,
            DaemonError::AlreadyRunning(_) => EXIT_ALREADY_RUNNING,
            DaemonError::Store(_) => EXIT_STORE,
            DaemonError::TaskDied { .. } => EXIT_TASK_DIED,
            DaemonError::Io { .. } | DaemonError::Fetch(_) => EXIT_FAILURE,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> DaemonError {
        let path = path.into();
        move |source| DaemonError::Io {
            action,
            path,
            source,
        }
    }
}
