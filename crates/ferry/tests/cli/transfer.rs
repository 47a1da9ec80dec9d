//! `ferry transfer`: a large download arrives byte-identical (plain and `--json` output), files
//! are named after their URLs, a single URL may go to a file path, list files work, and a wrong
//! command line or list file is a usage error (exit 2) that creates no job.

use std::time::Duration;

use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;

use crate::support::*;

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_100_mib_is_byte_identical() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let len = 100 * MIB;
    // The server keeps the only copy of the payload; the test keeps just its hash.
    let sha = {
        let content = TestContent::new(100, len);
        srv.add_file("/pub/big.bin", content.bytes);
        content.sha256
    };
    let url = srv.url("/pub/big.bin");
    // Debug builds on a small machine: allow time, but stay below nextest's hard limit.
    let limit = Duration::from_secs(100);

    let plain = env.dir("plain");
    let out = run_command(env.cmd(&["transfer", &url, arg(&plain)]), limit).await;
    out.expect_code(0);
    let saved = plain.join("big.bin");
    assert_eq!(
        out.lines(),
        [format!("saved {}", saved.display())],
        "{out:?}"
    );
    assert_eq!(std::fs::metadata(&saved).unwrap().len(), len as u64);
    assert_eq!(sha256_file(&saved), sha);
    assert!(staging_files(&plain).is_empty());
    // Keep the disk use to one copy at a time.
    std::fs::remove_file(&saved).unwrap();

    let json_dir = env.dir("json");
    let out = run_command(
        env.cmd(&["transfer", &url, arg(&json_dir), "--json"]),
        limit,
    )
    .await;
    out.expect_code(0);
    let v = out.json();
    let saved = json_dir.join("big.bin");
    let id = v["job_id"].as_str().expect("job_id");
    assert_eq!(id.len(), 36, "{v}");
    assert_eq!(v["state"], "acknowledged", "{v}");
    assert_eq!(v["bytes"], len as u64, "{v}");
    assert!(v["seconds"].is_number(), "{v}");
    let files = v["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{v}");
    assert_eq!(files[0]["local_path"], arg(&saved), "{v}");
    assert_eq!(files[0]["remote_url"], url.as_str(), "{v}");
    assert_eq!(files[0]["bytes"], len as u64, "{v}");
    assert_eq!(sha256_file(&saved), sha);
    // The summary's id is the daemon's job, now final.
    assert_eq!(env.info(id).await["state"], "acknowledged");
}

#[tokio::test]
async fn several_urls_are_named_after_their_last_segment() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let a = TestContent::new(1, 70_000);
    let b = TestContent::new(2, 1234);
    let c = TestContent::new(3, 0);
    srv.add_file("/a/first.bin", a.bytes.clone());
    srv.add_file("/b/c/second.txt", b.bytes.clone());
    srv.add_file("/d/with%20space.dat", c.bytes.clone());
    let dest = env.dir("dest");
    // A query string is not part of the name; percent escapes are decoded.
    let urls = [
        srv.url("/a/first.bin?token=xyz"),
        srv.url("/b/c/second.txt"),
        srv.url("/d/with%20space.dat"),
    ];
    let out = env
        .ok(&["transfer", &urls[0], &urls[1], &urls[2], arg(&dest)])
        .await;
    let names = ["first.bin", "second.txt", "with space.dat"];
    let expected: Vec<String> = names
        .iter()
        .map(|n| format!("saved {}", dest.join(n).display()))
        .collect();
    assert_eq!(out.lines(), expected, "{out:?}");
    assert_eq!(sha256_file(&dest.join("first.bin")), a.sha256);
    assert_eq!(sha256_file(&dest.join("second.txt")), b.sha256);
    assert_eq!(sha256_file(&dest.join("with space.dat")), c.sha256);
    assert!(staging_files(&dest).is_empty());
    // A relative destination is taken against the current directory.
    let out = env.ok(&["transfer", &urls[1], "dest/copy.txt"]).await;
    assert_eq!(
        out.lines(),
        [format!("saved {}", dest.join("copy.txt").display())]
    );
    assert_eq!(sha256_file(&dest.join("copy.txt")), b.sha256);
}

#[tokio::test]
async fn one_url_to_a_file_path_uses_that_path() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let content = TestContent::new(4, 100_000);
    srv.add_file("/x/original.bin", content.bytes.clone());
    let dir = env.dir("out");
    let target = dir.join("renamed.out");
    let out = env
        .ok(&["transfer", &srv.url("/x/original.bin"), arg(&target)])
        .await;
    assert_eq!(out.lines(), [format!("saved {}", target.display())]);
    assert_eq!(sha256_file(&target), content.sha256);
    assert!(!dir.join("original.bin").exists());
    // A local path is a source too (it becomes a file:// URL).
    let copy = dir.join("copy.out");
    let out = env.ok(&["transfer", arg(&target), arg(&copy)]).await;
    assert_eq!(out.lines(), [format!("saved {}", copy.display())]);
    assert_eq!(sha256_file(&copy), content.sha256);
}

#[tokio::test]
async fn from_file_list_with_comments_and_blank_lines() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let a = TestContent::new(5, 33_333);
    let b = TestContent::new(6, 44_444);
    srv.add_file("/one.bin", a.bytes.clone());
    srv.add_file("/files/two.bin", b.bytes.clone());
    let out_dir = env.dir("out");
    let spaced = env.dir("sub dir");
    let list = env.root().join("list.txt");
    // Relative paths are taken against the current directory; a path that is an existing
    // directory gets the URL's name; PATH is the rest of the line, spaces included.
    let text = format!(
        "# what to fetch\n\n{}   out/uno.bin\n\n  # indented comment\n{} sub dir\n",
        srv.url("/one.bin"),
        srv.url("/files/two.bin"),
    );
    std::fs::write(&list, text).unwrap();
    let out = env
        .ok(&[
            "transfer",
            "--from-file",
            arg(&list),
            "--display-name",
            "batch",
        ])
        .await;
    assert_eq!(
        out.lines(),
        [
            format!("saved {}", out_dir.join("uno.bin").display()),
            format!("saved {}", spaced.join("two.bin").display()),
        ],
        "{out:?}"
    );
    assert_eq!(sha256_file(&out_dir.join("uno.bin")), a.sha256);
    assert_eq!(sha256_file(&spaced.join("two.bin")), b.sha256);
    let jobs = env.list(&["--all"]).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["display_name"], "batch");
    assert_eq!(jobs[0]["state"], "acknowledged");

    // `-` reads the list from stdin.
    let mut cmd = env.cmd(&["transfer", "--from-file", "-"]);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ferry");
    let mut stdin = child.stdin.take().expect("stdin");
    let line = format!("{} out/dos.bin\n", srv.url("/one.bin"));
    tokio::io::AsyncWriteExt::write_all(&mut stdin, line.as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = finish(child, "transfer --from-file - (stdin)".into(), WAIT).await;
    out.expect_code(0);
    assert_eq!(
        out.lines(),
        [format!("saved {}", out_dir.join("dos.bin").display())]
    );
    assert_eq!(sha256_file(&out_dir.join("dos.bin")), a.sha256);
}

#[tokio::test]
async fn bad_list_line_is_a_usage_error_naming_the_line() {
    let env = Env::start();
    let dest = env.dir("dest");
    let list = env.root().join("bad.txt");
    std::fs::write(
        &list,
        format!(
            "# header\nhttp://127.0.0.1:9/a {}\n\nhttp://127.0.0.1:9/only-a-url\n",
            arg(&dest)
        ),
    )
    .unwrap();
    let out = env.run(&["transfer", "--from-file", arg(&list)]).await;
    out.expect_code(2);
    assert!(
        out.stderr.contains(&format!("{}:4:", list.display())),
        "{out:?}"
    );
    assert!(out.stderr.contains("URL PATH"), "{out:?}");
    // A line whose URL is wrong is named too.
    std::fs::write(&list, format!("\nftp://h/f {}\n", arg(&dest))).unwrap();
    let out = env.run(&["transfer", "--from-file", arg(&list)]).await;
    out.expect_code(2);
    assert!(out.stderr.contains(":2:"), "{out:?}");
    assert!(out.stderr.contains("ftp"), "{out:?}");
    // Nothing reached the daemon.
    assert!(env.list(&["--all"]).await.is_empty());
}

#[tokio::test]
async fn wrong_command_lines_exit_2_and_create_no_job() {
    let env = Env::start();
    let dest = env.dir("dest");
    let missing = env.root().join("missing");
    let cases: [(Vec<&str>, &str); 5] = [
        // Several URLs need an existing directory.
        (
            vec!["transfer", "http://h/a", "http://h/b", arg(&missing)],
            "existing directory",
        ),
        // Neither a URL nor an existing local file.
        (
            vec!["transfer", "example.com/f", arg(&dest)],
            "example.com/f",
        ),
        (vec!["transfer", "ftp://h/f", arg(&dest)], "ftp"),
        // No name to give the file.
        (
            vec!["transfer", "http://h/dir/", arg(&dest)],
            "no usable last segment",
        ),
        // Two files for one path.
        (
            vec!["transfer", "http://h/x/f", "http://g/y/f", arg(&dest)],
            "would both be saved",
        ),
    ];
    for (args, needle) in cases {
        let out = env.run(&args).await;
        out.expect_code(2);
        assert!(out.stderr.contains(needle), "{out:?}");
    }
    // clap's own errors use the same code.
    env.run(&["transfer"]).await.expect_code(2);
    env.run(&["transfer", "--from-file", "l", "http://h/a", arg(&dest)])
        .await
        .expect_code(2);
    assert!(env.list(&["--all"]).await.is_empty());
}

/// Regression (the transfer benchmark): a list whose `job.create` would exceed the 1 MiB line
/// limit, and whose `job.files` answer is larger than 1 MiB, still transfers.
#[tokio::test]
async fn a_list_larger_than_one_request_line_transfers() {
    let env = Env::start();
    let src = env.dir("many-src");
    let out = env.dir("many-out-with-a-deliberately-long-directory-name-to-make-each-line-big");
    let mut list = String::new();
    for i in 0..6000 {
        let p = src.join(format!("source-file-with-a-long-name-{i:05}"));
        std::fs::write(&p, format!("{i}")).unwrap();
        list.push_str(&format!(
            "file://{} {}\n",
            p.display(),
            out.join(format!("copy-with-a-long-name-{i:05}")).display()
        ));
    }
    assert!(
        list.len() > 1024 * 1024,
        "the list must not fit one request line"
    );
    let list_path = env.root().join("many.txt");
    std::fs::write(&list_path, list).unwrap();
    let o = env
        .ok(&["--json", "transfer", "--from-file", arg(&list_path)])
        .await;
    let v = o.json();
    assert_eq!(v["state"], "acknowledged");
    assert_eq!(v["files"].as_array().unwrap().len(), 6000);
    assert_eq!(
        std::fs::read_to_string(out.join("copy-with-a-long-name-05999")).unwrap(),
        "5999"
    );
}
