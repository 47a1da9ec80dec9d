//! Finding the daemon's socket: `FERRY_SOCKET`, else the per-user socket, else the system one.

use std::path::PathBuf;

use crate::ClientError;

/// The system daemon's socket.
pub const SYSTEM_SOCKET: &str = "/run/ferry/ferryd.sock";

/// The per-user socket path (`$XDG_RUNTIME_DIR/ferry/ferryd.sock`), if `XDG_RUNTIME_DIR` is set.
pub fn user_socket() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(|d| PathBuf::from(d).join("ferry").join("ferryd.sock"))
}

/// Where to connect: `FERRY_SOCKET`, else the per-user socket if it exists, else the system
/// socket if it exists, else the per-user path (where an autostarted daemon will listen).
pub fn find_socket() -> Result<PathBuf, ClientError> {
    if let Some(s) = std::env::var_os("FERRY_SOCKET").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(s));
    }
    let user = user_socket();
    if let Some(u) = &user
        && u.exists() {
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
