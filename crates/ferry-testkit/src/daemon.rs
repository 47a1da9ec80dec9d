//! Booting the real `ferryd` binary in a temp dir: start, SIGTERM, `kill -9`, restart on the
//! same state, and a client connected to it. Readiness is the daemon's own "ready" log line,
//! not a sleep.

// Test support: failing loudly (panic) is the right behaviour for a broken fixture.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ferry_client::Client;
use ferry_proto::{Job, JobState};

/// The `ferryd` binary: `FERRY_TEST_FERRYD`, else next to the running test executable's
/// target directory (`target/<profile>/ferryd`).
pub fn ferryd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_TEST_FERRYD") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("ferryd")
}

/// A real daemon in a private temp dir.
pub struct TestDaemon {
    /// Owns the temp dir (socket, state, and a `files/` dir tests may use).
    pub dir: tempfile::TempDir,
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The daemon's state dir.
    pub state_dir: PathBuf,
    bin: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// Everything the daemon wrote to stderr, line by line, as it arrives.
    pub log: mpsc::Receiver<String>,
}

impl TestDaemon {
    /// Starts `ferryd` (found by [`ferryd_bin`]) with a 1 s retry-delay floor and a 10 ms grace
    /// before cold jobs leave memory.
    pub fn start() -> TestDaemon {
        TestDaemon::start_with(&ferryd_bin(), &[])
    }

    /// Starts the given `ferryd` binary with extra arguments.
    pub fn start_with(bin: &Path, extra: &[&str]) -> TestDaemon {
        let mut d = TestDaemon::prepare(bin, true, extra);
        d.spawn();
        d
    }

    /// Starts the given `ferryd` binary reading `config` (TOML, written to `ferryd.toml` in the
    /// temp dir) and without the 1 s retry-delay floor [`TestDaemon::start`] passes, so the
    /// file's `[daemon]` settings are what the daemon runs with (`extra` flags still win).
    pub fn start_with_config(bin: &Path, config: &str, extra: &[&str]) -> TestDaemon {
        let mut d = TestDaemon::prepare(bin, false, extra);
        let path = d.dir.path().join("ferryd.toml");
        std::fs::write(&path, config).expect("write ferryd.toml");
        d.args
            .extend(["--config".to_string(), path.to_string_lossy().into_owned()]);
        d.spawn();
        d
    }

    /// The daemon's temp dir and arguments, not started yet; `test_floor` adds the 1 s
    /// retry-delay floor.
    fn prepare(bin: &Path, test_floor: bool, extra: &[&str]) -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("ferry-test-")
            .tempdir()
            .expect("temp dir");
        // World-traversable so a test acting as another uid can reach the socket.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
        let socket = dir.path().join("ferryd.sock");
        let state_dir = dir.path().join("state");
        // Cold jobs leave memory 10 ms after activity (not 1 s), so every test also checks that
        // reading them back from the store is invisible to clients.
        let mut args = vec!["--resident-grace-ms".to_string(), "10".to_string()];
        if test_floor {
            args.extend(["--retry-delay-floor".to_string(), "1".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let (_tx, log) = mpsc::channel();
        TestDaemon {
            dir,
            socket,
            state_dir,
            bin: bin.to_path_buf(),
            args,
            child: None,
            log,
        }
    }

    /// A directory inside the temp dir for downloaded files.
    pub fn files_dir(&self) -> PathBuf {
        let p = self.dir.path().join("files");
        let _ = std::fs::create_dir_all(&p);
        p
    }

    fn spawn(&mut self) {
        let mut child = Command::new(&self.bin)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(&self.args)
            .env("FERRY_LOG", "info")
            // The developer's own configuration must not leak into tests; `--config` wins.
            .env("FERRY_CONFIG", "/dev/null")
            // Nor the host's NetworkManager or battery: tests that want them pass `--system-bus`.
            .env("FERRY_SYSTEM_BUS", "none")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (build it with `cargo build`)",
                    self.bin.display()
                )
            });
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[ferryd] {line}");
                let ready = line.contains("ferryd is ready");
                // Into the log first: a test that saw the start may look for this line.
                let _ = tx.send(line);
                if ready {
                    let _ = ready_tx.send(Ok(()));
                }
            }
            let _ = ready_tx.send(Err(()));
        });
        self.log = rx;
        self.child = Some(child);
        match ready_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            Ok(Err(())) => panic!("ferryd exited before it was ready"),
            Err(_) => panic!("ferryd was not ready within 20 s"),
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// `kill -9`, then reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        c.wait().ok()
    }

    /// Starts the daemon again on the same socket and state dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// A client connected to this daemon.
    pub async fn client(&self) -> Client {
        Client::connect_to(&self.socket)
            .await
            .expect("connect to ferryd")
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits (via `events.follow`, no polling) until the job satisfies `pred`; panics after
/// `timeout` with the job's last state.
pub async fn wait_for(
    client: &Client,
    job_id: &str,
    timeout: Duration,
    pred: impl Fn(&Job) -> bool,
) -> Job {
    client
        .follow_events(ferry_proto::params::EventsFollowParams {
            after: None,
            job_id: Some(job_id.into()),
        })
        .await
        .expect("events.follow");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let job = client.get(job_id).await.expect("job.get");
        if pred(&job) {
            return job;
        }
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("connection closed while waiting; job was {:?}", job.state),
            Err(_) => panic!(
                "timed out after {timeout:?} waiting on job {job_id}; it is {:?} with error {:?}",
                job.state, job.error
            ),
        }
    }
}

/// Waits for a state.
pub async fn wait_state(client: &Client, job_id: &str, state: JobState, timeout: Duration) -> Job {
    wait_for(client, job_id, timeout, |j| j.state == state).await
}
