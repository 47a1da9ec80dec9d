//! The local file being uploaded: reads of byte ranges on the blocking pool, each checked
//! against the file as it was when the job was made, so a file that changes under an upload
//! fails it (`LOCAL_FILE_CHANGED`, fatal) instead of sending a mix of two versions.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use ferry_fetch::identity::FsIdentity;
use ferry_fetch::{FetchError, FetchErrorKind};
use ferry_proto::ErrorContext;
use serde::{Deserialize, Serialize};
use sha1::Digest;

use crate::SendRequest;

/// What identifies a source file's content for an upload: if any of these changes, the bytes
/// already sent may not belong to the file any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIdentity {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Device number.
    pub dev: u64,
}

impl SourceIdentity {
    /// The identity of a file as its metadata shows it.
    pub fn of(meta: &std::fs::Metadata) -> SourceIdentity {
        SourceIdentity {
            size: meta.len(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }

    /// What differs from `now`, for the error message; `None` when nothing does.
    fn differs(&self, now: &SourceIdentity) -> Option<&'static str> {
        if self.ino != now.ino || self.dev != now.dev {
            Some("it was replaced by another file")
        } else if self.size != now.size {
            Some("its size changed")
        } else if self.mtime_ns != now.mtime_ns {
            Some("it was modified")
        } else {
            None
        }
    }
}

/// The source of one send.
pub(crate) struct Source {
    file: Arc<std::fs::File>,
    path: Option<PathBuf>,
    identity: SourceIdentity,
    fs: Option<FsIdentity>,
}

impl Source {
    pub(crate) fn new(req: &SendRequest) -> Source {
        Source {
            file: req.source.clone(),
            path: req.source_path.clone(),
            identity: req.identity,
            fs: req.fs_identity,
        }
    }

    /// The file's size.
    pub(crate) fn size(&self) -> u64 {
        self.identity.size
    }

    fn shown(&self) -> String {
        self.path.as_ref().map_or_else(
            || "the upload's source".to_owned(),
            |p| p.display().to_string(),
        )
    }

    /// Checks the file is still the one recorded.
    pub(crate) async fn check(&self) -> Result<(), FetchError> {
        self.read(0, 0, false).await.map(|_| ())
    }

    /// Reads `len` bytes at `offset` (and their SHA-1 with `hash`), checking the file before
    /// and after.
    pub(crate) async fn read(
        &self,
        offset: u64,
        len: usize,
        hash: bool,
    ) -> Result<(Bytes, Option<[u8; 20]>), FetchError> {
        let file = self.file.clone();
        let path = self.path.clone();
        let want = self.identity;
        let shown = self.shown();
        let shown2 = shown.clone();
        let r = ferry_fetch::safe_open::blocking(self.fs, move || {
            let check = || -> Result<(), FetchError> {
                let io = |e: std::io::Error| {
                    FetchError::new(
                        ErrorContext::LocalFile,
                        FetchErrorKind::LocalIo,
                        false,
                        format!("could not check {shown}: {e}"),
                    )
                };
                let now = SourceIdentity::of(&file.metadata().map_err(io)?);
                let mut why = want.differs(&now);
                if why.is_none()
                    && let Some(p) = &path
                {
                    match std::fs::metadata(p) {
                        Ok(m) => why = want.differs(&SourceIdentity::of(&m)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            why = Some("it was deleted");
                        }
                        Err(e) => return Err(io(e)),
                    }
                }
                match why {
                    None => Ok(()),
                    Some(why) => Err(changed(&shown, why)),
                }
            };
            check()?;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    changed(&shown, "it became shorter")
                } else {
                    FetchError::new(
                        ErrorContext::LocalFile,
                        FetchErrorKind::LocalIo,
                        false,
                        format!("could not read {shown}: {e}"),
                    )
                }
            })?;
            // The bytes belong to the recorded file only if it is still unchanged now.
            check()?;
            let digest = hash.then(|| sha1::Sha1::digest(&buf).into());
            Ok((Bytes::from(buf), digest))
        })
        .await;
        match r {
            Ok(inner) => inner,
            Err(e) => Err(FetchError::new(
                ErrorContext::LocalFile,
                FetchErrorKind::LocalIo,
                false,
                format!("could not read {shown2}: {e}"),
            )),
        }
    }
}

/// The fatal `LOCAL_FILE_CHANGED` for `shown`.
fn changed(shown: &str, why: &str) -> FetchError {
    FetchError::new(
        ErrorContext::LocalFile,
        FetchErrorKind::LocalFileChanged,
        false,
        format!(
            "{shown} changed while it was being uploaded ({why}); upload it again as a new job"
        ),
    )
}
