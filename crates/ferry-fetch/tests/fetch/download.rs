//! Plain downloads: byte-identical content, checkpoints, hashing, connection reuse.

use ferry_fetch::{FetchErrorKind, FetchEvent, Validator};

use crate::support::{Harness, read};

#[tokio::test]
async fn full_download_is_byte_identical_and_checkpointed() {
    let h = Harness::new().await;
    let c = h.serve("/big.bin", 1, 3 * 1024 * 1024 + 17);
    // Slow enough that the background syncs (one at a time) finish while bytes still come.
    h.server.set_behavior(
        "/big.bin",
        ferry_testkit::http::Behavior {
            rate_bytes_per_sec: Some(8 * 1024 * 1024),
            ..Default::default()
        },
    );
    let mut req = h.request("/big.bin");
    req.sha256 = Some(c.sha256.to_uppercase());
    req.checkpoint_bytes = 1024 * 1024;
    let out = h.run(&req).await;
    let done = out.done();
    assert_eq!(done.bytes, c.len() as u64);
    assert_eq!(done.sha256.as_deref(), Some(c.sha256.as_str()));
    assert_eq!(
        done.validator,
        Some(Validator::ETag(h.server.etag("/big.bin").unwrap()))
    );
    assert_eq!(read(&req.temp_path), c.bytes);

    // Checkpoints only move forward, never claim a restart, and the last covers everything.
    let cps = out.checkpoints();
    assert!(cps.len() >= 3, "{cps:?}");
    assert!(cps.windows(2).all(|w| w[0].0 <= w[1].0), "{cps:?}");
    assert!(cps.iter().all(|(_, r)| !r));
    assert_eq!(
        out.last_checkpoint(),
        FetchEvent::Checkpoint {
            offset: c.len() as u64,
            total: Some(c.len() as u64),
            validator: done.validator.clone(),
            restarted: false,
            pieces: Some(ferry_peer::pieces::list_of(&c.bytes))
        }
    );
    assert!(out.events.iter().any(|e| matches!(
        e,
        FetchEvent::Progress { total: Some(t), .. } if *t == c.len() as u64
    )));
    let log = h.server.requests_for("/big.bin");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].range, None);
    assert_eq!(log[0].header("accept-encoding"), Some("identity"));
}

#[tokio::test]
async fn connections_are_reused_across_fetches() {
    let h = Harness::new().await;
    let a = h.serve("/a", 2, 1000);
    let b = h.serve("/b", 3, 2000);
    let ra = h.request("/a");
    let rb = h.request("/b");
    assert_eq!(
        h.run(&ra).await.done().sha256.as_deref(),
        Some(a.sha256.as_str())
    );
    assert_eq!(
        h.run(&rb).await.done().sha256.as_deref(),
        Some(b.sha256.as_str())
    );
    let log = h.server.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].connection_id, log[1].connection_id);
}

#[tokio::test]
async fn empty_file() {
    let h = Harness::new().await;
    let c = h.serve("/empty", 4, 0);
    let req = h.request("/empty");
    let out = h.run(&req).await;
    assert_eq!(out.done().bytes, 0);
    assert_eq!(out.done().sha256.as_deref(), Some(c.sha256.as_str()));
}

#[tokio::test]
async fn unknown_length_reads_to_the_end() {
    let h = Harness::new().await;
    let c = h.serve("/nolen", 5, 300_000);
    h.server.set_behavior(
        "/nolen",
        ferry_testkit::http::Behavior {
            no_content_length: true,
            ..Default::default()
        },
    );
    let req = h.request("/nolen");
    let out = h.run(&req).await;
    assert_eq!(out.done().bytes, 300_000);
    assert_eq!(read(&req.temp_path), c.bytes);
    // The size became known only at the end.
    assert!(matches!(
        out.events.first(),
        Some(FetchEvent::Progress { total: None, .. })
    ));
    assert!(matches!(
        out.last_checkpoint(),
        FetchEvent::Checkpoint {
            total: Some(300_000),
            ..
        }
    ));
}

#[tokio::test]
async fn custom_headers_and_basic_auth_are_sent() {
    let h = Harness::new().await;
    h.serve("/f", 6, 10);
    let mut req = h.request("/f");
    req.headers = vec![
        ("X-Ferry-Test".into(), "yes".into()),
        ("Range".into(), "bytes=5-".into()),
    ];
    req.basic_auth = Some(("user".into(), "pw".into()));
    h.run(&req).await.done();
    let log = h.server.requests_for("/f");
    assert_eq!(log[0].header("x-ferry-test"), Some("yes"));
    // "user:pw" in base64.
    assert_eq!(log[0].header("authorization"), Some("Basic dXNlcjpwdw=="));
    // The engine owns Range: a custom one is dropped.
    assert_eq!(log[0].range, None);
}

#[tokio::test]
async fn garbage_beyond_the_committed_offset_is_truncated() {
    let h = Harness::new().await;
    let c = h.serve("/g", 7, 200_000);
    let mut req = h.request("/g");
    // 50 000 committed bytes, then 9 000 bytes a crash left behind uncommitted.
    let mut on_disk = c.bytes[..50_000].to_vec();
    on_disk.extend(std::iter::repeat_n(0xAA, 9_000));
    std::fs::write(&req.temp_path, &on_disk).unwrap();
    req.offset = 50_000;
    req.validator = Some(Validator::ETag(h.server.etag("/g").unwrap()));
    req.sha256 = Some(c.sha256.clone());
    let out = h.run(&req).await;
    assert_eq!(out.done().sha256.as_deref(), Some(c.sha256.as_str()));
    assert_eq!(read(&req.temp_path), c.bytes);
    assert!(!out.restarted());
    assert_eq!(
        h.server.requests_for("/g")[0].range.as_deref(),
        Some("bytes=50000-")
    );
}

#[tokio::test]
async fn a_staging_file_shorter_than_the_offset_restarts() {
    let h = Harness::new().await;
    let c = h.serve("/s", 8, 10_000);
    let mut req = h.request("/s");
    std::fs::write(&req.temp_path, &c.bytes[..100]).unwrap();
    req.offset = 5_000;
    req.validator = Some(Validator::ETag(h.server.etag("/s").unwrap()));
    let out = h.run(&req).await;
    assert_eq!(out.done().sha256.as_deref(), Some(c.sha256.as_str()));
    assert_eq!(out.checkpoints()[0], (0, true));
    assert_eq!(h.server.requests_for("/s")[0].range, None);
}

#[tokio::test]
async fn issue_4_without_sha256_or_hash_nothing_is_hashed_and_sha256_still_verifies() {
    let h = Harness::new().await;
    let c = h.serve("/plain", 17, 3 * 1024 * 1024 + 5);
    let mut req = h.request("/plain");
    req.hash = false;
    let out = h.run(&req).await;
    assert_eq!(out.done().sha256, None);
    assert_eq!(read(&req.temp_path), c.bytes);

    // `sha256` alone turns hashing on: a wrong digest still fails the fetch.
    let mut req = h.request("/plain");
    req.hash = false;
    req.sha256 = Some("00".repeat(32));
    assert_eq!(h.run(&req).await.err().kind, FetchErrorKind::Sha256Mismatch);
    let mut req = h.request("/plain");
    req.hash = false;
    req.sha256 = Some(c.sha256.clone());
    assert_eq!(
        h.run(&req).await.done().sha256.as_deref(),
        Some(c.sha256.as_str())
    );
}
