//! A hostile proxy in front of the real servers: cuts, lies, forgets, refuses. The file that
//! lands is byte-identical to the source, or nothing lands.

use std::sync::Arc;

use ferry_fetch::FetchErrorKind;
use ferry_send::{Protocol, ProtocolChoice};
use tokio_util::sync::CancellationToken;

use crate::support::*;

const BITS: ProtocolChoice = ProtocolChoice::Only(Protocol::Bits);

async fn bits_through_proxy(dir_keys: &str) -> (UploadServer, Proxy) {
    let srv = UploadServer::start_with(dir_keys);
    let proxy = Proxy::start(srv.addr.to_string()).await;
    (srv, proxy)
}

/// An error Ack with this status and headers besides `BITS-Packet-Type: Ack`.
fn ack(status: u16, headers: &[(&'static str, &str)]) -> Fault {
    let mut h = vec![("BITS-Packet-Type", "Ack".to_owned())];
    h.extend(headers.iter().map(|(n, v)| (*n, (*v).to_owned())));
    Fault::Answer(status, h)
}

fn url(p: &Proxy, name: &str) -> String {
    format!("http://{}/upload/{name}", p.addr)
}

#[tokio::test]
async fn issue_14_bits_cuts_mid_fragment_resume_and_land_identical() {
    let (srv, proxy) = bits_through_proxy("").await;
    let dir = tempfile::tempdir().unwrap();
    let data = content(1_500_000, 7);
    let path = source(dir.path(), "cut.bin", &data);
    let mut req = request(&url(&proxy, "cut.bin"), &path, BITS);
    req.fragment_size = 40_000;
    // Twenty cuts at different points of different fragments.
    for i in 0..20 {
        proxy.add(Rule::new("BITS_POST", Some("Fragment"), Fault::Cut(1 + i * 1999)).skip(i % 3));
    }
    let c = Arc::default();
    let (r, transient) = send_until_done(&sender(), req, &c, 40).await;
    r.unwrap();
    assert!(proxy.rules.lock().unwrap().is_empty(), "every cut happened");
    assert_eq!(transient.len(), 20);
    assert!(
        transient
            .iter()
            .all(|e| e.kind == FetchErrorKind::ConnectionReset
                || e.kind == FetchErrorKind::MalformedResponse),
        "{transient:?}"
    );
    assert_eq!(srv.landed("cut.bin").unwrap(), data);
    assert_eq!(
        c.lock().unwrap().created.len(),
        1,
        "one session for the whole upload"
    );
    assert_eq!(srv.sessions(), 0);
}

#[tokio::test]
async fn issue_14_bits_an_offset_lower_than_true_resends_and_lands_identical() {
    let (srv, proxy) = bits_through_proxy("").await;
    let dir = tempfile::tempdir().unwrap();
    let data = content(300_000, 8);
    let path = source(dir.path(), "low.bin", &data);
    let mut req = request(&url(&proxy, "low.bin"), &path, BITS);
    req.fragment_size = 50_000;
    proxy.add(
        Rule::new("BITS_POST", Some("Fragment"), Fault::Lie(-30_000))
            .skip(2)
            .times(2),
    );
    let c = Arc::default();
    let (r, _) = send_until_done(&sender(), req, &c, 3).await;
    r.unwrap();
    assert_eq!(srv.landed("low.bin").unwrap(), data);
    assert_eq!(srv.sessions(), 0);
}

#[tokio::test]
async fn issue_14_bits_an_offset_higher_than_sent_is_fatal_and_nothing_lands() {
    let (srv, proxy) = bits_through_proxy("").await;
    let dir = tempfile::tempdir().unwrap();
    let data = content(300_000, 9);
    let path = source(dir.path(), "high.bin", &data);
    let mut req = request(&url(&proxy, "high.bin"), &path, BITS);
    req.fragment_size = 50_000;
    proxy.add(Rule::new("BITS_POST", Some("Fragment"), Fault::Lie(60_000)).skip(1));
    let c = Arc::default();
    let (r, _) = send_until_done(&sender(), req, &c, 3).await;
    let e = r.unwrap_err();
    assert!(!e.transient);
    assert_eq!(e.kind, FetchErrorKind::InvalidServerResponse, "{e:?}");
    assert!(e.description.contains("only sent"), "{}", e.description);
    assert!(srv.landed("high.bin").is_none());
    // The session was cancelled so nothing can land later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while srv.sessions() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the lying session was not cancelled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn issue_14_bits_a_forgotten_session_starts_a_new_one_from_zero() {
    let (srv, proxy) = bits_through_proxy("").await;
    let dir = tempfile::tempdir().unwrap();
    let data = content(200_000, 10);
    let path = source(dir.path(), "lost.bin", &data);
    let mut req = request(&url(&proxy, "lost.bin"), &path, BITS);
    req.fragment_size = 50_000;
    // The spelling of old implementations: BITS-Error without -Code, no 0x.
    proxy.add(
        Rule::new(
            "BITS_POST",
            Some("Fragment"),
            ack(500, &[("BITS-Error", "8020001F")]),
        )
        .skip(2),
    );
    let c = Arc::default();
    let (r, _) = send_until_done(&sender(), req, &c, 3).await;
    r.unwrap();
    assert_eq!(srv.landed("lost.bin").unwrap(), data);
    let c = c.lock().unwrap();
    assert_eq!(c.created.len(), 2);
    // The new session started from zero: its first fragment is bytes 0-…
    let creates: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.header("BITS-Packet-Type").as_deref() == Some("Fragment"))
        .map(|s| s.header("Content-Range").unwrap())
        .collect();
    assert_eq!(
        creates.iter().filter(|r| r.starts_with("bytes 0-")).count(),
        2,
        "{creates:?}"
    );
}

#[tokio::test]
async fn issue_14_bits_a_session_forgotten_every_time_fails_bounded() {
    let (srv, proxy) = bits_through_proxy("").await;
    let dir = tempfile::tempdir().unwrap();
    let path = source(dir.path(), "never.bin", &content(100_000, 11));
    let req = request(&url(&proxy, "never.bin"), &path, BITS);
    proxy.add(
        Rule::new(
            "BITS_POST",
            Some("Fragment"),
            ack(500, &[("BITS-Error-Code", "0x8020001F")]),
        )
        .times(100),
    );
    let c = Arc::default();
    let e = send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(!e.transient);
    assert!(
        e.description.contains("lost the upload session"),
        "{}",
        e.description
    );
    assert_eq!(c.lock().unwrap().created.len(), 3);
    assert!(srv.landed("never.bin").is_none());
}

#[tokio::test]
async fn issue_14_bits_413_from_a_proxy_shrinks_and_403_is_fatal() {
    let (srv, proxy) = bits_through_proxy("").await;
    let dir = tempfile::tempdir().unwrap();
    let data = content(100_000, 12);
    let path = source(dir.path(), "s.bin", &data);
    let mut req = request(&url(&proxy, "s.bin"), &path, BITS);
    req.fragment_size = 64 * 1024;
    proxy.add(Rule::new("BITS_POST", Some("Fragment"), Fault::Answer(413, vec![])).times(2));
    let c = Arc::default();
    send_once(&sender(), &req, &c, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(srv.landed("s.bin").unwrap(), data);
    let sizes: Vec<u64> = proxy
        .seen()
        .iter()
        .filter(|s| s.header("BITS-Packet-Type").as_deref() == Some("Fragment"))
        .map(|s| s.body.len() as u64)
        .collect();
    assert_eq!(&sizes[..3], &[65536, 32768, 16384], "{sizes:?}");

    let path = source(dir.path(), "f.bin", &data);
    let req = request(&url(&proxy, "f.bin"), &path, BITS);
    proxy.add(Rule::new(
        "BITS_POST",
        Some("Create-Session"),
        ack(403, &[("BITS-Error-Code", "0x80070005")]),
    ));
    let e = send_once(&sender(), &req, &Arc::default(), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(!e.transient && e.http_status == Some(403), "{e:?}");
    assert!(srv.landed("f.bin").is_none());
}

#[tokio::test]
async fn issue_14_bits_503_is_transient_with_the_servers_delay() {
    let (srv, proxy) = bits_through_proxy("").await;
    let dir = tempfile::tempdir().unwrap();
    let data = content(100_000, 13);
    let path = source(dir.path(), "busy.bin", &data);
    let req = request(&url(&proxy, "busy.bin"), &path, BITS);
    proxy.add(Rule::new(
        "BITS_POST",
        Some("Fragment"),
        ack(
            503,
            &[("BITS-Error-Code", "0x80004005"), ("Retry-After", "7")],
        ),
    ));
    let c = Arc::default();
    let (r, transient) = send_until_done(&sender(), req, &c, 3).await;
    r.unwrap();
    assert_eq!(transient.len(), 1);
    assert_eq!(transient[0].http_status, Some(503));
    assert_eq!(
        transient[0].retry_after,
        Some(std::time::Duration::from_secs(7))
    );
    assert_eq!(srv.landed("busy.bin").unwrap(), data);
    assert_eq!(c.lock().unwrap().created.len(), 1);
}
