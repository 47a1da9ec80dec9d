//! Attacks on the peer cache (docs/SECURITY.md), each performed against real `ferryd`
//! processes on 127.0.0.x (helpers from `peer_cache`).
//!
//! - Poisoning by a local user: bytes a job's owner wrote into the staging file, or that a
//!   proxy of the job chose, are never published under the origin's key.
//! - Unauthenticated peers: a process without the fleet secret on a member's address fails the
//!   TLS handshake and receives no request; replayed, time-shifted or modified requests are
//!   refused; idle connections cannot lock members out; a secret file others can read is
//!   refused at start.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_proto::JobState;
use ferry_proto::params::SetParams;
use ferry_testkit::content::{pseudo_random, sha256_hex};
use ferry_testkit::daemon::wait_for;
use ferry_testkit::http::{Behavior, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::peer_cache::{
    Host, SECRET, SIZE, complete_and_check, config_file, fetch, fetch_and_publish, host, is_action,
    lying_peer, origin_file, published_pair, raw, start_host, wait_event,
};
use crate::support::{WAIT, job_with, spec, temp_files, wait_state};

const MIB: u64 = 1024 * 1024;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A content path no host holds: an authenticated request for it is answered `404`, a refused
/// one `401`, so the tests below need no published content.
fn absent() -> String {
    ferry_peer::wire::content_path(&"0".repeat(64))
}

fn signed(method: &str, target: &str, ts: u64, nonce: &str) -> String {
    ferry_peer::auth::sign(SECRET.as_bytes(), method, target, ts, nonce)
}

/// Host `a` fetches `path` (served slowly) until more than a MiB is durable, then the job is
/// suspended and the origin set to full speed; returns the job, its destination and the staging
/// file.
async fn suspended_halfway(
    a: &Host,
    server: &TestServer,
    path: &str,
) -> (String, std::path::PathBuf, std::path::PathBuf) {
    server.set_behavior(
        path,
        Behavior {
            rate_bytes_per_sec: Some(MIB),
            ..Behavior::default()
        },
    );
    let dest = a.d.files_dir().join("a.bin");
    let id = job_with(&a.c, vec![spec(&server.url(path), &dest)]).await;
    a.c.resume(&id).await.unwrap();
    wait_for(&a.c, &id, WAIT, |j| {
        j.progress.bytes_transferred >= MIB + MIB / 2
    })
    .await;
    a.c.suspend(&id).await.unwrap();
    wait_state(&a.c, &id, JobState::Suspended).await;
    server.clear_behavior(path);
    let staging = temp_files(&a.d.files_dir());
    assert_eq!(staging.len(), 1, "{staging:?}");
    (id, dest, staging[0].clone())
}

#[tokio::test]
async fn issue_11_staging_file_tampered_while_suspended_is_not_published() {
    let server = TestServer::start().await;
    let body = origin_file(&server, "/t.bin", 31);
    let url = server.url("/t.bin");
    let a = host("127.0.0.40", &[], "").await;
    let (id, dest, staging) = suspended_halfway(&a, &server, "/t.bin").await;
    // Alice (the job's owner) writes her own bytes over what the daemon received.
    let mut bytes = std::fs::read(&staging).unwrap();
    assert!(bytes.len() as u64 > MIB);
    let evil = pseudo_random(666, MIB as usize);
    bytes[..MIB as usize].copy_from_slice(&evil);
    std::fs::write(&staging, &bytes).unwrap();
    a.c.resume(&id).await.unwrap();
    wait_state(&a.c, &id, JobState::Transferred).await;
    // The daemon saw its bytes were changed and fetched the file again from byte 0.
    let gets = server.requests_for("/t.bin");
    let last = gets.iter().rev().find(|r| r.method == "GET").unwrap();
    assert_eq!(last.range, None, "a restart from zero, not a resume");
    complete_and_check(&a, &id, &dest, &body).await;
    wait_event(&a.c, &id, |k| is_action(k, "published")).await;
    let entries = a.c.cache_list().await.unwrap().entries;
    assert_eq!(
        entries[0].sha256,
        sha256_hex(&body),
        "only the origin's bytes"
    );

    // Bob's host gets the origin's bytes from A, and republishes exactly those.
    let b = host("127.0.0.41", &[&a.addr], "").await;
    let (b_id, b_dest) = fetch(&b, &url, "b.bin").await;
    assert!(b.c.files(&b_id).await.unwrap()[0].from_peer);
    complete_and_check(&b, &b_id, &b_dest, &body).await;
    wait_event(&b.c, &b_id, |k| is_action(k, "published")).await;
    let entries = b.c.cache_list().await.unwrap().entries;
    assert_eq!(entries[0].sha256, sha256_hex(&body));
}

#[tokio::test]
async fn issue_11_resumed_bytes_without_recorded_piece_hashes_are_not_published() {
    let server = TestServer::start().await;
    let body = origin_file(&server, "/o.bin", 36);
    let mut a = host("127.0.0.51", &[], "").await;
    let (id, dest, _) = suspended_halfway(&a, &server, "/o.bin").await;
    // As a store from before piece hashes left it: the durable bytes' origin is not recorded.
    a.d.terminate();
    {
        let db = rusqlite::Connection::open(a.d.state_dir.join("ferry.db")).unwrap();
        let n = db
            .execute(
                "UPDATE files SET body = json_remove(body, '$.pieces') WHERE job_id = ?1",
                [&id],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    a.d.restart();
    a.c = a.d.client().await;
    a.c.resume(&id).await.unwrap();
    wait_state(&a.c, &id, JobState::Transferred).await;
    let resumed = server.requests_for("/o.bin");
    assert!(resumed.iter().any(|r| r.range.is_some()), "it was resumed");
    complete_and_check(&a, &id, &dest, &body).await;
    origin_file(&server, "/barrier.bin", 37);
    fetch_and_publish(&a, &server.url("/barrier.bin"), "barrier.bin").await;
    let entries = a.c.cache_list().await.unwrap().entries;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].url.ends_with("/barrier.bin"));
}

#[tokio::test]
async fn issue_11_proxied_credentialed_or_custom_header_jobs_are_not_published() {
    let origin = TestServer::start().await;
    let body = origin_file(&origin, "/px.bin", 32);
    let url = origin.url("/px.bin");
    // Alice's proxy answers with her bytes (a few changed, so a random spot check misses them)
    // under the origin's ETag, i.e. the origin's content key.
    let mut evil = body.clone();
    evil[2 * MIB as usize..2 * MIB as usize + 16].fill(0x42);
    let proxy = TestServer::start().await;
    proxy.add_file("/px.bin", evil);
    proxy.set_behavior(
        "/px.bin",
        Behavior {
            no_validators: true,
            extra_headers: vec![("etag".into(), origin.etag("/px.bin").unwrap())],
            ..Behavior::default()
        },
    );
    let a = host("127.0.0.42", &[], "").await;
    let settings = [
        SetParams {
            proxy: Some(Some(proxy.url(""))),
            ..Default::default()
        },
        SetParams {
            credentials: Some(Some(ferry_proto::params::Credentials {
                scheme: "basic".into(),
                user: "u".into(),
                password: "p".into(),
            })),
            ..Default::default()
        },
        SetParams {
            custom_headers: Some(vec!["X-Token: 1".into()]),
            ..Default::default()
        },
    ];
    for (i, set) in settings.into_iter().enumerate() {
        let dest = a.d.files_dir().join(format!("{i}.bin"));
        let id = job_with(&a.c, vec![spec(&url, &dest)]).await;
        a.c.set(SetParams {
            job_id: id.clone(),
            ..set
        })
        .await
        .unwrap();
        a.c.resume(&id).await.unwrap();
        wait_state(&a.c, &id, JobState::Transferred).await;
        a.c.complete(&id).await.unwrap();
    }
    // A plain job published after them: by then each of them was offered, and refused.
    origin_file(&origin, "/barrier.bin", 33);
    fetch_and_publish(&a, &origin.url("/barrier.bin"), "barrier.bin").await;
    let entries = a.c.cache_list().await.unwrap().entries;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].url.ends_with("/barrier.bin"));

    // So bob's host, asking A, gets the origin's bytes from the origin.
    let b = host("127.0.0.43", &[&a.addr], "").await;
    let (id, dest) = fetch(&b, &url, "b.bin").await;
    assert!(!b.c.files(&id).await.unwrap()[0].from_peer);
    complete_and_check(&b, &id, &dest, &body).await;
}

#[tokio::test]
async fn issue_11_a_peer_sending_a_wrong_piece_is_stopped_at_that_piece() {
    let origin = TestServer::start().await;
    let body = origin_file(&origin, "/w.bin", 38);
    // The origin's SHA-256 and pieces advertised, other bytes in the second piece.
    let mut served = body.clone();
    served[MIB as usize + 100] ^= 0xff;
    let peer = lying_peer(&origin, "/w.bin", &body, &served, Behavior::default()).await;
    let b = host("127.0.0.52", &[&peer.addr().to_string()], "").await;
    let (id, dest) = fetch(&b, &origin.url("/w.bin"), "b.bin").await;
    let failed = wait_event(&b.c, &id, |k| is_action(k, "peer_failed")).await;
    let ferry_proto::EventKind::PeerCache { detail, .. } = failed.kind else {
        unreachable!()
    };
    let detail = detail.unwrap_or_default();
    assert!(detail.contains("piece 1 "), "caught at its piece: {detail}");
    let f = &b.c.files(&id).await.unwrap()[0];
    assert_eq!((f.from_peer, f.bytes_from_origin), (false, SIZE as u64));
    complete_and_check(&b, &id, &dest, &body).await;
}

/// What an impostor on a member's address received: the first bytes of each connection.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// Listens on `addr` without the fleet secret, answering any HTTP request with `content` as if
/// it held the key (the old peer protocol), and keeps what each connection sent first.
async fn impostor(addr: &str, content: Vec<u8>) -> Received {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let got: Received = Arc::default();
    let keep = got.clone();
    let content = Arc::new(content);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (keep, content) = (keep.clone(), content.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                buf.truncate(n);
                let text = String::from_utf8_lossy(&buf).into_owned();
                keep.lock().unwrap().push(buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nx-ferry-sha256: {}\r\nx-ferry-size: {}\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    sha256_hex(&content),
                    content.len(),
                    content.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                if text.starts_with("GET ") {
                    let _ = s.write_all(&content).await;
                }
            });
        }
    });
    got
}

#[tokio::test]
async fn issue_11_impostor_on_a_stopped_members_address_gets_no_usable_request() {
    let (_origin, body, mut a, b, url, _) =
        published_pair(("127.0.0.44", "127.0.0.45"), "/i.bin", 34).await;
    let addr = a.addr.clone();
    a.d.terminate();
    let received = impostor(&addr, pseudo_random(35, SIZE)).await;
    let (id, dest) = fetch(&b, &url, "b.bin").await;
    let f = &b.c.files(&id).await.unwrap()[0];
    assert!(!f.from_peer, "the impostor's bytes were taken: {f:?}");
    complete_and_check(&b, &id, &dest, &body).await;
    let peers = b.c.peers_list().await.unwrap().peers;
    assert_eq!(peers[0].state, "bad", "{peers:?}");
    assert!(
        peers[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("TLS"),
        "{peers:?}"
    );
    // It saw TLS handshakes only: no request line, no credential it could replay elsewhere.
    let received = received.lock().unwrap().clone();
    assert!(!received.is_empty(), "B never tried the impostor");
    for first in &received {
        assert_eq!(first.first(), Some(&0x16), "not a TLS handshake record");
        let text = String::from_utf8_lossy(first);
        assert!(
            !text.contains("Ferry-HMAC") && !text.contains("ferry-peer/v1"),
            "the impostor read a request: {text:?}"
        );
    }
}

#[tokio::test]
async fn issue_11_replayed_request_is_refused() {
    let a = host("127.0.0.46", &[], "").await;
    let header = signed("HEAD", &absent(), now(), "replay000001");
    assert_eq!(raw(&a.addr, "HEAD", &absent(), Some(&header)).await.0, 404);
    let again = raw(&a.addr, "HEAD", &absent(), Some(&header)).await;
    assert_eq!(again, (401, vec![]), "the same credential a second time");
    assert_eq!(a.c.cache_info().await.unwrap().requests_refused, 1);
}

#[tokio::test]
async fn issue_11_clock_skew_over_60_s_is_refused() {
    let a = host("127.0.0.47", &[], "").await;
    // Offsets from the moment each credential is made (a whole-second clock and a loaded
    // machine would otherwise move a 61 s skew inside the window): 62 s is outside it.
    for (i, (skew, want)) in [(62, 401), (-62, 401), (299, 401), (30, 404), (-30, 404)]
        .into_iter()
        .enumerate()
    {
        let t = now();
        let ts = t.saturating_add_signed(skew);
        let header = signed("HEAD", &absent(), ts, &format!("skew0000000{i}"));
        let got = raw(&a.addr, "HEAD", &absent(), Some(&header)).await.0;
        assert_eq!(got, want, "a credential stamped {skew} s from now");
    }
}

#[tokio::test]
async fn issue_11_query_string_added_to_a_signed_request_is_refused() {
    let a = host("127.0.0.48", &[], "").await;
    let header = signed("HEAD", &absent(), now(), "query0000001");
    let modified = format!("{}?anything", absent());
    assert_eq!(raw(&a.addr, "HEAD", &modified, Some(&header)).await.0, 401);
    // The same credential on the path it was made for is fine (the refused one was not used).
    assert_eq!(raw(&a.addr, "HEAD", &absent(), Some(&header)).await.0, 404);
}

#[tokio::test]
async fn issue_11_300_idle_connections_do_not_stop_a_signed_head() {
    let a = host("127.0.0.49", &[], "").await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(&a.addr).await.unwrap());
    }
    let header = signed("HEAD", &absent(), now(), "idle00000001");
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        raw(&a.addr, "HEAD", &absent(), Some(&header)),
    )
    .await
    .expect("a signed HEAD is answered within 5 s despite 300 idle connections");
    assert_eq!(answer.0, 404);
    // The idle ones are closed by the server, not kept for ever.
    let mut first = idle.swap_remove(0);
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(15), first.read(&mut buf))
        .await
        .expect("an idle connection is closed within 15 s");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
}

#[tokio::test]
async fn issue_11_secret_file_readable_by_others_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("fleet.secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let lines = format!(
        "listen = \"127.0.0.50:0\"\nsecret_file = \"{}\"\n",
        secret.display()
    );
    let (_config_dir, config) = config_file(&lines);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferryd"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&secret.display().to_string())
            && err.contains("0644")
            && err.contains("chmod 600"),
        "{err}"
    );
    // Readable by its owner only, the same file starts the cache.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let h = start_host(&lines, &[]).await;
    assert!(h.c.cache_info().await.unwrap().enabled);
}
