//! The Rust client library against the real daemon: a `Callback` registered as the live
//! callback completes its job, and the `updater` example works end to end as a handler that
//! ferryd starts after the application exited.

use std::sync::Arc;

use ferry_client::{Callback, CallbackContext, CallbackFuture, Client};
use ferry_proto::params::SetParams;
use ferry_proto::{File, Job, JobState};
use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;
use tokio::sync::mpsc;

use crate::support::*;

struct Completer(mpsc::UnboundedSender<String>);

impl Callback for Completer {
    fn file_transferred(&self, ctx: CallbackContext, job: Job, file: File) -> CallbackFuture {
        let tx = self.0.clone();
        Box::pin(async move {
            ctx.client
                .set_validation(&job.job_id, file.file_index, true)
                .await?;
            let _ = tx.send(format!("file {}", file.file_index));
            Ok(())
        })
    }

    fn job_transferred(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
        let tx = self.0.clone();
        Box::pin(async move {
            ctx.client.complete(&job.job_id).await?;
            let _ = tx.send("transferred".into());
            Ok(())
        })
    }
}

#[tokio::test]
async fn callback_trait_completes_the_job_from_inside_the_callback() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    srv.add_file("/lib", TestContent::new(100, 5000).bytes);
    let id = job_with(&c, vec![spec(&srv.url("/lib"), &dir.join("lib"))]).await;
    c.set(SetParams {
        job_id: id.clone(),
        notify_flags: Some(1 | 16),
        ..Default::default()
    })
    .await
    .unwrap();
    let app = Client::connect_to(&d.socket).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    app.set_notify_interface(&id, Arc::new(Completer(tx)))
        .await
        .unwrap();
    c.resume(&id).await.unwrap();
    assert_eq!(rx.recv().await.as_deref(), Some("file 0"));
    assert_eq!(rx.recv().await.as_deref(), Some("transferred"));
    let job = wait_state(&c, &id, JobState::Acknowledged).await;
    assert_eq!(job.state, JobState::Acknowledged);
    assert_eq!(
        sha256_file(&dir.join("lib")),
        TestContent::new(100, 5000).sha256
    );
    assert_eq!(
        c.files(&id).await.unwrap()[0].validation,
        ferry_proto::Validation::Valid
    );
}

/// The compiled `updater` example (built by `cargo test`/`nextest` with the workspace).
fn updater_example() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let p = target.join("examples").join("updater");
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build -p ferry-client --examples`",
        p.display()
    );
    p
}

#[tokio::test]
async fn updater_example_is_relaunched_by_ferryd_and_completes() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(101, 300_000);
    srv.add_file("/update.bin", content.bytes.clone());
    let dir = d.files_dir();
    let out = tokio::process::Command::new(updater_example())
        .arg(srv.url("/update.bin"))
        .arg(&dir)
        .env("FERRY_SOCKET", &d.socket)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // The application has exited; ferryd starts it again as the handler to finish the job.
    let job = wait_state(&c, &id, JobState::Acknowledged).await;
    // The handler answers job_transferred after it logged; its answer is in the event log.
    c.follow_events(ferry_proto::params::EventsFollowParams {
        after: Some(0),
        job_id: Some(id.clone()),
    })
    .await
    .unwrap();
    loop {
        let e = tokio::time::timeout(WAIT, c.next_event())
            .await
            .unwrap()
            .unwrap();
        if let ferry_proto::EventKind::Notification {
            callback, outcome, ..
        } = &e.kind
            && callback == "job_transferred"
            && outcome == "ok"
        {
            break;
        }
    }
    assert_eq!(
        job.settings.notify_handler.as_deref(),
        Some("ferry-example-updater")
    );
    assert_eq!(sha256_file(&dir.join("update.bin")), content.sha256);
    let log = std::fs::read_to_string(dir.join("ferry-example-updater.log")).unwrap();
    assert!(
        log.contains("valid: true") && log.contains("delivered"),
        "{log}"
    );
}
