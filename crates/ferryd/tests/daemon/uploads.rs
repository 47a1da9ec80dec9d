//! Upload jobs (`type: upload`) against the real `ferry-upload-server` (BITS) and a real tus
//! server (`@tus/server` from npm): the file lands byte-identical, a `kill -9` of ferryd
//! resumes the same server-side upload, cancel removes it from the server, and the job
//! follows the same states as a download.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_client::Client;
use ferry_proto::params::{CreateParams, SetParams};
use ferry_proto::{JobState, JobType, UploadProtocol};
use ferry_testkit::daemon::wait_for;
use ferry_testkit::upload::{TusServer, UploadServer};

use crate::support::*;

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ ((i >> 9) as u8))
        .collect()
}

/// Creates an upload job of `path` to `url`.
async fn upload_job(c: &Client, url: &str, path: &Path) -> String {
    c.create(CreateParams {
        display_name: "upload".into(),
        job_type: Some(JobType::Upload),
        files: Some(vec![spec(url, path)]),
        ..CreateParams::default()
    })
    .await
    .expect("job.create of an upload job")
}

/// The refusal of `job.create` for an upload job of these files, as text.
async fn refused(c: &Client, files: Vec<ferry_proto::FileSpec>) -> String {
    c.create(CreateParams {
        display_name: "refused".into(),
        job_type: Some(JobType::Upload),
        files: Some(files),
        ..CreateParams::default()
    })
    .await
    .expect_err("job.create refuses it")
    .to_string()
}

/// Slows the job to `bps` so a test can act mid-upload.
async fn limit(c: &Client, id: &str, bps: u64) {
    c.set(SetParams {
        job_id: id.into(),
        bandwidth_limit_bps: Some(Some(bps)),
        minimum_retry_delay_s: Some(1),
        ..SetParams::default()
    })
    .await
    .expect("job.set");
}

/// Lifts the job's bandwidth limit, so the rest of a test goes fast.
async fn unlimit(c: &Client, id: &str) {
    c.set(SetParams {
        job_id: id.into(),
        bandwidth_limit_bps: Some(None),
        ..SetParams::default()
    })
    .await
    .expect("job.set");
}

/// A source file `name` in `dir` holding `data`.
fn source(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Waits, bounded, until `f` holds (for server-side effects no event reports).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn issue_14_upload_job_lands_byte_identical_over_bits() {
    let srv = UploadServer::start();
    let d = daemon();
    let c = d.client().await;
    let dir = tempfile::tempdir().unwrap();
    let data = payload(3 * 1024 * 1024 + 17, 1);
    let src = source(dir.path(), "report.bin", &data);
    let id = upload_job(&c, &srv.url("report.bin"), &src).await;
    let job = c.get(&id).await.unwrap();
    assert_eq!(job.job_type, JobType::Upload);
    // The size is known from the source at once.
    assert_eq!(job.progress.bytes_total, Some(data.len() as u64));
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Transferred).await;
    assert_eq!(job.progress.bytes_transferred, data.len() as u64);
    assert_eq!(job.progress.files_transferred, 1);
    assert_eq!(srv.landed("report.bin").unwrap(), data);
    assert_eq!(srv.sessions(), 0);
    // Completing an upload touches nothing local: the source stays as it was.
    let done = c.complete(&id).await.unwrap();
    assert_eq!(done.state, JobState::Acknowledged);
    assert!(!done.partial);
    assert_eq!(std::fs::read(&src).unwrap(), data);
    let files = c.files(&id).await.unwrap();
    assert!(files[0].transferred && files[0].temporary_path.is_none());
}

#[tokio::test]
async fn issue_14_upload_job_lands_byte_identical_over_tus_as_one_upload() {
    let Some(tus) = TusServer::start("issue_14_upload_job_lands_byte_identical_over_tus") else {
        return;
    };
    let d = daemon();
    let c = d.client().await;
    let dir = tempfile::tempdir().unwrap();
    let data = payload(2 * 1024 * 1024 + 5, 2);
    let src = source(dir.path(), "photo.jpg", &data);
    let id = upload_job(&c, &tus.url(), &src).await;
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    let uploads = tus.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(std::fs::read(&uploads[0]).unwrap(), data);
}

/// kill -9 of ferryd in the middle of an upload: after the restart the job resumes the same
/// server-side upload (exactly one tus upload resource, one BITS session) from the offset the
/// server acknowledged, and the file lands byte-identical.
#[tokio::test]
async fn issue_14_kill_9_mid_upload_resumes_the_same_tus_upload() {
    let Some(tus) = TusServer::start("issue_14_kill_9_mid_upload_resumes_the_same_tus_upload")
    else {
        return;
    };
    let mut d = daemon();
    let dir = tempfile::tempdir().unwrap();
    let data = payload(1536 * 1024, 3);
    let src = source(dir.path(), "backup.tar", &data);
    let id = {
        let c = d.client().await;
        let id = upload_job(&c, &tus.url(), &src).await;
        limit(&c, &id, 256 * 1024).await;
        c.resume(&id).await.unwrap();
        wait_for(&c, &id, WAIT, |j| j.progress.bytes_transferred > 0).await;
        id
    };
    d.kill9();
    d.restart();
    let c = d.client().await;
    let job = c.get(&id).await.expect("the job survived kill -9");
    assert!(
        job.progress.bytes_transferred > 0,
        "the acknowledged offset survived"
    );
    unlimit(&c, &id).await;
    wait_state(&c, &id, JobState::Transferred).await;
    let uploads = tus.uploads();
    assert_eq!(
        uploads.len(),
        1,
        "one upload resource for the job: {uploads:?}"
    );
    assert_eq!(std::fs::read(&uploads[0]).unwrap(), data);
}

#[tokio::test]
async fn issue_14_kill_9_mid_upload_resumes_the_same_bits_session() {
    let srv = UploadServer::start();
    let mut d = daemon();
    let dir = tempfile::tempdir().unwrap();
    let data = payload(1536 * 1024, 4);
    let src = source(dir.path(), "logs.tgz", &data);
    let id = {
        let c = d.client().await;
        let id = upload_job(&c, &srv.url("logs.tgz"), &src).await;
        limit(&c, &id, 256 * 1024).await;
        c.resume(&id).await.unwrap();
        wait_for(&c, &id, WAIT, |j| j.progress.bytes_transferred > 0).await;
        id
    };
    d.kill9();
    assert_eq!(srv.sessions(), 1);
    d.restart();
    let c = d.client().await;
    unlimit(&c, &id).await;
    // The session on the server is the one the job resumes: there is never a second one.
    assert_eq!(srv.sessions(), 1);
    wait_state(&c, &id, JobState::Transferred).await;
    assert_eq!(srv.landed("logs.tgz").unwrap(), data);
    assert_eq!(srv.sessions(), 0);
}

#[tokio::test]
async fn issue_14_cancel_removes_the_server_session() {
    let srv = UploadServer::start();
    let d = daemon();
    let c = d.client().await;
    let dir = tempfile::tempdir().unwrap();
    let data = payload(2 * 1024 * 1024, 5);
    let src = source(dir.path(), "big.bin", &data);
    let id = upload_job(&c, &srv.url("big.bin"), &src).await;
    limit(&c, &id, 128 * 1024).await;
    c.resume(&id).await.unwrap();
    wait_for(&c, &id, WAIT, |j| j.progress.bytes_transferred > 0).await;
    assert_eq!(srv.sessions(), 1);
    c.cancel(&id).await.unwrap();
    eventually("the server session is cancelled", || srv.sessions() == 0).await;
    assert!(srv.landed("big.bin").is_none());
    assert_eq!(
        std::fs::read(&src).unwrap(),
        data,
        "the source is untouched"
    );
}

#[tokio::test]
async fn issue_14_cancel_deletes_the_tus_upload() {
    let Some(tus) = TusServer::start("issue_14_cancel_deletes_the_tus_upload") else {
        return;
    };
    let d = daemon();
    let c = d.client().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    std::fs::write(&src, payload(2 * 1024 * 1024, 6)).unwrap();
    let id = upload_job(&c, &tus.url(), &src).await;
    limit(&c, &id, 128 * 1024).await;
    c.resume(&id).await.unwrap();
    wait_for(&c, &id, WAIT, |j| j.progress.bytes_transferred > 0).await;
    assert_eq!(tus.uploads().len(), 1);
    c.cancel(&id).await.unwrap();
    eventually("the tus upload is deleted", || tus.uploads().is_empty()).await;
}

#[tokio::test]
async fn issue_14_a_source_changed_mid_upload_fails_with_local_file_changed() {
    let srv = UploadServer::start();
    let d = daemon();
    let c = d.client().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("growing.log");
    std::fs::write(&src, payload(1024 * 1024, 7)).unwrap();
    let id = upload_job(&c, &srv.url("growing.log"), &src).await;
    limit(&c, &id, 128 * 1024).await;
    c.resume(&id).await.unwrap();
    wait_for(&c, &id, WAIT, |j| j.progress.bytes_transferred > 0).await;
    // The log grows while it is uploaded.
    let mut f = std::fs::OpenOptions::new().append(true).open(&src).unwrap();
    std::io::Write::write_all(&mut f, b"one more line\n").unwrap();
    let job = wait_state(&c, &id, JobState::Error).await;
    let err = job.error.unwrap();
    assert_eq!(err.code, "LOCAL_FILE_CHANGED", "{err:?}");
    assert!(!err.transient);
    assert!(
        err.description.contains("growing.log"),
        "{}",
        err.description
    );
    assert!(srv.landed("growing.log").is_none());
}

#[tokio::test]
async fn issue_14_upload_jobs_hold_one_readable_file() {
    let d = daemon();
    let c = d.client().await;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::write(&a, b"a").unwrap();
    // Two files: refused (BITS BG_E_TOO_MANY_FILES), no job left behind.
    let e = refused(
        &c,
        vec![
            spec("http://127.0.0.1:9/x", &a),
            spec("http://127.0.0.1:9/y", &a),
        ],
    )
    .await;
    assert!(e.to_string().contains("exactly one file"), "{e}");
    // A second file added later: refused too.
    let id = upload_job(&c, "http://127.0.0.1:9/x", &a).await;
    let e = c
        .add_files(&id, vec![spec("http://127.0.0.1:9/y", &a)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("exactly one file"), "{e}");
    // A source that does not exist, and one that is no regular file.
    let e = refused(
        &c,
        vec![spec("http://127.0.0.1:9/x", &dir.path().join("nope"))],
    )
    .await;
    assert!(e.to_string().contains("does not exist"), "{e}");
    let e = refused(&c, vec![spec("http://127.0.0.1:9/x", dir.path())]).await;
    assert!(e.to_string().contains("regular file"), "{e}");
    // Not http(s).
    let e = refused(&c, vec![spec("file:///tmp/x", &a)]).await;
    assert!(e.to_string().contains("http or https"), "{e}");
}

#[tokio::test]
async fn issue_14_an_upload_the_server_refuses_fails_the_job_with_the_bits_error() {
    let srv = UploadServer::start();
    std::fs::write(srv.dir().join("taken.bin"), b"someone else's").unwrap();
    let d = daemon();
    let c = d.client().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("taken.bin");
    std::fs::write(&src, b"mine").unwrap();
    let id = upload_job(&c, &srv.url("taken.bin"), &src).await;
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Error).await;
    let err = job.error.unwrap();
    assert_eq!(err.code, "HTTP_403", "{err:?}");
    assert_eq!(err.http_status, Some(403));
    assert!(!err.transient);
    assert!(
        err.description.contains("E_ACCESSDENIED"),
        "{}",
        err.description
    );
    assert_eq!(srv.landed("taken.bin").unwrap(), b"someone else's");
}

#[tokio::test]
async fn issue_14_an_unreachable_upload_server_is_a_transient_error() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = daemon();
    let c = d.client().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.bin");
    std::fs::write(&src, b"data").unwrap();
    let id = upload_job(&c, &format!("http://127.0.0.1:{port}/upload/a.bin"), &src).await;
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::TransientError).await;
    let err = job.error.unwrap();
    assert_eq!(err.code, "CONNECT_FAILED", "{err:?}");
    assert!(err.transient);
}

/// A live callback connection gets `callback.job_transferred` when an upload is on the
/// server, as for a download; suspending and resuming mid-upload continues the same session.
#[tokio::test]
async fn issue_14_upload_suspend_resume_and_job_transferred_callback() {
    let srv = UploadServer::start();
    let d = daemon();
    let c = d.client().await;
    let dir = tempfile::tempdir().unwrap();
    let data = payload(1024 * 1024, 8);
    let src = source(dir.path(), "notify.bin", &data);
    let id = upload_job(&c, &srv.url("notify.bin"), &src).await;
    let mut app = crate::callbacks::LiveApp::connect(&d.socket).await;
    app.register(&id).await;
    limit(&c, &id, 256 * 1024).await;
    c.resume(&id).await.unwrap();
    wait_for(&c, &id, WAIT, |j| j.progress.bytes_transferred > 0).await;
    c.suspend(&id).await.unwrap();
    let held = c.get(&id).await.unwrap().progress.bytes_transferred;
    assert!(held > 0 && held < data.len() as u64, "{held}");
    assert_eq!(srv.sessions(), 1, "the session waits on the server");
    unlimit(&c, &id).await;
    c.resume(&id).await.unwrap();
    let cb = app.next(Duration::from_secs(30)).await;
    assert_eq!(cb.method, "callback.job_transferred");
    assert_eq!(c.get(&id).await.unwrap().state, JobState::Transferred);
    assert_eq!(srv.landed("notify.bin").unwrap(), data);
    assert_eq!(srv.sessions(), 0);
}

/// Crash loop: `kill -9` of ferryd and abrupt restarts of the upload server, alternately, in
/// the middle of one BITS upload. It lands byte-identical, with no session left.
#[tokio::test]
async fn issue_14_bits_upload_survives_kill_9_of_both_sides() {
    let mut srv = UploadServer::start();
    let mut d = daemon();
    let dir = tempfile::tempdir().unwrap();
    let data = payload(4 * 1024 * 1024, 9);
    let src = source(dir.path(), "loop.bin", &data);
    let id = {
        let c = d.client().await;
        let id = upload_job(&c, &srv.url("loop.bin"), &src).await;
        limit(&c, &id, 512 * 1024).await;
        c.resume(&id).await.unwrap();
        id
    };
    let mut seen = 0;
    for round in 0..6 {
        let c = d.client().await;
        let job = wait_for(&c, &id, WAIT, |j| {
            j.progress.bytes_transferred > seen || j.state == JobState::Transferred
        })
        .await;
        if job.state == JobState::Transferred {
            break;
        }
        seen = job.progress.bytes_transferred;
        if round % 2 == 0 {
            d.kill9();
            d.restart();
        } else {
            srv.crash_and_restart();
        }
    }
    let c = d.client().await;
    unlimit(&c, &id).await;
    wait_state(&c, &id, JobState::Transferred).await;
    assert_eq!(srv.landed("loop.bin").unwrap(), data);
    assert_eq!(srv.sessions(), 0);
}

/// `upload_protocol`: `auto` (the default) probes once and records what it found as the
/// file's `upload_protocol`; a named protocol is used as named, and one the server does not
/// speak fails the job with `UPLOAD_PROTOCOL_MISMATCH`.
#[tokio::test]
async fn issue_14_upload_protocol_setting_names_it_and_auto_records_the_probe() {
    let srv = UploadServer::start();
    let d = daemon();
    let c = d.client().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("p.bin");
    std::fs::write(&src, payload(10_000, 10)).unwrap();
    let id = upload_job(&c, &srv.url("p.bin"), &src).await;
    assert_eq!(
        c.get(&id).await.unwrap().settings.upload_protocol,
        UploadProtocol::Auto
    );
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    assert_eq!(
        c.files(&id).await.unwrap()[0].upload_protocol,
        Some(UploadProtocol::Bits)
    );
    // Named at creation: tus, which the BITS server does not speak.
    let id = c
        .create(CreateParams {
            display_name: "tus".into(),
            job_type: Some(JobType::Upload),
            files: Some(vec![spec(&srv.url("q.bin"), &src)]),
            upload_protocol: Some(UploadProtocol::Tus),
            ..CreateParams::default()
        })
        .await
        .unwrap();
    assert_eq!(
        c.get(&id).await.unwrap().settings.upload_protocol,
        UploadProtocol::Tus
    );
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Error).await;
    assert_eq!(job.error.unwrap().code, "UPLOAD_PROTOCOL_MISMATCH");
    // Set to bits with job.set, it goes through.
    c.set(SetParams {
        job_id: id.clone(),
        upload_protocol: Some(UploadProtocol::Bits),
        ..SetParams::default()
    })
    .await
    .unwrap();
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    assert!(srv.landed("q.bin").is_some());
}
