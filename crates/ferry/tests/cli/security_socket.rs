//! Socket hijack: another user's program posing as ferryd must never receive a byte from
//! `ferry` (and so never a token passed with `--header`). Bob plants a listener where alice's
//! `ferry` looks for her daemon, or hands her its path; alice's `ferry` refuses before sending
//! anything. Needs root to act as two users (alice is `nobody`, bob a second uid); without
//! root the tests report themselves skipped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{Output, WAIT, arg, ferry_bin, finish};

const ALICE: u32 = 65534;
const BOB: u32 = 65533;
/// What alice runs: a header with her token, for whoever listens.
const SET_TOKEN: &[&str] = &[
    "set",
    "0123",
    "--header",
    "Authorization: Bearer alice-token",
];

fn root(test: &str) -> bool {
    let ok = nix::unistd::Uid::effective().is_root();
    if !ok {
        eprintln!("SKIPPED {test}: needs root to act as two users");
    }
    ok
}

/// Bob's fake ferryd: listens on `argv[1]` (open to everyone), records what each connection
/// sends until it closes, and prints the record as JSON when a connection sends `END`.
const FAKE_FERRYD: &str = r#"
import json, os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX); s.bind(path); os.chmod(path, 0o777); s.listen(8)
print("ready", flush=True)
got = []
while True:
    c, _ = s.accept(); c.settimeout(10)
    data = b""
    try:
        while data != b"END\n":
            b = c.recv(65536)
            if not b:
                break
            data += b
    except socket.timeout:
        pass
    c.close()
    if data == b"END\n":
        print(json.dumps({"connections": len(got), "received": [d.decode(errors="replace") for d in got]}), flush=True)
        break
    got.append(data)
"#;

/// Bob's listener, running as bob until [`Fake::record`].
struct Fake {
    socket: PathBuf,
    child: tokio::process::Child,
    out: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Fake {
    /// Starts the listener as bob at `socket` (its directory must be bob's) and waits until it
    /// listens.
    async fn start(socket: &Path) -> Fake {
        let mut child = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(FAKE_FERRYD)
            .arg(socket)
            .uid(BOB)
            .gid(BOB)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs as bob");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(WAIT, out.next_line()).await;
        assert!(
            matches!(&ready, Ok(Ok(Some(l))) if l == "ready"),
            "bob's listener did not start: {ready:?}"
        );
        Fake {
            socket: socket.to_path_buf(),
            child,
            out,
        }
    }

    /// Ends the listener and returns what it was sent: `{"connections": n, "received": [..]}`.
    async fn record(mut self) -> Value {
        let mut s = tokio::net::UnixStream::connect(&self.socket).await.unwrap();
        s.write_all(b"END\n").await.unwrap();
        let line = tokio::time::timeout(WAIT, self.out.next_line())
            .await
            .expect("bob's listener reports")
            .unwrap()
            .expect("a report line");
        let _ = self.child.wait().await;
        serde_json::from_str(&line).unwrap()
    }
}

/// A temp dir everyone may traverse, and in it a directory owned by bob (0755, as he would
/// make it so that alice can reach his socket).
fn scene(bob_dir: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = t.path().join(bob_dir);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&d, Some(BOB), Some(BOB)).unwrap();
    (t, d)
}

/// Runs `ferry ARGS…` as alice with no `XDG_RUNTIME_DIR` (so the per-user socket is
/// `$TMPDIR/ferry-<uid>/ferryd.sock`) and with `TMPDIR` set to `tmp`.
async fn ferry_as_alice(tmp: &Path, socket: Option<&Path>, args: &[&str]) -> Output {
    let mut c = tokio::process::Command::new(ferry_bin());
    c.env_remove("XDG_RUNTIME_DIR")
        .env_remove("FERRY_SOCKET")
        .env("TMPDIR", tmp)
        // Should autostart be tried, it must not find a daemon to start.
        .env("FERRY_DAEMON", tmp.join("no-ferryd"))
        .env("FERRY_STATE_DIR", tmp.join("alice-state"))
        .env("HOME", tmp)
        .args(args)
        .current_dir(tmp)
        .uid(ALICE)
        .gid(ALICE)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(s) = socket {
        c.env("FERRY_SOCKET", s);
    }
    let child = c.spawn().expect("run ferry as alice");
    finish(child, args.join(" "), WAIT).await
}

#[tokio::test]
async fn issue_11_socket_hijack_planted_fallback_socket_gets_nothing() {
    if !root("issue_11_socket_hijack_planted_fallback_socket_gets_nothing") {
        return;
    }
    // Bob pre-creates alice's fallback socket directory and listens there.
    let (t, bob_dir) = scene(&format!("ferry-{ALICE}"));
    let fake = Fake::start(&bob_dir.join("ferryd.sock")).await;
    let create = ferry_as_alice(t.path(), None, &["create", "alice's job"]).await;
    let set = ferry_as_alice(t.path(), None, SET_TOKEN).await;
    let record = fake.record().await;
    assert_eq!(
        record["connections"], 0,
        "alice's ferry connected to bob's socket: {record}"
    );
    for out in [&create, &set] {
        assert_ne!(out.code, Some(0), "{out:?}");
        assert!(
            out.stderr.contains("refusing to talk to") && out.stderr.contains(arg(&bob_dir)),
            "the refusal names the socket's directory: {out:?}"
        );
    }
}

#[tokio::test]
async fn issue_11_socket_hijack_explicit_socket_of_another_user_gets_no_byte() {
    if !root("issue_11_socket_hijack_explicit_socket_of_another_user_gets_no_byte") {
        return;
    }
    let (t, bob_dir) = scene("bob");
    let socket = bob_dir.join("ferryd.sock");
    let fake = Fake::start(&socket).await;
    let out = ferry_as_alice(t.path(), Some(&socket), SET_TOKEN).await;
    let record = fake.record().await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("refusing to talk to")
            && out.stderr.contains(&format!("uid {BOB}"))
            && out.stderr.contains("nothing was sent"),
        "the refusal names the listener's uid: {out:?}"
    );
    let received = record["received"].as_array().unwrap();
    assert!(
        received.iter().all(|r| r == ""),
        "bob's listener was sent bytes: {record}"
    );
    assert!(!record.to_string().contains("alice-token"), "{record}");
}
