//! What can go wrong talking to the daemon.

use std::path::PathBuf;
use std::time::Duration;

/// A client-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon answered on the socket.
    #[error("cannot connect to ferryd at {socket}: {source}")]
    Connect {
        /// The socket tried.
        socket: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The socket, or the process listening on it, could belong to another user: nothing was
    /// sent (see [`crate::connect::check_socket_dir`] and [`crate::connect::check_listener`]).
    #[error(
        "refusing to talk to {socket}: {why}; nothing was sent. Remove it if it is not your ferryd's, \
         or set XDG_RUNTIME_DIR or FERRY_SOCKET to a socket of your own"
    )]
    UnsafeSocket {
        /// The socket refused.
        socket: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// No socket location could be determined.
    #[error("{0}")]
    NoSocket(String),
    /// The daemon answered with an error.
    #[error("{}", .0.message)]
    Daemon(ferry_proto::ProtoError),
    /// The connection closed mid-call.
    #[error("the connection to ferryd closed before it answered (did the daemon stop?)")]
    Disconnected,
    /// The daemon did not answer within the caller's deadline ([`crate::Client::call_timeout`]);
    /// the connection is still open and a late answer is ignored. Also a
    /// [`crate::Client::wait_for`] whose job did not get there in time (`method` is
    /// [`crate::wait::WAIT_FOR`]).
    #[error("{}", timeout_message(method, *after))]
    Timeout {
        /// The method called.
        method: String,
        /// How long the caller waited.
        after: Duration,
    },
    /// The daemon's answer did not decode.
    #[error("unexpected answer from ferryd: {0}")]
    Decode(String),
    /// Starting a daemon failed.
    #[error("{0}")]
    Autostart(String),
    /// [`crate::handler::serve`] ran in a program that ferryd did not start as a handler.
    #[error("{0}")]
    NotActivated(String),
}

/// The text of [`ClientError::Timeout`]: a wait that ran out is not a daemon that did not answer.
fn timeout_message(method: &str, after: Duration) -> String {
    if method == crate::wait::WAIT_FOR {
        format!(
            "the job did not reach the state waited for within {after:?}; it may still be \
             queued or retrying (see `ferry info JOB`), or waiting for you (a new job stays \
             suspended until resumed). Wait longer, or act on the job"
        )
    } else {
        format!(
            "ferryd did not answer {method} within {after:?}; it may be overloaded or stopped. \
             Retry later, or check that ferryd is running and see its log"
        )
    }
}

impl ClientError {
    /// The daemon's error object, if the daemon answered with one.
    pub fn daemon_error(&self) -> Option<&ferry_proto::ProtoError> {
        match self {
            ClientError::Daemon(e) => Some(e),
            _ => None,
        }
    }
}
