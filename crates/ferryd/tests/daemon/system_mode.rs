//! System-mode hardening: a job's files are created, read, renamed and deleted with
//! the owner's identity, so a user cannot make the root daemon read or write where the user
//! could not — not even by swapping a directory for a symlink between the daemon's checks.
//! Needs root (the tests act as `nobody`); without root they report themselves skipped.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ferry_proto::JobState;
use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;
use serde_json::{Value, json};

use crate::access::calls_as_nobody;
use crate::support::*;

const NOBODY: u32 = 65534;

fn root() -> bool {
    let ok = nix::unistd::Uid::effective().is_root();
    if !ok {
        eprintln!("SKIPPED: system-mode tests need root to act as a second user");
    }
    ok
}

/// A directory owned by nobody (so nobody may write there).
fn nobody_dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    std::fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
    d
}

/// A directory only root may enter.
fn root_only_dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

fn create_as_nobody(socket: &Path, files: Value) -> String {
    let a = calls_as_nobody(
        socket,
        &[json!({"method": "job.create", "params": {"display_name": "n", "files": files}})],
    );
    a[0]["result"]["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("create failed: {}", a[0]))
        .to_string()
}

#[tokio::test]
async fn files_belong_to_the_owner() {
    if !root() {
        return;
    }
    let d = daemon_with(&["--system"]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(300, 100_000);
    srv.add_file("/own", content.bytes.clone());
    let dir = nobody_dir(d.dir.path(), "home");
    let id = create_as_nobody(
        &d.socket,
        json!([{"remote_url": srv.url("/own"), "local_path": dir.join("own")}]),
    );
    calls_as_nobody(
        &d.socket,
        &[json!({"method": "job.resume", "params": {"job_id": id}})],
    );
    wait_state(&c, &id, JobState::Transferred).await;
    let temp = c.files(&id).await.unwrap()[0]
        .temporary_path
        .clone()
        .unwrap();
    assert_eq!(
        std::fs::metadata(&temp).unwrap().uid(),
        NOBODY,
        "the staging file is nobody's"
    );
    let a = calls_as_nobody(
        &d.socket,
        &[json!({"method": "job.complete", "params": {"job_id": id}})],
    );
    assert_eq!(a[0]["result"]["state"], "acknowledged", "{}", a[0]);
    let meta = std::fs::metadata(dir.join("own")).unwrap();
    assert_eq!(meta.uid(), NOBODY, "the delivered file is nobody's");
    assert_eq!(sha256_file(&dir.join("own")), content.sha256);
}

#[tokio::test]
async fn swapping_the_directory_for_a_symlink_before_transfer_is_refused() {
    if !root() {
        return;
    }
    let d = daemon_with(&["--system"]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/evil", TestContent::new(301, 1000).bytes);
    let dir = nobody_dir(d.dir.path(), "swap");
    let secret = root_only_dir(d.dir.path(), "secret");
    let id = create_as_nobody(
        &d.socket,
        json!([{"remote_url": srv.url("/evil"), "local_path": dir.join("x")}]),
    );
    // Passed the add_files check; now the owner swaps the directory for a symlink to a place
    // only root may write.
    std::fs::remove_dir(&dir).unwrap();
    std::os::unix::fs::symlink(&secret, &dir).unwrap();
    calls_as_nobody(
        &d.socket,
        &[json!({"method": "job.resume", "params": {"job_id": id}})],
    );
    let job = wait_state(&c, &id, JobState::Error).await;
    let err = job.error.unwrap();
    assert_eq!(err.code, "ACCESS_DENIED", "{err:?}");
    assert_eq!(
        std::fs::read_dir(&secret).unwrap().count(),
        0,
        "nothing was written into the root-only directory"
    );
}

#[tokio::test]
async fn swapping_the_directory_before_complete_is_refused() {
    if !root() {
        return;
    }
    let d = daemon_with(&["--system"]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/late", TestContent::new(302, 1000).bytes);
    let dir = nobody_dir(d.dir.path(), "late");
    let secret = root_only_dir(d.dir.path(), "vault");
    let id = create_as_nobody(
        &d.socket,
        json!([{"remote_url": srv.url("/late"), "local_path": dir.join("passwd")}]),
    );
    calls_as_nobody(
        &d.socket,
        &[json!({"method": "job.resume", "params": {"job_id": id}})],
    );
    wait_state(&c, &id, JobState::Transferred).await;
    // Move the staging file into the root-only directory under the same name, and point the
    // directory at it: a daemon renaming as root would now write into the vault.
    let temp = PathBuf::from(
        c.files(&id).await.unwrap()[0]
            .temporary_path
            .clone()
            .unwrap(),
    );
    std::fs::rename(&temp, secret.join(temp.file_name().unwrap())).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    std::os::unix::fs::symlink(&secret, &dir).unwrap();
    let a = calls_as_nobody(
        &d.socket,
        &[json!({"method": "job.complete", "params": {"job_id": id}})],
    );
    assert_eq!(a[0]["error"]["code"], -32002, "{}", a[0]);
    assert!(
        !secret.join("passwd").exists(),
        "nothing was renamed into the root-only directory"
    );
}

#[tokio::test]
async fn file_url_cannot_read_what_the_owner_cannot() {
    if !root() {
        return;
    }
    let d = daemon_with(&["--system"]);
    let c = d.client().await;
    let secret = root_only_dir(d.dir.path(), "keys");
    std::fs::write(secret.join("key"), b"top secret").unwrap();
    let dir = nobody_dir(d.dir.path(), "loot");
    let url = format!("file://{}", secret.join("key").display());
    let id = create_as_nobody(
        &d.socket,
        json!([{"remote_url": url, "local_path": dir.join("key")}]),
    );
    calls_as_nobody(
        &d.socket,
        &[json!({"method": "job.resume", "params": {"job_id": id}})],
    );
    let job = wait_state(&c, &id, JobState::Error).await;
    assert_eq!(job.error.unwrap().code, "ACCESS_DENIED");
    calls_as_nobody(
        &d.socket,
        &[json!({"method": "job.complete", "params": {"job_id": id}})],
    );
    assert!(!dir.join("key").exists());
    for t in temp_files(&dir) {
        assert_eq!(
            std::fs::metadata(&t).unwrap().len(),
            0,
            "no secret byte in {}",
            t.display()
        );
    }
}
