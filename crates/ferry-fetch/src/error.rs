//! The errors a fetch can end with, already classified the way the job store needs them
//! (context, stable code, transient or fatal), plus the setup error of [`crate::Fetcher::new`].
//!
//! Not here: deciding *when* to retry (that is `ferry_core::retry` and the daemon's scheduler);
//! a `FetchError` only says whether retrying can help.

use std::io;
use std::path::Path;
use std::time::Duration;

use ferry_proto::{ErrorContext, ErrorInfo};

/// Stable `code` strings a [`FetchError`] can carry (see `docs/protocol.md`'s error code
/// table; the ones marked *new* are Ferry additions to BITS's codes).
pub mod codes {
    /// Could not connect (refused, unreachable, connect timeout): transient.
    pub const CONNECT_FAILED: &str = "CONNECT_FAILED";
    /// Name resolution failed: transient.
    pub const DNS_FAILED: &str = "DNS_FAILED";
    /// TLS handshake failed; fatal when the certificate was rejected, transient otherwise.
    pub const TLS_FAILED: &str = "TLS_FAILED";
    /// The connection broke, or the body ended before its declared length: transient.
    pub const CONNECTION_RESET: &str = "CONNECTION_RESET";
    /// *New*: no body byte arrived for the request's `stall_timeout`: transient.
    pub const STALLED: &str = "STALLED";
    /// The source delivered less than the request's `min_rate_bps` over a window: transient.
    pub const TOO_SLOW: &str = "TOO_SLOW";
    /// *New*: the answer's head is not HTTP the client can parse (larger than its limit, a bad
    /// status line or header): transient, `general_transport` (a malformed server response is
    /// retried after the retry delay).
    pub const MALFORMED_RESPONSE: &str = "MALFORMED_RESPONSE";
    /// Wrong `Content-Range`, body longer than declared, 206 to a request without a range.
    pub const INVALID_SERVER_RESPONSE: &str = "INVALID_SERVER_RESPONSE";
    /// A ranged file was asked of a server that answers ranged requests with the whole file
    /// (BITS `BG_E_INSUFFICIENT_RANGE_SUPPORT`): fatal, `remote_file`.
    pub const RANGE_UNSUPPORTED: &str = "RANGE_UNSUPPORTED";
    /// *New*: a range of a ranged file starts at or reaches past the end of the remote file
    /// (BITS `BG_E_INVALID_RANGE`): fatal, `remote_file`.
    pub const INVALID_RANGE: &str = "INVALID_RANGE";
    /// The content does not match the expected SHA-256: fatal.
    pub const SHA256_MISMATCH: &str = "SHA256_MISMATCH";
    /// A redirect loop, too many redirects, https→http, or a redirect to a non-http scheme.
    pub const REDIRECT_REFUSED: &str = "REDIRECT_REFUSED";
    /// The local file system refused (the staging file, or reading a `file://` source).
    pub const LOCAL_IO: &str = "LOCAL_IO";
    /// Permission denied reading a `file://` source (context `remote_file`).
    pub const ACCESS_DENIED: &str = "ACCESS_DENIED";
    /// *New*: a `file://` source does not exist or is not a regular file: fatal, `remote_file`.
    pub const FILE_NOT_FOUND: &str = "FILE_NOT_FOUND";
    /// *New*: the request itself is unusable (bad URL, unsupported scheme, bad custom header).
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    /// *New*: the fetch was cancelled through its token (never stored as a job error).
    pub const CANCELLED: &str = "CANCELLED";
}

/// Why a fetch failed, classified for the job store and for retry decisions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct FetchError {
    /// Where the error happened (BITS error context).
    pub context: ErrorContext,
    /// A stable code from [`codes`] or `HTTP_<status>`.
    pub code: String,
    /// The HTTP status, when the server answered one.
    pub http_status: Option<u16>,
    /// Whether retrying later can help.
    pub transient: bool,
    /// A sentence for humans naming what failed (never contains credentials).
    pub description: String,
    /// `http`, `https` or `file`: the scheme in use when it failed.
    pub protocol: Option<String>,
    /// How long the server asked us to wait (`Retry-After` of a 429 or 503).
    pub retry_after: Option<Duration>,
    /// True when the fetch stopped because its cancellation token fired.
    pub cancelled: bool,
}

impl FetchError {
    /// A new error with no status, protocol or retry hint.
    pub(crate) fn new(
        context: ErrorContext,
        code: &str,
        transient: bool,
        description: impl Into<String>,
    ) -> FetchError {
        FetchError {
            context,
            code: code.to_owned(),
            http_status: None,
            transient,
            description: description.into(),
            protocol: None,
            retry_after: None,
            cancelled: false,
        }
    }

    /// Sets the protocol unless one is already set.
    pub(crate) fn on(mut self, protocol: &str) -> FetchError {
        if self.protocol.is_none() {
            self.protocol = Some(protocol.to_owned());
        }
        self
    }

    /// A fatal `INVALID_SERVER_RESPONSE`.
    pub(crate) fn invalid_response(description: impl Into<String>) -> FetchError {
        FetchError::new(
            ErrorContext::RemoteFile,
            codes::INVALID_SERVER_RESPONSE,
            false,
            description,
        )
    }

    /// A fatal `RANGE_UNSUPPORTED` (context `remote_file`).
    pub(crate) fn range_unsupported(description: impl Into<String>) -> FetchError {
        FetchError::new(
            ErrorContext::RemoteFile,
            codes::RANGE_UNSUPPORTED,
            false,
            description,
        )
    }

    /// A fatal `INVALID_RANGE` (context `remote_file`).
    pub(crate) fn invalid_range(description: impl Into<String>) -> FetchError {
        FetchError::new(
            ErrorContext::RemoteFile,
            codes::INVALID_RANGE,
            false,
            description,
        )
    }

    /// A fatal `INVALID_REQUEST`.
    pub(crate) fn invalid_request(description: impl Into<String>) -> FetchError {
        FetchError::new(
            ErrorContext::RemoteFile,
            codes::INVALID_REQUEST,
            false,
            description,
        )
    }

    /// A fatal `LOCAL_IO` on the staging file, naming the path, the action and the OS error.
    pub(crate) fn local_io(path: &Path, action: &str, err: &io::Error) -> FetchError {
        FetchError::new(
            ErrorContext::LocalFile,
            codes::LOCAL_IO,
            false,
            format!("could not {action} {}: {err}", path.display()),
        )
    }

    /// The error a cancelled fetch returns.
    pub(crate) fn cancelled() -> FetchError {
        FetchError {
            cancelled: true,
            ..FetchError::new(
                ErrorContext::None,
                codes::CANCELLED,
                false,
                "the transfer was cancelled",
            )
        }
    }

    /// The wire form for `job.get_error` and callbacks.
    pub fn to_error_info(&self, file_index: Option<u64>) -> ErrorInfo {
        ErrorInfo {
            context: self.context,
            code: self.code.clone(),
            http_status: self.http_status,
            transient: self.transient,
            description: self.description.clone(),
            file_index,
            protocol: self.protocol.clone(),
        }
    }
}

/// [`crate::Fetcher::new`] could not build its HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("could not set up the HTTP client: {0}")]
pub struct FetchSetupError(#[from] pub reqwest::Error);
