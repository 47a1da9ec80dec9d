//! HTTP behaviour of jobs: Retry-After, custom headers and basic auth on every
//! request, credentials never readable, redirect rules, bodies of unknown size.

use std::time::Duration;

use ferry_proto::JobState;
use ferry_proto::params::{Credentials, EventsReadParams, SetParams};
use ferry_testkit::content::TestContent;
use ferry_testkit::http::{Behavior, TestServer};

use crate::support::*;

#[tokio::test]
async fn retry_after_is_honoured() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/ra", TestContent::new(110, 1000).bytes);
    srv.set_behavior(
        "/ra",
        Behavior {
            fail_first: Some((1, 503)),
            retry_after: Some("3".into()),
            ..Behavior::default()
        },
    );
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec(&srv.url("/ra"), &dir.join("ra"))]).await;
    fast_retry(&c, &id, None).await;
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::TransientError).await;
    assert_eq!(job.waiting.unwrap().reason, "retry_after");
    wait_state(&c, &id, JobState::Transferred).await;
    let reqs = srv.requests_for("/ra");
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].time.duration_since(reqs[0].time);
    assert!(
        gap >= Duration::from_millis(2900),
        "retried after {gap:?}, before Retry-After: 3"
    );
}

#[tokio::test]
async fn custom_headers_and_basic_auth_on_every_request_and_credentials_never_read_back() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let content = TestContent::new(111, 3 * 1024 * 1024);
    srv.add_dripped_file("/auth", content.bytes.clone(), 2 * 1024 * 1024);
    let id = job_with(&c, vec![spec(&srv.url("/auth"), &dir.join("auth"))]).await;
    let job = c
        .set(SetParams {
            job_id: id.clone(),
            custom_headers: Some(vec!["X-Ferry-Test: yes".into(), "X-Tenant: 42".into()]),
            credentials: Some(Some(Credentials {
                scheme: "basic".into(),
                user: "alice".into(),
                password: "s3cret-pw".into(),
            })),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(job.credentials_set);
    c.resume(&id).await.unwrap();
    // Interrupt once so there are two requests (the resume must carry them too).
    ferry_testkit::daemon::wait_for(&c, &id, WAIT, |j| j.progress.bytes_transferred > 0).await;
    c.suspend(&id).await.unwrap();
    srv.clear_behavior("/auth");
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    let reqs = srv.requests_for("/auth");
    assert!(reqs.len() >= 2);
    for r in &reqs {
        assert_eq!(r.header("x-ferry-test"), Some("yes"));
        assert_eq!(r.header("x-tenant"), Some("42"));
        // base64("alice:s3cret-pw")
        assert_eq!(
            r.header("authorization"),
            Some("Basic YWxpY2U6czNjcmV0LXB3")
        );
    }
    // The password appears in no read and no event.
    let get = serde_json::to_string(&c.get(&id).await.unwrap()).unwrap();
    let list = serde_json::to_string(&c.list(Default::default()).await.unwrap()).unwrap();
    let files = serde_json::to_string(&c.files(&id).await.unwrap()).unwrap();
    let events =
        serde_json::to_string(&c.read_events(EventsReadParams::default()).await.unwrap()).unwrap();
    for text in [&get, &list, &files, &events] {
        assert!(!text.contains("s3cret-pw") && !text.contains("YWxpY2U6czNjcmV0LXB3"));
    }
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("auth")), content.sha256);
}

#[tokio::test]
async fn redirects_are_followed_but_loops_and_file_targets_are_refused() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    srv.add_file("/target", TestContent::new(112, 1000).bytes);
    srv.set_behavior(
        "/hop",
        Behavior {
            redirect_to: Some("/target".into()),
            ..Behavior::default()
        },
    );
    srv.set_behavior(
        "/loop",
        Behavior {
            redirect_to: Some("/loop".into()),
            ..Behavior::default()
        },
    );
    srv.set_behavior(
        "/tofile",
        Behavior {
            redirect_to: Some("file:///etc/passwd".into()),
            ..Behavior::default()
        },
    );
    let ok = job_with(&c, vec![spec(&srv.url("/hop"), &dir.join("hop"))]).await;
    c.resume(&ok).await.unwrap();
    wait_state(&c, &ok, JobState::Transferred).await;
    for (path, name) in [("/loop", "loop"), ("/tofile", "tofile")] {
        let id = job_with(&c, vec![spec(&srv.url(path), &dir.join(name))]).await;
        c.resume(&id).await.unwrap();
        let job = wait_state(&c, &id, JobState::Error).await;
        assert_eq!(job.error.unwrap().code, "REDIRECT_REFUSED", "{path}");
    }
}

#[tokio::test]
async fn body_of_unknown_size_is_downloaded() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let content = TestContent::new(113, 200_000);
    srv.add_file("/nolen", content.bytes.clone());
    srv.set_behavior(
        "/nolen",
        Behavior {
            no_content_length: true,
            ..Behavior::default()
        },
    );
    let id = job_with(&c, vec![spec(&srv.url("/nolen"), &dir.join("nolen"))]).await;
    assert_eq!(
        c.get(&id).await.unwrap().progress.bytes_total,
        None,
        "unknown until fetched"
    );
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Transferred).await;
    assert_eq!(job.progress.bytes_total, Some(200_000));
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("nolen")), content.sha256);
}

#[tokio::test]
async fn per_job_proxy_carries_every_request() {
    let d = daemon();
    let c = d.client().await;
    // The "proxy" is a second test server: it sees the absolute URL and serves its path.
    let proxy = TestServer::start().await;
    let content = TestContent::new(114, 10_000);
    proxy.add_file("/via-proxy", content.bytes.clone());
    let dir = d.files_dir();
    // A host that does not resolve: only the proxy can make this work.
    let url = "http://origin.invalid/via-proxy";
    let id = job_with(&c, vec![spec(url, &dir.join("p"))]).await;
    c.set(SetParams {
        job_id: id.clone(),
        proxy: Some(Some(proxy.url(""))),
        ..Default::default()
    })
    .await
    .unwrap();
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    let reqs = proxy.requests_for("/via-proxy");
    assert_eq!(reqs[0].target, url, "the proxy got the absolute URL");
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("p")), content.sha256);
    assert_eq!(
        c.get(&id).await.unwrap().settings.proxy.as_deref(),
        Some(proxy.url("").as_str())
    );
}
