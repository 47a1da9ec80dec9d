//! Starting a per-user `ferryd` in the background when none answers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::{Client, ClientError};

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
    let bin = daemon_binary();
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
