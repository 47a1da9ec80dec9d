//! Redirects followed by hand: loops, limits, scheme rules, and where secrets are re-sent.

use ferry_fetch::FetchErrorKind;
use ferry_testkit::http::{Behavior, TestServer};

use crate::support::Harness;

fn redirect(to: String) -> Behavior {
    Behavior {
        redirect_to: Some(to),
        ..Default::default()
    }
}

#[tokio::test]
async fn redirects_are_followed() {
    let h = Harness::new().await;
    let c = h.serve("/target", 40, 1000);
    h.server.set_behavior("/start", redirect("/middle".into()));
    h.server.set_behavior(
        "/middle",
        Behavior {
            status: Some(307),
            ..redirect(h.server.url("/target"))
        },
    );
    let out = h.run(&h.request("/start")).await;
    assert_eq!(out.done().sha256.as_deref(), Some(c.sha256.as_str()));
    let paths: Vec<_> = h.server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/start", "/middle", "/target"]);
}

#[tokio::test]
async fn a_redirect_loop_is_refused() {
    let h = Harness::new().await;
    h.server.set_behavior("/a", redirect("/b".into()));
    h.server.set_behavior("/b", redirect("/a".into()));
    let out = h.run(&h.request("/a")).await;
    let err = out.err();
    assert_eq!(err.kind, FetchErrorKind::RedirectRefused);
    assert!(!err.transient);
    assert!(err.description.contains("loop"), "{}", err.description);
    assert_eq!(h.server.requests().len(), 2);
}

#[tokio::test]
async fn too_many_redirects_are_refused() {
    let h = Harness::new().await;
    for i in 0..5 {
        h.server
            .set_behavior(&format!("/r{i}"), redirect(format!("/r{}", i + 1)));
    }
    h.serve("/r5", 41, 10);
    let mut req = h.request("/r0");
    req.max_redirects = 4;
    assert_eq!(
        h.run(&req).await.err().kind,
        FetchErrorKind::RedirectRefused
    );
    req.max_redirects = 5;
    assert_eq!(h.run(&req).await.done().bytes, 10);
}

#[tokio::test]
async fn redirects_to_other_schemes_are_refused() {
    let h = Harness::new().await;
    h.server
        .set_behavior("/f", redirect("file:///etc/passwd".into()));
    let err = h.run(&h.request("/f")).await.err().clone();
    assert_eq!(err.kind, FetchErrorKind::RedirectRefused);
    assert!(err.description.contains("file"), "{}", err.description);
}

#[tokio::test]
async fn secrets_stay_with_their_host_and_origin() {
    let h = Harness::new().await;
    let other = TestServer::start().await;
    other.add_file("/x", vec![1u8; 10]);
    let port = other.addr().port();
    // Same host (127.0.0.1), other port: another origin, so neither custom headers nor
    // credentials (another port may be another service, even another user's).
    h.server
        .set_behavior("/same-host", redirect(format!("http://127.0.0.1:{port}/x")));
    // Other host name (localhost): neither.
    h.server.set_behavior(
        "/other-host",
        redirect(format!("http://localhost:{port}/x")),
    );
    for path in ["/same-host", "/other-host"] {
        let mut req = h.request(path);
        req.headers = vec![("X-Secret".into(), "s".into())];
        req.basic_auth = Some(("u".into(), "p".into()));
        h.run(&req).await.done();
    }
    let first = h.server.requests();
    assert!(first.iter().all(|r| r.header("authorization").is_some()));
    let seen = other.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("x-secret"), None);
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(seen[1].header("x-secret"), None);
    assert_eq!(seen[1].header("authorization"), None);
}
