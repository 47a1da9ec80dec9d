//! Upload-reply over BITS against the real ferry-upload-server notifying a server
//! application, by value and by reference: the send stops at the final Ack with the reply URL,
//! the reply is fetched, and Close-Session ends the session.

use std::sync::Arc;

use axum::http::HeaderMap;
use ferry_send::{Protocol, ProtocolChoice};
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// A server application answering `reply:LEN` (by value: the body; by reference: into the
/// response file).
async fn app() -> String {
    let router = axum::Router::new().route(
        "/notify",
        axum::routing::post(|headers: HeaderMap, body: axum::body::Bytes| async move {
            match headers.get("bits-request-datafile-name") {
                Some(p) => {
                    let data = std::fs::read(p.to_str().unwrap()).unwrap();
                    let out = headers["bits-response-datafile-name"].to_str().unwrap();
                    std::fs::write(out, format!("reply:{}", data.len())).unwrap();
                    Vec::new()
                }
                None => format!("reply:{}", body.len()).into_bytes(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

async fn upload_reply(kind: &str) {
    let app = app().await;
    let srv = UploadServer::start_with(&format!(
        "notification = \"{kind}\"\nnotification_url = \"{app}\""
    ));
    let dir = tempfile::tempdir().unwrap();
    let data = content(123_456, 30);
    let path = source(dir.path(), "form.bin", &data);
    let mut req = request(
        &srv.url("form.bin"),
        &path,
        ProtocolChoice::Only(Protocol::Bits),
    );
    req.fragment_size = 50_000;
    req.want_reply = true;
    let s = sender();
    let done = send_once(&s, &req, &Arc::default(), &CancellationToken::new())
        .await
        .unwrap();
    let url = done.reply_url.clone().expect("a reply URL");
    // The session waits for Close-Session until the reply is fetched.
    assert_eq!(srv.sessions(), 1);
    let reply = s
        .fetch_reply(&req.target, &url, 1 << 20, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(reply, format!("reply:{}", data.len()).into_bytes());
    // A reply larger than allowed is refused.
    let e = s
        .fetch_reply(&req.target, &url, 3, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(!e.transient && e.description.contains("larger"), "{e:?}");
    s.close(&req.target, &done.state).await.unwrap();
    assert_eq!(srv.sessions(), 0);
}

#[tokio::test]
async fn issue_14_upload_reply_by_value_returns_the_applications_reply() {
    upload_reply("by-value").await;
}

#[tokio::test]
async fn issue_14_upload_reply_by_reference_returns_the_applications_reply() {
    upload_reply("by-reference").await;
}
