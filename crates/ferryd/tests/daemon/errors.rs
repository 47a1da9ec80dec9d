//! Error classification: fatal HTTP statuses, transient ones retried after the retry delay,
//! and a stalled server failing the job after the no-progress timeout.

use ferry_proto::{ErrorContext, JobState};
use ferry_testkit::content::TestContent;
use ferry_testkit::http::{Behavior, TestServer};

use crate::support::*;

#[tokio::test]
async fn http_404_is_a_fatal_remote_file_error() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/missing"), &dir.join("m"))]).await;
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Error).await;
    let err = c.get_error(&id).await.unwrap().expect("error info");
    assert_eq!(job.error.as_ref(), Some(&err));
    assert_eq!(err.context, ErrorContext::RemoteFile);
    assert_eq!(err.code, "HTTP_404");
    assert_eq!(err.http_status, Some(404));
    assert_eq!(err.file_index, Some(0));
    assert!(!err.transient);
    assert!(err.description.contains("404"), "{}", err.description);
    assert_eq!(job.error_count, 1);
}

#[tokio::test]
async fn http_503_is_retried_until_the_server_recovers() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(10, 10_000);
    srv.add_file("/busy", content.bytes.clone());
    srv.set_behavior(
        "/busy",
        Behavior {
            fail_first: Some((2, 503)),
            ..Behavior::default()
        },
    );
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/busy"), &dir.join("busy"))]).await;
    fast_retry(&c, &id, None).await;
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::TransientError).await;
    let err = job.error.unwrap();
    assert_eq!(err.code, "HTTP_503");
    assert!(err.transient);
    let waiting = job
        .waiting
        .expect("a transient-error job says why it waits");
    assert!(waiting.until.is_some());
    let job = wait_state(&c, &id, JobState::Transferred).await;
    assert!(job.error.is_none());
    assert_eq!(job.error_count, 2);
    let reqs = srv.requests_for("/busy");
    assert_eq!(reqs.len(), 3);
    // Each retry waited for the retry delay (1 s here).
    for w in reqs.windows(2) {
        assert!(
            w[1].time.duration_since(w[0].time).as_millis() >= 900,
            "retried too early"
        );
    }
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("busy")), content.sha256);
}

#[tokio::test]
async fn stall_longer_than_no_progress_timeout_is_an_error() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/stall", TestContent::new(11, 100_000).bytes);
    srv.set_behavior(
        "/stall",
        Behavior {
            stall_after: Some(1000),
            ..Behavior::default()
        },
    );
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/stall"), &dir.join("s"))]).await;
    fast_retry(&c, &id, Some(2)).await;
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Error).await;
    let err = job.error.unwrap();
    assert_eq!(err.code, "NO_PROGRESS_TIMEOUT");
    assert!(!err.transient);
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let d = daemon();
    let c = d.client().await;
    // A port nobody listens on: bind, note the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = d.files_dir();
    let id = job_with(
        &c,
        vec![spec(&format!("http://127.0.0.1:{port}/x"), &dir.join("x"))],
    )
    .await;
    fast_retry(&c, &id, None).await;
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::TransientError).await;
    let err = job.error.unwrap();
    assert_eq!(err.code, "CONNECT_FAILED");
    assert_eq!(err.context, ErrorContext::GeneralTransport);
}

#[tokio::test]
async fn max_download_time_is_enforced() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_dripped_file("/slow", TestContent::new(12, 1_000_000).bytes, 100_000);
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/slow"), &dir.join("slow"))]).await;
    c.set(ferry_proto::params::SetParams {
        job_id: id.clone(),
        max_download_time_s: Some(Some(1)),
        ..Default::default()
    })
    .await
    .unwrap();
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Error).await;
    let err = job.error.unwrap();
    assert_eq!(err.code, "MAX_DOWNLOAD_TIME");
    assert_eq!(err.context, ErrorContext::GeneralQueueManager);
}
