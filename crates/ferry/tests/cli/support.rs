//! Running the `ferry` binary: a hermetic command, its captured output, and a test daemon the
//! command is pointed at.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ferry_testkit::daemon::{TestDaemon, ferryd_bin};
use serde_json::Value;
use tokio::process::Command;

/// Generous bound for one `ferry` run or one wait; a hang fails the test instead of blocking it.
pub const WAIT: Duration = Duration::from_secs(60);

/// The `ferry` binary under test.
pub fn ferry_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

/// A path as a command-line argument (temp dirs are UTF-8).
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A `ferry` command with nothing inherited that could point it at another daemon: no
/// `FERRY_SOCKET`, the `ferryd` of this build, and `state_dir` for any daemon it starts.
/// Output is captured, stdin is empty, and the process is killed if the test drops it.
pub fn command(state_dir: &Path) -> Command {
    let mut c = Command::new(ferry_bin());
    c.env_remove("FERRY_SOCKET")
        .env("FERRY_DAEMON", ferryd_bin())
        .env("FERRY_STATE_DIR", state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// What one `ferry` run did.
pub struct Output {
    /// The command line, for failure messages.
    pub args: String,
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`ferry {}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

impl Output {
    /// Asserts the exit code.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Output {
        assert_eq!(self.code, Some(code), "{self:?}");
        self
    }

    /// stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The lines of stdout.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs a prepared command to its end (at most `limit`), capturing its output.
pub async fn run_command(mut cmd: Command, limit: Duration) -> Output {
    let std = cmd.as_std();
    let args = std
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ferry_bin().display()));
    finish(child, args, limit).await
}

/// Waits for a spawned `ferry` to exit (at most `limit`) and collects its output; on timeout
/// the child is killed (it is `kill_on_drop`) and the test fails.
pub async fn finish(child: tokio::process::Child, args: String, limit: Duration) -> Output {
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`ferry {args}` did not exit within {limit:?}"))
        .expect("wait for ferry");
    Output {
        args,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A real daemon in a temp dir, and `ferry` pointed at it.
pub struct Env {
    /// The daemon (its temp dir holds everything the test writes).
    pub daemon: TestDaemon,
    /// The daemon's config file, when it was started with one (`--config`).
    pub config: Option<PathBuf>,
    /// Owns the config file's directory (the daemon's own temp dir does not exist before it
    /// starts).
    _config_dir: Option<tempfile::TempDir>,
}

impl Env {
    /// Boots a daemon.
    pub fn start() -> Env {
        Env {
            daemon: TestDaemon::start(),
            config: None,
            _config_dir: None,
        }
    }

    /// Boots a daemon that reads `toml` as its config file (`ferryd --config PATH`).
    pub fn start_with_config(toml: &str) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("ferry-test-config-")
            .tempdir()
            .expect("temp dir for the config file");
        let path = dir.path().join("ferryd.toml");
        std::fs::write(&path, toml).expect("write the config file");
        let daemon = TestDaemon::start_with(&ferryd_bin(), &["--config", arg(&path)]);
        Env {
            daemon,
            config: Some(path),
            _config_dir: Some(dir),
        }
    }

    /// The temp dir; `ferry` runs with it as its current directory.
    pub fn root(&self) -> &Path {
        self.daemon.dir.path()
    }

    /// A fresh directory `name` inside the temp dir.
    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.root().join(name);
        std::fs::create_dir_all(&p).expect("create dir");
        p
    }

    /// `ferry --socket <the daemon's> --no-autostart ARGS…`, run in the temp dir. Never
    /// autostarting keeps a test from spawning a stray daemon should its own one be gone.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = command(&self.daemon.state_dir);
        c.arg("--socket")
            .arg(&self.daemon.socket)
            .arg("--no-autostart")
            .args(args)
            .current_dir(self.root());
        c
    }

    /// Runs `ferry ARGS…` to its end.
    pub async fn run(&self, args: &[&str]) -> Output {
        run_command(self.cmd(args), WAIT).await
    }

    /// Runs `ferry ARGS…` and asserts exit code 0.
    pub async fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args).await;
        out.expect_code(0);
        out
    }

    /// Runs `ferry --json ARGS…`, asserts exit code 0 and parses stdout.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.ok(&all).await.json()
    }

    /// `ferry info JOB --json`.
    pub async fn info(&self, job: &str) -> Value {
        self.json(&["info", job]).await
    }

    /// `ferry create NAME --json`: the new job's id.
    pub async fn create(&self, name: &str) -> String {
        let v = self.json(&["create", name]).await;
        v["job_id"].as_str().expect("job_id").to_owned()
    }

    /// The jobs of `ferry list --json [extra…]`.
    pub async fn list(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["list"];
        args.extend_from_slice(extra);
        let v = self.json(&args).await;
        v["jobs"].as_array().expect("jobs array").clone()
    }
}

/// The job with this id in a `ferry list --json` answer.
pub fn find_job<'a>(jobs: &'a [Value], id: &str) -> Option<&'a Value> {
    jobs.iter().find(|j| j["job_id"] == id)
}

pub use ferry_testkit::content::{sha256_file, staging_files};

/// The job id that follows `marker` in `text` (e.g. `ferry resume <id>` in a hint).
#[track_caller]
pub fn id_after(text: &str, marker: &str) -> String {
    let id: String = text_after(text, marker)
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect();
    assert_eq!(id.len(), 36, "no job id after `{marker}` in:\n{text}");
    id
}

/// The 8-character job id after `marker` in `text`.
#[track_caller]
pub fn short_id_after(text: &str, marker: &str) -> String {
    let id: String = text_after(text, marker).chars().take(8).collect();
    assert!(
        id.chars().all(|c| c.is_ascii_hexdigit()),
        "no id after `{marker}` in:\n{text}"
    );
    id
}

/// The text after the first `marker` in `text`.
#[track_caller]
pub fn text_after<'a>(text: &'a str, marker: &str) -> &'a str {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("`{marker}` not in:\n{text}"))
        + marker.len();
    &text[start..]
}
