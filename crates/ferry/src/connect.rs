//! Reaching the daemon: `--socket` / `FERRY_SOCKET`, else the per-user socket, else the system
//! socket; a per-user `ferryd` is started when none answers, unless `--no-autostart`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use ferry_client::{Client, ConnectOptions, connect};

/// The global options that decide how to reach the daemon.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// An explicit socket (`--socket` or `FERRY_SOCKET`).
    pub socket: Option<PathBuf>,
    /// Whether to refrain from starting a daemon.
    pub no_autostart: bool,
}

/// Set once the daemon's version was checked, so one `ferry` run warns at most once.
static VERSION_CHECKED: AtomicBool = AtomicBool::new(false);

/// The warning for a daemon whose `ferry.hello` `server` (`ferryd X`) is not this ferry's
/// version, or `None` when they match.
pub fn version_mismatch(server: &str, ours: &str) -> Option<String> {
    let theirs = server.strip_prefix("ferryd ").unwrap_or(server);
    (theirs != ours).then(|| {
        format!(
            "ferry: warning: the daemon is {server} but this is ferry {ours}; restart it (`ferry daemon stop`) to run the matching version"
        )
    })
}

/// Asks the daemon its version (once per run) and warns on stderr when it differs from ours.
async fn check_version(client: &Client) {
    if VERSION_CHECKED.swap(true, Ordering::Relaxed) {
        return;
    }
    if let Ok(hello) = client.hello().await
        && let Some(warning) = version_mismatch(&hello.server, env!("CARGO_PKG_VERSION"))
    {
        errln!("{warning}");
    }
}

/// Connects to the daemon, starting one (and saying so on stderr) when allowed.
pub async fn connect(target: &Target) -> anyhow::Result<Client> {
    let socket = match target.socket.as_ref().filter(|s| !s.as_os_str().is_empty()) {
        Some(s) => s.clone(),
        None => connect::find_socket()?,
    };
    let client = if target.no_autostart {
        Client::connect_to(&socket).await.with_context(|| {
            "no daemon answered (--no-autostart is set; start one with `ferry daemon`)".to_owned()
        })?
    } else {
        // The library's autostart, the one applications opt into: one implementation.
        let options = ConnectOptions::new()
            .socket(socket)
            .autostart(true)
            .on_autostart(|msg| errln!("{msg}"));
        Client::connect_with(&options).await?
    };
    check_version(&client).await;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_different_daemon_version_is_named() {
        assert_eq!(version_mismatch("ferryd 0.1.0", "0.1.0"), None);
        let w = version_mismatch("ferryd 0.0.9", "0.1.0").unwrap();
        assert!(
            w.contains("ferryd 0.0.9") && w.contains("ferry 0.1.0"),
            "{w}"
        );
    }
}
