//! The client's BITS packets against the golden transcripts built from [MC-BUP] §4.1
//! (`crates/ferry-upload-server/tests/upload/golden/`): the same packets in the same order,
//! with the same protocol headers in the same order and the same bodies.

use std::sync::Arc;

use ferry_send::{Protocol, ProtocolChoice};
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// The client requests of a transcript: (head lines, body file).
fn client_requests(transcript: &str) -> Vec<(Vec<String>, Option<String>)> {
    let mut out = Vec::new();
    let mut lines = transcript.lines().peekable();
    while let Some(l) = lines.next() {
        if l != ">>> client" {
            continue;
        }
        let mut head = Vec::new();
        for l in lines.by_ref() {
            if l.is_empty() {
                break;
            }
            head.push(l.to_owned());
        }
        let body = lines
            .peek()
            .and_then(|l| l.strip_prefix("@body "))
            .map(str::to_owned);
        out.push((head, body));
    }
    out
}

/// The headers that carry the protocol (the rest — Host, User-Agent, Accept, Connection —
/// belong to the HTTP stack).
const PROTOCOL_HEADERS: &[&str] = &[
    "bits-packet-type",
    "bits-supported-protocols",
    "bits-session-id",
    "content-name",
    "content-range",
    "content-length",
];

fn protocol_headers(lines: &[String], session: &str) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| {
            (
                n.trim().to_ascii_lowercase(),
                v.trim().replace(session, "{SESSION}"),
            )
        })
        .filter(|(n, _)| PROTOCOL_HEADERS.contains(&n.as_str()))
        .collect()
}

#[tokio::test]
async fn issue_14_client_packets_match_the_minimal_exchange_transcript() {
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ferry-upload-server/tests/upload/golden");
    let transcript = std::fs::read_to_string(golden.join("minimal-exchange.txt")).unwrap();
    let want = client_requests(&transcript);
    assert_eq!(want.len(), 3);

    let srv = UploadServer::start();
    let proxy = Proxy::start(srv.addr.to_string()).await;
    let dir = tempfile::tempdir().unwrap();
    let body = std::fs::read(golden.join("rfc2119.txt")).unwrap();
    assert_eq!(body.len(), 4892);
    let path = source(dir.path(), "rfc2119.txt", &body);
    let target = format!("http://{}/upload/2000mb-rfc2119.txt", proxy.addr);
    let req = request(&target, &path, ProtocolChoice::Only(Protocol::Bits));
    send_once(&sender(), &req, &Arc::default(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(srv.landed("2000mb-rfc2119.txt").unwrap(), body);

    let got = proxy.seen();
    assert_eq!(got.len(), want.len(), "{got:#?}");
    let session = got[1].header("BITS-Session-Id").unwrap();
    for ((want_head, want_body), got) in want.iter().zip(&got) {
        let got_lines: Vec<String> = got
            .head
            .trim_end()
            .split("\r\n")
            .map(str::to_owned)
            .collect();
        // The request line: method, path, version.
        assert_eq!(got_lines[0], want_head[0]);
        // The protocol headers, in order, with the same values.
        assert_eq!(
            protocol_headers(&got_lines[1..], &session),
            protocol_headers(&want_head[1..], "{SESSION}"),
            "{}",
            got.head
        );
        match want_body {
            Some(f) => assert_eq!(got.body, std::fs::read(golden.join(f)).unwrap()),
            None => assert!(got.body.is_empty()),
        }
    }
}
