//! Security boundaries (docs/SECURITY.md): who may use a per-user daemon, what the programs ferryd
//! starts inherit, where a job's headers and credentials go, what `take_ownership` leaves the
//! old owner, what stays in the store, and a daemon whose own task died. Each test performs the
//! attack against a real daemon. Tests that act as a second user need root and report
//! themselves skipped without it.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_client::Client;
use ferry_proto::params::{Credentials, SetParams};
use ferry_proto::{EventKind, JobState};
use ferry_testkit::content::TestContent;
use ferry_testkit::daemon::TestDaemon;
use ferry_testkit::http::{Behavior, TestServer};
use serde_json::{Value, json};

use crate::access::python_as_nobody;
use crate::callbacks::{cmdline, shared_log};
use crate::notify::wait_notification;
use crate::support::*;

const NOBODY: u32 = 65534;

fn root(test: &str) -> bool {
    let ok = nix::unistd::Uid::effective().is_root();
    if !ok {
        eprintln!("SKIPPED {test}: needs root to act as a second user");
    }
    ok
}

/// The python3 binary itself (not a shim that needs the caller's environment): the programs
/// ferryd starts get a clean environment, and may run as `nobody` (who may not enter root's
/// home, where a per-user python may live).
fn python() -> String {
    if Path::new("/usr/bin/python3").exists() {
        return "/usr/bin/python3".into();
    }
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Sends `ferry.hello` and prints each line the daemon answers until it closes the connection
/// (or `{"closed": false}` if it keeps it open for 10 s).
const HELLO_UNTIL_CLOSED: &str = r#"
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)
s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"ferry.hello","params":{}}\n')
f = s.makefile("rb")
try:
    for line in f:
        print(line.decode().strip(), flush=True)
    print(json.dumps({"closed": True}))
except socket.timeout:
    print(json.dumps({"closed": False}))
"#;

#[tokio::test]
async fn issue_11_another_uid_on_a_world_open_per_user_socket_is_refused() {
    if !root("issue_11_another_uid_on_a_world_open_per_user_socket_is_refused") {
        return;
    }
    // A per-user daemon (root's) whose socket was made world-accessible by mistake.
    let d = daemon();
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let lines = python_as_nobody(
        HELLO_UNTIL_CLOSED,
        &[d.socket.to_string_lossy().into_owned()],
    );
    assert_eq!(lines.len(), 2, "one refusal, then the close: {lines:?}");
    let err = &lines[0]["error"];
    assert_eq!(err["code"], -32002, "access_denied: {lines:?}");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("uid {NOBODY} may not use it")),
        "{msg}"
    );
    assert_eq!(lines[1]["closed"], true, "{lines:?}");
    // The owner (and root) are still served.
    let c = d.client().await;
    assert_eq!(c.hello().await.unwrap().uid, 0);
}

#[test]
fn issue_11_socket_activated_per_user_socket_open_to_all_is_made_private() {
    // The unit file left `SocketMode=` at its default, 0666.
    let v = crate::systemd::run_fake_systemd(&["0o666"]);
    assert_eq!(v["mode_before"], 0o666, "{v}");
    assert_eq!(
        v["mode_when_ready"], 0o600,
        "a per-user daemon makes its activated socket private: {v}"
    );
    assert_eq!(v["hello"]["result"]["protocol"], 1);
}

/// Starts a program with a pseudo-terminal as its controlling terminal, stdin and stdout (as
/// when an administrator runs `ferryd --system` in a terminal), with the terminal's master side
/// left open and inheritable (as a terminal emulator's child may leak it).
const UNDER_A_PTY: &str = r#"
import fcntl, os, sys, termios
os.setsid()
m, s = os.openpty()
fcntl.ioctl(s, termios.TIOCSCTTY, 0)
os.dup2(s, 0); os.dup2(s, 1)
os.set_inheritable(m, True)
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// A notify command line that reports what it inherited: whether it can open `/dev/tty`, its
/// session, and its open descriptors.
const REPORT_INHERITED: &str = r#"
import json, os, sys
fds = {}
for name in os.listdir("/proc/self/fd"):
    try:
        fds[name] = os.readlink("/proc/self/fd/" + name)
    except OSError:
        pass
try:
    os.close(os.open("/dev/tty", os.O_RDWR))
    tty = "opened"
except OSError as e:
    tty = e.strerror
with open(sys.argv[1], "w") as f:
    json.dump({"pid": os.getpid(), "sid": os.getsid(0), "fds": fds, "tty": tty}, f)
"#;

#[tokio::test]
async fn issue_11_spawned_program_cannot_reach_the_daemons_terminal() {
    // Written before anything else runs, so no concurrent fork holds the file open for writing
    // when it is executed.
    let tools = tempfile::tempdir().unwrap();
    let pty = tools.path().join("pty.py");
    std::fs::write(&pty, UNDER_A_PTY).unwrap();
    let wrapper = tools.path().join("ferryd-in-a-terminal");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' '{}' '{}' \"$@\"\n",
            python(),
            pty.display(),
            env!("CARGO_BIN_EXE_ferryd")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let srv = TestServer::start().await;
    srv.add_file("/t", TestContent::new(1101, 1000).bytes);
    // A per-user daemon, and (as root) the system daemon running a job of `nobody`: the case
    // where another user's program would reach root's terminal.
    let system = nix::unistd::Uid::effective().is_root();
    if !system {
        eprintln!("SKIPPED the system-mode half: needs root to act as a second user");
    }
    for mode in [&[][..], &["--system"][..]]
        .into_iter()
        .take(1 + usize::from(system))
    {
        let d = TestDaemon::start_with(&wrapper, mode);
        let c = d.client().await;
        assert!(
            std::fs::read_link(format!("/proc/{}/fd/0", d.pid()))
                .unwrap()
                .starts_with("/dev/pts"),
            "the daemon itself runs on the terminal"
        );
        let report = shared_log(d.dir.path(), "report.json");
        let argv = vec![
            python(),
            "-c".into(),
            REPORT_INHERITED.into(),
            report.to_string_lossy().into_owned(),
        ];
        let dest = d.dir.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        std::os::unix::fs::chown(&dest, Some(NOBODY), Some(NOBODY)).unwrap();
        let calls = [
            json!({"method": "job.create", "params": {"display_name": "tty", "files": [
                {"remote_url": srv.url("/t"), "local_path": dest.join("t")}]}}),
            json!({"method": "job.set", "params": {"notify_flags": 1, "notify_cmdline": argv}}),
            json!({"method": "job.resume", "params": {}}),
        ];
        let id = if mode.is_empty() {
            let create = &calls[0]["params"];
            let id: Value = c.call_raw("job.create", create).await.unwrap();
            let id = id["job_id"].as_str().unwrap().to_owned();
            for call in &calls[1..] {
                let mut params = call["params"].clone();
                params["job_id"] = json!(id);
                let _: Value = c
                    .call_raw(call["method"].as_str().unwrap(), params)
                    .await
                    .unwrap();
            }
            id
        } else {
            let a = crate::access::calls_as_nobody(&d.socket, &calls[..1]);
            let id = a[0]["result"]["job_id"].as_str().unwrap().to_owned();
            let rest: Vec<Value> = calls[1..]
                .iter()
                .map(|call| {
                    let mut call = call.clone();
                    call["params"]["job_id"] = json!(id);
                    call
                })
                .collect();
            crate::access::calls_as_nobody(&d.socket, &rest);
            id
        };
        wait_notification(&c, &id, |cb, t, o| {
            cb == "job_transferred" && t == "cmdline" && o == "ok"
        })
        .await;
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_ne!(
            r["tty"], "opened",
            "{mode:?}: the program opened /dev/tty: {r}"
        );
        assert_eq!(
            r["sid"], r["pid"],
            "{mode:?}: the program leads its own session: {r}"
        );
        let fds: Vec<&String> = r["fds"].as_object().unwrap().keys().collect();
        assert_eq!(
            fds,
            ["0", "1", "2"],
            "{mode:?}: only stdin, stdout, stderr are open: {r}"
        );
        for fd in ["0", "1", "2"] {
            assert_eq!(r["fds"][fd], "/dev/null", "{mode:?}: {r}");
        }
    }
}

#[tokio::test]
async fn issue_11_headers_and_credentials_never_follow_a_redirect_to_another_port_or_host() {
    let d = daemon();
    let c = d.client().await;
    let origin = TestServer::start().await;
    let other = TestServer::start().await;
    let port = other.addr().port();
    other.add_file("/p", TestContent::new(1102, 1000).bytes);
    other.add_file("/h", TestContent::new(1103, 1000).bytes);
    // The same host on another port, and another host name for the loopback.
    for (from, to) in [
        ("/to-port", format!("http://127.0.0.1:{port}/p")),
        ("/to-host", format!("http://localhost:{port}/h")),
    ] {
        origin.set_behavior(
            from,
            Behavior {
                redirect_to: Some(to),
                ..Behavior::default()
            },
        );
    }
    let dir = d.files_dir();
    let id = job_with(
        &c,
        vec![
            spec(&origin.url("/to-port"), &dir.join("p")),
            spec(&origin.url("/to-host"), &dir.join("h")),
        ],
    )
    .await;
    c.set(SetParams {
        job_id: id.clone(),
        custom_headers: Some(vec![
            "Authorization: Bearer alice-token".into(),
            "X-Api-Key: alice-key".into(),
        ]),
        credentials: Some(Some(Credentials {
            scheme: "basic".into(),
            user: "alice".into(),
            password: "alice-pw".into(),
        })),
        ..Default::default()
    })
    .await
    .unwrap();
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    let first = origin.requests();
    assert_eq!(first.len(), 2, "both files start at the origin");
    for r in &first {
        assert_eq!(
            r.header("x-api-key"),
            Some("alice-key"),
            "the origin gets them"
        );
    }
    let second = other.requests();
    assert_eq!(second.len(), 2, "both redirects were followed");
    for r in &second {
        assert_eq!(r.header("authorization"), None, "{}", r.target);
        assert_eq!(r.header("x-api-key"), None, "{}", r.target);
    }
}

/// Alice's application (as `nobody`): creates a job with her command line, handler, headers
/// and credentials, registers itself as the job's live callback, prints `{"job_id": ..}`, then
/// prints (and answers) every message the daemon sends until it is killed.
const ALICE_APP: &str = r#"
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rwb")
n = 0
def call(method, params):
    global n
    n += 1
    f.write(json.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": params}).encode() + b"\n"); f.flush()
    m = json.loads(f.readline())
    if "error" in m:
        sys.exit("%s failed: %s" % (method, m))
    return m["result"]
job = call("job.create", json.loads(sys.argv[2]))["job_id"]
params = json.loads(sys.argv[3]); params["job_id"] = job
call("job.set", params)
call("job.set_notify_interface", {"job_id": job})
print(json.dumps({"job_id": job}), flush=True)
for line in f:
    m = json.loads(line)
    print(json.dumps(m), flush=True)
    if "method" in m and "id" in m:
        f.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {}}).encode() + b"\n"); f.flush()
"#;

#[tokio::test]
async fn issue_11_take_ownership_leaves_the_old_owner_no_callback_and_no_secrets() {
    if !root("issue_11_take_ownership_leaves_the_old_owner_no_callback_and_no_secrets") {
        return;
    }
    let d = daemon_with(&["--system"]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/owned", TestContent::new(1104, 1000).bytes);
    let dir = d.dir.path().join("alice-files");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let alice_log = shared_log(d.dir.path(), "alice-cmd.log");
    let create = json!({"display_name": "alice's", "files": [
        {"remote_url": srv.url("/owned"), "local_path": dir.join("owned")}]});
    let set = json!({"notify_flags": 3, "notify_cmdline": cmdline(&alice_log, 0),
        "notify_handler": "alice-handler", "custom_headers": ["X-Alice: alice-secret"],
        "credentials": {"scheme": "basic", "user": "alice", "password": "alice-pw"}});
    let mut app = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(ALICE_APP)
        .arg(&d.socket)
        .arg(create.to_string())
        .arg(set.to_string())
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(app.stdout.take().unwrap()));
    let first = tokio::time::timeout(WAIT, out.next_line())
        .await
        .expect("alice's app starts")
        .unwrap()
        .expect("alice's app printed the job id");
    let id = serde_json::from_str::<Value>(&first).unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(c.get(&id).await.unwrap().notify_interface);
    // Root takes the job and makes it its own, with its own token.
    let taken: Value = c
        .call_raw("job.take_ownership", json!({"job_id": id}))
        .await
        .unwrap();
    assert_eq!(taken["owner_uid"], 0);
    assert_eq!(taken["notify_interface"], false, "{taken}");
    assert_eq!(taken["notify_handler"], Value::Null, "{taken}");
    assert_eq!(taken["notify_cmdline"], Value::Null, "{taken}");
    assert_eq!(taken["custom_headers"], json!([]), "{taken}");
    assert_eq!(taken["credentials_set"], false, "{taken}");
    assert_eq!(
        taken["peer_caching"], false,
        "what alice's secrets fetched is not offered to peers: {taken}"
    );
    let root_log = shared_log(d.dir.path(), "root-cmd.log");
    c.set(SetParams {
        job_id: id.clone(),
        notify_cmdline: Some(Some(cmdline(&root_log, 0))),
        custom_headers: Some(vec!["Authorization: Bearer root-token".into()]),
        ..Default::default()
    })
    .await
    .unwrap();
    c.resume(&id).await.unwrap();
    let e = wait_notification(&c, &id, |cb, _, o| cb == "job_transferred" && o == "ok").await;
    let EventKind::Notification { target, .. } = &e.kind else {
        unreachable!()
    };
    assert_eq!(
        target, "cmdline",
        "root's command line got the callback, not alice's live callback"
    );
    let reqs = srv.requests_for("/owned");
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(r.header("authorization"), Some("Bearer root-token"));
        assert_eq!(
            r.header("x-alice"),
            None,
            "alice's header went out for root"
        );
    }
    app.kill().await.unwrap();
    let mut seen = Vec::new();
    while let Ok(Some(line)) = out.next_line().await {
        seen.push(line);
    }
    assert!(seen.is_empty(), "alice's app still received: {seen:?}");
    assert_eq!(
        std::fs::read_to_string(&alice_log).unwrap(),
        "",
        "alice's command line did not run"
    );
}

/// Every text and blob cell of every table of the store, for searching.
fn store_cells(state_dir: &Path) -> String {
    let db = rusqlite::Connection::open_with_flags(
        state_dir.join("ferry.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut all = String::new();
    for t in tables {
        let mut stmt = db.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..n {
                match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                        all.push_str(&String::from_utf8_lossy(b));
                        all.push('\n');
                    }
                    _ => {}
                }
            }
        }
    }
    all
}

#[tokio::test]
async fn issue_11_credentials_and_headers_are_erased_from_the_store_when_a_job_ends() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let mut ids = Vec::new();
    for name in ["done", "dropped"] {
        srv.add_file(&format!("/{name}"), TestContent::new(1105, 1000).bytes);
        let id = job_with(
            &c,
            vec![spec(&srv.url(&format!("/{name}")), &dir.join(name))],
        )
        .await;
        c.set(SetParams {
            job_id: id.clone(),
            custom_headers: Some(vec![format!("Authorization: Bearer token-of-{name}")]),
            credentials: Some(Some(Credentials {
                scheme: "basic".into(),
                user: "alice".into(),
                password: format!("password-of-{name}"),
            })),
            ..Default::default()
        })
        .await
        .unwrap();
        ids.push(id);
    }
    assert!(
        store_cells(&d.state_dir).contains("password-of-done"),
        "a live job keeps its credentials"
    );
    c.resume(&ids[0]).await.unwrap();
    wait_state(&c, &ids[0], JobState::Transferred).await;
    c.complete(&ids[0]).await.unwrap();
    c.cancel(&ids[1]).await.unwrap();
    let ended = c.get(&ids[1]).await.unwrap();
    assert_eq!(ended.state, JobState::Cancelled);
    assert!(!ended.credentials_set && ended.settings.custom_headers.is_empty());
    let cells = store_cells(&d.state_dir);
    for secret in ["token-of-", "password-of-"] {
        assert!(
            !cells.contains(secret),
            "{secret}… is still in the store after the jobs ended"
        );
    }
}

#[tokio::test]
async fn issue_11_an_existing_state_dir_open_to_others_is_made_private_at_start() {
    let mut d = daemon();
    std::fs::set_permissions(&d.state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.restart();
    let mode = std::fs::metadata(&d.state_dir).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o700, "state dir mode is {mode:o}");
    d.client().await.hello().await.unwrap();
}

/// A `ferryd` started by hand (not `TestDaemon`: it gets an environment variable), with its
/// stderr lines on a channel.
fn ferryd_with_env(
    dir: &Path,
    env: (&str, &str),
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    PathBuf,
) {
    let socket = dir.join("ferryd.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferryd"))
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--resident-grace-ms", "10"])
        .env("FERRY_CONFIG", "/dev/null")
        .env(env.0, env.1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[ferryd] {line}");
            let _ = tx.send(line);
        }
    });
    (child, rx, socket)
}

#[tokio::test]
async fn issue_11_a_dead_task_ends_the_daemon_with_a_log_line_and_exit_70() {
    let srv = TestServer::start().await;
    srv.add_file("/work", TestContent::new(1106, 1000).bytes);
    for task in ["scheduler", "notifier", "sweeper"] {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, log, socket) = ferryd_with_env(dir.path(), ("FERRY_TEST_PANIC_TASK", task));
        let mut lines = Vec::new();
        while let Ok(l) = log.recv_timeout(Duration::from_secs(20)) {
            let ready = l.contains("ferryd is ready");
            lines.push(l);
            if ready {
                break;
            }
        }
        // Work for every task: a job to run (scheduler), a callback target (notifier), and
        // activity after which it goes cold (sweeper). Once the task dies the daemon goes away,
        // so later calls may fail.
        if let Ok(c) = Client::connect_to(&socket).await {
            let files = vec![spec(&srv.url("/work"), &dir.path().join("work"))];
            if let Ok(id) = c
                .create(ferry_proto::params::CreateParams {
                    display_name: "work".into(),
                    files: Some(files),
                    ..Default::default()
                })
                .await
            {
                let _: Result<Value, _> = c
                    .call_raw("job.set_notify_interface", json!({"job_id": id}))
                    .await;
                let _ = c.resume(&id).await;
            }
        }
        // The daemon must exit by itself; its stderr ends when it does.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match log.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(l) => lines.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("ferryd kept running for 30 s after its {task} task died: {lines:#?}");
                }
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(70), "{task}: {status:?} {lines:#?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("the {task} task died"))
                    && l.contains("ERROR")
                    && l.contains("injected test fault")),
            "{task}: no log line names the dead task: {lines:#?}"
        );
    }
}
