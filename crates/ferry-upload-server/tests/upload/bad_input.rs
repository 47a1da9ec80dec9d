//! Bad input: each attack is sent to the real server, which must answer with
//! the protocol's error table (docs/UPLOAD-SERVER.md), leave nothing at the destination, and keep serving other clients.

use crate::support::*;

const URL: &str = "/upload/f.bin";

/// After an attack: nothing reached the destination, and a fresh client still uploads.
async fn still_serving(srv: &Server) {
    assert!(
        !srv.upload_dir().join("f.bin").exists(),
        "a partial file reached the destination"
    );
    let mut c = srv.conn().await;
    let s = c.create("/upload/other.bin").await;
    let data = content(1000, 9);
    let r = c.fragment("/upload/other.bin", &s, 0, 1000, &data).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        c.end("/upload/other.bin", &s, "Close-Session").await.status,
        200
    );
    assert_eq!(
        std::fs::read(srv.upload_dir().join("other.bin")).unwrap(),
        data
    );
}

#[tokio::test]
async fn issue_14_malformed_packets_are_refused_with_e_invalidarg() {
    let srv = start();
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    for (what, headers) in [
        ("unknown packet type", vec![("BITS-Packet-Type", "Explode")]),
        ("no packet type", vec![]),
        (
            "garbage range",
            vec![
                ("BITS-Packet-Type", "Fragment"),
                ("BITS-Session-Id", &s),
                ("Content-Range", "bytes a-b/c"),
            ],
        ),
        (
            "inverted range",
            vec![
                ("BITS-Packet-Type", "Fragment"),
                ("BITS-Session-Id", &s),
                ("Content-Range", "bytes 9-0/10"),
            ],
        ),
        (
            "no protocol offered",
            vec![("BITS-Packet-Type", "Create-Session")],
        ),
    ] {
        let r = c.post(URL, &headers, b"0123456789").await;
        assert_eq!(r.status, 400, "{what}: {}", r.head);
        assert_eq!(
            r.header("BITS-Error-Code"),
            Some("0x80070057"),
            "{what}: {}",
            r.head
        );
    }
    // A header over 4 KB.
    let long = "x".repeat(5000);
    let r = c
        .post(URL, &[("BITS-Packet-Type", "Ping"), ("X-Long", &long)], b"")
        .await;
    r.assert_error(400, "0x80070057");
    // A GUID the server does not speak.
    let r = c
        .post(
            URL,
            &[
                ("BITS-Packet-Type", "Create-Session"),
                (
                    "BITS-Supported-Protocols",
                    "{00000000-0000-0000-0000-000000000000}",
                ),
            ],
            b"",
        )
        .await;
    r.assert_error(400, "0x80070057");
    // Bytes that are not HTTP at all on another connection.
    let mut g = srv.conn().await;
    let r = g.raw(b"\x00\x01BITS_POST\r\n\r\n").await;
    assert_eq!(r.status, 400, "{}", r.head);
    // The session is still usable after all that.
    let r = c.fragment(URL, &s, 0, 4, b"abcd").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(c.end(URL, &s, "Cancel-Session").await.status, 200);
    still_serving(&srv).await;
    assert_eq!(srv.session_count(), 0);
}

#[tokio::test]
async fn issue_14_a_stalled_client_does_not_stop_others() {
    let srv = start();
    let mut stalled = srv.conn().await;
    let s = stalled.create(URL).await;
    // Half a fragment, then silence: the stalled client holds its own session only.
    stalled
        .send(
            format!(
                "BITS_POST {URL} HTTP/1.1\r\nHost: x\r\nBITS-Packet-Type: Fragment\r\nBITS-Session-Id: {s}\r\nContent-Range: bytes 0-999/1000\r\nContent-Length: 1000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    stalled.send(&[1; 500]).await;
    tokio::time::timeout(std::time::Duration::from_secs(10), still_serving(&srv))
        .await
        .expect("another client's upload waited for the stalled one");
}

#[tokio::test]
async fn issue_14_a_changed_total_size_is_refused() {
    let srv = start();
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    assert_eq!(
        c.fragment(URL, &s, 0, 100, &content(50, 1)).await.status,
        200
    );
    let r = c.fragment(URL, &s, 50, 200, &content(50, 2)).await;
    r.assert_error(400, "0x80070057");
    assert_eq!(r.header("BITS-Session-Id"), Some(s.as_str()));
    // Close is refused while incomplete, and nothing lands.
    c.end(URL, &s, "Close-Session")
        .await
        .assert_error(400, "0x80070057");
    still_serving(&srv).await;
}

#[tokio::test]
async fn issue_14_fragment_past_the_end_is_refused() {
    let srv = start();
    let mut c = srv.conn().await;
    let s = c.create(URL).await;
    // Last byte 100 of a 100-byte file, and a range wholly beyond it.
    let r = c
        .fragment_range(URL, &s, "bytes 0-100/100", &content(101, 1))
        .await;
    r.assert_error(400, "0x80070057");
    let r = c
        .fragment_range(URL, &s, "bytes 200-209/100", &content(10, 1))
        .await;
    r.assert_error(400, "0x80070057");
    // A Content-Length that disagrees with the range (more bytes than it names).
    let r = c
        .fragment_range(URL, &s, "bytes 0-9/100", &content(20, 1))
        .await;
    r.assert_error(400, "0x80070057");
    still_serving(&srv).await;
    let data = std::fs::metadata(srv.data_file(&s)).unwrap();
    assert_eq!(data.len(), 0, "no refused byte was kept");
}

#[tokio::test]
async fn issue_14_missing_content_length_is_refused() {
    let srv = start();
    let mut c = srv.conn().await;
    let r = c
        .raw(
            format!("BITS_POST {URL} HTTP/1.1\r\nHost: x\r\nBITS-Packet-Type: Create-Session\r\nBITS-Supported-Protocols: {GUID}\r\n\r\n")
                .as_bytes(),
        )
        .await;
    r.assert_error(400, "0x80070057");
    let s = c.create(URL).await;
    // A chunked fragment has no Content-Length either.
    let r = c
        .raw(
            format!(
                "BITS_POST {URL} HTTP/1.1\r\nHost: x\r\nBITS-Packet-Type: Fragment\r\nBITS-Session-Id: {s}\r\nContent-Range: bytes 0-3/4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    r.assert_error(400, "0x80070057");
    still_serving(&srv).await;
}

#[tokio::test]
async fn issue_14_unknown_session_ids_are_session_not_found() {
    let srv = start();
    let mut c = srv.conn().await;
    let real = c.create(URL).await;
    for id in [
        "{00000000-0000-0000-0000-000000000000}",
        "{../../../etc}",
        "../.ferry-upload-sessions",
        "not-a-guid",
    ] {
        let r = c.fragment(URL, id, 0, 4, b"abcd").await;
        r.assert_error(500, "0x8020001F");
        c.end(URL, id, "Close-Session")
            .await
            .assert_error(500, "0x8020001F");
    }
    // A real session used on another URL is not found there either.
    let r = c.fragment("/upload/g.bin", &real, 0, 4, b"abcd").await;
    r.assert_error(500, "0x8020001F");
    assert!(!srv.upload_dir().join("g.bin").exists());
    still_serving(&srv).await;
}

#[tokio::test]
async fn issue_14_paths_outside_the_upload_directory_are_refused() {
    let srv = start();
    let outside = srv.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, srv.upload_dir().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("t.bin"), srv.upload_dir().join("file-link")).unwrap();
    std::fs::create_dir(srv.upload_dir().join("sub")).unwrap();
    let mut c = srv.conn().await;
    for url in [
        "/upload/../outside/t.bin",
        "/upload/%2e%2e/outside/t.bin",
        "/upload/sub%2f..%2f..%2foutside%2ft.bin",
        "/upload/link/t.bin",
        "/upload/file-link",
        "/upload/a%00b",
        "/upload/.ferry-upload-sessions/x",
        "/upload/sub",
        "/upload/",
    ] {
        let r = c.create_resp(url).await;
        assert_eq!(r.status, 400, "{url}: {}", r.head);
        assert_eq!(r.header("BITS-Error-Code"), Some("0x80070057"), "{url}");
    }
    // Outside every configured directory: uploads are not enabled there.
    c.create_resp("/elsewhere/x")
        .await
        .assert_error(501, "0x80070005");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing was written outside"
    );
    // A link planted after Create-Session is not followed by Close-Session either.
    let s = c.create("/upload/sub/late.bin").await;
    assert_eq!(
        c.fragment("/upload/sub/late.bin", &s, 0, 4, b"abcd")
            .await
            .status,
        200
    );
    std::fs::remove_dir(srv.upload_dir().join("sub")).unwrap();
    std::os::unix::fs::symlink(&outside, srv.upload_dir().join("sub")).unwrap();
    let r = c.end("/upload/sub/late.bin", &s, "Close-Session").await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "the late link was followed"
    );
    still_serving(&srv).await;
}

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn issue_14_a_full_disk_answers_disk_full_and_keeps_nothing() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "SKIPPED issue_14_a_full_disk_answers_disk_full_and_keeps_nothing: needs root to mount a tmpfs"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    if !st.success() {
        eprintln!(
            "SKIPPED issue_14_a_full_disk_answers_disk_full_and_keeps_nothing: mount refused ({st})"
        );
        return;
    }
    let _umount = Tmpfs(mnt.clone());
    let srv = start_with(
        "",
        &format!(
            "[[directory]]\nurl_prefix = \"/small\"\npath = \"{}\"\n",
            mnt.display()
        ),
    );
    let mut c = srv.conn().await;
    let url = "/small/big.bin";
    let s = c.create(url).await;
    let total = 2 * 1024 * 1024;
    assert_eq!(
        c.fragment(url, &s, 0, total, &content(512 * 1024, 1))
            .await
            .status,
        200
    );
    let r = c
        .fragment(url, &s, 512 * 1024, total, &content(1024 * 1024, 2))
        .await;
    r.assert_error(500, "0x80070070");
    assert!(!mnt.join("big.bin").exists());
    // The unacknowledged bytes were cut off again: the session holds what was acknowledged.
    let data = mnt
        .join(".ferry-upload-sessions")
        .join(s.trim_matches(['{', '}']).to_ascii_lowercase())
        .join("data");
    assert_eq!(std::fs::metadata(&data).unwrap().len(), 512 * 1024);
    assert_eq!(c.end(url, &s, "Cancel-Session").await.status, 200);
    assert_eq!(
        std::fs::read_dir(mnt.join(".ferry-upload-sessions"))
            .unwrap()
            .count(),
        0
    );
    still_serving(&srv).await;
}
