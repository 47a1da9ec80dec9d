//! The peer cache between real `ferryd` processes on loopback addresses (127.0.0.x),
//! each with its own state dir and configuration file, against one origin on 127.0.0.1.
//!
//! Peers speak TLS with the fleet's key (`ferry_peer::tls`): the test acts as a fleet member
//! where it talks to a peer server itself ([`raw`]), and puts the fleet's TLS in front of the
//! plain test servers that stand in for misbehaving peers ([`tls_front`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_client::Client;
use ferry_proto::params::EventsFollowParams;
use ferry_proto::{Event, EventKind, JobState};
use ferry_testkit::content::pseudo_random;
use ferry_testkit::daemon::TestDaemon;
use ferry_testkit::http::{Behavior, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{WAIT, daemon_with, job_with, sha256_file, spec, wait_state};

pub(crate) const SECRET: &str = "peer-cache-test-fleet-secret";
pub(crate) const SIZE: usize = 3 * 1024 * 1024 + 17;

/// One Ferry host: a daemon serving peers on its own loopback address.
pub(crate) struct Host {
    pub(crate) d: TestDaemon,
    /// Holds the configuration file (a restart reads it again).
    _config: tempfile::TempDir,
    pub(crate) c: Client,
    /// `address:port` of its peer server.
    pub(crate) addr: String,
}

/// The fleet's TLS identity, as every host with [`SECRET`] derives it.
pub(crate) fn fleet() -> ferry_peer::tls::FleetTls {
    ferry_peer::tls::FleetTls::from_secret(SECRET.as_bytes()).unwrap()
}

/// A TLS connection to the peer server at `addr`, as a fleet member.
pub(crate) async fn member_connect(
    addr: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(fleet().client_config().unwrap()));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("peer.invalid").unwrap();
    connector.connect(name, tcp).await
}

/// Serves the fleet's TLS on a new port of 127.0.0.1 and relays each connection to `backend`
/// (a plain test server standing in for a peer).
pub(crate) async fn tls_front(backend: SocketAddr) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(fleet().server_config().unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// Writes a configuration file enabling the cache with `lines` (`key = value` lines) added.
pub(crate) fn config_file(lines: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferryd.toml");
    std::fs::write(&config, format!("[peer_cache]\nenabled = true\n{lines}")).unwrap();
    (dir, config)
}

/// Starts a daemon with the cache enabled by `lines`, plus `flags`.
pub(crate) async fn start_host(lines: &str, flags: &[&str]) -> Host {
    let (dir, config) = config_file(lines);
    let mut args = flags.to_vec();
    args.extend(["--config", config.to_str().unwrap()]);
    let d = daemon_with(&args);
    let c = d.client().await;
    let addr = c
        .cache_info()
        .await
        .unwrap()
        .listen
        .expect("listen address");
    Host {
        d,
        c,
        addr,
        _config: dir,
    }
}

/// A daemon serving peers on `ip` (any port) with static `peers`, the fleet secret, no size
/// floor, plus `extra` lines.
pub(crate) async fn host(ip: &str, peers: &[&str], extra: &str) -> Host {
    let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    // A loaded test machine can take longer than the default 500 ms for a TLS handshake and a
    // HEAD; a test about that timeout names its own.
    let timeout = if extra.contains("peer_timeout_ms") {
        ""
    } else {
        "peer_timeout_ms = 5000\n"
    };
    let lines = format!(
        "listen = \"{ip}:0\"\npeers = [{}]\nsecret = \"{SECRET}\"\nmin_file_size = 0\n{timeout}{extra}",
        peers.join(", ")
    );
    start_host(&lines, &[]).await
}

/// Completes the job and checks the delivered file is `body`.
pub(crate) async fn complete_and_check(h: &Host, id: &str, dest: &Path, body: &[u8]) {
    h.c.complete(id).await.unwrap();
    assert_eq!(sha256_file(dest), ferry_testkit::content::sha256_hex(body));
}

pub(crate) fn origin_file(server: &TestServer, path: &str, seed: u64) -> Vec<u8> {
    let body = pseudo_random(seed, SIZE);
    server.add_file(path, body.clone());
    body
}

/// Follows `job`'s events until one matches, returning it.
pub(crate) async fn wait_event(c: &Client, job: &str, what: impl Fn(&EventKind) -> bool) -> Event {
    c.follow_events(EventsFollowParams {
        after: Some(0),
        job_id: Some(job.into()),
    })
    .await
    .unwrap();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let Some(e) = c.next_event().await else {
                panic!("the event stream ended");
            };
            if what(&e.kind) {
                return e;
            }
        }
    })
    .await
    .expect("the event did not come");
    c.unfollow_events().await.unwrap();
    found
}

pub(crate) fn is_action(kind: &EventKind, want: &str) -> bool {
    matches!(kind, EventKind::PeerCache { action, .. } if action == want)
}

/// A `peer_cache` event's peer, detail and wait.
struct PeerEvent {
    peer: Option<String>,
    detail: Option<String>,
    waited_ms: u64,
}

fn peer_event(e: Event) -> PeerEvent {
    let EventKind::PeerCache {
        peer,
        detail,
        waited_ms,
        ..
    } = e.kind
    else {
        panic!("not a peer_cache event: {e:?}")
    };
    PeerEvent {
        peer,
        detail,
        waited_ms,
    }
}

/// Runs a one-file job on `h` to `transferred` and returns its id and destination.
pub(crate) async fn fetch(h: &Host, url: &str, name: &str) -> (String, PathBuf) {
    let dest = h.d.files_dir().join(name);
    let id = job_with(&h.c, vec![spec(url, &dest)]).await;
    h.c.resume(&id).await.unwrap();
    wait_state(&h.c, &id, JobState::Transferred).await;
    (id, dest)
}

/// Fetches, completes, and waits until the file is in `h`'s cache.
pub(crate) async fn fetch_and_publish(h: &Host, url: &str, name: &str) -> (String, PathBuf) {
    let (id, dest) = fetch(h, url, name).await;
    h.c.complete(&id).await.unwrap();
    wait_event(&h.c, &id, |k| is_action(k, "published")).await;
    (id, dest)
}

/// Host A (at `ips.0`) has fetched, completed and published `path` from a fresh origin; host B
/// (at `ips.1`) has A as its peer. Returns the origin, the file's bytes, A, B, and its URL.
pub(crate) async fn published_pair(
    ips: (&str, &str),
    path: &str,
    seed: u64,
) -> (TestServer, Vec<u8>, Host, Host, String, String) {
    let server = TestServer::start().await;
    let body = origin_file(&server, path, seed);
    let a = host(ips.0, &[], "").await;
    let b = host(ips.1, &[&a.addr], "").await;
    let url = server.url(path);
    let (a_job, _) = fetch_and_publish(&a, &url, "a.bin").await;
    (server, body, a, b, url, a_job)
}

pub(crate) fn body_gets(server: &TestServer, path: &str) -> usize {
    server
        .requests_for(path)
        .iter()
        .filter(|r| r.method == "GET")
        .count()
}

/// Body bytes the origin sent for `path`.
fn origin_bytes(server: &TestServer, path: &str) -> u64 {
    server
        .requests_for(path)
        .iter()
        .map(|r| r.body_bytes_sent)
        .sum()
}

/// What a host may take from the origin besides the body: one window to check a peer's copy.
const SPOT: u64 = ferry_fetch::SPOT_CHECK_BYTES;

#[tokio::test]
async fn issue_6_second_host_downloads_from_the_first_and_the_origin_sends_the_body_once() {
    let server = TestServer::start().await;
    let body = origin_file(&server, "/update.bin", 1);
    let a = host("127.0.0.2", &[], "").await;
    let b = host("127.0.0.3", &[&a.addr], "").await;
    let url = server.url("/update.bin");

    fetch_and_publish(&a, &url, "a.bin").await;
    let listed = a.c.cache_list().await.unwrap().entries;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].url.as_str(), listed[0].size),
        (url.as_str(), SIZE as u64)
    );

    let (id, dest) = fetch(&b, &url, "b.bin").await;
    let f = &b.c.files(&id).await.unwrap()[0];
    assert!(f.from_peer, "{f:?}");
    assert_eq!((f.bytes_from_peers, f.bytes_from_origin), (SIZE as u64, 0));
    // The origin sent the body once (to A); B asked it which version it serves and compared
    // one window of the peer's copy with it.
    let sent = origin_bytes(&server, "/update.bin");
    assert!(
        (SIZE as u64..=SIZE as u64 + SPOT).contains(&sent),
        "the origin sent {sent} bytes"
    );
    assert!(
        server
            .requests_for("/update.bin")
            .iter()
            .any(|r| r.method == "HEAD")
    );
    complete_and_check(&b, &id, &dest, &body).await;
    let peers = b.c.peers_list().await.unwrap().peers;
    assert_eq!(peers.len(), 1);
    assert_eq!((peers[0].state.as_str(), peers[0].files_fetched), ("ok", 1));
    // And A counts what it served.
    let info = a.c.cache_info().await.unwrap();
    assert_eq!(info.bytes_served, SIZE as u64);
}

#[tokio::test]
async fn issue_6_with_the_owners_sha256_the_origin_sends_no_body_at_all() {
    let (server, body, _a, b, url, _) =
        published_pair(("127.0.0.24", "127.0.0.25"), "/h.bin", 15).await;
    let dest = b.d.files_dir().join("b.bin");
    let mut file = spec(&url, &dest);
    file.sha256 = Some(ferry_testkit::content::sha256_hex(&body));
    let id = job_with(&b.c, vec![file]).await;
    b.c.resume(&id).await.unwrap();
    wait_state(&b.c, &id, JobState::Transferred).await;
    assert_eq!(
        b.c.files(&id).await.unwrap()[0].bytes_from_peers,
        SIZE as u64
    );
    // The SHA-256 proves the content: no sample of the origin's bytes is needed.
    assert_eq!(origin_bytes(&server, "/h.bin"), SIZE as u64);
}

#[tokio::test]
async fn issue_6_a_corrupting_peer_is_detected_and_the_file_comes_from_the_origin() {
    let (server, body, a, b, url, a_job) =
        published_pair(("127.0.0.4", "127.0.0.5"), "/c.bin", 2).await;
    // A's disk now returns other bytes of the same size for that content.
    let key = a.c.cache_list().await.unwrap().entries[0].key.clone();
    let cached = a.d.state_dir.join("cache").join(&key);
    let mut bytes = std::fs::read(&cached).unwrap();
    bytes[SIZE / 2] ^= 0xff;
    std::fs::write(&cached, &bytes).unwrap();

    let (id, dest) = fetch(&b, &url, "b.bin").await;
    let f = &b.c.files(&id).await.unwrap()[0];
    assert!(!f.from_peer, "the peer's bytes must be gone: {f:?}");
    assert_eq!((f.bytes_from_peers, f.bytes_from_origin), (0, SIZE as u64));
    assert_eq!(body_gets(&server, "/c.bin"), 2, "B fell back to the origin");
    let failed = peer_event(wait_event(&b.c, &id, |k| is_action(k, "peer_failed")).await);
    assert_eq!(failed.peer.as_deref(), Some(a.addr.as_str()));
    assert!(failed.detail.unwrap_or_default().contains("SHA-256"));
    let peers = b.c.peers_list().await.unwrap().peers;
    assert_eq!(peers[0].state, "bad", "{peers:?}");
    // B told A, which checked its copy and evicted it.
    let evicted = peer_event(wait_event(&a.c, &a_job, |k| is_action(k, "evicted")).await);
    assert_eq!(evicted.detail.as_deref(), Some("corrupt"));
    assert!(a.c.cache_list().await.unwrap().entries.is_empty());
    assert!(!a.d.state_dir.join("cache").join(&key).exists());
    complete_and_check(&b, &id, &dest, &body).await;
}

#[tokio::test]
async fn issue_6_a_dead_peer_costs_under_a_second_before_the_origin() {
    let server = TestServer::start().await;
    let body = origin_file(&server, "/d.bin", 3);
    // Accepts connections (the kernel does) but never answers: the worst kind of dead.
    let silent = std::net::TcpListener::bind("127.0.0.6:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let b = host("127.0.0.7", &[&silent_addr], "peer_timeout_ms = 500\n").await;
    let (id, dest) = fetch(&b, &server.url("/d.bin"), "b.bin").await;
    let failed = peer_event(wait_event(&b.c, &id, |k| is_action(k, "peer_failed")).await);
    assert_eq!(failed.peer.as_deref(), Some(silent_addr.as_str()));
    assert!(
        failed.waited_ms < 1000,
        "the dead peer cost {} ms",
        failed.waited_ms
    );
    assert!(!b.c.files(&id).await.unwrap()[0].from_peer);
    complete_and_check(&b, &id, &dest, &body).await;
    drop(silent);
}

/// Sends one raw HTTP/1.1 request over the fleet's TLS (as a member) and returns the status and
/// body; the answer must come within 10 s.
pub(crate) async fn raw(
    addr: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, Vec<u8>) {
    let auth = auth
        .map(|a| format!("authorization: {a}\r\n"))
        .unwrap_or_default();
    let request =
        format!("{method} {path} HTTP/1.1\r\nhost: peer\r\n{auth}connection: close\r\n\r\n");
    let exchange = async {
        let mut s = member_connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        // The server may close without a TLS close_notify: what arrived is the answer.
        let _ = s.read_to_end(&mut out).await;
        out
    };
    let out = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the peer server answered within 10 s");
    let text = String::from_utf8_lossy(&out);
    let status = text[9..12].parse().unwrap();
    let body_at = text.find("\r\n\r\n").unwrap() + 4;
    (status, out[body_at..].to_vec())
}

#[tokio::test]
async fn issue_6_requests_without_the_fleet_secret_get_nothing() {
    let server = TestServer::start().await;
    origin_file(&server, "/s.bin", 4);
    let a = host("127.0.0.8", &[], "").await;
    fetch_and_publish(&a, &server.url("/s.bin"), "a.bin").await;
    let key = a.c.cache_list().await.unwrap().entries[0].key.clone();
    let path = ferry_peer::wire::content_path(&key);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (addr, p) = (a.addr.clone(), path.clone());
    let sign = |secret: &[u8], path: &str, nonce: &str| {
        ferry_peer::auth::sign(secret, "GET", path, now, nonce)
    };
    let wrong = sign(b"another fleet's secret value", &path, "nonce0001");
    let right = sign(SECRET.as_bytes(), &path, "nonce0002");
    let replayed_elsewhere = sign(SECRET.as_bytes(), "/x", "nonce0003");
    let answers = [
        raw(&addr, "GET", &p, None).await,
        raw(&addr, "HEAD", &p, None).await,
        raw(&addr, "GET", &p, Some(&wrong)).await,
        raw(&addr, "GET", &p, Some(&replayed_elsewhere)).await,
        raw(&addr, "GET", &p, Some("Basic dXNlcjpwYXNz")).await,
        raw(&addr, "GET", &p, Some(&right)).await,
    ];
    for (status, body) in &answers[..5] {
        assert_eq!(*status, 401);
        assert!(
            body.is_empty(),
            "a refused request got {} bytes",
            body.len()
        );
    }
    assert_eq!(answers[5].0, 200, "the right secret is served");
    assert_eq!(answers[5].1.len(), SIZE);
    assert_eq!(a.c.cache_info().await.unwrap().requests_refused, 5);

    // A host with another secret is refused, marks the peer bad and uses the origin.
    let lines = format!(
        "listen = \"127.0.0.9:0\"\npeers = [\"{}\"]\n\
         secret = \"not-the-fleet-secret-at-all\"\nmin_file_size = 0\n",
        a.addr
    );
    let stranger = start_host(&lines, &[]).await;
    let (id, _) = fetch(&stranger, &server.url("/s.bin"), "x.bin").await;
    assert!(!stranger.c.files(&id).await.unwrap()[0].from_peer);
    let peers = stranger.c.peers_list().await.unwrap().peers;
    assert_eq!(peers[0].state, "bad");
    assert!(
        peers[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("credential"),
        "{peers:?}"
    );
}

#[tokio::test]
async fn issue_6_content_the_host_never_validated_is_not_served() {
    let server = TestServer::start().await;
    origin_file(&server, "/n.bin", 5);
    let a = host("127.0.0.10", &[], "").await;
    let b = host("127.0.0.11", &[&a.addr], "").await;
    let url = server.url("/n.bin");
    // A has every byte, but its application never validated them (no complete).
    fetch(&a, &url, "a.bin").await;
    assert!(a.c.cache_list().await.unwrap().entries.is_empty());
    let (id, _) = fetch(&b, &url, "b.bin").await;
    assert!(!b.c.files(&id).await.unwrap()[0].from_peer);
    assert_eq!(body_gets(&server, "/n.bin"), 2);
    // Missing content is no fault of the peer.
    assert_eq!(b.c.peers_list().await.unwrap().peers[0].state, "ok");
}

#[tokio::test]
async fn issue_6_rejected_peer_content_is_fetched_again_from_the_origin() {
    let (server, body, _a, b, url, _) =
        published_pair(("127.0.0.12", "127.0.0.13"), "/v.bin", 6).await;
    let (id, dest) = fetch(&b, &url, "b.bin").await;
    assert!(b.c.files(&id).await.unwrap()[0].from_peer);
    // B's application rejects it: BITS re-downloads from the origin, no error.
    let f = b.c.set_validation(&id, 0, false).await.unwrap();
    assert!(!f.transferred && !f.from_peer, "{f:?}");
    wait_state(&b.c, &id, JobState::Transferred).await;
    let f = &b.c.files(&id).await.unwrap()[0];
    assert_eq!((f.from_peer, f.bytes_from_origin), (false, SIZE as u64));
    assert_eq!(origin_bytes(&server, "/v.bin"), 2 * SIZE as u64 + SPOT);
    let events =
        b.c.read_events(ferry_proto::params::EventsReadParams {
            after: None,
            job_id: Some(id.clone()),
            limit: None,
        })
        .await
        .unwrap()
        .events;
    let transferred = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::FileTransferred { file_index: 0 }))
        .count();
    assert_eq!(
        transferred, 2,
        "file_transferred fires again after the refetch"
    );
    assert_eq!(b.c.peers_list().await.unwrap().peers[0].state, "bad");
    complete_and_check(&b, &id, &dest, &body).await;
}

#[tokio::test]
async fn issue_6_eviction_by_size_and_by_age() {
    let server = TestServer::start().await;
    origin_file(&server, "/e1.bin", 7);
    origin_file(&server, "/e2.bin", 8);
    // Room for one file only.
    let limit = SIZE as u64 * 3 / 2;
    let a = host("127.0.0.14", &[], &format!("max_size_bytes = {limit}\n")).await;
    let (first, _) = fetch_and_publish(&a, &server.url("/e1.bin"), "1.bin").await;
    fetch_and_publish(&a, &server.url("/e2.bin"), "2.bin").await;
    let evicted = peer_event(wait_event(&a.c, &first, |k| is_action(k, "evicted")).await);
    assert_eq!(evicted.detail.as_deref(), Some("size"));
    let left = a.c.cache_list().await.unwrap().entries;
    assert_eq!(left.len(), 1);
    assert!(left[0].url.ends_with("/e2.bin"));
    let info = a.c.cache_info().await.unwrap();
    assert_eq!((info.entries, info.used_bytes), (1, SIZE as u64));
    assert_eq!(
        cache_files(&a.d.state_dir),
        1,
        "the evicted content is deleted"
    );

    // Entries unused for longer than max_age_s leave by themselves.
    let b = host("127.0.0.15", &[], "max_age_s = 1\n").await;
    let (id, _) = fetch_and_publish(&b, &server.url("/e1.bin"), "1.bin").await;
    let evicted = peer_event(wait_event(&b.c, &id, |k| is_action(k, "evicted")).await);
    assert_eq!(evicted.detail.as_deref(), Some("age"));
    assert!(b.c.cache_list().await.unwrap().entries.is_empty());
    assert_eq!(cache_files(&b.d.state_dir), 0);
}

fn cache_files(state_dir: &Path) -> usize {
    std::fs::read_dir(state_dir.join("cache")).unwrap().count()
}

#[tokio::test]
async fn issue_6_the_cache_survives_a_restart_and_is_off_by_default() {
    let server = TestServer::start().await;
    origin_file(&server, "/r.bin", 9);
    let mut a = host("127.0.0.16", &[], "").await;
    fetch_and_publish(&a, &server.url("/r.bin"), "a.bin").await;
    a.d.restart();
    let c = a.d.client().await;
    let listed = c.cache_list().await.unwrap();
    assert_eq!((listed.entries.len(), listed.enabled), (1, Some(true)));

    // Without a configuration: no cache, no peer server, and the job API says so.
    let plain = crate::support::daemon();
    let c = plain.client().await;
    let info = c.cache_info().await.unwrap();
    assert!(!info.enabled && info.listen.is_none());
    let listed = c.cache_list().await.unwrap();
    assert_eq!((listed.entries.len(), listed.enabled), (0, Some(false)));
    assert!(!c.peers_list().await.unwrap().enabled);
}

#[tokio::test]
async fn issue_6_what_is_published_and_which_jobs_ask_peers() {
    let server = TestServer::start().await;
    origin_file(&server, "/private.bin", 12);
    origin_file(&server, "/public.bin", 13);
    let a = host("127.0.0.19", &[], "").await;
    // A job that authenticates to its origin: its content may be private, so never shared.
    let dest = a.d.files_dir().join("private.bin");
    let private = job_with(&a.c, vec![spec(&server.url("/private.bin"), &dest)]).await;
    a.c.set(ferry_proto::params::SetParams {
        job_id: private.clone(),
        credentials: Some(Some(ferry_proto::params::Credentials {
            scheme: "basic".into(),
            user: "u".into(),
            password: "p".into(),
        })),
        ..Default::default()
    })
    .await
    .unwrap();
    a.c.resume(&private).await.unwrap();
    wait_state(&a.c, &private, JobState::Transferred).await;
    a.c.complete(&private).await.unwrap();
    // Validation alone (before complete) publishes, from the staging file.
    let (public, _) = fetch(&a, &server.url("/public.bin"), "public.bin").await;
    a.c.set_validation(&public, 0, true).await.unwrap();
    wait_event(&a.c, &public, |k| is_action(k, "published")).await;
    let entries = a.c.cache_list().await.unwrap().entries;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].url.ends_with("/public.bin"));

    // A job with peer_caching off never asks peers, even when one holds its file.
    let b = host("127.0.0.20", &[&a.addr], "").await;
    let dest = b.d.files_dir().join("b.bin");
    let id = job_with(&b.c, vec![spec(&server.url("/public.bin"), &dest)]).await;
    b.c.set(ferry_proto::params::SetParams {
        job_id: id.clone(),
        peer_caching: Some(false),
        ..Default::default()
    })
    .await
    .unwrap();
    b.c.resume(&id).await.unwrap();
    wait_state(&b.c, &id, JobState::Transferred).await;
    assert!(!b.c.files(&id).await.unwrap()[0].from_peer);
    assert_eq!(b.c.peers_list().await.unwrap().peers[0].state, "unknown");
    assert_eq!(a.c.cache_info().await.unwrap().bytes_served, 0);
}

#[tokio::test]
async fn issue_6_a_busy_peer_is_waited_for_not_marked_bad() {
    let server = TestServer::start().await;
    origin_file(&server, "/busy.bin", 14);
    let url = server.url("/busy.bin");
    // One upload at a time, slowly: the second host finds it busy (503).
    let a = host(
        "127.0.0.21",
        &[],
        &format!("max_uploads = 1\nupload_limit_bps = {}\n", SIZE as u64 * 2),
    )
    .await;
    fetch_and_publish(&a, &url, "a.bin").await;
    let (b, c) = (
        host("127.0.0.22", &[&a.addr], "").await,
        host("127.0.0.23", &[&a.addr], "").await,
    );
    let (rb, rc) = tokio::join!(fetch(&b, &url, "b.bin"), fetch(&c, &url, "c.bin"));
    for (h, (id, _)) in [(&b, rb), (&c, rc)] {
        let f = &h.c.files(&id).await.unwrap()[0];
        assert_eq!((f.bytes_from_peers, f.bytes_from_origin), (SIZE as u64, 0));
        assert_eq!(h.c.peers_list().await.unwrap().peers[0].state, "ok");
    }
    let sent = origin_bytes(&server, "/busy.bin");
    assert!(
        sent <= SIZE as u64 + 2 * SPOT,
        "the origin sent {sent} bytes"
    );
    assert_eq!(
        a.c.cache_info().await.unwrap().bytes_served,
        2 * SIZE as u64
    );
}

#[tokio::test]
async fn issue_6_system_mode_publishes_as_the_owner_and_shows_each_user_their_own_entries() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: the system-mode peer-cache test needs root to act as nobody");
        return;
    }
    let server = TestServer::start().await;
    origin_file(&server, "/theirs.bin", 16);
    origin_file(&server, "/mine.bin", 17);
    let lines = format!("listen = \"127.0.0.26:0\"\nsecret = \"{SECRET}\"\nmin_file_size = 0\n");
    let root = start_host(&lines, &["--system"]).await;
    let nobody = |call: serde_json::Value| {
        let answers = crate::access::calls_as_nobody(&root.d.socket, &[call]);
        answers[0]["result"].clone()
    };
    // nobody's job, delivered into a directory only nobody may write: the daemon reads it
    // for the cache as nobody.
    let home = root.d.dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let created = nobody(serde_json::json!({"method": "job.create", "params": {
        "display_name": "n",
        "files": [{"remote_url": server.url("/theirs.bin"), "local_path": home.join("t.bin")}]}}));
    let theirs = created["job_id"].as_str().unwrap().to_owned();
    nobody(serde_json::json!({"method": "job.resume", "params": {"job_id": theirs}}));
    wait_state(&root.c, &theirs, JobState::Transferred).await;
    nobody(serde_json::json!({"method": "job.complete", "params": {"job_id": theirs}}));
    wait_event(&root.c, &theirs, |k| is_action(k, "published")).await;
    fetch_and_publish(&root, &server.url("/mine.bin"), "m.bin").await;

    // Each user sees (and clears) only what their own jobs published; root sees everything.
    assert_eq!(root.c.cache_list().await.unwrap().entries.len(), 2);
    let listed = nobody(serde_json::json!({"method": "cache.list", "params": {}}));
    let entries = listed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{listed}");
    assert_eq!(entries[0]["owner_uid"], 65534);
    let cleared = nobody(serde_json::json!({"method": "cache.clear", "params": {}}));
    assert_eq!(cleared["deleted"], 1);
    let left = root.c.cache_list().await.unwrap().entries;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].owner_uid, 0);
}

/// A stand-in peer: a plain test server (which checks no credential) behind the fleet's TLS.
pub(crate) struct FakePeer {
    _server: TestServer,
    front: SocketAddr,
}

impl FakePeer {
    /// Where hosts reach it.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.front
    }
}

/// A stand-in peer holding `content` under the key of `origin`'s current version of `path`,
/// advertising `content`'s SHA-256 and piece hashes.
async fn fake_peer(origin: &TestServer, path: &str, content: &[u8], b: Behavior) -> FakePeer {
    lying_peer(origin, path, content, content, b).await
}

/// A stand-in peer serving `content` under the key of `origin`'s current version of `path`,
/// while advertising the SHA-256 and piece hashes of `advertised` (of the same size).
pub(crate) async fn lying_peer(
    origin: &TestServer,
    path: &str,
    advertised: &[u8],
    content: &[u8],
    b: Behavior,
) -> FakePeer {
    let etag = origin.etag(path).unwrap();
    let key = ferry_peer::key::content_key(
        &origin.url(path),
        ferry_peer::key::Validator::ETag(&etag),
        content.len() as u64,
    )
    .unwrap();
    let peer = TestServer::start().await;
    let at = ferry_peer::wire::content_path(&key);
    peer.add_file(&at, content.to_vec());
    let mut b = b;
    b.extra_headers = vec![
        (
            "x-ferry-sha256".into(),
            ferry_testkit::content::sha256_hex(advertised),
        ),
        ("x-ferry-size".into(), advertised.len().to_string()),
    ];
    peer.set_behavior(&at, b);
    peer.add_file(
        &ferry_peer::wire::pieces_path(&key),
        ferry_peer::pieces::list_of(advertised).into_bytes(),
    );
    let front = tls_front(peer.addr()).await;
    FakePeer {
        _server: peer,
        front,
    }
}

#[tokio::test]
async fn issue_6_a_peer_that_stalls_mid_file_hands_the_rest_to_the_origin() {
    let origin = TestServer::start().await;
    let body = origin_file(&origin, "/p.bin", 10);
    let cut = SIZE as u64 / 3;
    let stall = Behavior {
        stall_after: Some(cut),
        ..Behavior::default()
    };
    let peer = fake_peer(&origin, "/p.bin", &body, stall).await;
    let b = host("127.0.0.17", &[&peer.addr().to_string()], "").await;
    let (id, dest) = fetch(&b, &origin.url("/p.bin"), "b.bin").await;
    let f = &b.c.files(&id).await.unwrap()[0];
    assert!(f.from_peer);
    assert_eq!(
        (f.bytes_from_peers, f.bytes_from_origin),
        (cut, SIZE as u64 - cut)
    );
    // The origin continued where the peer stopped, for that version only.
    let etag = origin.etag("/p.bin");
    let resumed = origin
        .requests_for("/p.bin")
        .into_iter()
        .find(|r| r.method == "GET");
    let resumed = resumed.expect("a GET to the origin");
    assert_eq!(resumed.range, Some(format!("bytes={cut}-")));
    assert_eq!(resumed.if_range, etag);
    let failed = peer_event(wait_event(&b.c, &id, |k| is_action(k, "peer_failed")).await);
    assert!(failed.detail.unwrap_or_default().contains("no data"));
    complete_and_check(&b, &id, &dest, &body).await;
}

/// A peer that keeps sending, but too slowly, is left for the origin (DO's minimum QoS).
#[tokio::test]
async fn a_peer_slower_than_min_peer_rate_hands_the_rest_to_the_origin() {
    let origin = TestServer::start().await;
    let body = origin_file(&origin, "/slow.bin", 14);
    let drip = Behavior {
        rate_bytes_per_sec: Some(64 * 1024),
        ..Behavior::default()
    };
    let peer = fake_peer(&origin, "/slow.bin", &body, drip).await;
    let b = host("127.0.0.26", &[&peer.addr().to_string()], "").await;
    let (id, dest) = fetch(&b, &origin.url("/slow.bin"), "b.bin").await;
    let f = &b.c.files(&id).await.unwrap()[0];
    assert!(f.bytes_from_peers > 0 && f.bytes_from_origin > 0, "{f:?}");
    assert_eq!(f.bytes_from_peers + f.bytes_from_origin, SIZE as u64);
    let resumed = origin
        .requests_for("/slow.bin")
        .into_iter()
        .find(|r| r.method == "GET")
        .expect("a GET to the origin");
    assert_eq!(
        resumed.range,
        Some(format!("bytes={}-", f.bytes_from_peers))
    );
    let failed = peer_event(wait_event(&b.c, &id, |k| is_action(k, "peer_failed")).await);
    assert!(
        failed.detail.unwrap_or_default().contains("slower than"),
        "the event says why"
    );
    assert_eq!(b.c.peers_list().await.unwrap().peers[0].state, "bad");
    complete_and_check(&b, &id, &dest, &body).await;
}

#[tokio::test]
async fn issue_6_a_peer_serving_another_version_is_caught_by_the_origin_spot_check() {
    let origin = TestServer::start().await;
    let body = origin_file(&origin, "/o.bin", 11);
    // Self-consistent bytes and SHA-256, but not what the origin serves under that version.
    let other = pseudo_random(99, SIZE);
    let peer = fake_peer(&origin, "/o.bin", &other, Behavior::default()).await;
    let b = host("127.0.0.18", &[&peer.addr().to_string()], "").await;
    let (id, dest) = fetch(&b, &origin.url("/o.bin"), "b.bin").await;
    let f = &b.c.files(&id).await.unwrap()[0];
    assert_eq!((f.from_peer, f.bytes_from_origin), (false, SIZE as u64));
    let failed = peer_event(wait_event(&b.c, &id, |k| is_action(k, "peer_failed")).await);
    assert!(
        failed
            .detail
            .unwrap_or_default()
            .contains("another version")
    );
    assert_eq!(b.c.peers_list().await.unwrap().peers[0].state, "bad");
    complete_and_check(&b, &id, &dest, &body).await;
}

/// A network namespace of our own (only `lo`, multicast on), deleted on drop: mDNS traffic
/// in it never reaches a real network.
struct Netns(String);

impl Netns {
    fn create() -> Option<Netns> {
        let name = format!("ferry-mdns-{}", std::process::id());
        let run = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !run(&["netns", "add", &name]) {
            eprintln!("SKIPPED: cannot create a network namespace (`ip netns add` failed)");
            return None;
        }
        let ns = Netns(name);
        for cmd in [
            "ip link set lo up",
            "ip link set lo multicast on",
            "ip route add 224.0.0.0/4 dev lo",
        ] {
            let mut args = vec!["netns", "exec", ns.0.as_str()];
            args.extend(cmd.split(' '));
            assert!(run(&args), "{cmd} failed in the test namespace");
        }
        Some(ns)
    }

    /// A script that runs this package's `ferryd` inside the namespace (`ip netns exec`
    /// execs it, so the daemon keeps the script's pid).
    fn ferryd(&self, dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("ferryd-in-netns");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n",
                self.0,
                env!("CARGO_BIN_EXE_ferryd")
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[tokio::test]
async fn issue_6_mdns_discovery_in_a_private_network_namespace() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: the mDNS test needs root to create a network namespace");
        return;
    }
    let Some(ns) = Netns::create() else { return };
    let (dir, config) = config_file(&format!(
        "listen = \"127.0.0.1:0\"\ndiscovery = \"mdns\"\nsecret = \"{SECRET}\"\n"
    ));
    let bin = ns.ferryd(dir.path());
    let args = ["--config", config.to_str().unwrap()];
    let (a, b) = (
        TestDaemon::start_with(&bin, &args),
        TestDaemon::start_with(&bin, &args),
    );
    let (ca, cb) = (a.client().await, b.client().await);
    let addr_a = ca.cache_info().await.unwrap().listen.unwrap();
    let addr_b = cb.cache_info().await.unwrap().listen.unwrap();
    assert_ne!(addr_a, addr_b);
    // Each finds the other (and never itself) through mDNS alone: no static peers.
    for (c, other) in [(&ca, &addr_b), (&cb, &addr_a)] {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let peers = c.peers_list().await.unwrap().peers;
                if peers.iter().any(|p| &p.addr == other) {
                    return peers;
                }
                // mDNS announcements are periodic; there is no event to wait on.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the other daemon was not discovered");
        assert!(found.iter().all(|p| p.source == "mdns"), "{found:?}");
        assert_eq!(found.len(), 1, "only the other daemon: {found:?}");
    }
    drop((a, b));
    drop(ns);
}
