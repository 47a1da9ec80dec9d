//! Basic authentication and HTTPS against the real server; curl is the second
//! client for HTTPS.

use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;

use crate::support::*;

const URL: &str = "/upload/f.bin";

/// A users-file line made by the binary's own `hash-password`.
fn user_line(name: &str, password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-upload-server"))
        .args(["hash-password", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test]
async fn issue_14_basic_auth_refuses_strangers_and_foreign_sessions() {
    let users = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        users.path(),
        format!(
            "{}{}",
            user_line("alice", "wonder land"),
            user_line("bob", "builder")
        ),
    )
    .unwrap();
    let srv = start_with(
        "",
        &format!(
            "[auth]\nusers_file = \"{}\"\nrealm = \"uploads\"",
            users.path().display()
        ),
    );
    let mut c = srv.conn().await;
    let create = [
        ("BITS-Packet-Type", "Create-Session"),
        ("BITS-Supported-Protocols", GUID),
    ];
    let r = c.post(URL, &create, b"").await;
    assert_eq!(r.status, 401, "{}", r.head);
    assert!(
        r.header("WWW-Authenticate")
            .unwrap()
            .starts_with("Basic realm=\"uploads\"")
    );
    let wrong = basic("alice", "guess");
    let r = c
        .post(URL, &[create[0], create[1], ("Authorization", &wrong)], b"")
        .await;
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(srv.session_count(), 0);

    let alice = basic("alice", "wonder land");
    let r = c
        .post(URL, &[create[0], create[1], ("Authorization", &alice)], b"")
        .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let s = r.header("BITS-Session-Id").unwrap().to_owned();
    // Bob knows Alice's session id: for him it does not exist.
    let bob = basic("bob", "builder");
    for (who, auth, status) in [("bob", Some(bob), 500), ("nobody", None, 401)] {
        c.auth = auth;
        let r = c.fragment(URL, &s, 0, 4, b"evil").await;
        assert_eq!(r.status, status, "{who}: {}", r.head);
        let r = c.end(URL, &s, "Close-Session").await;
        assert_eq!(r.status, status, "{who}: {}", r.head);
        if status == 500 {
            r.assert_error(500, "0x8020001F");
        }
    }
    c.auth = Some(alice);
    let r = c.fragment(URL, &s, 0, 4, b"good").await;
    assert_eq!(r.status, 200, "{}", r.head);
    let r = c.end(URL, &s, "Close-Session").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        std::fs::read(srv.upload_dir().join("f.bin")).unwrap(),
        b"good"
    );
}

fn have(program: &str, version_arg: &str) -> bool {
    Command::new(program)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One `BITS_POST` with curl over HTTPS; returns the response head.
fn curl(cert: &Path, url: &str, headers: &[&str], body: Option<&Path>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "--http1.1",
        "-X",
        "BITS_POST",
        "--cacert",
    ])
    .arg(cert);
    for h in headers {
        cmd.args(["-H", h]);
    }
    match body {
        Some(b) => cmd.arg("--data-binary").arg(format!("@{}", b.display())),
        None => cmd.args(["-H", "Content-Length: 0"]),
    };
    let out = cmd.arg(url).output().unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn issue_14_tls_serves_a_whole_upload_to_curl() {
    if !have("openssl", "version") || !have("curl", "--version") {
        eprintln!("SKIPPED issue_14_tls_serves_a_whole_upload_to_curl: needs openssl and curl");
        return;
    }
    let pki = tempfile::tempdir().unwrap();
    let (cert, key) = (pki.path().join("cert.pem"), pki.path().join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let srv = start_with(
        "",
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let url = format!("https://{}{URL}", srv.addr);
    let head = curl(
        &cert,
        &url,
        &[
            "BITS-Packet-Type: Create-Session",
            &format!("BITS-Supported-Protocols: {GUID}"),
        ],
        None,
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let s = header(&head, "BITS-Session-Id").unwrap().to_owned();
    let data = content(70_000, 6);
    let file = pki.path().join("data");
    std::fs::write(&file, &data).unwrap();
    let head = curl(
        &cert,
        &url,
        &[
            "BITS-Packet-Type: Fragment",
            &format!("BITS-Session-Id: {s}"),
            "Content-Range: bytes 0-69999/70000",
            "Content-Type:",
        ],
        Some(&file),
    );
    assert_eq!(
        header(&head, "BITS-Received-Content-Range"),
        Some("70000"),
        "{head}"
    );
    let head = curl(
        &cert,
        &url,
        &[
            "BITS-Packet-Type: Close-Session",
            &format!("BITS-Session-Id: {s}"),
        ],
        None,
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(std::fs::read(srv.upload_dir().join("f.bin")).unwrap(), data);
    // Plain HTTP on the TLS port gets no answer an upload could use.
    let mut plain = tokio::net::TcpStream::connect(&srv.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain.write_all(b"BITS_POST /upload/g.bin HTTP/1.1\r\nHost: x\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_end(&mut buf),
    )
    .await
    .expect("the TLS port kept a plain-HTTP connection open for 5 s");
    assert!(!buf.starts_with(b"HTTP/1.1 200"));
}
