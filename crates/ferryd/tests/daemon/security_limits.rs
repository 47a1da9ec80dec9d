//! Bounded resources per user: each test performs an attack that made the daemon grow without
//! bound, and checks that it is refused past a `[limits]` setting named in the refusal (or that
//! the connection is closed), that memory and the store stay small, and that others are served.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::load::proc_status_kib;
use crate::protocol::Raw;
use crate::support::*;

/// Checks a `limit_exceeded` error names `key` (in `data.limit` and the message), the `[limits]`
/// section of ferryd.toml, and the limit's value.
fn assert_limit(error: &Value, key: &str, value: u64) {
    assert_eq!(error["code"], -32003, "{error}");
    assert_eq!(error["data"]["kind"], "limit_exceeded", "{error}");
    assert_eq!(error["data"]["limit"], key, "{error}");
    let msg = error["message"].as_str().unwrap();
    assert!(msg.contains(&format!("{key} = {value}")), "{msg}");
    assert!(msg.contains("[limits] in ferryd.toml"), "{msg}");
}

/// Bytes of everything in the state directory (store, its WAL, ...).
fn state_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn register(name: &str, arg_len: usize) -> Value {
    json!({"name": name, "argv": ["/bin/true", "x".repeat(arg_len)]})
}

/// Registers handler `name` with an argument of `arg_len` bytes, which must be refused by the
/// limit `key` of `value`.
async fn register_refused(raw: &mut Raw, name: &str, arg_len: usize, key: &str, value: u64) {
    let e = raw.error("handler.register", register(name, arg_len)).await;
    assert_limit(&e, key, value);
}

/// Registers handler `name` with an argument of `arg_len` bytes, which must succeed.
async fn register_ok(raw: &mut Raw, name: &str, arg_len: usize) {
    let r = raw.call("handler.register", register(name, arg_len)).await;
    assert_eq!(r["result"], json!({}), "registering {name}: {r}");
}

#[tokio::test]
async fn issue_11_sixty_megabyte_handler_registrations_are_refused_and_the_store_stays_small() {
    let d = daemon();
    let mut raw = Raw::connect(&d.socket).await;
    // The attack: 60 registrations with a 1 MB argv each.
    for i in 0..60 {
        let name = format!("h{i}");
        register_refused(&mut raw, &name, 1_000_000, "handler_argv_bytes", 64 * 1024).await;
    }
    // Within the per-handler size, the user's total is bounded: 17 of 60 000 bytes fit in 1 MiB.
    for i in 0..17 {
        register_ok(&mut raw, &format!("big{i}"), 60_000).await;
    }
    let total = "handler_argv_bytes_per_user";
    register_refused(&mut raw, "big17", 60_000, total, 1024 * 1024).await;
    // And so is their number: 64 in all.
    for i in 17..64 {
        register_ok(&mut raw, &format!("small{i}"), 1).await;
    }
    register_refused(&mut raw, "one-too-many", 1, "handlers_per_user", 64).await;
    // Replacing a registration is not a new one.
    register_ok(&mut raw, "big0", 10).await;
    let list = raw.call("handler.list", json!({})).await;
    assert_eq!(list["result"]["handlers"].as_array().unwrap().len(), 64);
    let stored = state_bytes(&d.state_dir);
    assert!(stored < 8 * 1024 * 1024, "the store grew to {stored} bytes");
}

#[tokio::test]
async fn issue_11_job_files_requests_never_read_are_bounded_and_the_connection_is_closed() {
    let d = daemon();
    let c = d.client().await;
    let dir = d.files_dir();
    // A job whose file list answers with about 3 MiB.
    let specs = (0..10_000)
        .map(|i| {
            spec(
                &format!("http://127.0.0.1:9/a/rather/long/path/to/file/{i}"),
                &dir.join(format!("file-{i}")),
            )
        })
        .collect();
    let id = job_with(&c, specs).await;
    let mut attacker = UnixStream::connect(&d.socket).await.unwrap();
    let request =
        json!({"jsonrpc": "2.0", "id": 1, "method": "job.files", "params": {"job_id": id}});
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines.extend_from_slice(request.to_string().as_bytes());
        lines.push(b'\n');
    }
    // The attack: 100 requests whose answers are never read.
    tokio::time::timeout(Duration::from_secs(10), attacker.write_all(&lines))
        .await
        .expect("the requests fit in the socket buffers")
        .unwrap();
    wait_log(
        &d,
        "does not read its answers",
        1,
        "the daemon never closed the connection that does not read",
    );
    // Closed: what was buffered can be read, then the stream ends.
    let mut sink = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), attacker.read_to_end(&mut sink)).await;
    assert!(end.is_ok(), "the connection is still open");
    let pid = d.pid();
    let peak = proc_status_kib(pid, "VmHWM");
    eprintln!("job.files: ferryd's peak RSS {peak} KiB");
    assert!(peak < 150 * 1024, "ferryd's peak RSS is {peak} KiB");
    // Everyone else is served.
    assert_eq!(c.hello().await.expect("ferry.hello").protocol, 1);
    assert_eq!(
        c.get(&id).await.expect("job.get").progress.files_total,
        10_000
    );
}

#[tokio::test]
async fn issue_11_eight_followers_that_never_read_hold_bounded_memory_and_a_ninth_is_refused() {
    const JOBS: usize = 50_000;
    let d = daemon_with(&["--max-jobs-per-user", "100000"]);
    let c = d.client().await;
    create_jobs(&c, JOBS, 1000).await;
    let pid = d.pid();
    let before = proc_status_kib(pid, "VmHWM");
    // The attack: eight connections replaying 50 000 events each (about 11 MiB apiece) that
    // never read them.
    let follow =
        json!({"jsonrpc": "2.0", "id": 1, "method": "events.follow", "params": {"after": 0}});
    let mut followers = Vec::new();
    for _ in 0..8 {
        let mut raw = Raw::connect(&d.socket).await;
        raw.send_line(follow.to_string().as_bytes()).await;
        // Read only up to the answer (events may come before it), then nothing more.
        while raw.recv().await.expect("the follow answer")["id"] != 1 {}
        followers.push(raw);
    }
    // A ninth, even one that reads, is refused while they hold their places.
    let mut ninth = Raw::connect(&d.socket).await;
    let e = ninth.error("events.follow", json!({"after": 0})).await;
    assert_limit(&e, "followers_per_user", 8);
    wait_log(
        &d,
        "does not read its followed events",
        8,
        "the followers that do not read were not all closed",
    );
    let peak = proc_status_kib(pid, "VmHWM");
    eprintln!("followers: VmHWM {before} KiB before, {peak} KiB after");
    assert!(
        peak < before + 40 * 1024,
        "eight idle followers took ferryd's peak RSS from {before} KiB to {peak} KiB"
    );
    assert_eq!(c.hello().await.expect("ferry.hello").protocol, 1);
    // A follower that leaves gives its place back.
    drop(followers.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut raw = Raw::connect(&d.socket).await;
        let r = raw.call("events.follow", json!({})).await;
        if r.get("result").is_some() {
            break;
        }
        assert_limit(&r["error"], "followers_per_user", 8);
        assert!(
            Instant::now() < deadline,
            "the follower's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn issue_11_connections_past_the_default_per_uid_limit_are_refused_naming_the_setting() {
    let d = daemon();
    let mut open = Vec::new();
    for _ in 0..128 {
        open.push(Raw::connect_served(&d.socket).await);
    }
    // The refusal comes unasked; a daemon that serves the connection says nothing.
    let mut over = Raw::connect(&d.socket).await;
    let r = tokio::time::timeout(Duration::from_secs(10), over.recv())
        .await
        .expect("the 129th connection was served instead of refused")
        .expect("a refusal before the close");
    assert_limit(&r["error"], "connections_per_user", 128);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-connections-per-user")
    );
    assert!(over.recv().await.is_none(), "closed after the refusal");
    assert_eq!(
        open[0].call("ferry.hello", json!({})).await["result"]["protocol"],
        1
    );
}

#[tokio::test]
async fn issue_11_limits_in_ferryd_toml_are_honoured_and_flags_override_them() {
    let conf = tempfile::tempdir().unwrap();
    let path = conf.path().join("ferryd.toml");
    std::fs::write(
        &path,
        "[limits]\nhandlers_per_user = 1\nfollowers_per_user = 1\njobs_per_user = 1\n",
    )
    .unwrap();
    let d = daemon_with(&[
        "--config",
        path.to_str().unwrap(),
        "--max-jobs-per-user",
        "2",
    ]);
    let mut a = Raw::connect(&d.socket).await;
    register_ok(&mut a, "one", 1).await;
    register_refused(&mut a, "two", 1, "handlers_per_user", 1).await;
    let r = a.call("events.follow", json!({})).await;
    assert_eq!(r["result"], json!({}), "{r}");
    let mut b = Raw::connect(&d.socket).await;
    let e = b.error("events.follow", json!({})).await;
    assert_limit(&e, "followers_per_user", 1);
    // The flag wins over the file: two jobs, not one.
    for i in 0..2 {
        let r = b
            .call("job.create", json!({"display_name": format!("j{i}")}))
            .await;
        assert!(r["result"]["job_id"].is_string(), "{r}");
    }
    let e = b.error("job.create", json!({"display_name": "j2"})).await;
    assert_limit(&e, "jobs_per_user", 2);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("--max-jobs-per-user")
    );
}

#[tokio::test]
async fn issue_11_files_per_user_counts_every_unfinished_job_and_survives_a_restart() {
    let conf = tempfile::tempdir().unwrap();
    let path = conf.path().join("ferryd.toml");
    std::fs::write(&path, "[limits]\nfiles_per_user = 3\n").unwrap();
    let mut d = daemon_with(&["--config", path.to_str().unwrap()]);
    let dir = d.files_dir();
    let files = |names: &[&str]| -> Value {
        names
            .iter()
            .map(|n| json!({"remote_url": format!("http://127.0.0.1:9/{n}"), "local_path": dir.join(n)}))
            .collect()
    };
    let mut raw = Raw::connect(&d.socket).await;
    let r = raw
        .call(
            "job.create",
            json!({"display_name": "a", "files": files(&["a1", "a2"])}),
        )
        .await;
    let a = r["result"]["job_id"].as_str().unwrap().to_owned();
    // The attack: more files than the quota, spread over jobs.
    let e = raw
        .error(
            "job.add_files",
            json!({"job_id": a, "files": files(&["a3", "a4"])}),
        )
        .await;
    assert_limit(&e, "files_per_user", 3);
    let b = json!({"display_name": "b", "files": files(&["b1", "b2"])});
    let e = raw.error("job.create", b.clone()).await;
    assert_limit(&e, "files_per_user", 3);
    // The count is rebuilt from the store after a restart.
    d.restart();
    let mut raw = Raw::connect(&d.socket).await;
    let e = raw.error("job.create", b.clone()).await;
    assert_limit(&e, "files_per_user", 3);
    // A finished job gives its files back.
    let r = raw.call("job.cancel", json!({"job_id": a})).await;
    assert!(r.get("result").is_some(), "{r}");
    let r = raw.call("job.create", b).await;
    assert!(r["result"]["job_id"].is_string(), "{r}");
}
