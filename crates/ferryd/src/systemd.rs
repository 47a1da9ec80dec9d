//! systemd integration: readiness (`sd_notify`) and socket activation (`LISTEN_FDS`). Both are
//! no-ops outside systemd.

use std::os::unix::net::UnixListener;

/// Tells the service manager the daemon is ready (no-op without `NOTIFY_SOCKET`).
pub fn notify_ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell systemd that ferryd is ready");
    }
}

/// Tells the service manager the daemon is stopping.
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// The listening socket passed by socket activation, if any.
pub fn activated_listener() -> std::io::Result<Option<UnixListener>> {
    listenfd::ListenFd::from_env().take_unix_listener(0)
}
