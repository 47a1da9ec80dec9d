//! Issue 13 item 12: without `XDG_RUNTIME_DIR`, and with a home directory the user cannot write
//! (the `nobody` account), `ferry daemon` and the autostart serve the same socket, and a failed
//! start names the real cause (the state directory), not the missing variable. Needs root to
//! run as `nobody`; without root the test reports itself skipped.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ferry_testkit::daemon::ferryd_bin;
use tokio::process::Command;

use crate::support::{Output, WAIT, arg, ferry_bin, run_command};

const NOBODY: u32 = 65534;

/// `ferry ARGS…` as nobody with a login-less environment: no `XDG_RUNTIME_DIR`, `HOME` as
/// given, `TMPDIR` (where the fallback socket directory goes) as given.
fn as_nobody(home: &Path, tmpdir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(ferry_bin());
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("TMPDIR", tmpdir)
        .env("FERRY_DAEMON", ferryd_bin())
        .uid(NOBODY)
        .gid(NOBODY)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

#[tokio::test]
async fn issue_13_12_nobody_without_xdg_runtime_dir_gets_one_socket_and_the_real_cause() {
    if !nix::unistd::Uid::effective().is_root() {
        println!("SKIPPED: needs root to run ferry as nobody");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let tmpdir = tmp.path();
    let socket = tmpdir.join(format!("ferry-{NOBODY}")).join("ferryd.sock");
    let unusable_home = Path::new("/nonexistent");

    // The autostart: the cause is the state directory, quoted from ferryd.
    let out = run_command(as_nobody(unusable_home, tmpdir, &["list"]), WAIT).await;
    out.expect_code(6);
    check_real_cause(&out);
    assert!(out.stderr.contains(arg(&socket)), "{out:?}");
    // `ferry daemon` fails for the same reason, not for the unset XDG_RUNTIME_DIR.
    let out = run_command(as_nobody(unusable_home, tmpdir, &["daemon"]), WAIT).await;
    assert_ne!(out.code, Some(0), "{out:?}");
    check_real_cause(&out);

    // With a usable home, a daemon run by `ferry daemon` is the one the other verbs find.
    let home = tmpdir.join("home");
    std::fs::create_dir(&home).unwrap();
    nix::unistd::chown(&home, Some(NOBODY.into()), Some(NOBODY.into())).unwrap();
    let mut daemon = as_nobody(&home, tmpdir, &["daemon"]).spawn().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let listed = loop {
        let out = run_command(as_nobody(&home, tmpdir, &["--no-autostart", "list"]), WAIT).await;
        if out.code == Some(0) || tokio::time::Instant::now() >= deadline {
            break out;
        }
        // No event says when the foreground daemon is listening: poll with a deadline.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    listed.expect_code(0);
    assert!(
        socket.exists(),
        "ferry daemon did not serve {}",
        socket.display()
    );
    let out = run_command(
        as_nobody(&home, tmpdir, &["daemon", "status", "--json"]),
        WAIT,
    )
    .await;
    out.expect_code(0);
    assert_eq!(out.json()["socket"], arg(&socket), "{out:?}");
    let out = run_command(as_nobody(&home, tmpdir, &["daemon", "stop"]), WAIT).await;
    out.expect_code(0);
    let status = tokio::time::timeout(WAIT, daemon.wait())
        .await
        .expect("ferry daemon exits after `ferry daemon stop`")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[track_caller]
fn check_real_cause(out: &Output) {
    assert!(
        out.stderr.contains("state directory") && out.stderr.contains("Permission denied"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("XDG_RUNTIME_DIR"), "{out:?}");
}
