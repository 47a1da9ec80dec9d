//! Downloads end to end: the file is byte-identical, resumes use ranges, and servers that
//! ignore ranges or change validators produce a correct file (restart from zero).

use ferry_proto::JobState;
use ferry_testkit::content::TestContent;
use ferry_testkit::http::{Behavior, TestServer};

use crate::support::*;

#[tokio::test]
async fn download_complete_yields_identical_file() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let a = TestContent::new(1, 3 * 1024 * 1024 + 17);
    let b = TestContent::new(2, 0);
    srv.add_file("/a.bin", a.bytes.clone());
    srv.add_file("/empty", b.bytes.clone());
    let dir = d.files_dir();
    let id = job_with(
        &c,
        vec![
            spec(&srv.url("/a.bin"), &dir.join("a.bin")),
            spec(&srv.url("/empty"), &dir.join("empty")),
        ],
    )
    .await;
    assert_eq!(c.get(&id).await.unwrap().state, JobState::Suspended);
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Transferred).await;
    assert_eq!(job.progress.files_transferred, 2);
    assert_eq!(job.progress.bytes_total, Some(a.len() as u64));
    assert_eq!(job.progress.bytes_transferred, a.len() as u64);
    // Nothing visible before complete.
    assert!(!dir.join("a.bin").exists());
    let r = c.complete(&id).await.unwrap();
    assert_eq!(r.state, JobState::Acknowledged);
    assert!(!r.partial);
    assert_eq!(sha256_file(&dir.join("a.bin")), a.sha256);
    assert_eq!(std::fs::metadata(dir.join("empty")).unwrap().len(), 0);
    assert!(temp_files(&dir).is_empty());
}

#[tokio::test]
async fn file_url_source() {
    let d = daemon();
    let c = d.client().await;
    let src = d.dir.path().join("source.bin");
    let content = TestContent::new(3, 100_000);
    std::fs::write(&src, &content.bytes).unwrap();
    let dir = d.files_dir();
    let url = format!("file://{}", src.display());
    let id = job_with(&c, vec![spec(&url, &dir.join("copy.bin"))]).await;
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("copy.bin")), content.sha256);
}

#[tokio::test]
async fn sha256_is_verified() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(4, 5000);
    srv.add_file("/f", content.bytes.clone());
    let dir = d.files_dir();
    let mut good = spec(&srv.url("/f"), &dir.join("good"));
    good.sha256 = Some(content.sha256.to_uppercase());
    let id = job_with(&c, vec![good]).await;
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("good")), content.sha256);

    let mut bad = spec(&srv.url("/f"), &dir.join("bad"));
    bad.sha256 = Some("0".repeat(64));
    let id = job_with(&c, vec![bad]).await;
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Error).await;
    let err = job.error.unwrap();
    assert_eq!(err.code, "SHA256_MISMATCH");
    assert!(!err.transient);
    c.cancel(&id).await.unwrap();
    assert!(!dir.join("bad").exists());
    assert!(temp_files(&dir).is_empty());
}

/// Suspends a job once the server has started its body, so that the next request resumes.
async fn suspend_mid_body(c: &ferry_client::Client, srv: &TestServer, id: &str, path: &str) {
    srv.wait_for_requests(path, 1, WAIT).await;
    // Bytes arrived; suspending checkpoints them, so there is something to resume from.
    ferry_testkit::daemon::wait_for(c, id, WAIT, |j| j.progress.bytes_transferred > 0).await;
    c.suspend(id).await.unwrap();
}

#[tokio::test]
async fn server_ignoring_range_restarts_from_zero() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(5, 4 * 1024 * 1024);
    srv.add_file("/r", content.bytes.clone());
    srv.set_behavior(
        "/r",
        Behavior {
            rate_bytes_per_sec: Some(2 * 1024 * 1024),
            ignore_range: true,
            ..Behavior::default()
        },
    );
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/r"), &dir.join("r"))]).await;
    c.resume(&id).await.unwrap();
    suspend_mid_body(&c, &srv, &id, "/r").await;
    srv.set_behavior(
        "/r",
        Behavior {
            ignore_range: true,
            ..Behavior::default()
        },
    );
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    let reqs = srv.requests_for("/r");
    assert!(reqs.len() >= 2);
    assert!(
        reqs.iter().skip(1).any(|r| r.range.is_some()),
        "the resume asked for a range"
    );
    assert!(reqs.iter().all(|r| r.status == 200));
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("r")), content.sha256);
}

#[tokio::test]
async fn changed_etag_restarts_from_zero() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(6, 4 * 1024 * 1024);
    srv.add_file("/e", content.bytes.clone());
    srv.set_behavior(
        "/e",
        Behavior {
            rate_bytes_per_sec: Some(2 * 1024 * 1024),
            etag_changes_every_request: true,
            ..Behavior::default()
        },
    );
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/e"), &dir.join("e"))]).await;
    c.resume(&id).await.unwrap();
    suspend_mid_body(&c, &srv, &id, "/e").await;
    srv.set_behavior(
        "/e",
        Behavior {
            etag_changes_every_request: true,
            ..Behavior::default()
        },
    );
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    let reqs = srv.requests_for("/e");
    let resumed = reqs.last().unwrap();
    assert!(resumed.if_range.is_some(), "the resume sent If-Range");
    assert_eq!(
        resumed.status, 200,
        "a changed validator answers the whole file"
    );
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("e")), content.sha256);
}

#[tokio::test]
async fn resume_fetches_only_the_rest() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(7, 8 * 1024 * 1024);
    srv.add_dripped_file("/p", content.bytes.clone(), 1024 * 1024);
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/p"), &dir.join("p"))]).await;
    c.resume(&id).await.unwrap();
    suspend_mid_body(&c, &srv, &id, "/p").await;
    let durable = c.files(&id).await.unwrap()[0].bytes_transferred;
    assert!(durable > 0);
    srv.clear_behavior("/p");
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    let last = srv.requests_for("/p").pop().unwrap();
    assert_eq!(last.status, 206);
    assert_eq!(
        last.range.as_deref(),
        Some(format!("bytes={durable}-").as_str())
    );
    assert_eq!(last.body_bytes_sent, content.len() as u64 - durable);
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("p")), content.sha256);
}

#[tokio::test]
async fn files_transfer_in_parallel_over_reused_connections_and_notify_in_order() {
    use std::sync::Arc;
    use tokio::sync::Semaphore;
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let gates: Vec<Arc<Semaphore>> = (0..3).map(|_| Arc::new(Semaphore::new(0))).collect();
    let mut specs = Vec::new();
    for i in 0..12u64 {
        let path = format!("/par{i}");
        srv.add_file(&path, TestContent::new(80 + i, 20_000).bytes);
        if i < 3 {
            srv.set_behavior(
                &path,
                Behavior {
                    gate: Some(gates[i as usize].clone()),
                    ..Behavior::default()
                },
            );
        }
        specs.push(spec(&srv.url(&path), &dir.join(format!("par{i}"))));
    }
    let id = job_with(&c, specs).await;
    c.set(ferry_proto::params::SetParams {
        job_id: id.clone(),
        notify_flags: Some(16 | 1),
        max_parallel_files: Some(4),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut app = crate::callbacks::LiveApp::connect(&d.socket).await;
    app.register(&id).await;
    c.resume(&id).await.unwrap();
    // The three gated files are all in flight at once.
    srv.wait_until(WAIT, |log| {
        (0..3).all(|i| log.iter().any(|r| r.path == format!("/par{i}")))
    })
    .await
    .expect("three requests in flight together");
    // File 2 finishes first, then 1, then 0: callbacks still come in file order.
    gates[2].add_permits(1);
    gates[1].add_permits(1);
    gates[0].add_permits(1);
    let mut order = Vec::new();
    for _ in 0..12 {
        let r = app.next(std::time::Duration::from_secs(30)).await;
        assert_eq!(r.method, "callback.file_transferred");
        order.push(r.file_index().unwrap());
    }
    assert_eq!(order, (0..12).collect::<Vec<u64>>());
    assert_eq!(
        app.next(std::time::Duration::from_secs(30)).await.method,
        "callback.job_transferred"
    );
    let reqs = srv.requests();
    let conns: std::collections::HashSet<u64> = reqs.iter().map(|r| r.connection_id).collect();
    assert!(
        conns.len() < reqs.len(),
        "connections are reused: {} connections for {} requests",
        conns.len(),
        reqs.len()
    );
    c.complete(&id).await.unwrap();
    for i in 0..12u64 {
        assert_eq!(
            sha256_file(&dir.join(format!("par{i}"))),
            TestContent::new(80 + i, 20_000).sha256
        );
    }
}

/// Seconds between the server seeing the request and the job reaching `transferred`.
async fn timed_download(
    d: &ferry_testkit::daemon::TestDaemon,
    srv: &TestServer,
    name: &str,
    set: ferry_proto::params::SetParams,
) -> f64 {
    let c = d.client().await;
    let dir = d.files_dir();
    let id = job_with(
        &c,
        vec![spec(&srv.url(&format!("/{name}")), &dir.join(name))],
    )
    .await;
    c.set(ferry_proto::params::SetParams {
        job_id: id.clone(),
        ..set
    })
    .await
    .unwrap();
    c.resume(&id).await.unwrap();
    let reqs = srv.wait_for_requests(&format!("/{name}"), 1, WAIT).await;
    wait_state(&c, &id, JobState::Transferred).await;
    reqs[0].time.elapsed().as_secs_f64()
}

#[tokio::test]
async fn job_bandwidth_limit_is_held_within_ten_percent() {
    let d = daemon();
    let srv = TestServer::start().await;
    let size = 2 * 1024 * 1024u64;
    srv.add_file("/bw", TestContent::new(90, size as usize).bytes);
    let rate = 512 * 1024u64;
    let secs = timed_download(
        &d,
        &srv,
        "bw",
        ferry_proto::params::SetParams {
            bandwidth_limit_bps: Some(Some(rate)),
            ..Default::default()
        },
    )
    .await;
    // The bucket starts with a tenth of a second of burst.
    let expected = (size - rate / 10) as f64 / rate as f64;
    assert!(
        secs >= expected * 0.9 && secs <= expected * 1.1,
        "took {secs:.2} s, expected {expected:.2} s ± 10 %"
    );
}

#[tokio::test]
async fn global_limit_applies_to_background_jobs_but_not_foreground() {
    let d = daemon_with(&["--bandwidth-limit", "262144"]);
    let srv = TestServer::start().await;
    srv.add_file("/bg", TestContent::new(91, 1024 * 1024).bytes);
    srv.add_file("/fg", TestContent::new(92, 1024 * 1024).bytes);
    let bg = timed_download(&d, &srv, "bg", Default::default()).await;
    let expected = (1024 * 1024 - 26214) as f64 / 262_144.0;
    assert!(
        bg >= expected * 0.9 && bg <= expected * 1.1,
        "background took {bg:.2} s, expected {expected:.2} s"
    );
    let fg = timed_download(
        &d,
        &srv,
        "fg",
        ferry_proto::params::SetParams {
            priority: Some(ferry_proto::Priority::Foreground),
            ..Default::default()
        },
    )
    .await;
    assert!(fg < expected / 2.0, "foreground is exempt: took {fg:.2} s");
}
