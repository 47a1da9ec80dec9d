//! `file://` sources: copy a local file into the staging file with the same resume,
//! checkpoint and hashing behaviour as HTTP.
//!
//! The validator of a local file is `LastModified("<mtime_nanos>:<size>")`: a change of either
//! restarts the copy from zero. A missing source is the fatal `FILE_NOT_FOUND` (context
//! `remote_file`), permission denied is `ACCESS_DENIED` (context `remote_file`).
//!
//! The source is opened as the job's owner through [`crate::safe_open`]: a regular file only
//! (a FIFO or device fails the file at once instead of hanging it), never through a magic link
//! such as `/proc/self/fd/N`, and every open and read runs on the owner's share of the blocking
//! pool. A cancelled transfer does not wait for an open or read that hangs.
//!
//! Not here: copy offload (`copy_file_range`, reflinks): a later optimisation.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use ferry_proto::ErrorContext;
use futures_util::future::BoxFuture;
use reqwest::Url;

use crate::error::{FetchError, FetchErrorKind};
use crate::identity::FsIdentity;
use crate::safe_open;
use crate::{FetchDone, Run, Source, Validator};

/// Bytes read per blocking call.
const CHUNK: u64 = 1024 * 1024;

/// The error for a source that cannot be opened or read.
fn source_error(path: &Path, action: &str, e: &io::Error) -> FetchError {
    let (code, what) = match e.kind() {
        _ if e.raw_os_error() == Some(libc::ELOOP)
            || (safe_open::is_wrong_kind(e) && e.kind() == io::ErrorKind::PermissionDenied) =>
        {
            (
                FetchErrorKind::AccessDenied,
                "is refused: it passes through a magic link such as /proc/self/fd (or a symlink loop)",
            )
        }
        _ if safe_open::is_wrong_kind(e) => (
            FetchErrorKind::FileNotFound,
            "cannot be copied; name a regular file",
        ),
        io::ErrorKind::NotFound => (FetchErrorKind::FileNotFound, "does not exist"),
        io::ErrorKind::PermissionDenied => (FetchErrorKind::AccessDenied, "may not be read"),
        _ => (FetchErrorKind::LocalIo, "could not be read"),
    };
    FetchError::new(
        ErrorContext::RemoteFile,
        code,
        false,
        format!("the source file {} {what} ({action}: {e})", path.display()),
    )
}

/// Reads a local file from `pos` to `end` in large chunks on the owner's share of the
/// blocking pool.
pub(crate) struct FileSource {
    file: Arc<File>,
    path: Arc<Path>,
    identity: Option<FsIdentity>,
    pos: u64,
    end: u64,
    /// The read in flight, kept across cancelled polls so no data is lost.
    inflight: Option<BoxFuture<'static, io::Result<io::Result<Bytes>>>>,
}

impl FileSource {
    /// Reads the opened source from `pos` up to (not including) `end`.
    pub(crate) fn new(opened: &Opened, pos: u64, end: u64) -> FileSource {
        FileSource {
            file: opened.file.clone(),
            path: opened.path.clone(),
            identity: opened.identity,
            pos,
            end,
            inflight: None,
        }
    }

    /// The next chunk, `None` at `end`. A file that ends early (it shrank while being read)
    /// is a transient error: the next attempt sees a new validator and starts over.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let handle = match &mut self.inflight {
            Some(h) => h,
            None => {
                let file = self.file.clone();
                let pos = self.pos;
                let want = usize::try_from((self.end - pos).min(CHUNK)).unwrap_or(1 << 20);
                self.inflight
                    .insert(Box::pin(safe_open::blocking(self.identity, move || {
                        let mut buf = vec![0u8; want];
                        let n = file.read_at(&mut buf, pos)?;
                        buf.truncate(n);
                        Ok(Bytes::from(buf))
                    })))
            }
        };
        let joined = handle.await;
        self.inflight = None;
        let read = joined.and_then(|r| r);
        match read {
            Err(e) => Err(source_error(&self.path, "read", &e)),
            Ok(b) if b.is_empty() => Err(FetchError::new(
                ErrorContext::RemoteFile,
                FetchErrorKind::ConnectionReset,
                true,
                format!(
                    "the source file {} shrank to {} bytes while it was read (expected {})",
                    self.path.display(),
                    self.pos,
                    self.end
                ),
            )),
            Ok(b) => {
                self.pos += b.len() as u64;
                Ok(Some(b))
            }
        }
    }
}

/// An opened `file://` source: the file, its size and its validator.
pub(crate) struct Opened {
    /// The open source file (shared with the reader tasks).
    pub(crate) file: Arc<File>,
    /// Its path, for messages.
    pub(crate) path: Arc<Path>,
    /// Its size when opened.
    pub(crate) size: u64,
    /// `LastModified("<mtime_nanos>:<size>")`.
    pub(crate) validator: Validator,
    /// Whose share of the blocking pool reads it.
    pub(crate) identity: Option<FsIdentity>,
}

/// The local path a `file://` URL names; a NUL byte (`%00`) names none.
pub fn file_url_path(url: &Url) -> Result<std::path::PathBuf, FetchError> {
    let path = url
        .to_file_path()
        .map_err(|()| FetchError::invalid_request(format!("{url} does not name a local path")))?;
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(FetchError::invalid_request(format!(
            "{url} names a path with a NUL byte, which no file has"
        )));
    }
    Ok(path)
}

/// Opens the regular file a `file://` URL names, as its owner, on the owner's share of the
/// blocking pool. Gives up (as cancelled) when `cancel` fires, without waiting for an open
/// that hangs.
pub(crate) async fn open_source(
    url: &Url,
    identity: Option<FsIdentity>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Opened, FetchError> {
    let path: Arc<Path> = file_url_path(url)?.into();
    let p = path.clone();
    // Read as the job's owner: `file://` must not reveal what the owner may not read.
    let open = safe_open::blocking(identity, move || {
        let file = safe_open::open_source(&p)?;
        let meta = file.metadata()?;
        Ok::<_, io::Error>((file, meta))
    });
    let opened = tokio::select! {
        r = open => r.and_then(|r| r),
        () = cancel.cancelled() => return Err(FetchError::cancelled()),
    };
    let (file, meta) = opened.map_err(|e| source_error(&path, "open", &e))?;
    let size = meta.len();
    // Nanosecond mtime plus size: a rewrite in place changes at least one of them.
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(Opened {
        file: Arc::new(file),
        path,
        size,
        validator: Validator::LastModified(format!("{mtime}:{size}")),
        identity,
    })
}

impl Run<'_> {
    /// Copies a `file://` URL into the sink.
    pub(crate) async fn fetch_file(&mut self, url: &Url) -> Result<FetchDone, FetchError> {
        let opened = open_source(url, self.req.identity, self.cancel).await?;
        let (size, validator) = (opened.size, opened.validator.clone());

        let pos = self.sink.position();
        let same = self.validator.as_ref() == Some(&validator)
            && self.req.expected_total.is_none_or(|t| t == size)
            && pos <= size;
        self.total = Some(size);
        self.validator = Some(validator);
        if pos > 0 && !same {
            self.restart().await?;
        }

        let mut source = Source::File(FileSource::new(&opened, self.sink.position(), size));
        self.pump(&mut source, Some(size)).await?;
        self.finish().await
    }
}
