//! Starting a per-user `ferryd` in the background when none answers, for the CLI and for
//! applications alike ([`ConnectOptions::autostart`], [`Client::connect_with`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::{Client, ClientError};

/// How [`Client::connect_with`] reaches the daemon: which socket, and whether to start a
/// per-user `ferryd` when none answers there (off by default: an application opts in, as the
/// `ferry` CLI does unless `--no-autostart`).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    socket: Option<PathBuf>,
    autostart: bool,
    daemon: Option<PathBuf>,
    daemon_args: Vec<OsString>,
    on_autostart: Option<fn(&str)>,
}

impl ConnectOptions {
    /// The defaults: the socket [`crate::connect::find_socket`] finds, no autostart.
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// Connects to this socket instead of the one found (an empty path means "find it").
    pub fn socket(mut self, socket: impl Into<PathBuf>) -> ConnectOptions {
        let socket = socket.into();
        self.socket = (!socket.as_os_str().is_empty()).then_some(socket);
        self
    }

    /// Whether to start `ferryd --socket SOCKET` in the background when nothing answers on
    /// the socket (nothing listens there, or a stale socket file is left). The daemon outlives
    /// the application, as the CLI's does; it keeps its state in its default state directory
    /// (`FERRY_STATE_DIR` and the rest of the environment are inherited) unless
    /// [`ConnectOptions::daemon_args`] say otherwise.
    pub fn autostart(mut self, on: bool) -> ConnectOptions {
        self.autostart = on;
        self
    }

    /// The `ferryd` binary to start (default: [`daemon_binary`]).
    pub fn daemon(mut self, binary: impl Into<PathBuf>) -> ConnectOptions {
        self.daemon = Some(binary.into());
        self
    }

    /// Extra arguments for a started `ferryd`, after `--socket SOCKET --log-to-state-dir`
    /// (e.g. `--state-dir DIR`, `--config FILE`).
    pub fn daemon_args<I, A>(mut self, args: I) -> ConnectOptions
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.daemon_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Called with one line when a daemon is being started (the CLI prints it on stderr).
    pub fn on_autostart(mut self, log: fn(&str)) -> ConnectOptions {
        self.on_autostart = Some(log);
        self
    }
}

impl Client {
    /// Connects as `options` say: to their socket or the one found, starting a per-user
    /// `ferryd` there first when autostart is on and nothing answers
    /// ([`ClientError::Autostart`] says why a start failed).
    pub async fn connect_with(options: &ConnectOptions) -> Result<Client, ClientError> {
        let socket = match &options.socket {
            Some(s) => s.clone(),
            None => crate::connect::find_socket()?,
        };
        if !options.autostart {
            return Client::connect_to(&socket).await;
        }
        let log = options.on_autostart.unwrap_or(|_| {});
        start_and_connect(&socket, options, log).await
    }
}

/// Finds the `ferryd` binary: `FERRY_DAEMON`, else next to the current executable (also one
/// directory up, for test binaries in `target/*/deps`), else `ferryd` on `PATH`.
pub fn daemon_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_DAEMON").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        for cand in [dir.join("ferryd"), dir.join("..").join("ferryd")] {
            if cand.is_file() {
                return cand;
            }
        }
    }
    PathBuf::from("ferryd")
}

/// Connects to `socket`, starting `ferryd --socket socket` when nothing answers. `log` gets a
/// line saying a daemon was started. The daemon's own state dir follows its defaults
/// (`FERRY_STATE_DIR` is inherited).
pub async fn connect_or_start(
    socket: &Path,
    log: impl FnOnce(&str),
) -> Result<Client, ClientError> {
    start_and_connect(socket, &ConnectOptions::default(), log).await
}

/// [`connect_or_start`] with the binary and arguments of `options`.
async fn start_and_connect(
    socket: &Path,
    options: &ConnectOptions,
    log: impl FnOnce(&str),
) -> Result<Client, ClientError> {
    match Client::connect_to(socket).await {
        Ok(c) => return Ok(c),
        Err(ClientError::Connect { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) => {}
        Err(e) => return Err(e),
    }
    crate::connect::prepare_fallback_dir(socket)?;
    let bin = options.daemon.clone().unwrap_or_else(daemon_binary);
    log(&format!(
        "ferry: no daemon answered on {}; starting {} in the background",
        socket.display(),
        bin.display()
    ));
    // The daemon logs to a bounded file in its state dir; stderr is piped only so that a failure
    // before it listens (say, an unusable state directory) can be quoted to the user.
    let mut child = tokio::process::Command::new(&bin)
        .arg("--socket")
        .arg(socket)
        .arg("--log-to-state-dir")
        .args(&options.daemon_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            ClientError::Autostart(format!(
                "cannot start {}: {e}; install ferryd or set FERRY_DAEMON",
                bin.display()
            ))
        })?;
    // The daemon outlives us; it is reaped by init once we exit.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Client::connect_to(socket).await {
            Ok(c) => return Ok(c),
            Err(_) if tokio::time::Instant::now() < deadline => {}
            Err(e) => {
                return Err(ClientError::Autostart(format!(
                    "ferryd did not start listening on {} within 10 s: {e}",
                    socket.display()
                )));
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Lost a race with another client's autostart: its daemon may be up now.
            if let Ok(c) = Client::connect_to(socket).await {
                return Ok(c);
            }
            let said = early_stderr(&mut child).await;
            return Err(ClientError::Autostart(match said {
                Some(said) => format!(
                    "ferryd exited with {status} before listening on {}: {said} \
                     (fix that, or set FERRY_STATE_DIR to a writable directory if the state \
                     directory is the problem; `ferry daemon` runs it in the foreground)",
                    socket.display()
                ),
                None => format!(
                    "ferryd exited with {status} before listening on {}; run `ferry daemon` to see why",
                    socket.display()
                ),
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What an exited daemon wrote to stderr (its last lines, without the `ferryd: ` prefix), if
/// anything: the real cause of a failed start.
async fn early_stderr(child: &mut tokio::process::Child) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut pipe = child.stderr.take()?;
    let mut buf = Vec::new();
    // The process has exited, so the pipe ends; the bound guards a grandchild holding it open.
    let read = pipe.read_to_end(&mut buf);
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    summarize_stderr(&String::from_utf8_lossy(&buf))
}

/// The last non-empty lines of a daemon's stderr (at most 3), joined with `; `.
pub fn summarize_stderr(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_prefix("ferryd: ").unwrap_or(l))
        .collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    (!tail.is_empty()).then(|| tail.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_summaries_keep_the_cause() {
        assert_eq!(summarize_stderr(" \n"), None);
        assert_eq!(
            summarize_stderr("ferryd: cannot create the state directory /x: Permission denied\n")
                .as_deref(),
            Some("cannot create the state directory /x: Permission denied")
        );
        assert_eq!(summarize_stderr("a\nb\nc\nd").as_deref(), Some("b; c; d"));
    }
}
