//! With no daemon answering, `ferry` starts a per-user `ferryd` (and says so, once);
//! `--no-autostart` refuses and names the socket.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::*;

/// Stops the daemon an autostart left running, found by the pid in its state dir's lock file,
/// even when the test fails half-way.
pub(crate) struct Autostarted {
    pub(crate) lock: PathBuf,
}

impl Autostarted {
    /// The pid the daemon wrote into its lock file.
    pub(crate) fn pid(&self) -> Option<Pid> {
        let text = std::fs::read_to_string(&self.lock).ok()?;
        text.trim().parse().ok().map(Pid::from_raw)
    }

    /// SIGTERM, then waits until the daemon released its state-dir lock, i.e. exited (the lock
    /// is an flock, so taking it blocks exactly until then).
    fn stop(&self) {
        let pid = self.pid().expect("pid in the lock file");
        kill(pid, Signal::SIGTERM).expect("signal the autostarted ferryd");
        let lock = self.lock.clone();
        let (tx, rx) = mpsc::channel();
        // A thread rather than spawn_blocking: if the lock never comes, the test fails and the
        // runtime must not wait for the blocked thread.
        std::thread::spawn(move || {
            let taken = std::fs::File::open(&lock).and_then(|f| f.lock());
            let _ = tx.send(taken);
        });
        match rx.recv_timeout(WAIT) {
            Ok(r) => r.expect("lock the state dir after ferryd exited"),
            Err(_) => panic!("the autostarted ferryd (pid {pid}) did not exit after SIGTERM"),
        }
    }
}

impl Drop for Autostarted {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // Already gone after `stop` (ESRCH); a pid reused in between is vanishingly unlikely
            // within the test's lifetime.
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// `ferry --socket SOCKET ARGS…` with the given state dir for an autostarted daemon.
pub(crate) async fn ferry_at(socket: &Path, state: &Path, args: &[&str]) -> Output {
    let mut c = command(state);
    c.arg("--socket").arg(socket).args(args);
    run_command(c, WAIT).await
}

#[tokio::test]
async fn a_missing_daemon_is_started_once() {
    // Private (0700), as the per-user socket's directory must be.
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("auto.sock");
    let state = tmp.path().join("state");
    let daemon = Autostarted {
        lock: state.join("ferryd.lock"),
    };

    let out = ferry_at(&socket, &state, &["list"]).await;
    out.expect_code(0);
    assert!(
        out.stderr.contains("no daemon answered") && out.stderr.contains("starting"),
        "{out:?}"
    );
    assert!(out.stderr.contains(arg(&socket)), "{out:?}");
    assert!(out.stdout.starts_with("ID"), "{out:?}");
    // The daemon keeps running after `ferry` exited, with its state where FERRY_STATE_DIR says.
    let pid = daemon.pid().expect("the daemon wrote its pid");
    kill(pid, None).expect("the autostarted ferryd is alive");

    // The second call finds it: nothing is started, nothing said.
    let out = ferry_at(&socket, &state, &["create", "kept"]).await;
    out.expect_code(0);
    assert!(out.stderr.is_empty(), "{out:?}");
    // FERRY_SOCKET reaches the same daemon.
    let mut c = command(&state);
    c.env("FERRY_SOCKET", &socket).args(["list", "--json"]);
    let out = run_command(c, WAIT).await;
    out.expect_code(0);
    assert!(out.stderr.is_empty(), "{out:?}");
    let jobs = out.json()["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["display_name"], "kept");
    assert_eq!(daemon.pid(), Some(pid));

    daemon.stop();
}

#[tokio::test]
async fn no_autostart_names_the_missing_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("nobody.sock");
    let state = tmp.path().join("state");
    let out = ferry_at(&socket, &state, &["--no-autostart", "list"]).await;
    // Daemon unreachable: exit 6.
    out.expect_code(6);
    assert!(out.stderr.contains(arg(&socket)), "{out:?}");
    assert!(out.stderr.contains("--no-autostart"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // No daemon was started.
    assert!(!socket.exists());
    assert!(!state.exists());
}

/// The daemon `ferry` starts gets no flags: its daemon-wide settings come from the per-user
/// ferryd.toml (`$XDG_CONFIG_HOME/ferry/ferryd.toml`).
#[tokio::test]
async fn issue_13_an_autostarted_daemon_takes_its_settings_from_ferryd_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("auto.sock");
    let state = tmp.path().join("state");
    let config = tmp.path().join("config");
    std::fs::create_dir_all(config.join("ferry")).unwrap();
    std::fs::write(
        config.join("ferry").join("ferryd.toml"),
        "[daemon]\nretry_delay_floor_s = 42\n",
    )
    .unwrap();
    let daemon = Autostarted {
        lock: state.join("ferryd.lock"),
    };
    let ferry = |args: &'static [&'static str]| {
        let mut c = command(&state);
        c.env_remove("FERRY_CONFIG")
            .env("XDG_CONFIG_HOME", &config)
            .arg("--socket")
            .arg(&socket)
            .args(args);
        run_command(c, WAIT)
    };
    ferry(&["create", "floored"]).await.expect_code(0);
    ferry(&["set", "floored", "--retry-delay", "0"])
        .await
        .expect_code(0);
    let out = ferry(&["info", "floored", "--json"]).await;
    out.expect_code(0);
    assert_eq!(
        out.json()["minimum_retry_delay_s"],
        42,
        "the file's retry floor: {out:?}"
    );
    daemon.stop();
}
