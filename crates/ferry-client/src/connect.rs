//! Finding the daemon's socket (`FERRY_SOCKET`, else the per-user socket, else the system one)
//! and deciding whether it is safe to talk to: another user must not be able to stand in for
//! the daemon and read what the caller sends (tokens in custom headers, credentials).

use std::path::{Path, PathBuf};

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
    let uid = current_uid();
    Some(
        std::env::temp_dir()
            .join(format!("ferry-{uid}"))
            .join("ferryd.sock"),
    )
}

/// The caller's effective uid: the identity the daemon will see and the files are checked for.
fn current_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Which directory rule a socket path falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// The discovered per-user socket ([`user_socket`]): its directory must be the caller's.
    User,
    /// The system socket ([`SYSTEM_SOCKET`]): its directory must be root's.
    System,
    /// A path the caller named (`FERRY_SOCKET`, `--socket`): only the listener is checked.
    Explicit,
}

impl SocketKind {
    /// The rule for `socket` in this environment.
    pub fn of(socket: &Path) -> SocketKind {
        if socket == Path::new(SYSTEM_SOCKET) {
            SocketKind::System
        } else if user_socket().as_deref() == Some(socket) {
            SocketKind::User
        } else {
            SocketKind::Explicit
        }
    }
}

/// The owner and mode bits of a socket's directory, as `lstat` reports them.
#[derive(Debug, Clone, Copy)]
pub struct DirFacts {
    /// Whether it is a directory (not a symlink or anything else).
    pub is_dir: bool,
    /// Its owner.
    pub uid: u32,
    /// Its permission bits.
    pub mode: u32,
}

/// Decides whether a socket's directory may be trusted: the per-user socket's directory must
/// be a real directory owned by the caller with mode 0700 (nobody else may plant or replace a
/// socket there, nor reach it), the system socket's one owned by root and writable by root
/// only. An explicit path is the caller's choice; only the listener check applies to it.
pub fn check_socket_dir(kind: SocketKind, dir: &DirFacts, caller: u32) -> Result<(), String> {
    let (owner, bad_bits, rule) = match kind {
        SocketKind::Explicit => return Ok(()),
        SocketKind::User => (caller, 0o077, "owned by you with mode 0700"),
        SocketKind::System => (0, 0o022, "owned by root and writable only by root"),
    };
    if !dir.is_dir || dir.uid != owner || dir.mode & bad_bits != 0 {
        return Err(format!(
            "is not {rule} (it is {}owned by uid {} with mode {:04o}), so another user may have put \
             the socket there",
            if dir.is_dir { "" } else { "not a directory, " },
            dir.uid,
            dir.mode & 0o7777
        ));
    }
    Ok(())
}

/// Decides whether the process listening on a socket may be trusted with what the caller
/// sends: it must run as the caller or as root (the system daemon). Anything else is another
/// user's program posing as ferryd.
pub fn check_listener(listener_uid: u32, caller: u32) -> Result<(), String> {
    if listener_uid == caller || listener_uid == 0 {
        Ok(())
    } else {
        Err(format!(
            "the process listening on it runs as uid {listener_uid}, neither you (uid {caller}) nor root"
        ))
    }
}

/// Refuses `socket` before connecting when its directory breaks [`check_socket_dir`].
pub(crate) fn vet_socket_dir(socket: &Path) -> Result<(), ClientError> {
    let kind = SocketKind::of(socket);
    let Some(dir) = socket.parent().filter(|_| kind != SocketKind::Explicit) else {
        return Ok(());
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        // Nothing there: the connect fails with "not found" (and autostart creates it).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(unsafe_socket(
                socket,
                format!("its directory {} cannot be inspected: {e}", dir.display()),
            ));
        }
    };
    vet_dir_facts(socket, kind, &meta)
}

/// [`check_socket_dir`] on what `lstat` said about `socket`'s directory.
fn vet_dir_facts(
    socket: &Path,
    kind: SocketKind,
    meta: &std::fs::Metadata,
) -> Result<(), ClientError> {
    use std::os::unix::fs::MetadataExt;
    let facts = DirFacts {
        is_dir: meta.is_dir(),
        uid: meta.uid(),
        mode: meta.mode(),
    };
    let dir = socket.parent().unwrap_or(socket);
    check_socket_dir(kind, &facts, current_uid())
        .map_err(|why| unsafe_socket(socket, format!("its directory {} {why}", dir.display())))
}

/// Refuses a connected stream whose listener breaks [`check_listener`]; called before a byte
/// is sent.
pub(crate) fn vet_listener(
    socket: &Path,
    stream: &tokio::net::UnixStream,
) -> Result<(), ClientError> {
    let caller = current_uid();
    let cred = stream.peer_cred().map_err(|e| {
        unsafe_socket(
            socket,
            format!("the listener's identity (SO_PEERCRED) cannot be read: {e}"),
        )
    })?;
    check_listener(cred.uid(), caller).map_err(|why| unsafe_socket(socket, why))
}

fn unsafe_socket(socket: &Path, why: String) -> ClientError {
    ClientError::UnsafeSocket {
        socket: socket.to_path_buf(),
        why,
    }
}

/// Creates the fallback socket directory (0700) and refuses it unless this user owns it with
/// mode 0700: another user must not be able to plant a socket there.
pub fn prepare_fallback_dir(socket: &std::path::Path) -> Result<(), ClientError> {
    use std::os::unix::fs::DirBuilderExt;
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
    vet_dir_facts(socket, SocketKind::User, &meta)
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

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 1000;

    fn dir(uid: u32, mode: u32) -> DirFacts {
        DirFacts {
            is_dir: true,
            uid,
            mode: 0o040000 | mode,
        }
    }

    #[test]
    fn the_user_socket_directory_must_be_the_callers_and_private() {
        assert!(check_socket_dir(SocketKind::User, &dir(ME, 0o700), ME).is_ok());
        for bad in [
            dir(1001, 0o700),
            dir(0, 0o700),
            dir(ME, 0o755),
            dir(ME, 0o701),
        ] {
            assert!(
                check_socket_dir(SocketKind::User, &bad, ME).is_err(),
                "{bad:?}"
            );
        }
        let link = DirFacts {
            is_dir: false,
            ..dir(ME, 0o700)
        };
        let err = check_socket_dir(SocketKind::User, &link, ME).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn the_system_socket_directory_must_be_roots() {
        assert!(check_socket_dir(SocketKind::System, &dir(0, 0o755), ME).is_ok());
        for bad in [dir(ME, 0o755), dir(0, 0o775), dir(0, 0o777)] {
            assert!(
                check_socket_dir(SocketKind::System, &bad, ME).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_explicit_socket_directory_is_the_callers_choice() {
        assert!(check_socket_dir(SocketKind::Explicit, &dir(1001, 0o777), ME).is_ok());
    }

    #[test]
    fn only_the_caller_or_root_may_listen() {
        assert!(check_listener(ME, ME).is_ok());
        assert!(check_listener(0, ME).is_ok());
        let err = check_listener(1001, ME).unwrap_err();
        assert!(
            err.contains("uid 1001") && err.contains("uid 1000"),
            "{err}"
        );
    }
}
