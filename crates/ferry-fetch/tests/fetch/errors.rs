//! Error classification: HTTP statuses, Retry-After, bad answers, unreachable servers, SHA-256.

use std::time::Duration;

use ferry_fetch::FetchErrorKind;
use ferry_proto::ErrorContext;
use ferry_testkit::http::Behavior;

use crate::support::Harness;

#[tokio::test]
async fn not_found_is_fatal_http_404() {
    let h = Harness::new().await;
    let req = h.request("/missing");
    let out = h.run(&req).await;
    let err = out.err();
    assert_eq!(err.kind, FetchErrorKind::Http(404));
    assert_eq!(err.http_status, Some(404));
    assert_eq!(err.context, ErrorContext::RemoteFile);
    assert!(!err.transient && !err.is_cancelled());
    assert_eq!(err.protocol.as_deref(), Some("http"));
    assert!(err.description.contains("404"), "{}", err.description);
    let info = err.to_error_info(Some(3));
    assert_eq!((info.code.as_str(), info.file_index), ("HTTP_404", Some(3)));
    assert_eq!(info.protocol.as_deref(), Some("http"));
}

#[tokio::test]
async fn service_unavailable_is_transient_with_retry_after() {
    let h = Harness::new().await;
    h.serve("/busy", 30, 100);
    h.server.set_behavior(
        "/busy",
        Behavior {
            fail_first: Some((1, 503)),
            retry_after: Some("7".into()),
            ..Default::default()
        },
    );
    let req = h.request("/busy");
    let out = h.run(&req).await;
    let err = out.err();
    assert_eq!((err.kind, err.transient), (FetchErrorKind::Http(503), true));
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
    // The next attempt succeeds.
    assert_eq!(h.run(&req).await.done().bytes, 100);
}

#[tokio::test]
async fn too_many_requests_with_an_http_date() {
    let h = Harness::new().await;
    let when = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
    h.server.set_behavior(
        "/slow",
        Behavior {
            status: Some(429),
            retry_after: Some(when),
            ..Default::default()
        },
    );
    let out = h.run(&h.request("/slow")).await;
    let err = out.err();
    assert_eq!((err.kind, err.transient), (FetchErrorKind::Http(429), true));
    let ra = err.retry_after.unwrap();
    assert!(
        ra > Duration::from_secs(100) && ra <= Duration::from_secs(120),
        "{ra:?}"
    );
}

#[tokio::test]
async fn partial_content_to_a_plain_request_is_invalid() {
    let h = Harness::new().await;
    h.server.set_behavior(
        "/p",
        Behavior {
            status: Some(206),
            ..Default::default()
        },
    );
    let out = h.run(&h.request("/p")).await;
    let err = out.err();
    assert_eq!(err.kind, FetchErrorKind::InvalidServerResponse);
    assert_eq!(err.context, ErrorContext::RemoteFile);
    assert!(!err.transient);
}

#[tokio::test]
async fn sha256_mismatch_is_fatal() {
    let h = Harness::new().await;
    let c = h.serve("/sha", 31, 5000);
    let mut req = h.request("/sha");
    req.sha256 = Some("00".repeat(32));
    let out = h.run(&req).await;
    let err = out.err();
    assert_eq!(err.kind, FetchErrorKind::Sha256Mismatch);
    assert_eq!(err.context, ErrorContext::RemoteFile);
    assert!(!err.transient);
    assert!(err.description.contains(&c.sha256), "{}", err.description);
}

#[tokio::test]
async fn refused_connection_is_transient_connect_failed() {
    let h = Harness::new().await;
    // A port that was just free: nothing listens there any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = h
        .run(&h.request_url(format!("http://127.0.0.1:{port}/x")))
        .await;
    let err = out.err();
    assert_eq!(
        (err.kind, err.transient),
        (FetchErrorKind::ConnectFailed, true)
    );
    assert_eq!(err.context, ErrorContext::GeneralTransport);
}

#[tokio::test]
async fn unsupported_scheme_is_refused_up_front() {
    let h = Harness::new().await;
    let out = h.run(&h.request_url("ftp://127.0.0.1/x".into())).await;
    assert_eq!(out.err().kind, FetchErrorKind::InvalidRequest);
    assert!(out.events.is_empty());
}

#[tokio::test]
async fn local_write_errors_name_the_path() {
    let h = Harness::new().await;
    h.serve("/f", 32, 10);
    let mut req = h.request("/f");
    req.temp_path = h.dir.path().join("no-such-dir").join("x.part");
    let out = h.run(&req).await;
    let err = out.err();
    assert_eq!(err.kind, FetchErrorKind::LocalIo);
    assert_eq!(err.context, ErrorContext::LocalFile);
    assert!(
        err.description.contains("no-such-dir"),
        "{}",
        err.description
    );
}

#[tokio::test]
async fn credentials_never_appear_in_errors() {
    let h = Harness::new().await;
    let url = h
        .server
        .url("/nope")
        .replace("http://", "http://user:hunter2@");
    let out = h.run(&h.request_url(url)).await;
    let err = out.err();
    assert_eq!(err.kind, FetchErrorKind::Http(404));
    assert!(!err.description.contains("hunter2"), "{}", err.description);
}

#[tokio::test]
async fn an_oversized_response_head_is_malformed_not_a_reset() {
    let h = Harness::new().await;
    h.serve("/h", 32, 100);
    h.server.set_behavior(
        "/h",
        Behavior {
            huge_headers: Some(2 * 1024 * 1024),
            ..Default::default()
        },
    );
    let req = h.request("/h");
    let out = h.run(&req).await;
    let err = out.err();
    assert_eq!(err.kind, FetchErrorKind::MalformedResponse);
    assert_eq!(err.context, ErrorContext::GeneralTransport);
    assert!(err.transient);
    assert!(
        err.description.contains("not valid HTTP: ")
            && err.description.contains("message head is too large"),
        "{}",
        err.description
    );
    // Nothing of the answer reached the staging file.
    assert!(crate::support::read(&req.temp_path).is_empty());
}
