//! Everyday use of `ferry transfer` and the verbs around it, as curl, wget and bitsadmin users
//! expect: no silent overwrite, exit codes a script can branch on, names that do not trap,
//! the options people reach for, a closed terminal that does not lose the download.

use ferry_testkit::http::TestServer;

use crate::support::*;

#[tokio::test]
async fn issue_13_3_existing_destination_is_refused_unless_overwrite() {
    let env = Env::start();
    let srv = TestServer::start().await;
    srv.add_file("/pub/small.txt", b"new content".to_vec());
    let dest = env.dir("dest");
    let existing = dest.join("small.txt");
    std::fs::write(&existing, b"old content").unwrap();
    let url = srv.url("/pub/small.txt");
    // Into the directory, and to the file path itself: both refused, the file untouched.
    for target in [arg(&dest), arg(&existing)] {
        let out = env.run(&["transfer", &url, target]).await;
        out.expect_code(2);
        assert!(
            out.stderr
                .contains(&format!("{} already exists", existing.display())),
            "{out:?}"
        );
        assert!(out.stderr.contains("--overwrite"), "{out:?}");
        assert_eq!(std::fs::read(&existing).unwrap(), b"old content");
    }
    // A dangling symlink is a name in use too.
    let link = dest.join("link.txt");
    std::os::unix::fs::symlink(dest.join("nowhere"), &link).unwrap();
    env.run(&["transfer", &url, arg(&link)])
        .await
        .expect_code(2);
    assert!(env.list(&["--all"]).await.is_empty(), "no job was created");
    // `--overwrite` replaces it.
    let out = env.ok(&["transfer", "--overwrite", &url, arg(&dest)]).await;
    assert_eq!(out.lines(), [format!("saved {}", existing.display())]);
    assert_eq!(std::fs::read(&existing).unwrap(), b"new content");
}

/// The JSON error object `--json` puts on stderr.
#[track_caller]
fn json_error(out: &Output) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(out.stderr.trim())
        .unwrap_or_else(|e| panic!("stderr is not one JSON document ({e}): {out:?}"));
    assert!(v["error"]["message"].is_string(), "{out:?}");
    assert_eq!(
        v["error"]["exit_code"].as_i64(),
        out.code.map(i64::from),
        "{out:?}"
    );
    v
}

#[tokio::test]
async fn issue_13_9_exit_codes_a_script_can_branch_on() {
    let env = Env::start();
    let srv = TestServer::start().await;
    srv.add_file("/good.bin", vec![7u8; 5000]);
    let dest = env.dir("dest");

    // 2: usage, from clap and from ferry's own checks, plain and as JSON on stderr.
    env.run(&["transfer"]).await.expect_code(2);
    let out = env.run(&["--json", "transfer"]).await;
    out.expect_code(2);
    assert!(out.stdout.is_empty(), "{out:?}");
    json_error(&out);
    // The same mistake, a missing directory, with or without a trailing slash.
    let missing = env.root().join("missing");
    let with_slash = format!("{}/", missing.display());
    let inside = format!("{}/f.bin", missing.display());
    let url = srv.url("/good.bin");
    let a = env.run(&["transfer", &url, &with_slash]).await;
    let b = env.run(&["transfer", &url, &inside]).await;
    a.expect_code(2);
    b.expect_code(2);
    assert_eq!(a.stderr, b.stderr);
    assert!(a.stderr.contains("does not exist"), "{a:?}");

    // 5: no such job, whether the CLI or the daemon finds out; no such handler either.
    env.run(&["info", "no-such-job"]).await.expect_code(5);
    let out = env
        .run(&["--json", "cancel", "00000000-0000-4000-8000-000000000000"])
        .await;
    out.expect_code(5);
    json_error(&out);
    let out = env.run(&["handler", "remove", "nope"]).await;
    out.expect_code(5);
    assert!(out.stderr.contains("no handler named nope"), "{out:?}");
    assert!(!out.stdout.contains("removed"), "{out:?}");

    // 6: daemon unreachable.
    let gone = env.root().join("no-daemon.sock");
    let mut cmd = command(&env.root().join("unused-state"));
    cmd.args(["--socket", arg(&gone), "--no-autostart", "--json", "list"]);
    let out = run_command(cmd, WAIT).await;
    out.expect_code(6);
    json_error(&out);

    // 7: timeout.
    env.create("idle").await;
    env.run(&["wait", "idle", "--timeout", "1"])
        .await
        .expect_code(7);

    // 3: the job failed (the second file is missing on the server; one file at a time, so
    // the first is surely transferred when the second fails).
    let id = env.create("half").await;
    env.ok(&["add", &id, &url, arg(&dest)]).await;
    env.ok(&["add", &id, &srv.url("/missing.bin"), arg(&dest)])
        .await;
    env.ok(&["set", &id, "--max-parallel-files", "1"]).await;
    env.ok(&["resume", &id]).await;
    let out = env.run(&["wait", &id]).await;
    out.expect_code(3);
    let files = env.json(&["files", &id]).await;
    assert_eq!(files["files"][0]["transferred"], true, "{files}");

    // Completing it would drop a file: refused, saying so, unless --partial; then 4.
    let out = env.run(&["complete", &id]).await;
    out.expect_code(2);
    assert!(out.stderr.contains("not transferred"), "{out:?}");
    assert!(out.stderr.contains("--partial"), "{out:?}");
    assert_eq!(env.info(&id).await["state"], "error");
    let out = env.run(&["complete", &id, "--partial"]).await;
    out.expect_code(4);
    assert!(out.stdout.contains("partial"), "{out:?}");
    assert_eq!(
        std::fs::read(dest.join("good.bin")).unwrap(),
        vec![7u8; 5000]
    );

    // `ferry --help` documents the table.
    let out = env.ok(&["--help"]).await;
    for line in [
        "2    usage error",
        "5    no such job",
        "6    daemon unreachable",
        "7    timed out",
    ] {
        assert!(out.stdout.contains(line), "{line}: {out:?}");
    }
}

#[tokio::test]
async fn issue_13_8_names_prefer_unfinished_jobs_and_are_not_duplicated() {
    let env = Env::start();
    // Last night's job is finished (kept for days); tonight's may take the name again.
    let last_night = env.create("nightly").await;
    env.ok(&["cancel", "nightly"]).await;
    let tonight = env.create("nightly").await;
    assert_ne!(last_night, tonight);
    // The name addresses the unfinished one, as the README's `ferry add nightly …` needs.
    assert_eq!(env.info("nightly").await["job_id"], tonight.as_str());
    // A second unfinished `nightly` is refused, naming the way out; no job is created.
    let out = env.run(&["create", "nightly"]).await;
    out.expect_code(2);
    assert!(out.stderr.contains(&tonight[..8]), "{out:?}");
    assert!(out.stderr.contains("--allow-duplicate-name"), "{out:?}");
    assert_eq!(env.list(&[]).await.len(), 1);
    // Allowed on request; then the name is ambiguous and says so.
    env.ok(&["create", "nightly", "--allow-duplicate-name"])
        .await;
    let out = env.run(&["info", "nightly"]).await;
    out.expect_code(2);
    assert!(out.stderr.contains("ambiguous"), "{out:?}");
    // A finished job is still reachable by its name when no unfinished one has it.
    env.ok(&["create", "solo"]).await;
    let solo = env.info("solo").await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.ok(&["cancel", "solo"]).await;
    assert_eq!(env.info("solo").await["job_id"], solo.as_str());

    // `ferry transfer`'s default names are unique among unfinished jobs.
    let srv = TestServer::start().await;
    srv.add_file("/f.bin", vec![1u8; 100]);
    env.ok(&["create", "ferry transfer f.bin"]).await;
    let dest = env.dir("dest");
    let v = env
        .json(&["transfer", &srv.url("/f.bin"), arg(&dest)])
        .await;
    let id = v["job_id"].as_str().unwrap();
    assert_eq!(
        env.info(id).await["display_name"],
        "ferry transfer f.bin (2)"
    );
    // An explicit name in use is refused like `create`'s.
    let out = env
        .run(&[
            "transfer",
            "--display-name",
            "ferry transfer f.bin",
            &srv.url("/f.bin"),
            arg(&dest.join("other.bin")),
        ])
        .await;
    out.expect_code(2);
    assert!(out.stderr.contains("--allow-duplicate-name"), "{out:?}");
}

#[tokio::test]
async fn issue_13_6_transfer_takes_the_options_people_reach_for() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let content = ferry_testkit::content::TestContent::new(61, 40_000);
    srv.add_file("/pub/a.bin", content.bytes.clone());
    srv.add_file("/pub/b.bin", vec![2u8; 300]);
    let a = srv.url("/pub/a.bin");
    let b = srv.url("/pub/b.bin");
    let root = env.root().to_path_buf();

    // A bare URL (or several) saves into the current directory.
    let out = env.ok(&["transfer", &a]).await;
    assert_eq!(
        out.lines(),
        [format!("saved {}", root.join("a.bin").display())]
    );
    assert_eq!(sha256_file(&root.join("a.bin")), content.sha256);
    let sub = env.dir("sub");
    let mut cmd = env.cmd(&["transfer", &b, &srv.url("/pub/a.bin?copy")]);
    cmd.current_dir(&sub);
    let out = run_command(cmd, WAIT).await;
    out.expect_code(0);
    assert!(
        sub.join("b.bin").exists() && sub.join("a.bin").exists(),
        "{out:?}"
    );

    // -o NAME, --header, --limit-rate with a unit, --priority, --sha256, -q: all at once.
    let out = env
        .run(&[
            "--json",
            "transfer",
            "-o",
            "named.bin",
            "--header",
            "X-Token: abc123",
            "--limit-rate",
            "1M",
            "--priority",
            "high",
            "--sha256",
            &content.sha256,
            "-q",
            &a,
        ])
        .await;
    out.expect_code(0);
    let v = out.json();
    assert_eq!(sha256_file(&root.join("named.bin")), content.sha256);
    let id = v["job_id"].as_str().unwrap();
    let job = env.info(id).await;
    assert_eq!(job["priority"], "high", "{job}");
    assert_eq!(job["bandwidth_limit_bps"], 1024 * 1024, "{job}");
    let seen = srv.requests_for("/pub/a.bin");
    assert!(
        seen.iter().any(|r| r.header("x-token") == Some("abc123")),
        "the header never reached the server"
    );
    // -q: nothing but errors.
    let out = env.run(&["transfer", "-q", &b, "-o", "quiet.bin"]).await;
    out.expect_code(0);
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    assert!(root.join("quiet.bin").exists());

    // A wrong --sha256 fails the job.
    let zeros = "0".repeat(64);
    let out = env
        .run(&["transfer", "--sha256", &zeros, &a, "-o", "bad.bin"])
        .await;
    out.expect_code(3);
    assert!(out.stderr.contains("SHA256"), "{out:?}");
    assert!(!root.join("bad.bin").exists());

    // Units work for `ferry set` too (`--bandwidth-limit 1M` used to fail); a bad one says
    // what is accepted.
    let job = env.create("limited").await;
    let v = env.json(&["set", &job, "--bandwidth-limit", "1M"]).await;
    assert_eq!(v["bandwidth_limit_bps"], 1024 * 1024, "{v}");
    let out = env.run(&["set", &job, "--bandwidth-limit", "fast"]).await;
    out.expect_code(2);
    assert!(out.stderr.contains("500K"), "{out:?}");
    // -o takes one URL.
    env.run(&["transfer", &a, &b, "-o", "x"])
        .await
        .expect_code(2);
}
