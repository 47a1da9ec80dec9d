//! Running a real `ferryd` for a benchmark.
//!
//! Benchmarks measure the shipped daemon binary, not the library in-process, so that process
//! boundaries, logging and the socket are all part of what is measured. The daemon gets its
//! own socket and state dir under a directory the benchmark chooses (which is how a benchmark
//! puts the SQLite store on a given file system), a 1 s retry-delay floor, and is considered
//! up when it logs "ferryd is ready" — never after a sleep.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// How long the daemon may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the daemon may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How many of the daemon's last log lines are kept for error messages.
const LOG_TAIL_LINES: usize = 40;

/// The `ferryd` binary to run: `explicit`, else `ferryd` in the directory of this executable
/// (cargo puts both in `target/<profile>/`).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--ferryd {}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let dir = exe
        .parent()
        .context("this executable's path has no parent directory")?;
    let bin = dir.join("ferryd");
    if !bin.is_file() {
        bail!(
            "no ferryd next to this binary ({}); build it with `cargo build --release -p ferryd` \
             (same profile as ferry-bench) or pass --ferryd PATH",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running `ferryd`; killed when dropped, stopped cleanly by [`Daemon::stop`].
pub struct Daemon {
    child: Child,
    socket: PathBuf,
    state_dir: PathBuf,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Daemon {
    /// Starts `bin` with its socket at `root/ferryd.sock` and its state in `root/state`, and
    /// waits until it is ready to serve.
    pub async fn start(bin: &Path, root: &Path) -> Result<Daemon> {
        Daemon::start_with(bin, root, &[]).await
    }

    /// [`Daemon::start`] with `extra` flags added to the command line (e.g. raised limits).
    pub async fn start_with(bin: &Path, root: &Path, extra: &[&str]) -> Result<Daemon> {
        let socket = root.join("ferryd.sock");
        let state_dir = root.join("state");
        let mut child = Command::new(bin)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--retry-delay-floor", "1"])
            .args(extra)
            // The ready line is logged at info level; the caller's settings must not hide it,
            // and the flags above must not be overridden from the environment.
            .env("FERRY_LOG", "info")
            // Plain text: the log's tail goes into error messages.
            .env("NO_COLOR", "1")
            .env_remove("FERRY_SOCKET")
            .env_remove("FERRY_STATE_DIR")
            // A user's own configuration (a peer cache, say) must not change the numbers; a
            // `--config` among the arguments still wins.
            .env("FERRY_CONFIG", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stderr = child
            .stderr
            .take()
            .context("ferryd's stderr was not captured")?;
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL_LINES)));
        let (ready_tx, ready_rx) = oneshot::channel();
        let tail = log.clone();
        // Drained for the daemon's whole life: a full pipe would block its logging and so
        // distort (or stall) the benchmark.
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("ferryd is ready")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
                let mut kept = tail.lock().unwrap_or_else(|p| p.into_inner());
                if kept.len() == LOG_TAIL_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        let daemon = Daemon {
            child,
            socket,
            state_dir,
            log,
        };
        match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(())) => Ok(daemon),
            Ok(Err(_)) => bail!(
                "ferryd exited before it was ready; its log ends:\n{}",
                daemon.log_tail()
            ),
            Err(_) => bail!(
                "ferryd was not ready within {READY_TIMEOUT:?}; its log ends:\n{}",
                daemon.log_tail()
            ),
        }
    }

    /// The daemon's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's process id (`None` once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The daemon's state dir.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The last lines the daemon logged, for error messages.
    pub fn log_tail(&self) -> String {
        let tail = self.log.lock().unwrap_or_else(|p| p.into_inner());
        tail.iter()
            .map(|l| format!("  [ferryd] {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL after [`STOP_TIMEOUT`]).
    pub async fn stop(mut self) -> Result<()> {
        let Some(pid) = self.child.id() else {
            // Already reaped: nothing left to stop.
            return Ok(());
        };
        let pid = i32::try_from(pid).context("ferryd's pid does not fit a pid_t")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .context("cannot send SIGTERM to ferryd")?;
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => bail!(
                "ferryd exited with {status} after SIGTERM; its log ends:\n{}",
                self.log_tail()
            ),
            Ok(Err(e)) => Err(e).context("cannot wait for ferryd"),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!(
                    "ferryd did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed); its log ends:\n{}",
                    self.log_tail()
                )
            }
        }
    }
}
