//! Finding the daemon's socket: `FERRY_SOCKET`, else the per-user socket, else the system one.

use std::path::PathBuf;

use crate::ClientError;

/// The system daemon's socket.
pub const SYSTEM_SOCKET: &str = "/run/ferry/ferryd.sock";

/// The per-user socket path: `$XDG_RUNTIME_DIR/ferry/ferryd.sock`, or, where no login session
/// set `XDG_RUNTIME_DIR` (containers, CI, `su`), `/tmp/ferry-<uid>/ferryd.sock` (see
/// [`prepare_fallback_dir`]).
pub fn user_socket() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d).join("ferry").join("ferryd.sock"));
    }
    let uid = current_uid()?;
    Some(
        std::env::temp_dir()
            .join(format!("ferry-{uid}"))
            .join("ferryd.sock"),
    )
}

fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is the process's uid; no unsafe getuid() needed.
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Creates the fallback socket directory (0700) and refuses it unless this user owns it and
/// nobody else can write to it: another user must not be able to plant a socket there.
pub fn prepare_fallback_dir(socket: &std::path::Path) -> Result<(), ClientError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let Some(dir) = socket.parent() else {
        return Ok(());
    };
    // Only the fallback location is ours to create and vet; an explicit socket is the caller's.
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|v| !v.is_empty())
        || user_socket().as_deref() != Some(socket)
    {
        return Ok(());
    }
    let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    let meta = std::fs::symlink_metadata(dir).map_err(|e| {
        ClientError::NoSocket(format!(
            "cannot create the socket directory {}: {e}",
            dir.display()
        ))
    })?;
    if !meta.is_dir() || Some(meta.uid()) != current_uid() || meta.mode() & 0o022 != 0 {
        return Err(ClientError::NoSocket(format!(
            "{} is not a private directory owned by this user; remove it, or set XDG_RUNTIME_DIR or FERRY_SOCKET",
            dir.display()
        )));
    }
    Ok(())
}

/// Where to connect: `FERRY_SOCKET`, else the per-user socket if it exists, else the system
/// socket if it exists, else the per-user path (where an autostarted daemon will listen).
pub fn find_socket() -> Result<PathBuf, ClientError> {
    if let Some(s) = std::env::var_os("FERRY_SOCKET").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(s));
    }
    let user = user_socket();
    if let Some(u) = &user
        && u.exists()
    {
        return Ok(u.clone());
    }
    let system = PathBuf::from(SYSTEM_SOCKET);
    if system.exists() {
        return Ok(system);
    }
    user.ok_or_else(|| {
        ClientError::NoSocket(
            "no daemon socket found: FERRY_SOCKET and XDG_RUNTIME_DIR are unset and there is no system daemon; \
             set FERRY_SOCKET, or XDG_RUNTIME_DIR for a per-user daemon"
                .into(),
        )
    })
}
