//! Claiming the state directory (one daemon per state dir) and the socket (a stale socket from
//! a dead daemon is replaced; a live one is never stolen).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

use crate::config::Mode;
use crate::error::DaemonError;

/// Holds the state-directory lock for the daemon's lifetime. The lock file holds the pid while
/// a daemon runs and is emptied by a clean exit, so a pid found there at start means the last
/// daemon died without one (`kill -9`, a crash, power loss).
#[derive(Debug)]
pub struct StateLock {
    file: File,
    /// The previous daemon on this state directory did not exit cleanly.
    pub previous_crashed: bool,
}

impl StateLock {
    /// Records a clean exit (called last, after the store is flushed).
    pub fn mark_clean_exit(&self) {
        let _ = self.file.set_len(0);
        let _ = self.file.sync_all();
    }
}

/// Creates the state directory (0700) and takes its lock, or names the daemon holding it.
pub fn lock_state_dir(dir: &Path) -> Result<StateLock, DaemonError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(DaemonError::io("create the state directory", dir))?;
    let path = dir.join("ferryd.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(DaemonError::io("open the lock file", &path))?;
    if file.try_lock().is_err() {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = pid.trim();
        let who = if pid.is_empty() {
            "another ferryd".to_string()
        } else {
            format!("another ferryd (pid {pid})")
        };
        return Err(DaemonError::AlreadyRunning(format!(
            "{who} is already using the state directory {}; stop it first, or use another --state-dir",
            dir.display()
        )));
    }
    let mut previous = String::new();
    let previous_crashed =
        file.read_to_string(&mut previous).is_ok() && !previous.trim().is_empty();
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = writeln!(file, "{}", std::process::id());
    let _ = file.sync_all();
    Ok(StateLock {
        file,
        previous_crashed,
    })
}

/// Binds the listening socket, replacing a stale socket file but never a live one.
pub fn bind(path: &Path, mode: Mode) -> Result<UnixListener, DaemonError> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        let dir_mode = match mode {
            Mode::User => 0o700,
            Mode::System => 0o755,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(parent)
            .map_err(DaemonError::io("create the socket directory", parent))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_socket() {
                return Err(DaemonError::Config(format!(
                    "{} exists and is not a socket; remove it or choose another --socket",
                    path.display()
                )));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(DaemonError::AlreadyRunning(format!(
                    "a daemon is already listening on {}; stop it first, or use another --socket",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(DaemonError::io("remove the stale socket", path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DaemonError::io("inspect the socket path", path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(DaemonError::io("listen on", path))?;
    // System mode: everyone may connect; access is decided per job by the caller's uid.
    let sock_mode = match mode {
        Mode::User => 0o600,
        Mode::System => 0o666,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(sock_mode))
        .map_err(DaemonError::io("set permissions on", path))?;
    Ok(listener)
}
