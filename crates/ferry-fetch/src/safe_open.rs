//! Opening paths that users name (sources, staging files, destinations and their
//! directories, the copy into the peer cache) so that no such path can hang the daemon or
//! reach what its owner could not.
//!
//! What it promises, to every caller:
//!
//! - **Nothing blocks in `open`.** Every open is `O_NONBLOCK|O_NOCTTY`, so a FIFO, a tty or a
//!   device answers at once instead of waiting for a writer, and none becomes the daemon's
//!   controlling terminal.
//! - **Only the expected kind is used.** `fstat` on the opened descriptor must say regular file
//!   ([`open_file`], [`open_source`]) or directory ([`open_dir`]) before a byte is read; anything
//!   else is refused with [`is_wrong_kind`] errors. The check is on the descriptor, so a path
//!   swapped after the check cannot change what is read.
//! - **No magic links for sources.** [`open_source`] resolves with `openat2`
//!   `RESOLVE_NO_MAGICLINKS`: `/proc/self/fd/N` (the daemon's own open files, which skip the
//!   directory permissions of whoever opened them) and its kin are refused. Without `openat2`
//!   (kernels before 5.6), the path is walked one component at a time and any step onto
//!   procfs (`/proc`, and `/dev/fd` which points there) is refused outright.
//! - **One owner cannot starve the others.** User file work runs through [`blocking`]: on the
//!   blocking pool, never on a runtime thread, as the owner, and holding one of
//!   [`THREADS_PER_OWNER`] slots of that owner. However many of one owner's opens or reads hang
//!   (a stuck network file system), the rest of the pool stays free for everybody else.
//!
//! The open functions act with the calling thread's file-system identity: call them inside
//! [`blocking`] (or [`crate::identity::as_owner`] within [`in_slot`]).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, FcntlArg, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use tokio::sync::Semaphore;

use crate::identity::{FsIdentity, as_owner};

/// How many blocking-pool threads one owner's file work may hold at once: well below ferryd's
/// pool (32 threads), so that an owner whose every open hangs still leaves most of the pool to
/// the daemon's own work and to other users.
pub const THREADS_PER_OWNER: usize = 8;

/// What a user-named path turned out to be when something else was expected.
#[derive(Debug, thiserror::Error)]
pub enum WrongKind {
    /// A FIFO, socket, device or directory where a regular file was expected.
    #[error("is not a regular file")]
    NotRegular,
    /// Something other than a directory where a directory was expected.
    #[error("is not a directory")]
    NotDirectory,
    /// A symlink where a directory handle is opened: not followed, so that a directory swapped
    /// for a symlink cannot move where files are handed over.
    #[error("is a symlink, which is not followed for a destination directory")]
    Symlink,
    /// A source path through procfs where `openat2` is missing to refuse only its magic links.
    #[error("passes through /proc, which is refused for sources on kernels without openat2")]
    MagicPath,
}

/// Whether `e` is a refusal of this module (the path is the wrong kind of object), rather
/// than an error of the file system.
pub fn is_wrong_kind(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<WrongKind>())
}

fn wrong(kind: WrongKind) -> io::Error {
    let as_kind = match kind {
        // Refused on purpose, like a permission.
        WrongKind::Symlink | WrongKind::MagicPath => io::ErrorKind::PermissionDenied,
        WrongKind::NotRegular | WrongKind::NotDirectory => io::ErrorKind::InvalidInput,
    };
    io::Error::new(as_kind, kind)
}

/// How [`open_file`] opens a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only, following symlinks.
    Read,
    /// Read only, never through a symlink at the last component.
    ReadNoFollow,
    /// Read and write, created (mode 0600) when missing, never truncated, never through a
    /// symlink at the last component (a staging file being written).
    ReadWriteCreate,
    /// A new file only (`O_EXCL`, mode 0600), for writing.
    CreateNew,
}

/// The flags every open carries: nothing blocks, nothing becomes a controlling terminal.
fn base_flags() -> OFlag {
    OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC
}

/// Opens the regular file at `path` as [`Access`] says, refusing anything else.
pub fn open_file(path: &Path, access: Access) -> io::Result<File> {
    open_file_at(AT_FDCWD, path, access)
}

/// [`open_file`] for `name` relative to the directory handle `dir` (see [`open_dir`]): the
/// directory is the one opened then, whatever its path names now.
pub fn open_file_at(dir: impl AsFd, name: &Path, access: Access) -> io::Result<File> {
    let (flags, mode) = match access {
        Access::Read => (OFlag::O_RDONLY, 0),
        Access::ReadNoFollow => (OFlag::O_RDONLY | OFlag::O_NOFOLLOW, 0),
        Access::ReadWriteCreate => (OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW, 0o600),
        Access::CreateNew => (OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, 0o600),
    };
    let fd = nix::fcntl::openat(
        dir,
        name,
        flags | base_flags(),
        Mode::from_bits_truncate(mode),
    )?;
    regular(fd)
}

/// Opens a `file://` source for reading: a regular file reached without magic links.
pub fn open_source(path: &Path) -> io::Result<File> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | base_flags())
        .resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match nix::fcntl::openat2(AT_FDCWD, path, how) {
        Ok(fd) => regular(fd),
        // No openat2 (before Linux 5.6, or filtered by a sandbox that answers EPERM).
        Err(Errno::ENOSYS | Errno::EPERM) => open_source_walking(path),
        Err(e) => Err(e.into()),
    }
}

/// [`open_source`] without `openat2`: resolves `path` one component at a time (`O_PATH`, never
/// following a symlink by the kernel), follows ordinary symlinks itself, and refuses any step
/// onto procfs, where the magic links live (`/proc/self/fd/N`, and `/dev/fd`, `/dev/stdin`,
/// which point there). The last component is opened with `O_NOFOLLOW`, so a symlink swapped in
/// after it was looked at fails instead of being followed.
fn open_source_walking(path: &Path) -> io::Result<File> {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::path::Component;

    const MAX_LINKS: usize = 40;
    let step = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root = || nix::fcntl::open("/", step | OFlag::O_DIRECTORY, Mode::empty());
    let not_proc = |fd: &OwnedFd| -> io::Result<()> {
        if nix::sys::statfs::fstatfs(fd)?.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC {
            return Err(wrong(WrongKind::MagicPath));
        }
        Ok(())
    };
    let parts = |p: &Path| -> Vec<OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::RootDir => Some(OsString::from("/")),
                Component::ParentDir => Some(OsString::from("..")),
                Component::Normal(n) => Some(n.to_owned()),
                Component::CurDir | Component::Prefix(_) => None,
            })
            .collect()
    };
    let mut todo: VecDeque<OsString> = parts(path).into();
    let mut dir = root()?;
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == "/" {
            dir = root()?;
            continue;
        }
        let fd = nix::fcntl::openat(&dir, name.as_os_str(), step, Mode::empty())?;
        not_proc(&fd)?;
        let kind = nix::sys::stat::fstat(&fd)?.st_mode & libc::S_IFMT;
        if kind == libc::S_IFLNK {
            links += 1;
            if links > MAX_LINKS {
                return Err(Errno::ELOOP.into());
            }
            let target = nix::fcntl::readlinkat(&fd, "")?;
            for part in parts(Path::new(&target)).into_iter().rev() {
                todo.push_front(part);
            }
        } else if todo.is_empty() {
            let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | base_flags();
            let file = nix::fcntl::openat(&dir, name.as_os_str(), flags, Mode::empty())?;
            not_proc(&file)?;
            return regular(file);
        } else {
            dir = fd;
        }
    }
    // The path ends in a directory (`/`, `..`).
    Err(wrong(WrongKind::NotRegular))
}

/// Opens the directory at `path` (not through a symlink at its last component), refusing
/// anything else; the handle serves `renameat` and `fsync` of the directory.
pub fn open_dir(path: &Path) -> io::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | base_flags();
    let file = match nix::fcntl::open(path, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::ENOTDIR | Errno::ELOOP) => {
            let symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
            return Err(wrong(if symlink {
                WrongKind::Symlink
            } else {
                WrongKind::NotDirectory
            }));
        }
        Err(e) => return Err(e.into()),
    };
    if !file.metadata()?.is_dir() {
        return Err(wrong(WrongKind::NotDirectory));
    }
    Ok(file)
}

/// Checks that `fd` is a regular file and gives it plain blocking reads and writes again.
fn regular(fd: OwnedFd) -> io::Result<File> {
    let file = File::from(fd);
    if !file.metadata()?.file_type().is_file() {
        return Err(wrong(WrongKind::NotRegular));
    }
    let flags = OFlag::from_bits_truncate(nix::fcntl::fcntl(&file, FcntlArg::F_GETFL)?);
    nix::fcntl::fcntl(&file, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(file)
}

/// The slots of each owner (`None`: the daemon's own identity).
fn slots(owner: Option<u32>) -> Arc<Semaphore> {
    static SLOTS: OnceLock<Mutex<HashMap<Option<u32>, Arc<Semaphore>>>> = OnceLock::new();
    SLOTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(owner)
        .or_insert_with(|| Arc::new(Semaphore::new(THREADS_PER_OWNER)))
        .clone()
}

/// Runs `f` as `identity` on the blocking pool, in one of the owner's [`THREADS_PER_OWNER`]
/// slots (waiting for one while all are busy). The slot is held until `f` returns, even if the
/// caller stops waiting: dropping the returned future (a cancelled transfer) never waits for a
/// stuck `f`. Fails only when the blocking task could not run or panicked.
pub async fn blocking<T: Send + 'static>(
    identity: Option<FsIdentity>,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    in_slot(identity, move || as_owner(identity, f)).await
}

/// [`blocking`] with the daemon's own identity, for work that mixes the owner's files (which
/// `f` opens with [`as_owner`]) with the daemon's own; it still counts against the owner's
/// slots.
pub async fn in_slot<T: Send + 'static>(
    identity: Option<FsIdentity>,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let permit = slots(identity.map(|i| i.uid))
        .acquire_owned()
        .await
        .map_err(|_| io::Error::other("the file worker slots were closed"))?;
    tokio::task::spawn_blocking(move || {
        let _slot = permit;
        f()
    })
    .await
    .map_err(|_| io::Error::other("the file worker task stopped unexpectedly"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        for access in [Access::Read, Access::ReadNoFollow, Access::ReadWriteCreate] {
            let e = open_file(&fifo, access).unwrap_err();
            assert!(is_wrong_kind(&e), "{access:?}: {e}");
        }
        assert!(is_wrong_kind(&open_source(&fifo).unwrap_err()));
        assert!(is_wrong_kind(&open_source(dir.path()).unwrap_err()));
        assert!(is_wrong_kind(&open_dir(&fifo).unwrap_err()));
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(is_wrong_kind(&open_dir(&file).unwrap_err()));
        assert!(open_dir(dir.path()).is_ok());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let e = open_dir(&link).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
    }

    #[test]
    fn regular_files_open_for_plain_reads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello").unwrap();
        let f = open_source(&file).unwrap();
        let flags = OFlag::from_bits_truncate(nix::fcntl::fcntl(&f, FcntlArg::F_GETFL).unwrap());
        assert!(!flags.contains(OFlag::O_NONBLOCK));
        assert_eq!(std::io::read_to_string(f).unwrap(), "hello");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_source(&link).is_ok(), "ordinary symlinks are followed");
        assert!(open_file(&link, Access::ReadNoFollow).is_err());
        assert!(open_file(&file, Access::CreateNew).is_err());
    }

    #[test]
    fn magic_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"secret").unwrap();
        let held = File::open(&file).unwrap();
        let magic = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
        assert!(open_source(Path::new(&magic)).is_err());
        // Also behind an ordinary symlink.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&magic, &link).unwrap();
        assert!(open_source(&link).is_err());
        // The same without openat2.
        for refused in [
            Path::new(&magic),
            &link,
            Path::new("/dev/stdin"),
            Path::new("/proc/self/status"),
        ] {
            let e = open_source_walking(refused).unwrap_err();
            assert!(is_wrong_kind(&e), "{}: {e}", refused.display());
        }
    }

    #[test]
    fn the_walk_without_openat2_follows_ordinary_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("f"), b"walked").unwrap();
        std::os::unix::fs::symlink("sub", dir.path().join("rel")).unwrap();
        std::os::unix::fs::symlink(sub.join("f"), dir.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        for p in [
            sub.join("f"),
            dir.path().join("rel/f"),
            dir.path().join("abs"),
            dir.path().join("rel/../sub/./f"),
        ] {
            let f = open_source_walking(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(std::io::read_to_string(f).unwrap(), "walked");
        }
        let e = open_source_walking(&dir.path().join("loop")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert!(open_source_walking(dir.path()).is_err());
        assert!(open_source_walking(&dir.path().join("missing")).is_err());
    }

    #[tokio::test]
    async fn one_owner_holds_at_most_its_slots() {
        let id = Some(FsIdentity {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        });
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        let mut stuck = Vec::new();
        for _ in 0..THREADS_PER_OWNER + 2 {
            let rx = rx.clone();
            stuck.push(tokio::spawn(blocking(id, move || {
                let _ = rx.lock().unwrap().recv();
            })));
        }
        // Bounded wait for the first owner to fill its slots (no event says so).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while slots(id.map(|i| i.uid)).available_permits() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the slots never filled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // Another owner still gets a thread at once, while two of the first owner's calls wait.
        let other = Some(FsIdentity {
            uid: 4_000_000_001,
            gid: 4_000_000_001,
        });
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), blocking(other, || 7));
        assert_eq!(r.await.unwrap().unwrap(), 7);
        assert_eq!(stuck.iter().filter(|s| s.is_finished()).count(), 0);
        for _ in 0..THREADS_PER_OWNER + 2 {
            tx.send(()).unwrap();
        }
        for s in stuck {
            s.await.unwrap().unwrap();
        }
    }
}
