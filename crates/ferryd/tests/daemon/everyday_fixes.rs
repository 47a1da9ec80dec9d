//! Everyday bugs found against real servers, and replacing a file's URL mid-job
//! (`file.set_remote_url`, BITS `SetRemoteName`): each test runs a real daemon against the
//! real test HTTP server.

use ferry_proto::params::SetParams;
use ferry_proto::{ErrorKind, JobState};
use ferry_testkit::content::TestContent;
use ferry_testkit::daemon::wait_for;
use ferry_testkit::http::{Behavior, TestServer};

use crate::support::*;

/// A URL longer than the HTTP client can send (about 64 KiB) was retried for the whole
/// no-progress timeout as `CONNECTION_RESET`; it is a request that cannot be built.
#[tokio::test]
async fn issue_13_18_url_longer_than_64_kib_fails_at_once_as_invalid_request() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let url = format!("{}?q={}", srv.url("/long"), "x".repeat(70 * 1024));
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&url, &dir.join("long"))]).await;
    c.resume(&id).await.unwrap();
    let job = wait_for(&c, &id, WAIT, |j| {
        matches!(j.state, JobState::Error | JobState::TransientError)
    })
    .await;
    let err = job.error.expect("the job's error");
    // The old description held the whole URL: show only its start.
    let seen = format!("{} {:.300}", err.code, err.description);
    assert_eq!(job.state, JobState::Error, "{seen}");
    assert_eq!(err.code, "INVALID_REQUEST", "{seen}");
    assert!(!err.transient);
    assert!(
        err.description.len() < 1024 && err.description.contains("shorter URL"),
        "a bounded description saying what to do: {} bytes: {:.300}",
        err.description.len(),
        err.description
    );
    assert!(srv.requests().is_empty(), "nothing reached the server");
}

/// After `SHA256_MISMATCH` the file showed the last periodic checkpoint, not every byte read.
#[tokio::test]
async fn issue_13_18_sha256_mismatch_counts_every_byte_read() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(1318, 3 * 1024 * 1024 + 5);
    srv.add_file("/wrong", content.bytes.clone());
    let dir = d.files_dir();
    let mut s = spec(&srv.url("/wrong"), &dir.join("wrong"));
    s.sha256 = Some("00".repeat(32));
    let id = job_with(&c, vec![s]).await;
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Error).await;
    assert_eq!(job.error.as_ref().unwrap().code, "SHA256_MISMATCH");
    let len = content.len() as u64;
    assert_eq!(job.progress.bytes_transferred, len, "{:?}", job.progress);
    let f = &c.files(&id).await.unwrap()[0];
    assert_eq!((f.bytes_transferred, f.bytes_total), (len, Some(len)));
}

/// `waiting.reason` said `retry_after` even when the job's own, longer retry delay set the time.
#[tokio::test]
async fn issue_13_18_waiting_reason_names_the_longer_of_retry_after_and_the_retry_delay() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    for (path, retry_after, want) in [
        ("/short", "1", "retry_delay"),
        ("/long", "600", "retry_after"),
    ] {
        srv.add_file(path, TestContent::new(7, 100).bytes);
        srv.set_behavior(
            path,
            Behavior {
                status: Some(503),
                retry_after: Some(retry_after.into()),
                ..Behavior::default()
            },
        );
        let id = job_with(&c, vec![spec(&srv.url(path), &dir.join(&path[1..]))]).await;
        c.set(SetParams {
            job_id: id.clone(),
            minimum_retry_delay_s: Some(60),
            ..SetParams::default()
        })
        .await
        .unwrap();
        c.resume(&id).await.unwrap();
        let job = wait_state(&c, &id, JobState::TransientError).await;
        let waiting = job.waiting.expect("a waiting job says why");
        assert_eq!(
            waiting.reason, want,
            "Retry-After {retry_after} s, delay 60 s"
        );
    }
}

/// A dripped file, part transferred, gets a new URL. Returns the daemon, client, server,
/// job, the bytes the answer says were kept, and the content.
async fn part_transferred_then_new_url(
    new_content: &TestContent,
) -> (
    ferry_testkit::daemon::TestDaemon,
    ferry_client::Client,
    TestServer,
    String,
    u64,
) {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let old = TestContent::new(16, 4 * 1024 * 1024);
    srv.add_dripped_file("/old", old.bytes.clone(), 512 * 1024);
    srv.add_file("/new", new_content.bytes.clone());
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/old"), &dir.join("f"))]).await;
    c.resume(&id).await.unwrap();
    srv.wait_for_requests("/old", 1, WAIT).await;
    wait_for(&c, &id, WAIT, |j| j.progress.bytes_transferred > 0).await;
    let file = c.set_remote_url(&id, 0, &srv.url("/new")).await.unwrap();
    assert_eq!(file.remote_url, srv.url("/new"));
    assert!(
        file.bytes_transferred > 0,
        "the stopped transfer checkpointed"
    );
    (d, c, srv, id, file.bytes_transferred)
}

/// An expired URL replaced by one serving the same bytes and validators: the transfer goes on
/// from the kept offset (a `Range` request to the new URL), and the file is byte-identical.
#[tokio::test]
async fn issue_13_16_set_url_with_the_same_content_keeps_the_bytes() {
    let same = TestContent::new(16, 4 * 1024 * 1024);
    let (d, c, srv, id, kept) = part_transferred_then_new_url(&same).await;
    let job = wait_state(&c, &id, JobState::Transferred).await;
    assert_eq!(job.progress.bytes_transferred, same.len() as u64);
    let asked = srv.requests_for("/new");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        asked[0].range.as_deref(),
        Some(format!("bytes={kept}-").as_str())
    );
    assert_eq!(asked[0].if_range, srv.etag("/new"));
    assert_eq!(asked[0].status, 206);
    assert_eq!(asked[0].body_bytes_sent, same.len() as u64 - kept);
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&d.files_dir().join("f")), same.sha256);
}

/// A new URL serving other content (another validator): the file starts from zero and ends as
/// the new content, byte for byte.
#[tokio::test]
async fn issue_13_16_set_url_with_other_content_starts_from_zero() {
    let other = TestContent::new(17, 4 * 1024 * 1024);
    let (d, c, srv, id, kept) = part_transferred_then_new_url(&other).await;
    wait_state(&c, &id, JobState::Transferred).await;
    let asked = srv.requests_for("/new");
    let last = asked.last().unwrap();
    assert_eq!(
        asked[0].range.as_deref(),
        Some(format!("bytes={kept}-").as_str())
    );
    assert_eq!(last.status, 200, "{asked:?}");
    assert_eq!(last.body_bytes_sent, other.len() as u64);
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&d.files_dir().join("f")), other.sha256);
}

/// BITS's rules: a transferred file keeps its URL, the scheme is checked as in `add_files`,
/// a final job changes no more, and a suspended job stays suspended with its new URL.
#[tokio::test]
async fn issue_13_16_set_url_refuses_transferred_files_other_schemes_and_final_jobs() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(18, 1000);
    srv.add_file("/a", content.bytes.clone());
    let dir = d.files_dir();
    let id = job_with(
        &c,
        vec![
            spec(&srv.url("/a"), &dir.join("a")),
            spec(&srv.url("/missing"), &dir.join("b")),
        ],
    )
    .await;
    let bad = c
        .set_remote_url(&id, 1, "ftp://127.0.0.1/b")
        .await
        .unwrap_err();
    assert!(
        bad.daemon_error().unwrap().is(ErrorKind::Unsupported),
        "{bad}"
    );
    let bad = c.set_remote_url(&id, 7, &srv.url("/a")).await.unwrap_err();
    assert_eq!(bad.daemon_error().unwrap().code, -32602, "{bad}");
    // Suspended: the URL changes, the job waits for a resume.
    let f = c.set_remote_url(&id, 1, &srv.url("/a")).await.unwrap();
    assert_eq!(f.remote_url, srv.url("/a"));
    assert_eq!(c.get(&id).await.unwrap().state, JobState::Suspended);
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    let done = c.set_remote_url(&id, 0, &srv.url("/b")).await.unwrap_err();
    let de = done.daemon_error().unwrap();
    assert!(de.is(ErrorKind::InvalidState), "{done}");
    assert!(de.message.contains("already transferred"), "{done}");
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("b")), content.sha256);
    let fin = c.set_remote_url(&id, 1, &srv.url("/a")).await.unwrap_err();
    assert!(
        fin.daemon_error().unwrap().is(ErrorKind::InvalidState),
        "{fin}"
    );
}

/// The attack: another uid replaces the URL of root's file, so that root's daemon would write
/// content of the attacker's choosing to root's destination. It gets `not_found` (the job's
/// existence is not revealed) and the URL stays. Needs root to act as a second uid.
#[tokio::test]
async fn issue_13_16_another_user_cannot_replace_the_url_of_a_job() {
    use serde_json::json;
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "SKIPPED issue_13_16_another_user_cannot_replace_the_url_of_a_job: needs root to act as a second uid"
        );
        return;
    }
    let d = daemon_with(&["--system"]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/root-only"), &dir.join("r"))]).await;
    let answers = crate::access::calls_as_nobody(
        &d.socket,
        &[json!({"method": "file.set_remote_url", "params": {
            "job_id": id, "file_index": 0, "remote_url": "http://127.0.0.1:9/evil"}})],
    );
    assert_eq!(answers[0]["error"]["code"], -32000, "{}", answers[0]);
    assert_eq!(
        c.files(&id).await.unwrap()[0].remote_url,
        srv.url("/root-only")
    );
}
