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
