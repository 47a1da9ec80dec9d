//! Owner operations: complete hands over only finished files, cancel leaves nothing behind,
//! and the state rules answer with the documented errors.

use std::sync::Arc;

use ferry_proto::{ErrorKind, JobState};
use ferry_testkit::content::TestContent;
use ferry_testkit::http::{Behavior, TestServer};
use tokio::sync::Semaphore;

use crate::support::*;

#[tokio::test]
async fn complete_on_half_finished_job_is_partial() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let a = TestContent::new(20, 50_000);
    srv.add_file("/a", a.bytes.clone());
    srv.add_file("/b", TestContent::new(21, 50_000).bytes);
    let gate = Arc::new(Semaphore::new(0));
    srv.set_behavior(
        "/b",
        Behavior {
            gate: Some(gate.clone()),
            ..Behavior::default()
        },
    );
    let dir = d.files_dir();
    let id = job_with(
        &c,
        vec![
            spec(&srv.url("/a"), &dir.join("a")),
            spec(&srv.url("/b"), &dir.join("b")),
        ],
    )
    .await;
    c.resume(&id).await.unwrap();
    ferry_testkit::daemon::wait_for(&c, &id, WAIT, |j| j.progress.files_transferred == 1).await;
    srv.wait_for_requests("/b", 1, WAIT).await;
    let r = c.complete(&id).await.unwrap();
    assert!(r.partial);
    assert_eq!(r.state, JobState::Acknowledged);
    assert_eq!(sha256_file(&dir.join("a")), a.sha256);
    assert!(!dir.join("b").exists());
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
    let files = c.files(&id).await.unwrap();
    assert!(files[0].completed && !files[1].completed);
    // A final job can be read but not changed.
    let e = c.resume(&id).await.unwrap_err();
    assert!(e.daemon_error().unwrap().is(ErrorKind::InvalidState));
    gate.add_permits(1);
}

#[tokio::test]
async fn cancel_deletes_staging_files() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_dripped_file("/big", TestContent::new(22, 2_000_000).bytes, 500_000);
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/big"), &dir.join("big"))]).await;
    c.resume(&id).await.unwrap();
    ferry_testkit::daemon::wait_for(&c, &id, WAIT, |j| j.progress.bytes_transferred > 0).await;
    assert_eq!(temp_files(&dir).len(), 1);
    let r = c.cancel(&id).await.unwrap();
    assert_eq!(r.state, JobState::Cancelled);
    assert!(temp_files(&dir).is_empty());
    assert!(!dir.join("big").exists());
    // Final jobs are hidden from the list unless asked for.
    let l = c.list(Default::default()).await.unwrap();
    assert!(l.jobs.iter().all(|j| j.job_id != id));
    let l = c
        .list(ferry_proto::params::ListParams {
            include_final: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(l.jobs.iter().any(|j| j.job_id == id));
}

#[tokio::test]
async fn resume_of_empty_job_is_bg_e_empty() {
    let d = daemon();
    let c = d.client().await;
    let id = job_with(&c, vec![]).await;
    let e = c.resume(&id).await.unwrap_err();
    let e = e.daemon_error().unwrap();
    assert_eq!(e.code, -32001);
    let data = e.data.as_ref().unwrap();
    assert_eq!(data["reason"], "empty");
    assert_eq!(data["bits"], "BG_E_EMPTY");
}

#[tokio::test]
async fn validation_of_unfinished_file_is_pending() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/never"), &dir.join("n"))]).await;
    let e = c.set_validation(&id, 0, true).await.unwrap_err();
    assert_eq!(e.daemon_error().unwrap().code, -32006);
}

#[tokio::test]
async fn events_record_the_life_of_a_job() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/ev", TestContent::new(23, 1000).bytes);
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/ev"), &dir.join("ev"))]).await;
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    c.complete(&id).await.unwrap();
    let r = c
        .read_events(ferry_proto::params::EventsReadParams {
            job_id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let kinds: Vec<&str> = r.events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds.first(), Some(&"created"));
    assert!(kinds.contains(&"file_transferred"));
    let states: Vec<JobState> = r
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            ferry_proto::EventKind::State { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(states.last(), Some(&JobState::Acknowledged));
    assert!(states.contains(&JobState::Transferred));
    assert!(r.events.windows(2).all(|w| w[0].seq < w[1].seq));
    // Reading after the last seq gives nothing new and the same cursor.
    let again = c
        .read_events(ferry_proto::params::EventsReadParams {
            after: Some(r.next),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(again.events.is_empty());
    assert_eq!(again.next, r.next);
}

/// The crash loop's failure of 2026-11-24 (seed 1795514797850333891) without the crash: a
/// cancel that reaches a queued job while the scheduler starts it. The cancel used to stop "no
/// task", then the scheduler started one, and that task created a staging file the cancelled
/// job kept for ever. Every cancel here races a resume; none may leave a staging file.
#[tokio::test]
async fn issue_5_cancel_racing_a_start_leaves_no_staging_file() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_dripped_file("/slow", TestContent::new(23, 1_000_000).bytes, 1_000_000);
    let dir = d.files_dir();
    let mut ids = Vec::new();
    for i in 0..40 {
        let id = job_with(
            &c,
            vec![spec(&srv.url("/slow"), &dir.join(format!("f{i}")))],
        )
        .await;
        let (resumed, cancelled) = tokio::join!(c.resume(&id), c.cancel(&id));
        resumed.unwrap();
        assert_eq!(cancelled.unwrap().state, JobState::Cancelled);
        ids.push(id);
    }
    for id in &ids {
        for f in c.files(id).await.unwrap() {
            assert_eq!(
                f.temporary_path, None,
                "cancelled job {id} keeps a staging file"
            );
        }
        assert_eq!(c.get(id).await.unwrap().state, JobState::Cancelled);
    }
    // Suspend and cancel the same way once more: a suspended job must not go on transferring.
    let id = job_with(&c, vec![spec(&srv.url("/slow"), &dir.join("s"))]).await;
    for _ in 0..20 {
        let (resumed, suspended) = tokio::join!(c.resume(&id), c.suspend(&id));
        resumed.unwrap();
        assert_eq!(suspended.unwrap().state, JobState::Suspended);
        assert_eq!(c.get(&id).await.unwrap().state, JobState::Suspended);
    }
    c.cancel(&id).await.unwrap();
    assert_eq!(temp_files(&dir), Vec::<std::path::PathBuf>::new());
}
