//! Staging files: where a file's bytes live until the job completes.
//!
//! A staging file is a hidden `.ferry-<tag>-<uuid>.part` in the destination's own directory (the
//! tag names its owner: the daemon uses the job's id), so that handing it over is one atomic
//! `rename` on the same file system. [`finalize`] makes the handover durable (file fsync,
//! rename, directory fsync); [`Handover`] hands many files over with one fsync per directory,
//! through directory handles opened once; [`remove`] discards a staging file. Every open goes
//! through [`crate::safe_open`]: only regular files and directories, never blocking.
//!
//! Not here: choosing *when* to finalize (the daemon does, on `job.complete`), or running as
//! the job owner off the runtime threads (the caller arranges it, `safe_open::blocking`).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::identity::{FsIdentity, as_owner};
use crate::safe_open::{self, Access};

/// A file-system step of staging failed.
#[derive(Debug, thiserror::Error)]
#[error("could not {action} {}: {source}", path.display())]
pub struct StagingError {
    /// The path the step was about.
    pub path: PathBuf,
    /// What was being done (`create`, `sync`, `rename to …`, `remove`, …).
    pub action: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl StagingError {
    fn new(path: &Path, action: impl Into<String>, source: io::Error) -> StagingError {
        StagingError {
            path: path.to_owned(),
            action: action.into(),
            source,
        }
    }
}

/// Creates a new empty staging file `.ferry-<uuid>.part` in `dir` (exclusive create, mode 0600)
/// and returns its path.
pub fn create_temp(dir: &Path) -> Result<PathBuf, StagingError> {
    create_temp_as(dir, "", None)
}

/// [`create_temp`] for the owner `tag` (the daemon: the job's id), as `identity` (system mode:
/// the file is the job owner's, and the kernel checks the owner may create it there). The name
/// is `.ferry-<tag>-<uuid>.part` ([`tag_for`]), so that leftovers can be told by owner
/// ([`tag_of`]).
pub fn create_temp_as(
    dir: &Path,
    tag: &str,
    identity: Option<FsIdentity>,
) -> Result<PathBuf, StagingError> {
    let tag = tag_for(tag);
    let unique = uuid::Uuid::new_v4().simple();
    let name = if tag.is_empty() {
        format!(".ferry-{unique}.part")
    } else {
        format!(".ferry-{tag}-{unique}.part")
    };
    let path = dir.join(name);
    // O_CREAT|O_EXCL: never reuse (or follow a symlink planted at) an existing name.
    as_owner(identity, || safe_open::open_file(&path, Access::CreateNew))
        .map_err(|e| StagingError::new(&path, "create", e))?;
    Ok(path)
}

/// The tag [`create_temp_as`] puts in the name for `owner`: its ASCII letters and digits.
pub fn tag_for(owner: &str) -> String {
    owner.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// The owner tag in a staging file's name (`.ferry-<tag>-<uuid>.part`), as
/// [`create_temp_as`] wrote it: `None` for any other name.
pub fn tag_of(name: &str) -> Option<&str> {
    let inner = name.strip_prefix(".ferry-")?.strip_suffix(".part")?;
    let (tag, unique) = inner.rsplit_once('-')?;
    let alnum = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (alnum(tag) && alnum(unique)).then_some(tag)
}

/// Durably moves the staging file `temp` to `dest`: fsync the file, rename over `dest`, then
/// fsync `dest`'s directory so the new name survives a crash.
pub fn finalize(temp: &Path, dest: &Path) -> Result<(), StagingError> {
    let file = safe_open::open_file(temp, Access::ReadNoFollow)
        .map_err(|e| StagingError::new(temp, "open", e))?;
    file.sync_all()
        .map_err(|e| StagingError::new(temp, "sync", e))?;
    drop(file);
    let mut handover = Handover::default();
    handover.hand_over(temp, dest)?;
    handover.sync()
}

/// Hands staging files over to their destinations through one handle per destination
/// directory, opened once (`O_DIRECTORY|O_NOFOLLOW`, never blocking): the file's mode change,
/// its rename (`renameat`) and the directory's fsync all act on that directory, whatever its
/// path is swapped for in between, and nothing but a directory and a regular staging file is
/// ever opened. Call it as the job's owner (`crate::safe_open::blocking`), so the kernel checks
/// the owner may rename there.
#[derive(Debug, Default)]
pub struct Handover {
    dirs: BTreeMap<PathBuf, File>,
}

impl Handover {
    /// Hands over a staging file whose bytes are already durable (the fetcher synced them
    /// before it reported the file done): gives it the ordinary mode (0644) and renames it
    /// over `dest`. The staging file must be in `dest`'s directory, as [`create_temp_as`] puts
    /// it. [`Handover::sync`] makes the renames durable afterwards, once per directory.
    pub fn hand_over(&mut self, temp: &Path, dest: &Path) -> Result<(), StagingError> {
        let not_beside = || {
            StagingError::new(
                temp,
                format!("hand over to {}", dest.display()),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the staging file is not in the destination's directory",
                ),
            )
        };
        let (Some(dir), Some(temp_name), Some(dest_name)) =
            (dest.parent(), temp.file_name(), dest.file_name())
        else {
            return Err(not_beside());
        };
        if temp.parent() != Some(dir) {
            return Err(not_beside());
        }
        // A bare name is in the current directory.
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let handle = match self.dirs.entry(dir.to_path_buf()) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(
                safe_open::open_dir(dir)
                    .map_err(|e| StagingError::new(dir, "open directory", e))?,
            ),
        };
        // Staging files are private (0600) while incomplete; the delivered file gets the
        // ordinary mode a new file would have (0644), not the staging file's.
        let file = safe_open::open_file_at(&*handle, Path::new(temp_name), Access::ReadNoFollow)
            .map_err(|e| StagingError::new(temp, "open", e))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| StagingError::new(temp, "set permissions on", e))?;
        drop(file);
        nix::fcntl::renameat(&*handle, temp_name, &*handle, dest_name)
            .map_err(|e| StagingError::new(temp, format!("rename to {}", dest.display()), e.into()))
    }

    /// Makes the renames durable: one fsync per directory, however many files were handed
    /// over into it. (Not `syncfs`: its cost grows with everything else dirty on the file
    /// system, which other programs control.)
    pub fn sync(self) -> Result<(), StagingError> {
        for (path, dir) in self.dirs {
            dir.sync_all()
                .map_err(|e| StagingError::new(&path, "sync directory", e))?;
        }
        Ok(())
    }
}

/// Best-effort fsync of a directory (after renames into it); errors are ignored, see
/// [`try_sync_dir`] for the checked form.
pub fn sync_dir(dir: &Path) {
    // Some file systems refuse fsync on directories (EINVAL); there is nothing better to do
    // for callers that only want "as durable as the file system allows".
    let _ = try_sync_dir(dir);
}

/// Fsyncs a directory so that renames and creations in it are durable (a directory only:
/// anything else at `dir` is refused without blocking).
pub fn try_sync_dir(dir: &Path) -> Result<(), StagingError> {
    safe_open::open_dir(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StagingError::new(dir, "sync directory", e))
}

/// Deletes a staging file; a file that is already gone is fine.
pub fn remove(temp: &Path) -> Result<(), StagingError> {
    remove_as(temp, None)
}

/// [`remove`] as `identity`.
pub fn remove_as(temp: &Path, identity: Option<FsIdentity>) -> Result<(), StagingError> {
    match as_owner(identity, || std::fs::remove_file(temp)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StagingError::new(temp, "remove", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn staging_names_carry_their_tag() {
        let dir = tempfile::tempdir().unwrap();
        let tagged = create_temp_as(dir.path(), "5f60-64ca", None).unwrap();
        let name = tagged.file_name().unwrap().to_str().unwrap();
        assert_eq!(tag_of(name), Some("5f6064ca"));
        let plain = create_temp(dir.path()).unwrap();
        assert_eq!(tag_of(plain.file_name().unwrap().to_str().unwrap()), None);
        for other in [
            "f.part",
            ".ferry-a-b",
            ".ferry--b.part",
            ".ferry-a/b-c.part",
            "x.ferry-a-b.part",
        ] {
            assert_eq!(tag_of(other), None, "{other}");
        }
    }

    #[test]
    fn create_finalize_remove() {
        let dir = tempfile::tempdir().unwrap();
        let temp = create_temp(dir.path()).unwrap();
        let name = temp.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            name.starts_with(".ferry-") && name.ends_with(".part"),
            "{name}"
        );
        assert_eq!(temp.parent(), Some(dir.path()));
        let mode = std::fs::metadata(&temp).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&temp, b"hello").unwrap();

        let dest = dir.path().join("out.txt");
        std::fs::write(&dest, b"old").unwrap();
        finalize(&temp, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        assert!(!temp.exists());

        // Removing a missing file is fine; removing an existing one works.
        remove(&temp).unwrap();
        let t2 = create_temp(dir.path()).unwrap();
        assert_ne!(t2, temp);
        remove(&t2).unwrap();
        assert!(!t2.exists());
        sync_dir(dir.path());
    }

    #[test]
    fn a_handover_keeps_to_the_directory_it_opened() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("A");
        std::fs::create_dir(&dir).unwrap();
        let (t1, t2) = (create_temp(&dir).unwrap(), create_temp(&dir).unwrap());
        let mut handover = Handover::default();
        handover.hand_over(&t1, &dir.join("one")).unwrap();
        // The directory's path now names a symlink to a FIFO.
        let moved = base.path().join("A.old");
        std::fs::rename(&dir, &moved).unwrap();
        let fifo = base.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::symlink(&fifo, &dir).unwrap();
        handover.hand_over(&t2, &dir.join("two")).unwrap();
        handover.sync().unwrap();
        assert!(moved.join("one").exists() && moved.join("two").exists());
        let mode = std::fs::metadata(moved.join("two"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        // A fresh handover refuses the symlink, without blocking on the FIFO.
        let err = Handover::default()
            .hand_over(&dir.join("x"), &dir.join("y"))
            .unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::PermissionDenied, "{err}");
    }

    #[test]
    fn errors_name_the_path_and_action() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = create_temp(&missing).unwrap_err();
        assert_eq!(err.action, "create");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = finalize(&missing, &dir.path().join("x")).unwrap_err();
        assert!(err.to_string().contains("could not open"), "{err}");
    }
}
