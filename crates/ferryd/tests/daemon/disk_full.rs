//! A full disk: the destination is a tmpfs of 2 MiB. A file that does not fit fails
//! the job with a `local_file` error naming the path and the reason; once space is freed,
//! `resume` completes it with the right content. Needs root (to mount); without root the test
//! reports itself skipped.

use ferry_proto::{ErrorContext, JobState};
use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;

use crate::support::*;

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn disk_full_fails_cleanly_and_resume_finishes_after_space_is_freed() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "SKIPPED disk_full_fails_cleanly_and_resume_finishes_after_space_is_freed: needs root to mount a tmpfs"
        );
        return;
    }
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let mnt = d.dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    if !st.success() {
        eprintln!(
            "SKIPPED disk_full_fails_cleanly_and_resume_finishes_after_space_is_freed: mount refused ({st})"
        );
        return;
    }
    let _umount = Tmpfs(mnt.clone());
    // Half the space is taken by another program's file.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![7u8; 1024 * 1024]).unwrap();
    let content = TestContent::new(400, 1536 * 1024);
    srv.add_file("/big", content.bytes.clone());
    let id = job_with(&c, vec![spec(&srv.url("/big"), &mnt.join("big"))]).await;
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Error).await;
    let err = job.error.unwrap();
    assert_eq!(err.context, ErrorContext::LocalFile, "{err:?}");
    assert_eq!(err.code, "LOCAL_IO");
    assert!(
        err.description.contains(&mnt.display().to_string()),
        "{}",
        err.description
    );
    assert!(
        err.description.to_lowercase().contains("no space"),
        "{}",
        err.description
    );
    assert!(!mnt.join("big").exists());
    // Free the space; resume finishes the job.
    std::fs::remove_file(&filler).unwrap();
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    let r = c.complete(&id).await.unwrap();
    assert!(!r.partial);
    assert_eq!(sha256_file(&mnt.join("big")), content.sha256);
    assert!(temp_files(&mnt).is_empty());
}
