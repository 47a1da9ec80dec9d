//! `ferry daemon [ferryd args…]`: replaces this process with `ferryd` in the foreground.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::Path;

use ferry_client::autostart::daemon_binary;

/// Whether the user already passed ferryd a socket.
fn has_socket_flag(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == "--socket" || a.starts_with("--socket=")
    })
}

/// Execs ferryd with `args` (plus `--socket` when one was given to `ferry`); returns only if
/// the exec failed.
pub fn exec(socket: Option<&Path>, args: &[OsString]) -> anyhow::Result<u8> {
    let bin = daemon_binary();
    let mut cmd = std::process::Command::new(&bin);
    // `ferry --socket X daemon` should serve the socket the other verbs would use.
    if let Some(s) = socket.filter(|s| !s.as_os_str().is_empty() && !has_socket_flag(args)) {
        cmd.arg("--socket").arg(s);
    }
    cmd.args(args);
    let err = cmd.exec();
    anyhow::bail!(
        "cannot run {}: {err}; install ferryd next to ferry, or set FERRY_DAEMON to its path",
        bin.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_flag_detection() {
        assert!(has_socket_flag(&["--socket".into(), "/s".into()]));
        assert!(has_socket_flag(&["--socket=/s".into()]));
        assert!(!has_socket_flag(&["--state-dir".into(), "/d".into()]));
    }
}
