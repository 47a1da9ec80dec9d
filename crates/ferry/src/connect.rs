//! Reaching the daemon: `--socket` / `FERRY_SOCKET`, else the per-user socket, else the system
//! socket; a per-user `ferryd` is started when none answers, unless `--no-autostart`.

use std::path::PathBuf;

use anyhow::Context as _;
use ferry_client::{Client, autostart, connect};

/// The global options that decide how to reach the daemon.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// An explicit socket (`--socket` or `FERRY_SOCKET`).
    pub socket: Option<PathBuf>,
    /// Whether to refrain from starting a daemon.
    pub no_autostart: bool,
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
        autostart::connect_or_start(&socket, |msg| errln!("{msg}")).await?
    };
    Ok(client)
}
