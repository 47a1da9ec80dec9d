//! BITS uploads to the real ferry-upload-server.

use std::sync::{Arc, Mutex};

use ferry_fetch::FetchErrorKind;
use ferry_send::{Protocol, ProtocolChoice, ServerState};
use tokio_util::sync::CancellationToken;

use crate::support::*;

const BITS: ProtocolChoice = ProtocolChoice::Only(Protocol::Bits);

#[tokio::test]
async fn issue_14_bits_upload_lands_byte_identical_and_leaves_no_session() {
    let srv = UploadServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Several fragments, the last one short.
    let data = content(3 * 65536 + 123, 1);
    let path = source(dir.path(), "a.bin", &data);
    let mut req = request(&srv.url("a.bin"), &path, ProtocolChoice::Auto);
    req.fragment_size = 65536;
    let c = Arc::default();
    let done = send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.protocol, Protocol::Bits);
    assert_eq!(done.bytes, data.len() as u64);
    assert_eq!(srv.landed("a.bin").unwrap(), data);
    assert_eq!(srv.sessions(), 0);
    let c = c.lock().unwrap();
    // Auto probed once and found BITS; exactly one session.
    assert_eq!(c.probed, Some(Protocol::Bits));
    assert_eq!(c.created.len(), 1);
    assert_eq!(c.last.as_ref().unwrap().acked(), data.len() as u64);
}

#[tokio::test]
async fn issue_14_bits_empty_file_lands_empty() {
    let srv = UploadServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = source(dir.path(), "e.bin", b"");
    let req = request(&srv.url("e.bin"), &path, BITS);
    let c = Arc::default();
    send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(srv.landed("e.bin").unwrap(), b"");
}

#[tokio::test]
async fn issue_14_bits_413_shrinks_fragments_until_the_server_takes_them() {
    let srv = UploadServer::start_with("max_fragment_size = 20000");
    let dir = tempfile::tempdir().unwrap();
    let data = content(100_000, 2);
    let path = source(dir.path(), "b.bin", &data);
    let mut req = request(&srv.url("b.bin"), &path, BITS);
    req.fragment_size = 65536;
    let c = Arc::default();
    send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(srv.landed("b.bin").unwrap(), data);
    assert_eq!(srv.sessions(), 0);
}

#[tokio::test]
async fn issue_14_bits_too_large_for_the_server_is_fatal_and_nothing_lands() {
    let srv = UploadServer::start_with("max_upload_size = 1000");
    let dir = tempfile::tempdir().unwrap();
    let path = source(dir.path(), "big.bin", &content(5000, 3));
    let req = request(&srv.url("big.bin"), &path, BITS);
    let c = Arc::default();
    let e = send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(!e.transient, "{e:?}");
    assert_eq!(e.http_status, Some(500));
    assert!(
        e.description.contains("BG_E_TOO_LARGE"),
        "{}",
        e.description
    );
    assert!(srv.landed("big.bin").is_none());
}

#[tokio::test]
async fn issue_14_bits_existing_destination_is_403_fatal() {
    let srv = UploadServer::start();
    std::fs::write(srv.dir().join("x.bin"), b"old").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = source(dir.path(), "x.bin", b"new content");
    let req = request(&srv.url("x.bin"), &path, BITS);
    let c = Arc::default();
    let e = send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(!e.transient);
    assert_eq!(e.kind, FetchErrorKind::Http(403));
    assert!(
        e.description.contains("E_ACCESSDENIED"),
        "{}",
        e.description
    );
    assert_eq!(srv.landed("x.bin").unwrap(), b"old");
}

/// A send interrupted (as by a crash: the caller only has what it committed) resumes the same
/// session: one Create-Session in all.
#[tokio::test]
async fn issue_14_bits_resume_continues_the_committed_session() {
    let srv = UploadServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(400_000, 4);
    let path = source(dir.path(), "r.bin", &data);
    let mut req = request(&srv.url("r.bin"), &path, BITS);
    req.fragment_size = 50_000;
    let s = sender();
    let c: Arc<Mutex<Committed>> = Arc::default();
    // Stop after the second acknowledged fragment.
    let stop = |n: usize, cancel: &CancellationToken| {
        if n == 2 {
            cancel.cancel();
        }
    };
    let e = send_hooked(&s, &req, &c, &CancellationToken::new(), stop)
        .await
        .unwrap_err();
    assert!(e.is_cancelled(), "{e:?}");
    let state = c.lock().unwrap().last.clone().unwrap();
    assert!(
        matches!(state, ServerState::Bits { acked: 100_000, .. }),
        "{state:?}"
    );
    assert!(srv.landed("r.bin").is_none());
    let (r, _) = send_until_done(&s, req, &c, 3).await;
    r.unwrap();
    assert_eq!(srv.landed("r.bin").unwrap(), data);
    assert_eq!(c.lock().unwrap().created.len(), 1);
    assert_eq!(srv.sessions(), 0);
}

#[tokio::test]
async fn issue_14_bits_cancel_session_removes_the_server_session() {
    let srv = UploadServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(200_000, 5);
    let path = source(dir.path(), "c.bin", &data);
    let mut req = request(&srv.url("c.bin"), &path, BITS);
    req.fragment_size = 50_000;
    let s = sender();
    let c: Arc<Mutex<Committed>> = Arc::default();
    let stop = |_: usize, cancel: &CancellationToken| cancel.cancel();
    let e = send_hooked(&s, &req, &c, &CancellationToken::new(), stop).await;
    assert!(e.unwrap_err().is_cancelled());
    let state = c.lock().unwrap().last.clone().unwrap();
    assert_eq!(srv.sessions(), 1);
    s.abandon(&req.target, &state).await.unwrap();
    assert_eq!(srv.sessions(), 0);
    assert!(srv.landed("c.bin").is_none());
    // Abandoning again: the server no longer knows it, which is what was wanted.
    s.abandon(&req.target, &state).await.unwrap();
}

#[tokio::test]
async fn issue_14_a_source_that_changes_fails_with_local_file_changed() {
    let srv = UploadServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(300_000, 6);
    let path = source(dir.path(), "m.bin", &data);
    let mut req = request(&srv.url("m.bin"), &path, BITS);
    req.fragment_size = 50_000;
    let s = sender();
    let p2 = path.clone();
    let rewrite = move |_: usize, _: &CancellationToken| {
        // Same size, new content and mtime: a rewrite in place.
        let mut d = std::fs::read(&p2).unwrap();
        d[250_000] ^= 0xff;
        std::fs::write(&p2, &d).unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&p2)
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    let e = send_hooked(
        &s,
        &req,
        &Arc::default(),
        &CancellationToken::new(),
        rewrite,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::LocalFileChanged, "{e:?}");
    assert_eq!(e.kind.as_str(), "LOCAL_FILE_CHANGED");
    assert!(!e.transient);
    assert!(srv.landed("m.bin").is_none());

    // A file replaced by another (new inode) before the upload starts is refused as well.
    let path = source(dir.path(), "n.bin", &data);
    let req = request(&srv.url("n.bin"), &path, BITS);
    std::fs::rename(source(dir.path(), "n2.bin", &data), &path).unwrap();
    let c = Arc::default();
    let e = send_once(&s, &req, &c, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::LocalFileChanged, "{e:?}");
    assert!(e.description.contains("replaced"), "{}", e.description);
}

#[tokio::test]
async fn issue_14_auto_finds_neither_protocol_on_a_plain_web_server() {
    let srv = ferry_testkit_like_plain_server().await;
    let dir = tempfile::tempdir().unwrap();
    let path = source(dir.path(), "p.bin", b"x");
    let req = request(&format!("http://{srv}/p.bin"), &path, ProtocolChoice::Auto);
    let c = Arc::default();
    let e = send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::UploadProtocolMismatch, "{e:?}");
    assert!(!e.transient);
}

/// A web server that answers everything 404 without any protocol header.
async fn ferry_testkit_like_plain_server() -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no") });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}
