//! User-named paths (docs/SECURITY.md): each test performs an attack of one user on the daemon or on
//! another user through a path the attacker names (a FIFO as a source, a directory swapped for
//! a symlink to a FIFO during `job.complete`, `/proc/self/fd/N`, stat oracles in `job.create`,
//! NUL bytes) and checks that it fails while everybody else is served. Most need root (system
//! mode, acting as `nobody` and as a uid without a passwd entry); without root they report
//! themselves skipped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_proto::JobState;
use ferry_testkit::content::TestContent;
use ferry_testkit::daemon::{TestDaemon, wait_for};
use ferry_testkit::http::TestServer;
use nix::sys::stat::Mode;
use serde_json::{Value, json};

use crate::access::{answers, rpc_command};
use crate::protocol::Raw;
use crate::support::*;

/// The attacker: `nobody`.
const ALICE: u32 = 65534;
/// The victim: a uid without a passwd entry.
const BOB: u32 = 40111;
/// How long any call may take while an attack is in progress.
const ANSWER: Duration = Duration::from_secs(5);

/// A system-mode daemon with `extra` flags, or `None` (reported skipped) without root.
fn system_daemon(extra: &[&str]) -> Option<TestDaemon> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: these attacks need root to act as two other users");
        return None;
    }
    let mut args = vec!["--system"];
    args.extend(extra);
    Some(daemon_with(&args))
}

/// Bob's home in `base` and his private (0700) directory in it.
fn bobs_private_dir(base: &Path) -> PathBuf {
    let bob = user_dir(base, "bob", BOB, 0o755);
    user_dir(&bob, "private", BOB, 0o700)
}

/// A directory `name` in `base`, owned by `uid`, with `mode`.
fn user_dir(base: &Path, name: &str, uid: u32, mode: u32) -> PathBuf {
    let d = base.join(name);
    std::fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    d
}

/// A FIFO at `path`, owned by `uid`.
fn fifo(path: &Path, uid: u32) {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o666)).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Runs JSON-RPC calls as `uid` (gid = uid) on one connection and returns the answers; all of
/// them must arrive within `limit`, or the daemon is frozen for that user.
async fn calls_as(uid: u32, socket: &Path, calls: &[Value], limit: Duration) -> Vec<Value> {
    let mut cmd = tokio::process::Command::from(rpc_command(socket, calls));
    cmd.uid(uid)
        .gid(uid)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("python3 runs");
    let methods: Vec<&Value> = calls.iter().map(|c| &c["method"]).collect();
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!("uid {uid} got no answer to {methods:?} within {limit:?}: the daemon is frozen")
        })
        .unwrap();
    answers(&out)
}

/// `job.create` as `uid` with `files`: the answer.
async fn create_as(uid: u32, socket: &Path, files: Value) -> Value {
    let call = json!({"method": "job.create", "params": {"display_name": "t", "files": files}});
    calls_as(uid, socket, &[call], ANSWER).await.remove(0)
}

fn job_id(answer: &Value) -> String {
    answer["result"]["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("job.create failed: {answer}"))
        .to_string()
}

#[tokio::test]
async fn issue_11_fifo_sources_cannot_freeze_the_daemon_for_other_users() {
    let Some(d) = system_daemon(&[]) else {
        return;
    };
    let c = d.client().await;
    let alice = user_dir(d.dir.path(), "alice", ALICE, 0o755);
    let bob = user_dir(d.dir.path(), "bob", BOB, 0o755);
    // Alice: one job, 32 file:// sources that are FIFOs nobody ever writes, all at once.
    let files: Vec<Value> = (0..32)
        .map(|i| {
            let pipe = alice.join(format!("fifo{i}"));
            fifo(&pipe, ALICE);
            json!({"remote_url": file_url(&pipe), "local_path": alice.join(format!("out{i}"))})
        })
        .collect();
    let attack = job_id(&create_as(ALICE, &d.socket, json!(files)).await);
    let a = calls_as(
        ALICE,
        &d.socket,
        &[
            json!({"method": "job.set", "params": {"job_id": attack, "max_parallel_files": 32}}),
            json!({"method": "job.resume", "params": {"job_id": attack}}),
        ],
        ANSWER,
    )
    .await;
    assert!(a.iter().all(|a| a.get("result").is_some()), "{a:?}");

    // Bob, meanwhile: an ordinary download and his usual calls.
    let srv = TestServer::start().await;
    let content = TestContent::new(311, 300_000);
    srv.add_file("/bob", content.bytes.clone());
    let mine = job_id(
        &create_as(
            BOB,
            &d.socket,
            json!([{"remote_url": srv.url("/bob"), "local_path": bob.join("data")}]),
        )
        .await,
    );
    let answers = calls_as(
        BOB,
        &d.socket,
        &[
            json!({"method": "job.resume", "params": {"job_id": mine}}),
            json!({"method": "ferry.hello", "params": {}}),
            json!({"method": "job.list", "params": {}}),
            json!({"method": "events.read", "params": {}}),
            json!({"method": "job.files", "params": {"job_id": mine}}),
        ],
        ANSWER,
    )
    .await;
    for a in &answers {
        assert!(a.get("result").is_some(), "bob's call failed: {a}");
    }
    let done = tokio::time::timeout(
        Duration::from_secs(30),
        wait_state(&c, &mine, JobState::Transferred),
    )
    .await;
    assert!(
        done.is_ok(),
        "bob's transfer did not finish during the attack"
    );

    // Alice's job fails with a fatal error naming a FIFO, and her own cancel answers.
    let job = tokio::time::timeout(
        Duration::from_secs(30),
        wait_state(&c, &attack, JobState::Error),
    )
    .await
    .expect("a job whose sources are FIFOs fails instead of hanging");
    let err = job.error.unwrap();
    assert!(!err.transient, "{err:?}");
    assert!(
        err.description.contains("/fifo") && err.description.contains("regular file"),
        "{err:?}"
    );
    let a = calls_as(
        ALICE,
        &d.socket,
        &[json!({"method": "job.cancel", "params": {"job_id": attack}})],
        ANSWER,
    )
    .await;
    assert_eq!(a[0]["result"]["state"], "cancelled", "{}", a[0]);
}

#[tokio::test]
async fn issue_11_fifo_swapped_for_staging_files_cannot_freeze_the_cache_copy() {
    let config = tempfile::tempdir().unwrap();
    let toml = config.path().join("ferryd.toml");
    std::fs::write(
        &toml,
        "[peer_cache]\nenabled = true\nlisten = \"127.0.0.1:0\"\nmin_file_size = 0\nsecret = \"security-fs-test-secret\"\n",
    )
    .unwrap();
    let d = daemon_with(&["--config", toml.to_str().unwrap()]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let files = (0..32)
        .map(|i| {
            srv.add_file(&format!("/c{i}"), TestContent::new(320 + i, 1000).bytes);
            spec(&srv.url(&format!("/c{i}")), &dir.join(format!("c{i}")))
        })
        .collect();
    let id = job_with(&c, files).await;
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    // Every staging file becomes a FIFO; validating the file copies it into the cache.
    for f in c.files(&id).await.unwrap() {
        let temp = PathBuf::from(f.temporary_path.unwrap());
        std::fs::remove_file(&temp).unwrap();
        nix::unistd::mkfifo(&temp, Mode::from_bits_truncate(0o600)).unwrap();
        let valid = tokio::time::timeout(ANSWER, c.set_validation(&id, f.file_index, true)).await;
        assert!(valid.expect("set_validation_state answers").is_ok());
    }
    // The daemon still serves: calls that need the blocking pool, and a new download.
    let list = tokio::time::timeout(ANSWER, c.list(Default::default())).await;
    assert!(list.expect("job.list answers during the attack").is_ok());
    let events = tokio::time::timeout(ANSWER, c.read_events(Default::default())).await;
    assert!(
        events
            .expect("events.read answers during the attack")
            .is_ok()
    );
    srv.add_file("/after", TestContent::new(360, 1000).bytes);
    let after = job_with(&c, vec![spec(&srv.url("/after"), &dir.join("after"))]).await;
    c.resume(&after).await.unwrap();
    let done = tokio::time::timeout(
        Duration::from_secs(30),
        wait_state(&c, &after, JobState::Transferred),
    )
    .await;
    assert!(
        done.is_ok(),
        "a new transfer did not finish during the attack"
    );
    assert!(c.cache_list().await.unwrap().entries.is_empty());
    let cancelled = tokio::time::timeout(ANSWER, c.cancel(&id)).await;
    assert!(cancelled.expect("cancel answers").is_ok());
}

#[tokio::test]
async fn issue_11_fifo_source_fails_the_job_in_per_user_mode() {
    let d = daemon();
    let c = d.client().await;
    let dir = d.files_dir();
    let pipe = dir.join("pipe");
    nix::unistd::mkfifo(&pipe, Mode::from_bits_truncate(0o600)).unwrap();
    let id = job_with(&c, vec![spec(&file_url(&pipe), &dir.join("out"))]).await;
    c.resume(&id).await.unwrap();
    let job = tokio::time::timeout(
        Duration::from_secs(20),
        wait_state(&c, &id, JobState::Error),
    )
    .await
    .expect("a FIFO source fails the job instead of hanging it");
    let err = job.error.unwrap();
    assert!(!err.transient, "{err:?}");
    assert!(
        err.description.contains(&pipe.display().to_string())
            && err.description.contains("regular file"),
        "the error names the path: {err:?}"
    );
    let cancelled = tokio::time::timeout(ANSWER, c.cancel(&id)).await;
    assert!(cancelled.expect("cancel answers").is_ok());
}

#[tokio::test]
async fn issue_11_complete_never_opens_a_directory_swapped_for_a_fifo() {
    const IN_B: usize = 2000;
    let Some(d) = system_daemon(&["--max-files-per-job", "10000"]) else {
        return;
    };
    let c = d.client().await;
    let home = user_dir(d.dir.path(), "alice", ALICE, 0o755);
    let a = user_dir(&home, "A", ALICE, 0o755);
    let b = user_dir(&home, "B", ALICE, 0o755);
    let src = home.join("src");
    std::fs::write(&src, b"sixteen bytes!!!").unwrap();
    std::os::unix::fs::chown(&src, Some(ALICE), Some(ALICE)).unwrap();
    let pipe = home.join("pipe");
    fifo(&pipe, ALICE);
    // One file to A, then many to B: complete renames them in that order.
    let id = job_id(
        &create_as(
            ALICE,
            &d.socket,
            json!([{"remote_url": file_url(&src), "local_path": a.join("f0")}]),
        )
        .await,
    );
    let batches: Vec<Value> = (1..=IN_B)
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|chunk| {
            let files: Vec<Value> = chunk
                .iter()
                .map(|i| json!({"remote_url": file_url(&src), "local_path": b.join(format!("f{i}"))}))
                .collect();
            json!({"method": "job.add_files", "params": {"job_id": id, "files": files}})
        })
        .chain([
            json!({"method": "job.set", "params": {"job_id": id, "max_parallel_files": 16}}),
            json!({"method": "job.resume", "params": {"job_id": id}}),
        ])
        .collect();
    for a in calls_as(ALICE, &d.socket, &batches, Duration::from_secs(30)).await {
        assert!(a.get("result").is_some(), "{a}");
    }
    wait_state(&c, &id, JobState::Transferred).await;

    // While complete renames the B files, A becomes a symlink to a FIFO.
    let completing = tokio::spawn({
        let socket = d.socket.clone();
        let call = json!({"method": "job.complete", "params": {"job_id": id}});
        async move { calls_as(ALICE, &socket, &[call], Duration::from_secs(20)).await }
    });
    let (a2, home2, pipe2, b2) = (a.clone(), home.clone(), pipe.clone(), b.clone());
    let left = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !a2.join("f0").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "complete never delivered f0"
            );
            std::hint::spin_loop();
        }
        std::fs::rename(&a2, home2.join("A.old")).unwrap();
        std::os::unix::fs::symlink(&pipe2, &a2).unwrap();
        // How many B files were still to come: the attack needs at least the last one.
        (1..=IN_B)
            .filter(|i| !b2.join(format!("f{i}")).exists())
            .count()
    })
    .await
    .unwrap();
    eprintln!("A was swapped with {left} of {IN_B} B files still to deliver");
    assert!(
        left > 0,
        "the swap came after every rename; the test did not attack (raise IN_B)"
    );
    let answer = completing.await.unwrap().remove(0);
    assert_eq!(answer["result"]["state"], "acknowledged", "{answer}");
    assert!(home.join("A.old").join("f0").exists());
    assert!(b.join(format!("f{IN_B}")).exists());
    let hello = tokio::time::timeout(ANSWER, c.hello()).await;
    assert!(hello.expect("the daemon still answers").is_ok());
}

/// The fds of process `pid` whose target is `path`.
fn fds_open_on(pid: u32, path: &Path) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == path))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn issue_11_proc_self_fd_cannot_read_another_users_open_file() {
    let Some(d) = system_daemon(&[]) else {
        return;
    };
    let c = d.client().await;
    // Bob copies a file from his private directory, slowly.
    let private = bobs_private_dir(d.dir.path());
    let big = private.join("big.bin");
    let content = TestContent::new(312, 4 * 1024 * 1024);
    std::fs::write(&big, &content.bytes).unwrap();
    std::os::unix::fs::chown(&big, Some(BOB), Some(BOB)).unwrap();
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = user_dir(private.parent().unwrap(), "out", BOB, 0o755);
    let copy = job_id(
        &create_as(
            BOB,
            &d.socket,
            json!([{"remote_url": file_url(&big), "local_path": out.join("big.bin")}]),
        )
        .await,
    );
    calls_as(
        BOB,
        &d.socket,
        &[
            json!({"method": "job.set", "params": {"job_id": copy, "bandwidth_limit_bps": 128 * 1024}}),
            json!({"method": "job.resume", "params": {"job_id": copy}}),
        ],
        ANSWER,
    )
    .await;
    // The daemon's fd on bob's file (a test as root may look; alice would guess).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let fd = loop {
        if let Some(fd) = fds_open_on(d.pid(), &big).pop() {
            break fd;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob's copy never opened the file"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // Alice asks for the daemon's own fd table.
    let alice = user_dir(d.dir.path(), "alice", ALICE, 0o755);
    let magic = format!("file:///proc/self/fd/{fd}");
    let steal = job_id(
        &create_as(
            ALICE,
            &d.socket,
            json!([{"remote_url": magic, "local_path": alice.join("loot")}]),
        )
        .await,
    );
    calls_as(
        ALICE,
        &d.socket,
        &[json!({"method": "job.resume", "params": {"job_id": steal}})],
        ANSWER,
    )
    .await;
    let job = wait_for(&c, &steal, WAIT, |j| {
        matches!(j.state, JobState::Error | JobState::Transferred)
    })
    .await;
    assert_eq!(
        fds_open_on(d.pid(), &big).pop(),
        Some(fd.clone()),
        "bob's copy was still open during the attack"
    );
    assert_eq!(job.state, JobState::Error, "alice read bob's file");
    let err = job.error.unwrap();
    assert_eq!(err.code, "ACCESS_DENIED", "{err:?}");
    assert!(err.description.contains("magic link"), "{err:?}");
    assert!(!alice.join("loot").exists());
    for t in temp_files(&alice) {
        assert_eq!(std::fs::metadata(&t).unwrap().len(), 0, "{}", t.display());
    }
    c.cancel(&copy).await.unwrap();
}

/// `answer` with `dir` written as `<dir>`, so answers about different paths compare.
fn about(answer: &Value, dir: &Path) -> String {
    answer["error"]
        .to_string()
        .replace(&dir.display().to_string(), "<dir>")
}

#[tokio::test]
async fn issue_11_add_files_does_not_tell_what_lies_in_another_users_private_directory() {
    let Some(d) = system_daemon(&[]) else {
        return;
    };
    let private = bobs_private_dir(d.dir.path());
    std::fs::write(private.join("file"), b"x").unwrap();
    user_dir(&private, "sub", BOB, 0o755);
    let url = "http://127.0.0.1:9/x";
    let mut seen = Vec::new();
    for probe in ["missing", "file", "sub"] {
        let dir = private.join(probe);
        let a = create_as(
            ALICE,
            &d.socket,
            json!([{"remote_url": url, "local_path": dir.join("x")}]),
        )
        .await;
        assert_eq!(a["error"]["code"], -32005, "{a}");
        seen.push((probe, about(&a, &dir)));
    }
    for (probe, answer) in &seen[1..] {
        assert_eq!(
            answer, &seen[0].1,
            "{probe:?} is told apart from {:?}",
            seen[0].0
        );
    }
    // The answer still says what to do.
    assert!(
        seen[0].1.contains("choose an existing directory"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn issue_11_ranged_file_url_does_not_reveal_the_size_of_a_private_file() {
    let Some(d) = system_daemon(&[]) else {
        return;
    };
    let private = bobs_private_dir(d.dir.path());
    let secret = private.join("secret.bin");
    std::fs::write(&secret, vec![7u8; 1000]).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let alice = user_dir(d.dir.path(), "alice", ALICE, 0o755);
    let own = alice.join("own.bin");
    std::fs::write(&own, vec![7u8; 1000]).unwrap();
    let ask = |source: &Path, offset: u64| {
        json!([{
            "remote_url": file_url(source),
            "local_path": alice.join(format!("out{offset}")),
            "ranges": [{"offset": offset, "length": 1}],
        }])
    };
    // Inside the size and just past it: the same answer for bob's file.
    let inside = create_as(ALICE, &d.socket, ask(&secret, 999)).await;
    let past = create_as(ALICE, &d.socket, ask(&secret, 1000)).await;
    assert!(inside.get("result").is_some(), "{inside}");
    assert!(
        past.get("result").is_some(),
        "the answer tells bob's file is 1000 bytes: {past}"
    );
    // Her own file is still checked at once.
    let hers = create_as(ALICE, &d.socket, ask(&own, 1000)).await;
    assert_eq!(
        hers["error"]["data"]["bits"], "BG_E_INVALID_RANGE",
        "{hers}"
    );
}

#[tokio::test]
async fn issue_11_nul_bytes_in_paths_are_refused_as_invalid_params() {
    let d = daemon();
    let dir = d.files_dir();
    let mut raw = Raw::connect(&d.socket).await;
    let with_nul = format!("{}/a\u{0}b", dir.display());
    let e = raw
        .error(
            "job.create",
            json!({"display_name": "x", "files": [{"remote_url": "http://127.0.0.1:9/x", "local_path": with_nul}]}),
        )
        .await;
    assert_eq!(e["code"], -32602, "{e}");
    assert_eq!(e["data"]["field"], "files[0].local_path", "{e}");
    assert!(e["message"].as_str().unwrap().contains("NUL"), "{e}");
    let url = format!("file://{}/a%00b", dir.display());
    let e = raw
        .error(
            "job.create",
            json!({"display_name": "x", "files": [{"remote_url": url, "local_path": dir.join("out")}]}),
        )
        .await;
    assert_eq!(e["code"], -32602, "{e}");
    assert_eq!(e["data"]["field"], "files[0].remote_url", "{e}");
    assert!(e["message"].as_str().unwrap().contains("NUL"), "{e}");
}
