//! The errors a fetch can end with, already classified the way the job store needs them
//! (context, stable code, transient or fatal), plus the setup error of [`crate::Fetcher::new`].
//!
//! Not here: deciding *when* to retry (that is `ferry_core::retry` and the daemon's scheduler);
//! a `FetchError` only says whether retrying can help.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use ferry_proto::{ErrorContext, ErrorInfo};

/// What kind of failure a [`FetchError`] is; its wire `code` is [`FetchErrorKind::as_str`]
/// (`docs/protocol.md`'s error code table; the ones marked *new* are Ferry additions to BITS's
/// codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchErrorKind {
    /// Could not connect (refused, unreachable, connect timeout): transient.
    ConnectFailed,
    /// Name resolution failed: transient.
    DnsFailed,
    /// TLS handshake failed; fatal when the certificate was rejected, transient otherwise.
    TlsFailed,
    /// The connection broke, or the body ended before its declared length: transient.
    ConnectionReset,
    /// *New*: no body byte arrived for the request's `stall_timeout`: transient.
    Stalled,
    /// The source delivered less than the request's `min_rate_bps` over a window: transient.
    TooSlow,
    /// *New*: the answer's head is not HTTP the client can parse (larger than its limit, a bad
    /// status line or header): transient, `general_transport` (a malformed server response is
    /// retried after the retry delay).
    MalformedResponse,
    /// Wrong `Content-Range`, body longer than declared, 206 to a request without a range.
    InvalidServerResponse,
    /// A ranged file was asked of a server that answers ranged requests with the whole file
    /// (BITS `BG_E_INSUFFICIENT_RANGE_SUPPORT`): fatal, `remote_file`.
    RangeUnsupported,
    /// *New*: a range of a ranged file starts at or reaches past the end of the remote file
    /// (BITS `BG_E_INVALID_RANGE`): fatal, `remote_file`.
    InvalidRange,
    /// The content does not match the expected SHA-256: fatal.
    Sha256Mismatch,
    /// A redirect loop, too many redirects, https→http, or a redirect to a non-http scheme.
    RedirectRefused,
    /// The local file system refused (the staging file, or reading a `file://` source).
    LocalIo,
    /// Permission denied reading a `file://` source (context `remote_file`).
    AccessDenied,
    /// *New*: a `file://` source does not exist or is not a regular file: fatal, `remote_file`.
    FileNotFound,
    /// *New*: the request itself is unusable (bad URL, unsupported scheme, bad custom header).
    InvalidRequest,
    /// *New*: the fetch was cancelled through its token (never stored as a job error).
    Cancelled,
    /// The server answered an error status (`HTTP_<status>`); transient or fatal by status.
    Http(u16),
    /// *New*: an upload's local source changed (size, modification time or inode) while it
    /// was being uploaded (BITS `BG_E_LOCAL_FILE_CHANGED`): fatal, `local_file`.
    LocalFileChanged,
    /// *New*: the upload server speaks neither the BITS Upload Protocol nor tus 1.0 (or not
    /// the one the job asks for; BITS `BG_E_CLIENT_SERVER_PROTOCOL_MISMATCH`): fatal,
    /// `remote_file`.
    UploadProtocolMismatch,
}

impl FetchErrorKind {
    /// The stable wire code: `CONNECT_FAILED`, ..., or `HTTP_<status>`.
    pub fn as_str(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            FetchErrorKind::ConnectFailed => "CONNECT_FAILED",
            FetchErrorKind::DnsFailed => "DNS_FAILED",
            FetchErrorKind::TlsFailed => "TLS_FAILED",
            FetchErrorKind::ConnectionReset => "CONNECTION_RESET",
            FetchErrorKind::Stalled => "STALLED",
            FetchErrorKind::TooSlow => "TOO_SLOW",
            FetchErrorKind::MalformedResponse => "MALFORMED_RESPONSE",
            FetchErrorKind::InvalidServerResponse => "INVALID_SERVER_RESPONSE",
            FetchErrorKind::RangeUnsupported => "RANGE_UNSUPPORTED",
            FetchErrorKind::InvalidRange => "INVALID_RANGE",
            FetchErrorKind::Sha256Mismatch => "SHA256_MISMATCH",
            FetchErrorKind::RedirectRefused => "REDIRECT_REFUSED",
            FetchErrorKind::LocalIo => "LOCAL_IO",
            FetchErrorKind::AccessDenied => "ACCESS_DENIED",
            FetchErrorKind::FileNotFound => "FILE_NOT_FOUND",
            FetchErrorKind::InvalidRequest => "INVALID_REQUEST",
            FetchErrorKind::Cancelled => "CANCELLED",
            FetchErrorKind::LocalFileChanged => "LOCAL_FILE_CHANGED",
            FetchErrorKind::UploadProtocolMismatch => "UPLOAD_PROTOCOL_MISMATCH",
            FetchErrorKind::Http(status) => return Cow::Owned(format!("HTTP_{status}")),
        })
    }
}

impl fmt::Display for FetchErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// Why a fetch failed, classified for the job store and for retry decisions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct FetchError {
    /// Where the error happened (BITS error context).
    pub context: ErrorContext,
    /// What failed; its wire code is `kind.as_str()`.
    pub kind: FetchErrorKind,
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
}

impl FetchError {
    /// A new error with no status, protocol or retry hint.
    pub fn new(
        context: ErrorContext,
        kind: FetchErrorKind,
        transient: bool,
        description: impl Into<String>,
    ) -> FetchError {
        FetchError {
            context,
            kind,
            http_status: None,
            transient,
            description: description.into(),
            protocol: None,
            retry_after: None,
        }
    }

    /// Sets the protocol unless one is already set.
    pub fn on(mut self, protocol: &str) -> FetchError {
        if self.protocol.is_none() {
            self.protocol = Some(protocol.to_owned());
        }
        self
    }

    /// A fatal `INVALID_SERVER_RESPONSE`.
    pub fn invalid_response(description: impl Into<String>) -> FetchError {
        FetchError::new(
            ErrorContext::RemoteFile,
            FetchErrorKind::InvalidServerResponse,
            false,
            description,
        )
    }

    /// A fatal `RANGE_UNSUPPORTED` (context `remote_file`).
    pub(crate) fn range_unsupported(description: impl Into<String>) -> FetchError {
        FetchError::new(
            ErrorContext::RemoteFile,
            FetchErrorKind::RangeUnsupported,
            false,
            description,
        )
    }

    /// A fatal `INVALID_RANGE` (context `remote_file`).
    pub(crate) fn invalid_range(description: impl Into<String>) -> FetchError {
        FetchError::new(
            ErrorContext::RemoteFile,
            FetchErrorKind::InvalidRange,
            false,
            description,
        )
    }

    /// A fatal `INVALID_REQUEST`.
    pub fn invalid_request(description: impl Into<String>) -> FetchError {
        FetchError::new(
            ErrorContext::RemoteFile,
            FetchErrorKind::InvalidRequest,
            false,
            description,
        )
    }

    /// A fatal `LOCAL_IO` on the staging file, naming the path, the action and the OS error.
    pub fn local_io(path: &Path, action: &str, err: &io::Error) -> FetchError {
        FetchError::new(
            ErrorContext::LocalFile,
            FetchErrorKind::LocalIo,
            false,
            format!("could not {action} {}: {err}", path.display()),
        )
    }

    /// The error a cancelled fetch returns.
    pub fn cancelled() -> FetchError {
        FetchError::new(
            ErrorContext::None,
            FetchErrorKind::Cancelled,
            false,
            "the transfer was cancelled",
        )
    }

    /// True when the fetch stopped because its cancellation token fired.
    pub fn is_cancelled(&self) -> bool {
        self.kind == FetchErrorKind::Cancelled
    }

    /// The wire form for `job.get_error` and callbacks.
    pub fn to_error_info(&self, file_index: Option<u64>) -> ErrorInfo {
        ErrorInfo {
            context: self.context,
            code: self.kind.as_str().into_owned(),
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

#[cfg(test)]
mod tests {
    use super::FetchErrorKind;

    /// The wire code of a status is `HTTP_<status>`; Display writes the same code (the other
    /// codes are pinned where the wire shows them: the fetch and daemon tests).
    #[test]
    fn kinds_write_their_wire_codes() {
        assert_eq!(FetchErrorKind::Http(404).as_str(), "HTTP_404");
        assert_eq!(FetchErrorKind::Http(503).to_string(), "HTTP_503");
        assert_eq!(FetchErrorKind::Sha256Mismatch.as_str(), "SHA256_MISMATCH");
        assert_eq!(FetchErrorKind::Cancelled.to_string(), "CANCELLED");
    }
}
