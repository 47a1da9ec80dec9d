//! `file://` sources: copy a local file into the staging file with the same resume,
//! checkpoint and hashing behaviour as HTTP.
//!
//! The validator of a local file is `LastModified("<mtime_nanos>:<size>")`: a change of either
//! restarts the copy from zero. A missing source is the fatal `FILE_NOT_FOUND` (context
//! `remote_file`), permission denied is `ACCESS_DENIED` (context `remote_file`).
//!
//! Not here: reading as the job owner in system mode (the daemon arranges the identity), and
//! copy offload (`copy_file_range`, reflinks): a later optimisation.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use ferry_proto::ErrorContext;
use reqwest::Url;
use tokio::task::JoinHandle;

use crate::error::{FetchError, codes};
use crate::{FetchDone, Run, Source, Validator};

/// Bytes read per blocking call.
const CHUNK: u64 = 1024 * 1024;

/// The error for a source that cannot be opened or read.
fn source_error(path: &Path, action: &str, e: &io::Error) -> FetchError {
    let (code, what) = match e.kind() {
        io::ErrorKind::NotFound => (codes::FILE_NOT_FOUND, "does not exist"),
        io::ErrorKind::PermissionDenied => (codes::ACCESS_DENIED, "may not be read"),
        _ => (codes::LOCAL_IO, "could not be read"),
    };
    FetchError::new(
        ErrorContext::RemoteFile,
        code,
        false,
        format!("the source file {} {what} ({action}: {e})", path.display()),
    )
}

/// Reads a local file from `pos` to `end` in large chunks on the blocking pool.
pub(crate) struct FileSource {
    file: Arc<File>,
    path: Arc<Path>,
    pos: u64,
    end: u64,
    /// The read in flight, kept across cancelled polls so no data is lost.
    inflight: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileSource {
    /// Reads `file` from `pos` up to (not including) `end`.
    pub(crate) fn new(file: Arc<File>, path: Arc<Path>, pos: u64, end: u64) -> FileSource {
        FileSource {
            file,
            path,
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
                self.inflight.insert(tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; want];
                    let n = file.read_at(&mut buf, pos)?;
                    buf.truncate(n);
                    Ok(Bytes::from(buf))
                }))
            }
        };
        let joined = handle.await;
        self.inflight = None;
        let read = joined
            .map_err(|_| io::Error::other("the reader task stopped unexpectedly"))
            .and_then(|r| r);
        match read {
            Err(e) => Err(source_error(&self.path, "read", &e)),
            Ok(b) if b.is_empty() => Err(FetchError::new(
                ErrorContext::RemoteFile,
                codes::CONNECTION_RESET,
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
}

/// Opens the regular file a `file://` URL names, on the blocking pool.
pub(crate) async fn open_source(
    url: &Url,
    identity: Option<crate::identity::FsIdentity>,
) -> Result<Opened, FetchError> {
    let path: Arc<Path> = url
        .to_file_path()
        .map_err(|()| FetchError::invalid_request(format!("{url} does not name a local path")))?
        .into();
    let p = path.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<_, FetchError> {
        // Read as the job's owner: `file://` must not reveal what the owner may not read.
        let file = crate::identity::as_owner(identity, || File::open(&p))
            .map_err(|e| source_error(&p, "open", &e))?;
        let meta = file
            .metadata()
            .map_err(|e| source_error(&p, "inspect", &e))?;
        Ok((file, meta))
    })
    .await
    .map_err(|_| {
        source_error(
            &path,
            "open",
            &io::Error::other("the reader task stopped unexpectedly"),
        )
    })??;
    let (file, meta) = opened;
    if !meta.is_file() {
        return Err(FetchError::new(
            ErrorContext::RemoteFile,
            codes::FILE_NOT_FOUND,
            false,
            format!("the source {} is not a regular file", path.display()),
        ));
    }
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
    })
}

impl Run<'_> {
    /// Copies a `file://` URL into the sink.
    pub(crate) async fn fetch_file(&mut self, url: &Url) -> Result<FetchDone, FetchError> {
        let Opened {
            file,
            path,
            size,
            validator,
        } = open_source(url, self.req.identity).await?;

        let pos = self.sink.position();
        let same = self.validator.as_ref() == Some(&validator)
            && self.req.expected_total.is_none_or(|t| t == size)
            && pos <= size;
        self.total = Some(size);
        self.validator = Some(validator);
        if pos > 0 && !same {
            self.restart().await?;
        }

        let mut source = Source::File(FileSource::new(file, path, self.sink.position(), size));
        self.pump(&mut source, Some(size)).await?;
        self.finish().await
    }
}
