//! The server application: notified by reference or by value when the last byte is
//! in, its reply returned to the client (upload-reply), its failures answered with context 0x7
//! and retried by the client's repeated final fragment, and one notification per upload.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use crate::support::*;

/// A notification the application received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// A server application on 127.0.0.1: records each notification; answers with `status`;
/// by reference it writes `reply:LEN` to the response file, by value it answers `reply:LEN`;
/// `copy` adds `BITS-Copy-File-To-Destination`.
pub struct App {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub status: Arc<AtomicU16>,
}

pub async fn app(copy: bool) -> App {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let status = Arc::new(AtomicU16::new(200));
    let (s2, st2) = (seen.clone(), status.clone());
    let router = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (seen, status) = (s2.clone(), st2.clone());
            async move {
                seen.lock().unwrap().push(Seen {
                    headers: headers.clone(),
                    body: body.to_vec(),
                });
                let code = StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
                let mut h = HeaderMap::new();
                if copy {
                    h.insert("BITS-Copy-File-To-Destination", "1".parse().unwrap());
                }
                let len = match headers.get("bits-request-datafile-name") {
                    Some(p) => {
                        let data = std::fs::read(p.to_str().unwrap()).unwrap();
                        let out = headers["bits-response-datafile-name"].to_str().unwrap();
                        std::fs::write(out, format!("reply:{}", data.len())).unwrap();
                        return (code, h, Vec::new()).into_response();
                    }
                    None => body.len(),
                };
                (code, h, format!("reply:{len}").into_bytes()).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    App { url, seen, status }
}

fn config(kind: &str, app: &App) -> String {
    format!(
        "notification = \"{kind}\"\nnotification_url = \"{}\"",
        app.url
    )
}

const URL: &str = "/upload/f.bin";

#[tokio::test]
async fn issue_14_by_value_returns_the_applications_reply() {
    let app = app(false).await;
    let srv = start_with(&config("by-value", &app), "");
    let data = content(10_000, 4);
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    let r = c.fragment(URL, &s, 0, 10_000, &data[..4000]).await;
    assert_eq!(
        r.header("BITS-Reply-URL"),
        None,
        "only the final Ack carries the reply"
    );
    assert!(
        app.seen.lock().unwrap().is_empty(),
        "notified before the last byte"
    );
    let r = c.fragment(URL, &s, 4000, 10_000, &data[4000..]).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let reply = r.header("BITS-Reply-URL").unwrap().to_owned();
    {
        let seen = app.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].body, data, "by value carries the uploaded bytes");
        assert_eq!(
            seen[0].headers["bits-original-request-url"],
            format!("http://{}{URL}", srv.addr).as_str()
        );
    }
    // A repeated final fragment (a lost Ack) gets the cached answer, not a second notification.
    let again = c.fragment(URL, &s, 4000, 10_000, &data[4000..]).await;
    assert_eq!(again.header("BITS-Reply-URL"), Some(reply.as_str()));
    assert_eq!(app.seen.lock().unwrap().len(), 1);
    let path = reply.strip_prefix(&format!("http://{}", srv.addr)).unwrap();
    let got = c.get(path).await;
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, b"reply:10000".as_slice())
    );
    assert_eq!(c.end(URL, &s, "Close-Session").await.status, 200);
    // The application took the upload over: no copy at the destination, nothing left behind.
    assert!(!srv.upload_dir().join("f.bin").exists());
    assert_eq!(srv.session_count(), 0);
    assert_eq!(
        c.get(path).await.status,
        404,
        "the reply went with the session"
    );
}

#[tokio::test]
async fn issue_14_application_failures_answer_context_7_and_are_retried() {
    let app = app(true).await;
    app.status.store(503, Ordering::SeqCst);
    let srv = start_with(&config("by-value", &app), "");
    let data = content(3000, 8);
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    let r = c.fragment(URL, &s, 0, 3000, &data).await;
    assert_eq!(r.status, 500, "{}", r.head);
    assert_eq!(r.header("BITS-Error-Context"), Some("0x7"), "{}", r.head);
    // Close before the application accepted it is refused; nothing lands.
    let r = c.end(URL, &s, "Close-Session").await;
    assert_eq!(r.status, 500, "{}", r.head);
    assert!(!srv.upload_dir().join("f.bin").exists());
    // The client resends the final fragment; the application works now.
    app.status.store(200, Ordering::SeqCst);
    let r = c.fragment(URL, &s, 0, 3000, &data).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.header("BITS-Reply-URL").is_some());
    assert_eq!(app.seen.lock().unwrap().len(), 2);
    assert_eq!(c.end(URL, &s, "Close-Session").await.status, 200);
    // BITS-Copy-File-To-Destination: the file is also put in place.
    assert_eq!(std::fs::read(srv.upload_dir().join("f.bin")).unwrap(), data);
    assert_eq!(srv.session_count(), 0);
}

#[tokio::test]
async fn issue_14_golden_upload_reply_by_reference_from_the_spec() {
    // The specification's upload-reply example: an upload-reply job against a directory notifying by reference. The
    // application reads the data file it is named and writes its reply file; the final Ack
    // names the reply, which the client downloads before Close-Session.
    let app = app(false).await;
    let srv = start_with(&config("by-reference", &app), "");
    let (session, body) = crate::golden::replay(&srv, "upload-reply-exchange.txt").await;
    let session = session.unwrap();
    assert_eq!(body, b"", "the Close Ack is empty");
    let seen = app.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert!(seen[0].body.is_empty(), "by reference sends no body");
    assert_eq!(
        h["bits-original-request-url"],
        "http://frankcao8/upload/reply-rfc2119.txt"
    );
    let data_file = h["bits-request-datafile-name"].to_str().unwrap();
    let bare = session.trim_matches(['{', '}']).to_ascii_lowercase();
    assert!(data_file.contains(&bare), "{data_file}");
    assert!(
        !std::path::Path::new(data_file).exists(),
        "the session's data is gone after Close"
    );
    assert!(!srv.upload_dir().join("reply-rfc2119.txt").exists());
    assert_eq!(srv.session_count(), 0);
}
