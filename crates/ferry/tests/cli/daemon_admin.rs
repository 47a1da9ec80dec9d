//! Issue 13 item 11: `ferry daemon status`, `stop` and `logs` against a daemon `ferry` started
//! in the background, its bounded log file in the state dir recording each job's start and end,
//! and `ferry --version` naming both versions.

use ferry_testkit::http::TestServer;

use crate::autostart::{Autostarted, ferry_at};
use crate::support::*;

#[tokio::test]
async fn issue_13_11_status_logs_version_and_stop_of_an_autostarted_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("auto.sock");
    let state = tmp.path().join("state");
    let daemon = Autostarted {
        lock: state.join("ferryd.lock"),
    };

    // Nothing answers yet: status says so, exits 6 and starts nothing.
    let out = ferry_at(&socket, &state, &["daemon", "status"]).await;
    out.expect_code(6);
    assert!(out.stdout.contains("not running"), "{out:?}");
    assert!(
        !socket.exists() && !state.exists(),
        "status started a daemon"
    );
    let out = ferry_at(&socket, &state, &["--version"]).await;
    out.expect_code(0);
    assert!(
        out.stdout.contains("ferry 0.") && out.stdout.contains("not running"),
        "{out:?}"
    );

    // A transfer autostarts one; its job runs and completes.
    let srv = TestServer::start().await;
    srv.add_file("/a.bin", vec![7u8; 4096]);
    let dest = tmp.path().join("dl");
    std::fs::create_dir(&dest).unwrap();
    let out = ferry_at(
        &socket,
        &state,
        &["transfer", "-q", &srv.url("/a.bin"), arg(&dest)],
    )
    .await;
    out.expect_code(0);
    assert_eq!(std::fs::read(dest.join("a.bin")).unwrap().len(), 4096);

    let out = ferry_at(&socket, &state, &["daemon", "status", "--json"]).await;
    out.expect_code(0);
    let s = out.json();
    let pid = daemon.pid().expect("pid in the lock file");
    assert_eq!(s["running"], true, "{s}");
    assert_eq!(s["pid"], pid.as_raw(), "{s}");
    assert_eq!(s["socket"], arg(&socket), "{s}");
    assert_eq!(s["state_dir"], arg(&state), "{s}");
    let log = state.join("ferryd.log");
    assert_eq!(s["log"], arg(&log), "{s}");
    assert_eq!(s["jobs_by_state"]["acknowledged"], 1, "{s}");
    assert!(s["uptime_s"].as_u64().is_some(), "{s}");
    assert_eq!(
        s["server"].as_str().unwrap().strip_prefix("ferryd "),
        s["client"].as_str().unwrap().strip_prefix("ferry ")
    );
    let out = ferry_at(&socket, &state, &["daemon", "status"]).await;
    out.expect_code(0);
    for field in [
        "pid:",
        "version:",
        "socket:",
        "state dir:",
        "uptime:",
        "acknowledged 1",
    ] {
        assert!(out.stdout.contains(field), "{field}: {out:?}");
    }

    // The log file holds the job's start and end at the default level.
    let jobs = ferry_at(&socket, &state, &["list", "--all", "--json"])
        .await
        .json();
    let id = jobs["jobs"][0]["job_id"].as_str().unwrap().to_owned();
    let out = ferry_at(&socket, &state, &["daemon", "logs", "-n", "1000"]).await;
    out.expect_code(0);
    for msg in ["job started", "job transferred", "job completed"] {
        assert!(
            out.lines()
                .iter()
                .any(|l| l.contains(msg) && l.contains(&id)),
            "no `{msg}` line for {id}: {out:?}"
        );
    }
    assert!(
        !out.stdout.contains('\u{1b}'),
        "colour codes in the log file"
    );

    // --version names both.
    let out = ferry_at(&socket, &state, &["--version"]).await;
    out.expect_code(0);
    assert_eq!(out.lines().len(), 2, "{out:?}");
    assert!(
        out.lines()[1].starts_with("ferryd ") && out.stdout.contains(arg(&socket)),
        "{out:?}"
    );

    // stop: the daemon exits (its lock is released) and status says it is gone.
    let out = ferry_at(&socket, &state, &["daemon", "stop"]).await;
    out.expect_code(0);
    assert!(out.stdout.contains(&pid.to_string()), "{out:?}");
    let lock = std::fs::File::open(state.join("ferryd.lock")).unwrap();
    assert!(
        lock.try_lock().is_ok(),
        "ferryd still holds its state-dir lock after stop"
    );
    ferry_at(&socket, &state, &["daemon", "status"])
        .await
        .expect_code(6);
    // Stopping nothing is not an error; the log of the stopped daemon stays readable.
    ferry_at(&socket, &state, &["daemon", "stop"])
        .await
        .expect_code(0);
    let mut c = command(&state);
    c.env("FERRY_STATE_DIR", &state)
        .args(["--socket", arg(&socket), "daemon", "logs"]);
    let out = run_command(c, WAIT).await;
    out.expect_code(0);
    assert!(out.stdout.contains("shutting down"), "{out:?}");
}

/// A stand-in daemon of another version: answers `ferry.hello` as `ferryd 9.9.9` with the pid
/// given in `argv[2]`, and every other method with an empty job list.
const OTHER_VERSION: &str = r#"
import json, os, socket, sys, threading
path, pid = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(8)
print("ready", flush=True)
def serve(c):
    f = c.makefile("rwb")
    for line in f:
        req = json.loads(line)
        if req["method"] == "ferry.hello":
            res = {"protocol": 1, "server": "ferryd 9.9.9", "uid": os.getuid(), "mode": "user", "pid": pid}
        else:
            res = {"jobs": [], "next": None}
        f.write((json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": res}) + "\n").encode()); f.flush()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Starts [`OTHER_VERSION`] on `socket`, answering `pid`; `None` without python3.
async fn other_version(socket: &std::path::Path, pid: &str) -> Option<tokio::process::Child> {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", OTHER_VERSION, arg(socket), pid])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(WAIT, lines.next_line()).await;
    assert!(
        matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"),
        "the stand-in daemon did not start: {ready:?}"
    );
    Some(child)
}

#[tokio::test]
async fn issue_13_11_a_daemon_of_another_version_is_warned_about_once() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("old.sock");
    let Some(_fake) = other_version(&socket, "4242").await else {
        println!("SKIPPED: python3 is not installed");
        return;
    };
    let out = ferry_at(&socket, tmp.path(), &["list"]).await;
    out.expect_code(0);
    let warnings = out
        .stderr
        .matches("warning: the daemon is ferryd 9.9.9")
        .count();
    assert_eq!(warnings, 1, "{out:?}");
    assert!(out.stderr.contains("this is ferry 0."), "{out:?}");
    let out = ferry_at(&socket, tmp.path(), &["--version"]).await;
    out.expect_code(0);
    assert!(out.lines()[1].starts_with("ferryd 9.9.9"), "{out:?}");
}

#[tokio::test]
async fn issue_13_11_stop_refuses_a_pid_that_would_signal_a_process_group() {
    // kill(0) signals the caller's whole process group and kill(1) init: a daemon answering
    // such a pid must not make `ferry daemon stop` send SIGTERM anywhere.
    for pid in ["0", "1"] {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("odd.sock");
        let Some(_fake) = other_version(&socket, pid).await else {
            println!("SKIPPED: python3 is not installed");
            return;
        };
        let out = ferry_at(&socket, tmp.path(), &["daemon", "stop"]).await;
        // This test process is still alive to read the answer, and ferry refused.
        out.expect_code(1);
        assert!(
            out.stderr.contains(&format!("reported pid {pid}")),
            "{out:?}"
        );
    }
}
