//! Claiming the state directory (one daemon per state dir) and the socket (a stale socket from
//! a dead daemon is replaced; a live one is never stolen), and the accept loop: who may connect,
//! the per-user connection limit, and the refusals.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;

use crate::config::Mode;
use crate::daemon::{Caller, Daemon};
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
    // An existing directory keeps the mode it was made with; the store in it holds credentials.
    {
        use std::os::unix::fs::MetadataExt;
        let meta =
            std::fs::metadata(dir).map_err(DaemonError::io("inspect the state directory", dir))?;
        if let Some(want) = tightened(meta.mode() & 0o7777, 0o700) {
            tracing::warn!(dir = %dir.display(), mode = format!("{:04o}", meta.mode() & 0o7777),
                "the state directory was open to other users; setting it to 0700");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(want)).map_err(
                DaemonError::io("make the state directory private (mode 0700)", dir),
            )?;
        }
    }
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

/// Whether a caller may use this daemon at all: a per-user daemon serves its own uid and root
/// only, whatever the socket's mode (a socket made world-accessible by mistake must not let
/// another user act with the owner's rights); the system daemon serves everyone and decides
/// per job. The sentence says why not, for the log and the caller.
pub fn may_connect(mode: Mode, own_uid: u32, caller: u32) -> Result<(), String> {
    if mode == Mode::System || caller == own_uid || caller == 0 {
        return Ok(());
    }
    Err(format!(
        "this is the per-user ferryd of uid {own_uid}; uid {caller} may not use it \
         (connect to your own ferryd, or to the system one at /run/ferry/ferryd.sock)"
    ))
}

/// `private` when the permission bits `current` grant group or others anything, else `None`
/// (nothing to correct).
pub fn tightened(current: u32, private: u32) -> Option<u32> {
    (current & 0o077 != 0).then_some(private)
}

/// The mode a per-user socket handed over by socket activation should have: read and write for
/// the owner only. `None` when `current` (its permission bits) already grants nobody else
/// access, or in system mode (where everyone may connect).
pub fn private_socket_mode(mode: Mode, current: u32) -> Option<u32> {
    if mode == Mode::User {
        tightened(current, 0o600)
    } else {
        None
    }
}

/// Gives a per-user socket handed over by socket activation the owner-only mode it needs, when
/// the unit file left it open to others (`SocketMode=` defaults to 0666).
pub fn secure_activated_socket(
    listener: &std::os::unix::net::UnixListener,
    mode: Mode,
) -> Result<(), DaemonError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(addr) = listener.local_addr() else {
        return Ok(());
    };
    let Some(path) = addr.as_pathname() else {
        // An abstract or unnamed socket has no file mode to fix.
        return Ok(());
    };
    let meta =
        std::fs::metadata(path).map_err(DaemonError::io("inspect the activated socket", path))?;
    if let Some(want) = private_socket_mode(mode, meta.mode() & 0o7777) {
        tracing::warn!(socket = %path.display(), mode = format!("{:04o}", meta.mode() & 0o7777),
            "the socket-activated per-user socket was open to other users; setting it to 0600 \
             (set SocketMode=0600 in ferryd.socket)");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want)).map_err(
            DaemonError::io("make the activated socket private (mode 0600)", path),
        )?;
    }
    Ok(())
}

/// Accepts connections until the daemon stops: identifies each caller (`SO_PEERCRED`), refuses
/// those [`may_connect`] turns away and those past the per-user connection limit (with an
/// explanation, bounded), and serves the rest.
pub async fn accept_loop(daemon: &Arc<Daemon>, listener: UnixListener) {
    let d = daemon;
    let counts = Arc::new(crate::limits::UidCounts::default());
    let limit = d.opts().limits.connections_per_user;
    // Refusals in progress hold a descriptor for a moment each; beyond this many at once a
    // refused connection is closed without the explanation, so a flood cannot exhaust them.
    let refusals = Arc::new(tokio::sync::Semaphore::new(64));
    let own_uid = nix::unistd::geteuid().as_raw();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the caller's credentials; closing");
                continue;
            }
        };
        let caller = Caller {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        };
        if let Err(why) = may_connect(d.opts().mode, own_uid, caller.uid) {
            tracing::warn!(
                uid = caller.uid,
                pid = caller.pid,
                "connection refused: {why}"
            );
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                let error =
                    ferry_proto::ProtoError::kind(ferry_proto::ErrorKind::AccessDenied, why);
                tokio::spawn(async move {
                    send_refusal(stream, error).await;
                    drop(permit);
                });
            }
            continue;
        }
        let Some(slot) = counts.take(caller.uid, limit) else {
            tracing::warn!(
                uid = caller.uid,
                pid = caller.pid,
                limit,
                "connection refused: the user has [limits] connections_per_user connections open"
            );
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse_connection(stream, caller.uid, limit).await;
                    drop(permit);
                });
            }
            continue;
        };
        let (r, w) = stream.into_split();
        let session = Arc::new(crate::api::Session::new(d.clone(), caller));
        let bounds = d.opts().limits.connection_bounds();
        let (_, task) =
            ferry_rpc::serve_bounded(r, w, Arc::new(crate::api::Connection(session)), bounds);
        // The serving task ends when the connection closes; the slot goes back then.
        tokio::spawn(async move {
            let _ = task.await;
            drop(slot);
        });
    }
}

/// Answers a connection over the per-user limit with one `limit_exceeded` error line (id
/// `null`: no request was read) and closes it. What the caller already sent is drained first,
/// so it reads the error and then a clean end of stream rather than a reset. Bounded in time
/// and bytes: a caller that never reads or never stops writing cannot keep the task.
async fn refuse_connection(stream: tokio::net::UnixStream, uid: u32, limit: u64) {
    let error = crate::limits::exceeded(
        "connections_per_user",
        limit,
        format!(
            "user {uid} already has {limit} connections open to ferryd; close some and try again"
        ),
    );
    send_refusal(stream, error).await;
}

/// Writes `error` as one answer line (id `null`) and closes the connection, draining what the
/// caller already sent (bounded in time and bytes) so it reads the line, not a reset.
async fn send_refusal(mut stream: tokio::net::UnixStream, error: ferry_proto::ProtoError) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let message = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": error});
    let Ok(mut line) = serde_json::to_vec(&message) else {
        return;
    };
    line.push(b'\n');
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(&line).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_per_user_daemon_serves_its_owner_and_root_only() {
        assert!(may_connect(Mode::User, 1000, 1000).is_ok());
        assert!(may_connect(Mode::User, 1000, 0).is_ok());
        let why = may_connect(Mode::User, 1000, 1001).unwrap_err();
        assert!(
            why.contains("uid 1001") && why.contains("uid 1000"),
            "{why}"
        );
        assert!(may_connect(Mode::System, 0, 1001).is_ok());
    }

    #[test]
    fn only_modes_open_to_others_are_tightened() {
        assert_eq!(tightened(0o755, 0o700), Some(0o700));
        assert_eq!(tightened(0o701, 0o700), Some(0o700));
        assert_eq!(tightened(0o700, 0o700), None);
        assert_eq!(tightened(0o500, 0o700), None);
    }

    #[test]
    fn an_activated_per_user_socket_is_made_owner_only() {
        assert_eq!(private_socket_mode(Mode::User, 0o666), Some(0o600));
        assert_eq!(private_socket_mode(Mode::User, 0o660), Some(0o600));
        assert_eq!(private_socket_mode(Mode::User, 0o600), None);
        assert_eq!(private_socket_mode(Mode::System, 0o666), None);
    }
}
