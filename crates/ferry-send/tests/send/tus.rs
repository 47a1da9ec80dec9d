//! tus uploads to a real tus server (`@tus/server` from npm), directly and through the
//! hostile proxy.

use std::sync::Arc;

use ferry_fetch::FetchErrorKind;
use ferry_send::{Protocol, ProtocolChoice, ServerState};
use tokio_util::sync::CancellationToken;

use crate::support::*;

const TUS: ProtocolChoice = ProtocolChoice::Only(Protocol::Tus);

#[tokio::test]
async fn issue_14_tus_upload_lands_byte_identical_as_one_upload() {
    let Some(tus) = TusServer::start("issue_14_tus_upload_lands_byte_identical_as_one_upload")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = content(1_000_000, 20);
    let path = source(dir.path(), "t.bin", &data);
    let mut req = request(&tus.url(), &path, ProtocolChoice::Auto);
    req.fragment_size = 300_000;
    let c = Arc::default();
    let done = send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.protocol, Protocol::Tus);
    let uploads = tus.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(std::fs::read(&uploads[0]).unwrap(), data);
    let c = c.lock().unwrap();
    assert_eq!(c.probed, Some(Protocol::Tus));
    assert_eq!(c.created.len(), 1);
    let ServerState::Tus {
        upload_url, acked, ..
    } = c.last.clone().unwrap()
    else {
        panic!()
    };
    assert_eq!(acked, data.len() as u64);
    assert!(upload_url.starts_with(&tus.url()), "{upload_url}");
}

#[tokio::test]
async fn issue_14_tus_cuts_resume_by_head_with_exactly_one_upload() {
    let Some(tus) = TusServer::start("issue_14_tus_cuts_resume_by_head_with_exactly_one_upload")
    else {
        return;
    };
    let proxy = Proxy::start(tus.addr.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = content(800_000, 21);
    let path = source(dir.path(), "cut.bin", &data);
    let mut req = request(&format!("http://{}/files", proxy.addr), &path, TUS);
    req.fragment_size = 100_000;
    for i in 0..10 {
        proxy.add(Rule::new("PATCH", None, Fault::Cut(1 + i * 7919)).skip(i % 2));
    }
    let c = Arc::default();
    let (r, transient) = send_until_done(&sender(), req, &c, 30).await;
    r.unwrap();
    assert!(transient.len() >= 10);
    let uploads = tus.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(std::fs::read(&uploads[0]).unwrap(), data);
    assert_eq!(c.lock().unwrap().created.len(), 1);
    // Every resume asked the server where to go on.
    let heads = proxy.seen().iter().filter(|s| s.method() == "HEAD").count();
    assert!(heads >= 10, "{heads}");
    // @tus/server offers no checksum extension: no Upload-Checksum was sent.
    assert!(
        proxy
            .seen()
            .iter()
            .all(|s| s.header("Upload-Checksum").is_none())
    );
}

#[tokio::test]
async fn issue_14_tus_checksum_sent_when_offered_and_460_retried() {
    let Some(tus) = TusServer::start("issue_14_tus_checksum_sent_when_offered_and_460_retried")
    else {
        return;
    };
    let proxy = Proxy::start(tus.addr.clone()).await;
    // The proxy makes the server offer the checksum extension with sha1.
    proxy.add(
        Rule::new(
            "OPTIONS",
            None,
            Fault::Extend(vec![
                ("Tus-Extension", "creation,termination,checksum".into()),
                ("Tus-Checksum-Algorithm", "md5,sha1".into()),
            ]),
        )
        .times(100),
    );
    proxy.add(
        Rule::new(
            "PATCH",
            None,
            Fault::Answer(460, vec![("Tus-Resumable", "1.0.0".into())]),
        )
        .skip(1),
    );
    let dir = tempfile::tempdir().unwrap();
    let data = content(250_000, 22);
    let path = source(dir.path(), "sum.bin", &data);
    let mut req = request(&format!("http://{}/files", proxy.addr), &path, TUS);
    req.fragment_size = 100_000;
    let c = Arc::default();
    send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap();
    let uploads = tus.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(std::fs::read(&uploads[0]).unwrap(), data);
    let patches: Vec<Seen> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method() == "PATCH")
        .collect();
    // Three chunks, the second sent twice.
    assert_eq!(patches.len(), 4);
    assert_eq!(patches[1].body, patches[2].body);
    for p in &patches {
        use sha1::Digest;
        let want = base64_sha1(&sha1::Sha1::digest(&p.body));
        assert_eq!(p.header("Upload-Checksum"), Some(format!("sha1 {want}")));
    }
}

fn base64_sha1(d: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in d.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn issue_14_tus_an_expired_upload_starts_one_new_upload() {
    let Some(tus) = TusServer::start("issue_14_tus_an_expired_upload_starts_one_new_upload") else {
        return;
    };
    let proxy = Proxy::start(tus.addr.clone()).await;
    proxy.add(
        Rule::new(
            "PATCH",
            None,
            Fault::Answer(410, vec![("Tus-Resumable", "1.0.0".into())]),
        )
        .skip(1),
    );
    let dir = tempfile::tempdir().unwrap();
    let data = content(300_000, 23);
    let path = source(dir.path(), "exp.bin", &data);
    let mut req = request(&format!("http://{}/files", proxy.addr), &path, TUS);
    req.fragment_size = 100_000;
    let c = Arc::default();
    send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap();
    let c = c.lock().unwrap();
    assert_eq!(c.created.len(), 2);
    let ServerState::Tus { upload_url, .. } = c.last.clone().unwrap() else {
        panic!()
    };
    let id = upload_url.rsplit('/').next().unwrap();
    assert_eq!(std::fs::read(tus.dir.path().join(id)).unwrap(), data);
}

#[tokio::test]
async fn issue_14_tus_an_offset_higher_than_sent_is_fatal_and_the_upload_deleted() {
    let Some(tus) = TusServer::start("issue_14_tus_an_offset_higher_than_sent_is_fatal") else {
        return;
    };
    let proxy = Proxy::start(tus.addr.clone()).await;
    proxy.add(Rule::new("PATCH", None, Fault::Lie(50_000)));
    let dir = tempfile::tempdir().unwrap();
    let path = source(dir.path(), "lie.bin", &content(300_000, 24));
    let mut req = request(&format!("http://{}/files", proxy.addr), &path, TUS);
    req.fragment_size = 100_000;
    let c = Arc::default();
    let e = send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(!e.transient);
    assert_eq!(e.kind, FetchErrorKind::InvalidServerResponse);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !tus.uploads().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lying upload was not deleted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn issue_14_tus_abandon_deletes_the_upload() {
    let Some(tus) = TusServer::start("issue_14_tus_abandon_deletes_the_upload") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = source(dir.path(), "del.bin", &content(300_000, 25));
    let mut req = request(&tus.url(), &path, TUS);
    req.fragment_size = 100_000;
    let s = sender();
    let c: Arc<std::sync::Mutex<Committed>> = Arc::default();
    let stop = |_: usize, cancel: &CancellationToken| cancel.cancel();
    let e = send_hooked(&s, &req, &c, &CancellationToken::new(), stop).await;
    assert!(e.unwrap_err().is_cancelled());
    let state = c.lock().unwrap().last.clone().unwrap();
    assert_eq!(tus.uploads().len(), 1);
    s.abandon(&req.target, &state).await.unwrap();
    assert!(tus.uploads().is_empty());
}
