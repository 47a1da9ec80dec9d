//! Sessions on disk, and the destination files they become.
//!
//! Each session is a directory `SESSIONS/UUID/` holding `data` (the bytes received so far),
//! `meta.json` (what was acknowledged) and, in upload-reply, `reply`. Fragments are synced
//! before `meta.json` records them and before the Ack, so a server killed at any point resumes
//! every session at an offset it acknowledged. Destinations are reached with `openat` one
//! component at a time from the upload directory's handle, never following a link, and a
//! finished file is moved into place with one `renameat2`: the destination is either absent,
//! the old file, or the whole new one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::{Mode, SFlag, fstatat};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::{Refusal, RelativePath};

/// What a session's `meta.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The session id as issued.
    pub id: String,
    /// The URL path the session was created for; packets for another URL do not find it.
    pub url_path: String,
    /// The destination under the upload directory.
    pub dirs: Vec<String>,
    /// The destination's file name.
    pub name: String,
    /// The authenticated user who created it, if authentication is on.
    pub user: Option<String>,
    /// The total size the first fragment announced.
    pub total: Option<u64>,
    /// Bytes received, synced and acknowledged.
    pub received: u64,
    /// Seconds since the epoch of the last packet, for expiry.
    pub last_activity: u64,
    /// The server application's answer once it was notified (cached for repeated final
    /// fragments, which get the same Ack and no second notification).
    pub notified: Option<Notified>,
}

/// What the server application answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notified {
    /// The `BITS-Reply-URL` to send, if there is a reply.
    pub reply_url: Option<String>,
    /// Whether Close-Session also puts the file at the destination.
    pub copy_to_destination: bool,
}

impl Meta {
    /// The destination as a relative path.
    pub fn destination(&self) -> RelativePath {
        RelativePath {
            dirs: self.dirs.clone(),
            name: self.name.clone(),
        }
    }
}

/// Seconds since the epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a session idle since `last_activity` has expired at `now`.
pub fn expired(last_activity: u64, timeout: Duration, now: u64) -> bool {
    last_activity.saturating_add(timeout.as_secs()) < now
}

/// The session store of one upload directory.
pub struct Store {
    root: OwnedFd,
    sessions: PathBuf,
    file_mode: u32,
}

/// Why a store cannot be opened at startup.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A directory could not be opened or created.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The session directory is on another filesystem than the upload directory.
    #[error(
        "the session directory {sessions} is not on the same filesystem as {path}: uploads could not be moved into place atomically; set session_dir to a directory on that filesystem"
    )]
    OtherFilesystem {
        /// The upload directory.
        path: PathBuf,
        /// The session directory.
        sessions: PathBuf,
    },
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Maps an I/O failure to its answer: a full disk is the protocol's own code.
pub fn io_refusal(e: &io::Error) -> Refusal {
    if e.raw_os_error() == Some(Errno::ENOSPC as i32) {
        Refusal::DiskFull
    } else {
        tracing::error!(error = %e, "I/O failure");
        Refusal::Internal
    }
}

impl Store {
    /// Opens the upload directory and creates the session directory (mode 0700).
    pub fn open(path: &Path, sessions: &Path, file_mode: u32) -> Result<Store, StoreError> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| StoreError::Io { path: p, source }
        };
        let root = File::open(path).map_err(io(path))?;
        if !root.metadata().map_err(io(path))?.is_dir() {
            return Err(StoreError::Io {
                path: path.to_owned(),
                source: io::Error::other("not a directory"),
            });
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(sessions)
            .map_err(io(sessions))?;
        let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).map_err(io(p));
        if dev(path)? != dev(sessions)? {
            return Err(StoreError::OtherFilesystem {
                path: path.to_owned(),
                sessions: sessions.to_owned(),
            });
        }
        Ok(Store {
            root: root.into(),
            sessions: sessions.to_owned(),
            file_mode,
        })
    }

    fn dir(&self, id: Uuid) -> PathBuf {
        self.sessions.join(id.hyphenated().to_string())
    }

    /// The session's data file (named to the server application by reference).
    pub fn data_path(&self, id: Uuid) -> PathBuf {
        self.dir(id).join("data")
    }

    /// Where the server application writes its reply (by reference), or the server stores
    /// the reply body (by value).
    pub fn reply_path(&self, id: Uuid) -> PathBuf {
        self.dir(id).join("reply")
    }

    /// Opens the parent directory of a destination, one component at a time, refusing links.
    fn parent(&self, dest: &RelativePath) -> Result<OwnedFd, Refusal> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut fd = nix::unistd::dup(self.root.as_fd()).map_err(|e| io_refusal(&errno_io(e)))?;
        for d in &dest.dirs {
            fd = match openat(fd.as_fd(), d.as_str(), flags, Mode::empty()) {
                Ok(next) => next,
                Err(Errno::ENOENT) => return Err(Refusal::NoParent),
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    return Err(Refusal::BadPath(
                        "a directory on the path is a link or a file",
                    ));
                }
                Err(e) => return Err(io_refusal(&errno_io(e))),
            };
        }
        Ok(fd)
    }

    /// Checks a destination for Create-Session: its directory exists, it is not a directory
    /// or a link, and it does not exist unless overwriting is allowed.
    pub fn check_destination(
        &self,
        dest: &RelativePath,
        allow_overwrite: bool,
    ) -> Result<(), Refusal> {
        let parent = self.parent(dest)?;
        match fstatat(
            parent.as_fd(),
            dest.name.as_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(io_refusal(&errno_io(e))),
            Ok(st) => {
                let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
                if kind == SFlag::S_IFDIR {
                    Err(Refusal::BadPath("the URL names a directory"))
                } else if kind != SFlag::S_IFREG {
                    Err(Refusal::BadPath(
                        "the destination is a link or a special file",
                    ))
                } else if !allow_overwrite {
                    Err(Refusal::Exists)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Creates a session: its directory, an empty data file and its metadata, all synced.
    pub fn create(&self, id: Uuid, meta: &Meta) -> Result<(), Refusal> {
        let dir = self.dir(id);
        let r = (|| {
            std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join("data"))?
                .sync_all()?;
            self.write_meta(id, meta)?;
            File::open(&self.sessions)?.sync_all()
        })();
        r.map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            io_refusal(&e)
        })
    }

    /// How many sessions are on disk (open, or torn and not yet swept).
    pub fn count(&self) -> usize {
        std::fs::read_dir(&self.sessions).map_or(0, |d| d.count())
    }

    /// Reads a session's metadata; `None` if the session does not exist (or is torn: a
    /// session whose metadata never reached the disk was never acknowledged).
    pub fn load(&self, id: Uuid) -> Option<Meta> {
        let text = std::fs::read(self.dir(id).join("meta.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Replaces a session's metadata atomically (write, sync, rename, sync the directory).
    pub fn write_meta(&self, id: Uuid, meta: &Meta) -> io::Result<()> {
        let dir = self.dir(id);
        let tmp = dir.join("meta.json.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(meta).map_err(io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join("meta.json"))?;
        File::open(&dir)?.sync_all()
    }

    /// Opens the data file to append a fragment at `received`: anything past it (bytes of a
    /// fragment that was never acknowledged) is cut off first.
    pub fn open_data(&self, id: Uuid, received: u64) -> io::Result<File> {
        let f = OpenOptions::new().write(true).open(self.data_path(id))?;
        f.set_len(received)?;
        Ok(f)
    }

    /// Cuts the data file back to `received` after a failed write, so a full disk does not
    /// keep the bytes of an unacknowledged fragment.
    pub fn truncate_data(&self, id: Uuid, received: u64) {
        if let Ok(f) = OpenOptions::new().write(true).open(self.data_path(id)) {
            let _ = f.set_len(received);
        }
    }

    /// Moves a finished upload to its destination and deletes the session. Refuses to replace
    /// a file that appeared meanwhile unless overwriting is allowed.
    pub fn commit(&self, id: Uuid, meta: &Meta, allow_overwrite: bool) -> Result<(), Refusal> {
        let dest = meta.destination();
        let parent = self.parent(&dest)?;
        let sessions = File::open(self.dir(id)).map_err(|e| io_refusal(&e))?;
        let flags = if allow_overwrite {
            RenameFlags::empty()
        } else {
            RenameFlags::RENAME_NOREPLACE
        };
        if let Ok(st) = fstatat(
            parent.as_fd(),
            dest.name.as_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind != SFlag::S_IFREG {
                return Err(Refusal::BadPath(
                    "the destination is a directory, a link or a special file",
                ));
            }
        }
        std::fs::set_permissions(
            self.data_path(id),
            std::fs::Permissions::from_mode(self.file_mode),
        )
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Refusal::DataGone
            } else {
                io_refusal(&e)
            }
        })?;
        match renameat2(
            sessions.as_fd(),
            "data",
            parent.as_fd(),
            dest.name.as_str(),
            flags,
        ) {
            Ok(()) => {}
            Err(Errno::EEXIST) => return Err(Refusal::Exists),
            Err(Errno::ENOENT) => return Err(Refusal::DataGone),
            Err(e) => return Err(io_refusal(&errno_io(e))),
        }
        nix::unistd::fsync(parent.as_fd()).map_err(|e| io_refusal(&errno_io(e)))?;
        self.remove(id);
        Ok(())
    }

    /// Deletes a session and everything in it.
    pub fn remove(&self, id: Uuid) {
        let dir = self.dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot delete a session");
        }
    }

    /// Deletes every session idle for longer than `timeout`, and torn sessions (no metadata)
    /// as old. Returns how many went.
    pub fn sweep(&self, timeout: Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.sessions) else {
            return 0;
        };
        let now = now_secs();
        let mut removed = 0;
        for e in entries.flatten() {
            let Some(id) = e.file_name().to_str().and_then(|n| Uuid::try_parse(n).ok()) else {
                continue;
            };
            let last = match self.load(id) {
                Some(m) => m.last_activity,
                None => e
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs()),
            };
            if expired(last, timeout, now) {
                self.remove(id);
                removed += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> Meta {
        Meta {
            id: "{X}".into(),
            url_path: format!("/u/{name}"),
            dirs: vec![],
            name: name.into(),
            user: None,
            total: None,
            received: 0,
            last_activity: now_secs(),
            notified: None,
        }
    }

    #[test]
    fn expiry_is_strictly_after_the_timeout() {
        let t = Duration::from_secs(10);
        assert!(!expired(100, t, 110));
        assert!(expired(100, t, 111));
        assert!(!expired(u64::MAX, t, 0));
    }

    #[test]
    fn a_session_commits_atomically_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &tmp.path().join(".s"), 0o640).unwrap();
        let id = Uuid::new_v4();
        let m = meta("f.txt");
        store.create(id, &m).unwrap();
        assert_eq!(store.load(id), Some(m.clone()));
        let mut f = store.open_data(id, 0).unwrap();
        f.write_all(b"hello").unwrap();
        store.commit(id, &m, false).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("f.txt")).unwrap(), b"hello");
        let mode = std::fs::metadata(tmp.path().join("f.txt")).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o640);
        assert_eq!(std::fs::read_dir(tmp.path().join(".s")).unwrap().count(), 0);
        // A second upload of the same name is refused at creation and at commit.
        assert_eq!(
            store.check_destination(&m.destination(), false),
            Err(Refusal::Exists)
        );
        let id2 = Uuid::new_v4();
        store.create(id2, &m).unwrap();
        assert_eq!(store.commit(id2, &m, false), Err(Refusal::Exists));
        assert_eq!(std::fs::read(tmp.path().join("f.txt")).unwrap(), b"hello");
        store.commit(id2, &m, true).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("f.txt")).unwrap(), b"");
    }

    #[test]
    fn links_on_the_path_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("esc")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("t"), tmp.path().join("l")).unwrap();
        let store = Store::open(tmp.path(), &tmp.path().join(".s"), 0o640).unwrap();
        let via_dir = RelativePath {
            dirs: vec!["esc".into()],
            name: "x".into(),
        };
        assert!(matches!(
            store.check_destination(&via_dir, true),
            Err(Refusal::BadPath(_))
        ));
        let link = RelativePath {
            dirs: vec![],
            name: "l".into(),
        };
        assert!(matches!(
            store.check_destination(&link, true),
            Err(Refusal::BadPath(_))
        ));
        std::fs::write(outside.path().join("t"), b"x").unwrap();
        assert!(matches!(
            store.check_destination(&link, true),
            Err(Refusal::BadPath(_))
        ));
        let missing = RelativePath {
            dirs: vec!["nope".into()],
            name: "x".into(),
        };
        assert_eq!(
            store.check_destination(&missing, true),
            Err(Refusal::NoParent)
        );
    }

    #[test]
    fn sweeping_removes_idle_and_torn_sessions() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &tmp.path().join(".s"), 0o640).unwrap();
        let (old, fresh) = (Uuid::new_v4(), Uuid::new_v4());
        store
            .create(
                old,
                &Meta {
                    last_activity: 0,
                    ..meta("a")
                },
            )
            .unwrap();
        store.create(fresh, &meta("b")).unwrap();
        assert_eq!(store.sweep(Duration::from_secs(60)), 1);
        assert!(store.load(old).is_none());
        assert!(store.load(fresh).is_some());
    }
}
