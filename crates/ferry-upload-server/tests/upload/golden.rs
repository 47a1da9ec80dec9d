//! Golden transcripts under `golden/`, built from the BITS Upload Protocol specification's
//! examples (a successful upload, an upload with reply): the requests are what an unmodified
//! Windows client sends (header order, spelling and `Keep-Alive` as in the specification's hex
//! dumps), replayed byte for byte on one connection; each response must equal the recorded one
//! after the session id, the reply id and `Date` are normalised.

use std::path::PathBuf;

use crate::support::*;

/// One exchange of a transcript.
pub struct Exchange {
    pub request: Vec<u8>,
    pub response: String,
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/upload/golden")
}

/// Parses a transcript: `>>> client` and `<<< server` sections of header lines (joined with
/// CRLF, ending in an empty line); a client section may end with `@body FILE`.
pub fn load(name: &str) -> Vec<Exchange> {
    let text = std::fs::read_to_string(golden_dir().join(name)).unwrap();
    let mut sections: Vec<(bool, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        match line {
            ">>> client" => sections.push((true, Vec::new())),
            "<<< server" => sections.push((false, Vec::new())),
            l => {
                if let Some((_, lines)) = sections.last_mut() {
                    lines.push(l);
                }
            }
        }
    }
    fn head<'a>(lines: &[&'a str]) -> Vec<&'a str> {
        let mut lines = lines.to_vec();
        while lines.last() == Some(&"") {
            lines.pop();
        }
        lines
    }
    let mut out = Vec::new();
    let mut it = sections.into_iter();
    while let Some((true, req)) = it.next() {
        let mut req = head(&req);
        let body = match req.last() {
            Some(l) if l.starts_with("@body ") => {
                let f = l.trim_start_matches("@body ").to_owned();
                req.pop();
                req = head(&req);
                std::fs::read(golden_dir().join(f)).unwrap()
            }
            _ => Vec::new(),
        };
        let mut request = format!("{}\r\n\r\n", req.join("\r\n")).into_bytes();
        request.extend_from_slice(&body);
        let (false, resp) = it.next().unwrap() else {
            panic!("{name}: a client section without a server section")
        };
        out.push(Exchange {
            request,
            response: format!("{}\r\n\r\n", head(&resp).join("\r\n")),
        });
    }
    out
}

/// Replaces what differs between runs: the session id (and its bare UUID), and `Date`.
fn normalise(head: &str, session: Option<&str>) -> String {
    let mut h = head.to_owned();
    if let Some(s) = session {
        h = h.replace(s, "{SESSION}");
        let bare = s.trim_matches(['{', '}']).to_ascii_lowercase();
        h = h.replace(&bare, "{SESSION-UUID}");
    }
    h.split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("date:") {
                "Date: {DATE}".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Replays a transcript on one connection and compares every response; returns the session
/// id and the last response's body.
pub async fn replay(srv: &Server, name: &str) -> (Option<String>, Vec<u8>) {
    let mut last = Vec::new();
    let mut c = srv.conn().await;
    let mut session: Option<String> = None;
    for (i, ex) in load(name).into_iter().enumerate() {
        let mut req = ex.request;
        if let Some(s) = &session {
            let bare = s.trim_matches(['{', '}']).to_ascii_lowercase();
            // Bodies are text in these transcripts; the placeholders are only in heads.
            let text = String::from_utf8_lossy(&req)
                .replace("{SESSION}", s)
                .replace("{SESSION-UUID}", &bare);
            req = text.into_bytes();
        }
        let resp = c.raw(&req).await;
        // The id the server issued (an echoed id of a refused packet is the client's own).
        if session.is_none() && resp.status == 200 {
            session = resp.header("BITS-Session-Id").map(str::to_owned);
        }
        if resp.header("BITS-Packet-Type").is_some() {
            assert!(resp.body.is_empty(), "{name}: an Ack has a body");
        }
        let got = normalise(&resp.head, session.as_deref());
        assert_eq!(
            got,
            ex.response,
            "{name}: exchange {} differs\n--- got ---\n{got}\n--- want ---\n{}",
            i + 1,
            ex.response
        );
        last = resp.body;
    }
    (session, last)
}

#[tokio::test]
async fn issue_14_golden_minimal_exchange_from_the_spec() {
    let srv = start();
    replay(&srv, "minimal-exchange.txt").await.0.unwrap();
    let want = std::fs::read(golden_dir().join("rfc2119.txt")).unwrap();
    assert_eq!(want.len(), 4892);
    assert_eq!(
        std::fs::read(srv.upload_dir().join("2000mb-rfc2119.txt")).unwrap(),
        want
    );
    assert_eq!(
        srv.session_count(),
        0,
        "the session is gone after Close-Session"
    );
}

#[tokio::test]
async fn issue_14_golden_resumed_upload_with_ping_and_out_of_sync() {
    // A client that lost an Ack resends from an older offset (overlap), one that skipped ahead
    // gets 416 with where to continue; Ping needs no session.
    let srv = start();
    replay(&srv, "resume-exchange.txt").await.0.unwrap();
    let want = std::fs::read(golden_dir().join("rfc2119.txt")).unwrap();
    assert_eq!(
        std::fs::read(srv.upload_dir().join("2000mb-rfc2119.txt")).unwrap(),
        want
    );
    assert_eq!(srv.session_count(), 0);
}

#[tokio::test]
async fn issue_14_golden_error_answers_of_the_error_table() {
    let srv = start();
    let (session, _) = replay(&srv, "errors-exchange.txt").await;
    assert_eq!(session, None);
    assert_eq!(
        srv.session_count(),
        0,
        "no refused packet created a session"
    );
}
