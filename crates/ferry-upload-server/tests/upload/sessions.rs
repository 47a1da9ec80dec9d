//! Session life cycle against the real server: resumable across `kill -9`, Cancel-Session and
//! expiry delete everything, overwrite is refused unless allowed, duplicates and gaps follow
//! the protocol.

use std::time::{Duration, Instant};

use crate::support::*;

const URL: &str = "/upload/f.bin";

#[tokio::test]
async fn issue_14_a_killed_server_resumes_open_sessions() {
    let mut srv = start();
    let data = content(300_000, 3);
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    let r = c.fragment(URL, &s, 0, 300_000, &data[..100_000]).await;
    assert_eq!(r.header("BITS-Received-Content-Range"), Some("100000"));
    srv.restart();
    let mut c = srv.conn().await;
    // The client pings, then resends from where it believes it is; the server's offset wins.
    assert_eq!(
        c.post(URL, &[("BITS-Packet-Type", "Ping")], b"")
            .await
            .status,
        200
    );
    let r = c
        .fragment(URL, &s, 150_000, 300_000, &data[150_000..])
        .await;
    assert_eq!(r.status, 416, "{}", r.head);
    assert_eq!(r.header("BITS-Received-Content-Range"), Some("100000"));
    let r = c
        .fragment(URL, &s, 100_000, 300_000, &data[100_000..])
        .await;
    assert_eq!(
        r.header("BITS-Received-Content-Range"),
        Some("300000"),
        "{}",
        r.head
    );
    assert_eq!(c.end(URL, &s, "Close-Session").await.status, 200);
    assert_eq!(std::fs::read(srv.upload_dir().join("f.bin")).unwrap(), data);
    assert_eq!(srv.session_count(), 0);
}

#[tokio::test]
async fn issue_14_a_fragment_cut_by_kill_9_is_not_kept() {
    let mut srv = start();
    let data = content(200_000, 7);
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    let r = c.fragment(URL, &s, 0, 200_000, &data[..50_000]).await;
    assert_eq!(r.header("BITS-Received-Content-Range"), Some("50000"));
    // A second fragment of wrong bytes, cut off half-way by the server's death: never
    // acknowledged, so none of it may survive.
    let head = format!(
        "BITS_POST {URL} HTTP/1.1\r\nHost: x\r\nBITS-Packet-Type: Fragment\r\nBITS-Session-Id: {s}\r\nContent-Range: bytes 50000-149999/200000\r\nContent-Length: 100000\r\n\r\n"
    );
    c.send(head.as_bytes()).await;
    c.send(&[0xEE; 50_000]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(srv.data_file(&s)).unwrap().len() <= 50_000 {
        assert!(
            Instant::now() < deadline,
            "the server wrote none of the fragment in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.restart();
    let mut c = srv.conn().await;
    let r = c
        .fragment(URL, &s, 100_000, 200_000, &data[100_000..])
        .await;
    assert_eq!(r.status, 416, "{}", r.head);
    assert_eq!(r.header("BITS-Received-Content-Range"), Some("50000"));
    let r = c.fragment(URL, &s, 50_000, 200_000, &data[50_000..]).await;
    assert_eq!(
        r.header("BITS-Received-Content-Range"),
        Some("200000"),
        "{}",
        r.head
    );
    assert_eq!(c.end(URL, &s, "Close-Session").await.status, 200);
    assert_eq!(std::fs::read(srv.upload_dir().join("f.bin")).unwrap(), data);
}

#[tokio::test]
async fn issue_14_overlapping_fragments_never_rewrite_bytes() {
    let srv = start();
    let data = content(1000, 5);
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    assert_eq!(
        c.fragment(URL, &s, 0, 1000, &data[..101])
            .await
            .header("BITS-Received-Content-Range"),
        Some("101")
    );
    // 50-150 with different bytes in the overlap: only 101-150 is taken.
    let mut overlap = data[50..151].to_vec();
    overlap[..51].fill(0xEE);
    let r = c.fragment(URL, &s, 50, 1000, &overlap).await;
    assert_eq!(r.header("BITS-Received-Content-Range"), Some("151"));
    // Wholly old: acknowledged, nothing written.
    let r = c.fragment(URL, &s, 0, 1000, &[0xEE; 100]).await;
    assert_eq!(
        (r.status, r.header("BITS-Received-Content-Range")),
        (200, Some("151"))
    );
    let r = c.fragment(URL, &s, 151, 1000, &data[151..]).await;
    assert_eq!(r.header("BITS-Received-Content-Range"), Some("1000"));
    // The final fragment repeated (a lost Ack): the same answer.
    let r = c.fragment(URL, &s, 151, 1000, &data[151..]).await;
    assert_eq!(
        (r.status, r.header("BITS-Received-Content-Range")),
        (200, Some("1000"))
    );
    assert_eq!(c.end(URL, &s, "Close-Session").await.status, 200);
    assert_eq!(std::fs::read(srv.upload_dir().join("f.bin")).unwrap(), data);
}

#[tokio::test]
async fn issue_14_cancel_session_deletes_everything() {
    let srv = start();
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    assert_eq!(
        c.fragment(URL, &s, 0, 100, &content(60, 1)).await.status,
        200
    );
    assert_eq!(srv.session_count(), 1);
    assert_eq!(c.end(URL, &s, "Cancel-Session").await.status, 200);
    assert_eq!(srv.session_count(), 0);
    assert!(!srv.upload_dir().join("f.bin").exists());
    // The id is dead now.
    c.fragment(URL, &s, 60, 100, &content(40, 1))
        .await
        .assert_error(500, "0x8020001F");
    c.end(URL, &s, "Close-Session")
        .await
        .assert_error(500, "0x8020001F");
}

#[tokio::test]
async fn issue_14_expired_sessions_are_deleted() {
    let srv = start_with("session_timeout_secs = 1", "");
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    assert_eq!(
        c.fragment(URL, &s, 0, 100, &content(60, 1)).await.status,
        200
    );
    // The sweeper runs every second; the session goes once idle for more than a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while srv.session_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the expired session was not deleted within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.fragment(URL, &s, 60, 100, &content(40, 1))
        .await
        .assert_error(500, "0x8020001F");
    assert!(!srv.upload_dir().join("f.bin").exists());
}

#[tokio::test]
async fn issue_14_existing_files_are_not_overwritten_unless_allowed() {
    let srv = start();
    std::fs::write(srv.upload_dir().join("f.bin"), b"old").unwrap();
    let mut c = srv.conn().await;
    c.create_resp(URL).await.assert_error(403, "0x80070005");
    // A file that appears during the upload is not replaced at Close-Session either.
    let s = c.create("/upload/g.bin").await;
    assert_eq!(
        c.fragment("/upload/g.bin", &s, 0, 3, b"new").await.status,
        200
    );
    std::fs::write(srv.upload_dir().join("g.bin"), b"raced").unwrap();
    c.end("/upload/g.bin", &s, "Close-Session")
        .await
        .assert_error(403, "0x80070005");
    assert_eq!(
        std::fs::read(srv.upload_dir().join("g.bin")).unwrap(),
        b"raced"
    );

    let srv = start_with("allow_overwrite = true", "");
    std::fs::write(srv.upload_dir().join("f.bin"), b"old").unwrap();
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    assert_eq!(c.fragment(URL, &s, 0, 3, b"new").await.status, 200);
    assert_eq!(c.end(URL, &s, "Close-Session").await.status, 200);
    assert_eq!(
        std::fs::read(srv.upload_dir().join("f.bin")).unwrap(),
        b"new"
    );
}

#[tokio::test]
async fn issue_14_size_limits_answer_too_large() {
    let srv = start_with("max_upload_size = 1000\nmax_fragment_size = 100", "");
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    c.fragment(URL, &s, 0, 1001, &content(10, 1))
        .await
        .assert_error(500, "0x80200020");
    let r = c.fragment(URL, &s, 0, 1000, &content(101, 1)).await;
    assert_eq!(
        (r.status, r.header("BITS-Error-Code")),
        (413, Some("0x80200020")),
        "{}",
        r.head
    );
    assert_eq!(
        c.fragment(URL, &s, 0, 1000, &content(100, 1)).await.status,
        200
    );
}

#[tokio::test]
async fn issue_14_session_floods_are_bounded_by_max_sessions() {
    let srv = start_with("max_sessions = 2", "");
    let mut c = srv.conn().await;
    let a = c.create("/upload/a").await;
    let _b = c.create("/upload/b").await;
    let r = c.create_resp("/upload/c").await;
    assert_eq!(
        (r.status, r.header("BITS-Error-Code")),
        (503, Some("0x80004005")),
        "{}",
        r.head
    );
    assert_eq!(srv.session_count(), 2);
    assert_eq!(c.end("/upload/a", &a, "Cancel-Session").await.status, 200);
    c.create("/upload/c").await;
}

#[tokio::test]
async fn issue_14_concurrent_clients_do_not_interfere() {
    let srv = start();
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let mut c = srv.conn().await;
        tasks.push(tokio::spawn(async move {
            let url = format!("/upload/c{i}.bin");
            let data = content(50_000, i);
            let s = c.create(&url).await;
            for chunk in 0..5 {
                let from = chunk * 10_000;
                let r = c
                    .fragment(&url, &s, from as u64, 50_000, &data[from..from + 10_000])
                    .await;
                assert_eq!(r.status, 200, "{}", r.head);
            }
            assert_eq!(c.end(&url, &s, "Close-Session").await.status, 200);
            data
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let data = t.await.unwrap();
        assert_eq!(
            std::fs::read(srv.upload_dir().join(format!("c{i}.bin"))).unwrap(),
            data
        );
    }
    assert_eq!(srv.session_count(), 0);
}
