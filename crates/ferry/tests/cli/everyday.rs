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

/// Holds the body of `path` until the returned gate is closed (or given permits).
fn hold_body(srv: &TestServer, path: &str) -> std::sync::Arc<tokio::sync::Semaphore> {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    srv.set_behavior(
        path,
        ferry_testkit::http::Behavior {
            gate: Some(gate.clone()),
            ..ferry_testkit::http::Behavior::default()
        },
    );
    gate
}

/// What a command run on a pseudo-terminal did (see `pty_driver.py`).
pub(crate) struct Terminal {
    /// Everything it wrote to the terminal (stdout and stderr together).
    pub(crate) output: String,
    /// Its exit code, when it exited.
    pub(crate) code: Option<i64>,
    /// The signal that ended it, when one did.
    signal: Option<i64>,
}

/// Runs `ferry ARGS…` (pointed at `env`'s daemon) on a pseudo-terminal COLS wide; once its
/// output shows `wait_for`, `action` happens (`hup`: the terminal closes; `ctrl-c`;
/// `type:TEXT`; `none`). `None` (the test prints SKIPPED) when python3 is not installed.
pub(crate) async fn on_terminal(
    env: &Env,
    cols: u16,
    wait_for: &str,
    action: &str,
    args: &[&str],
) -> Option<Terminal> {
    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/pty_driver.py");
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: python3 (which drives the pseudo-terminal) is not installed");
        return None;
    }
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(driver)
        .arg(cols.to_string())
        .arg(wait_for)
        .arg(action)
        .arg("--")
        .arg(ferry_bin())
        .arg("--socket")
        .arg(&env.daemon.socket)
        .arg("--no-autostart")
        .args(args)
        .env_remove("FERRY_SOCKET")
        .env("FERRY_DAEMON", ferry_testkit::daemon::ferryd_bin())
        .env("FERRY_STATE_DIR", &env.daemon.state_dir)
        .env("TERM", "xterm")
        .current_dir(env.root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT + WAIT, cmd.output())
        .await
        .expect("the pty driver did not finish")
        .expect("run the pty driver");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pty driver output is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(v["acted"], true, "`{wait_for}` never appeared: {v}");
    assert_eq!(v["timed_out"], false, "the command hung: {v}");
    Some(Terminal {
        output: v["output"].as_str().unwrap_or_default().to_owned(),
        code: v["code"].as_i64(),
        signal: v["signal"].as_i64(),
    })
}

#[tokio::test]
async fn issue_13_1_a_closed_terminal_still_gets_the_file() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let content = ferry_testkit::content::TestContent::new(11, 200_000);
    srv.add_file("/iso/big.bin", content.bytes.clone());
    // The body is held until the terminal is gone, so the CLI surely dies mid-transfer.
    let gate = hold_body(&srv, "/iso/big.bin");
    let dest = env.dir("dest");
    let url = srv.url("/iso/big.bin");
    let Some(t) = on_terminal(
        &env,
        100,
        "saving to",
        "hup",
        &["transfer", &url, arg(&dest)],
    )
    .await
    else {
        return;
    };
    // The CLI was killed by the hang-up (or exited 129 on it).
    assert!(t.signal == Some(1) || t.code == Some(129), "{}", t.output);
    // It said where the file will be.
    let saved = dest.join("big.bin");
    assert!(
        t.output.contains(&format!("saving to {}", saved.display())),
        "{}",
        t.output
    );
    let id = short_id_after(&t.output, "(job ");
    assert!(!saved.exists());
    // The daemon finishes the job on its own: the file appears, complete, with no staging left.
    gate.close();
    let out = env.ok(&["wait", &id, "--until", "final"]).await;
    assert_eq!(out.stdout.trim(), "acknowledged", "{out:?}");
    assert_eq!(sha256_file(&saved), content.sha256);
    assert!(staging_files(&dest).is_empty());
    let job = env.info(&id).await;
    assert_eq!(job["auto_complete"], true, "{job}");
}

#[tokio::test]
async fn issue_13_2_rerunning_the_same_transfer_continues_it() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let env = Env::start();
    let srv = TestServer::start().await;
    let content = ferry_testkit::content::TestContent::new(21, 1_000_000);
    srv.add_file("/big.bin", content.bytes.clone());
    // The server sends part of the body, then nothing: the transfer is surely mid-way.
    srv.set_behavior(
        "/big.bin",
        ferry_testkit::http::Behavior {
            stall_after: Some(300_000),
            ..ferry_testkit::http::Behavior::default()
        },
    );
    let dest = env.dir("dest");
    let url = srv.url("/big.bin");

    // The first run is interrupted part-way.
    let child = env
        .cmd(&["transfer", &url, arg(&dest)])
        .spawn()
        .expect("spawn ferry");
    let pid = Pid::from_raw(i32::try_from(child.id().expect("pid")).unwrap());
    let seen = srv
        .wait_until(WAIT, |log| log.iter().any(|r| r.body_bytes_sent >= 300_000))
        .await;
    assert!(seen.is_some(), "the transfer never got going");
    // The server counts bytes as sent before the daemon has read them: wait until the job
    // shows them, so the interruption's checkpoint has something to keep.
    let received = |jobs: &serde_json::Value| {
        let list = jobs.get("jobs").unwrap_or(jobs);
        list.as_array().is_some_and(|a| {
            a.iter().any(|j| {
                j["progress"]["bytes_transferred"]
                    .as_u64()
                    .is_some_and(|b| b > 0)
            })
        })
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !received(&env.json(&["list"]).await) {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never received the first bytes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    kill(pid, Signal::SIGINT).unwrap();
    let out = finish(child, "transfer (SIGINT)".into(), WAIT).await;
    out.expect_code(130);
    let first = short_id_after(&out.stderr, "ferry resume ");
    let before = env.info(&first).await["progress"]["bytes_transferred"]
        .as_u64()
        .unwrap();
    assert!(before > 0, "nothing was kept to continue from");

    // The same command again continues that job from where it stopped, saying so.
    srv.clear_behavior("/big.bin");
    let out = env.run(&["transfer", &url, arg(&dest)]).await;
    out.expect_code(0);
    assert!(
        out.stderr.contains(&format!("continuing job {first}")),
        "{out:?}"
    );
    assert!(out.stderr.contains("--restart"), "{out:?}");
    assert_eq!(
        out.lines(),
        [format!("saved {}", dest.join("big.bin").display())]
    );
    assert_eq!(sha256_file(&dest.join("big.bin")), content.sha256);
    // No request after the first starts from byte 0 again.
    let log = srv.requests_for("/big.bin");
    assert!(log.len() >= 2, "the second run made no request");
    assert!(
        log.iter()
            .skip(1)
            .all(|r| r.range.as_deref().is_some_and(|x| x != "bytes=0-")),
        "the second run fetched from byte 0: {:?}",
        log.iter().map(|r| r.range.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        env.list(&["--all"]).await.len(),
        1,
        "a second job was created"
    );
    let jobs = env.list(&["--all"]).await;
    assert!(jobs[0]["job_id"].as_str().unwrap().starts_with(&first));

    // --restart starts over: the unfinished job is cancelled, a new one does the work.
    srv.add_file("/other.bin", vec![5u8; 1000]);
    let other = srv.url("/other.bin");
    let id = env.create("pending other").await;
    env.ok(&["add", &id, &other, arg(&dest)]).await;
    let out = env
        .run(&["transfer", "--restart", &other, arg(&dest)])
        .await;
    out.expect_code(0);
    assert!(
        out.stderr.contains(&format!("cancelled job {}", &id[..8])),
        "{out:?}"
    );
    // With --json the notes stay off stderr: only the summary, on stdout.
    std::fs::remove_file(dest.join("other.bin")).unwrap();
    let id2 = env.create("pending again").await;
    env.ok(&["add", &id2, &other, arg(&dest)]).await;
    let quiet = env
        .run(&["--json", "transfer", "--restart", &other, arg(&dest)])
        .await;
    quiet.expect_code(0);
    assert!(quiet.stderr.is_empty(), "{quiet:?}");
    assert_ne!(quiet.json()["job_id"], id2.as_str());
    assert_eq!(env.info(&id).await["state"], "cancelled");
    assert_eq!(
        std::fs::read(dest.join("other.bin")).unwrap(),
        vec![5u8; 1000]
    );
}

/// The lines a terminal would show for `output`: split at `\r` and `\n`, escape sequences
/// removed.
fn screen_lines(output: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = output.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
        .split(['\r', '\n'])
        .map(str::to_owned)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// A URL on 127.0.0.1 whose port refuses connections.
fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/file.bin")
}

#[tokio::test]
async fn issue_13_4_a_refused_port_fails_fast_and_says_why_it_waits() {
    let env = Env::start();
    let dest = env.dir("dest");
    let url = refused_url();
    // A narrow terminal: every line drawn must fit it.
    let cols = 60;
    let Some(t) = on_terminal(
        &env,
        cols,
        "saving to",
        "none",
        &[
            "transfer",
            "--retry-delay",
            "1",
            "--no-progress-timeout",
            "3",
            "--max-time",
            "600",
            &url,
            arg(&dest),
        ],
    )
    .await
    else {
        return;
    };
    assert_eq!(t.code, Some(3), "{}", t.output);
    assert!(t.output.contains("CONNECT_FAILED"), "{}", t.output);
    // While retrying, the line counts down to the next attempt and shows no ETA.
    let lines = screen_lines(&t.output);
    let retrying: Vec<&String> = lines.iter().filter(|l| l.contains("retrying")).collect();
    assert!(
        retrying.iter().any(|l| l.contains("next try in")),
        "{lines:#?}"
    );
    assert!(retrying.iter().all(|l| !l.contains("ETA")), "{lines:#?}");
    // The progress line fits the terminal (the messages printed after it may wrap).
    for l in lines.iter().filter(|l| !l.starts_with("ferry: ")) {
        assert!(
            l.chars().count() <= cols as usize,
            "wider than {cols}: {l:?}"
        );
    }
    // The job ran as an interactive one, with the limits asked for.
    let id = short_id_after(&t.output, "(job ");
    let job = env.info(&id).await;
    assert_eq!(job["priority"], "foreground", "{job}");
    assert_eq!(job["no_progress_timeout_s"], 3, "{job}");
    assert_eq!(job["max_download_time_s"], 600, "{job}");

    // `ferry wait` shows the same line.
    let id = env.create("waited").await;
    env.ok(&["add", &id, &refused_url(), arg(&dest.join("w.bin"))])
        .await;
    env.ok(&[
        "set",
        &id,
        "--retry-delay",
        "1",
        "--no-progress-timeout",
        "3",
    ])
    .await;
    env.ok(&["resume", &id]).await;
    let Some(t) = on_terminal(&env, cols, "", "none", &["wait", &id]).await else {
        return;
    };
    assert_eq!(t.code, Some(3), "{}", t.output);
    let lines = screen_lines(&t.output);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("retrying") && l.contains("next try in")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn issue_13_5_ctrl_c_says_what_it_did_in_one_short_line() {
    let env = Env::start();
    let srv = TestServer::start().await;
    srv.add_file("/held.bin", vec![3u8; 100_000]);
    let gate = hold_body(&srv, "/held.bin");
    let dest = env.dir("dest");
    let url = srv.url("/held.bin");
    // `ferry transfer`: Ctrl-C suspends the job.
    let Some(t) = on_terminal(
        &env,
        80,
        "saving to",
        "ctrl-c",
        &["transfer", &url, arg(&dest)],
    )
    .await
    else {
        return;
    };
    assert_eq!(t.code, Some(130), "{}", t.output);
    let id = short_id_after(&t.output, "ferry: suspended job ");
    assert_eq!(env.info(&id).await["state"], "suspended");
    // One line, after the progress line was cleared (it starts a fresh line), with the
    // 8-character id and how to continue.
    let at = t.output.find("ferry: suspended job").unwrap();
    let before = &t.output[..at];
    assert!(
        before.ends_with('\n')
            || before.ends_with('\r')
            || before.ends_with("\u{1b}[2K")
            || before.ends_with("\u{1b}[K")
            || before.ends_with("\u{1b}[J"),
        "the progress line was not cleared: {:?}",
        &before[before.len().saturating_sub(40)..]
    );
    let said: Vec<String> = screen_lines(&t.output[at..]);
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(said[0].contains(&format!("ferry resume {id}")), "{said:#?}");
    assert!(said[0].chars().count() <= 100, "{said:#?}");

    // `ferry wait`: Ctrl-C stops waiting and leaves the job as it is (documented in --help).
    env.ok(&["resume", &id]).await;
    let Some(t) = on_terminal(&env, 80, "", "ctrl-c", &["wait", &id]).await else {
        return;
    };
    assert_eq!(t.code, Some(130), "{}", t.output);
    let at = t
        .output
        .find("ferry: stopped waiting")
        .unwrap_or_else(|| panic!("{}", t.output));
    let said = screen_lines(&t.output[at..]);
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(said[0].contains(&format!("job {id} is still")), "{said:#?}");
    assert_ne!(env.info(&id).await["state"], "suspended");
    let help = env.ok(&["wait", "--help"]).await;
    assert!(help.stdout.contains("Ctrl-C stops waiting"), "{help:?}");
    gate.close();
}

#[tokio::test]
async fn issue_13_7_a_partial_failure_names_the_file_and_keeps_the_good_ones() {
    let env = Env::start();
    let srv = TestServer::start().await;
    srv.add_file("/a.bin", vec![1u8; 3000]);
    srv.add_file("/c.bin", vec![3u8; 4000]);
    let dest = env.dir("dest");
    // One file at a time, the missing one last, so the good ones surely arrived first.
    let id = env.create("three").await;
    for path in ["/a.bin", "/c.bin", "/gone.bin"] {
        env.ok(&["add", &id, &srv.url(path), arg(&dest)]).await;
    }
    env.ok(&["set", &id, "--max-parallel-files", "1"]).await;
    env.ok(&["resume", &id]).await;
    let out = env.run(&["wait", &id]).await;
    out.expect_code(3);
    let short = &id[..8];
    assert!(
        out.stderr
            .contains(&format!("failed: {}", dest.join("gone.bin").display())),
        "{out:?}"
    );
    assert!(
        out.stderr.contains(&format!(
            "2 of 3 files were transferred: `ferry complete {short} --partial`"
        )),
        "{out:?}"
    );
    // The advice works: the good files are kept.
    env.run(&["complete", short, "--partial"])
        .await
        .expect_code(4);
    assert_eq!(std::fs::read(dest.join("a.bin")).unwrap(), vec![1u8; 3000]);
    assert_eq!(std::fs::read(dest.join("c.bin")).unwrap(), vec![3u8; 4000]);
    assert!(!dest.join("gone.bin").exists());
    assert!(staging_files(&dest).is_empty());

    // `ferry clean` removes failed jobs and their partial files; others stay.
    let kept = env.create("kept").await;
    let out = env
        .run(&["transfer", &srv.url("/gone2.bin"), arg(&dest)])
        .await;
    out.expect_code(3);
    // The failed job leaves no empty `.part` behind (deleted just after the failure; there is
    // no event for it, so a bounded poll).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !staging_files(&dest).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "0-byte staging files left: {:?}",
            staging_files(&dest)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = env.ok(&["--json", "clean"]).await;
    let cancelled = out.json()["cancelled"].as_array().unwrap().clone();
    assert_eq!(cancelled.len(), 1, "{out:?}");
    let failed = cancelled[0].as_str().unwrap();
    assert_eq!(env.info(failed).await["state"], "cancelled");
    assert_eq!(env.info(&kept).await["state"], "suspended");
    assert!(staging_files(&dest).is_empty());
    assert_eq!(env.ok(&["clean"]).await.stdout.trim(), "no failed jobs");
}

#[tokio::test]
async fn issue_13_10_times_are_local_without_nanoseconds_and_utc_in_json() {
    let env = Env::start();
    let id = env.create("timed").await;
    // A fixed zone three hours east of UTC (POSIX names have the sign reversed).
    let mut cmd = env.cmd(&["info", &id]);
    cmd.env("TZ", "Etc/GMT-3");
    let out = run_command(cmd, WAIT).await;
    out.expect_code(0);
    let created = out
        .lines()
        .into_iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("created:")
                .map(str::trim)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no created line: {out:?}"));
    // `YYYY-MM-DD HH:MM:SS +03:00`: to the second, with the zone.
    assert_eq!(created.len(), 26, "{created}");
    assert!(created.ends_with(" +03:00"), "{created}");
    assert!(!created.contains('.'), "{created}");
    // The same instant as the daemon's UTC time, which --json keeps.
    let utc = env.info(&id).await["times"]["created"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(utc.ends_with('Z'), "{utc}");
    let parse = |s: &str, f: &[time::format_description::BorrowedFormatItem<'_>]| {
        time::OffsetDateTime::parse(s, &f).unwrap()
    };
    let local = parse(
        &created,
        time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]"
        ),
    );
    let exact =
        time::OffsetDateTime::parse(&utc, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(local.unix_timestamp(), exact.unix_timestamp());
    // The event log's times too.
    let mut cmd = env.cmd(&["events", &id]);
    cmd.env("TZ", "Etc/GMT-3");
    let out = run_command(cmd, WAIT).await;
    out.expect_code(0);
    assert!(out.stdout.contains(" +03:00"), "{out:?}");
}

#[tokio::test]
async fn issue_13_1_a_transferred_auto_complete_job_completes_after_a_restart() {
    let mut env = Env::start();
    let srv = TestServer::start().await;
    srv.add_file("/f.bin", vec![9u8; 2000]);
    let dest = env.dir("dest");
    let target = dest.join("f.bin");
    let id = env.create("restarted").await;
    env.ok(&["add", &id, &srv.url("/f.bin"), arg(&target)])
        .await;
    // A non-empty directory where the file goes: the daemon's own hand-over fails (even for
    // root), so the job stays transferred with auto_complete set.
    std::fs::create_dir_all(target.join("blocker")).unwrap();
    let v = env.json(&["set", &id, "--auto-complete"]).await;
    assert_eq!(v["auto_complete"], true, "{v}");
    env.ok(&["resume", &id]).await;
    env.ok(&["wait", &id]).await;
    let out = env
        .run(&["wait", &id, "--until", "final", "--timeout", "2"])
        .await;
    out.expect_code(7);
    assert_eq!(env.info(&id).await["state"], "transferred");
    // The daemon stops; the obstacle goes; the next start completes the job.
    env.daemon.terminate();
    std::fs::remove_dir_all(&target).unwrap();
    env.daemon.restart();
    let out = env.ok(&["wait", &id, "--until", "final"]).await;
    assert_eq!(out.stdout.trim(), "acknowledged", "{out:?}");
    assert_eq!(std::fs::read(&target).unwrap(), vec![9u8; 2000]);
    // And it can be turned off again.
    let other = env.create("manual").await;
    let v = env.json(&["set", &other, "--no-auto-complete"]).await;
    assert_eq!(v["auto_complete"], false, "{v}");
}

/// A presigned URL that expired mid-job (`HTTP_403`): `ferry set-url` gives the file a new
/// URL and a resume finishes the job, instead of cancelling and losing it. Another scheme is
/// refused with a message naming it.
#[tokio::test]
async fn issue_13_16_set_url_replaces_an_expired_url_and_the_job_finishes() {
    use ferry_testkit::content::TestContent;
    use ferry_testkit::http::Behavior;
    let env = Env::start();
    let srv = TestServer::start().await;
    let content = TestContent::new(1316, 200_000);
    srv.add_file("/signed/old", content.bytes.clone());
    srv.set_behavior(
        "/signed/old",
        Behavior {
            status: Some(403),
            ..Behavior::default()
        },
    );
    srv.add_file("/signed/new", content.bytes.clone());
    let dest = env.dir("dest");
    let target = dest.join("f.bin");
    let id = env.create("presigned").await;
    env.ok(&["add", &id, &srv.url("/signed/old"), arg(&target)])
        .await;
    env.ok(&["resume", &id]).await;
    env.run(&["wait", &id]).await.expect_code(3);
    assert_eq!(env.info(&id).await["error"]["code"], "HTTP_403");

    let out = env.run(&["set-url", &id, "0", "ftp://127.0.0.1/x"]).await;
    out.expect_code(1);
    assert!(
        out.stderr.contains("cannot replace the URL of file 0") && out.stderr.contains("\"ftp\""),
        "{out:?}"
    );
    let new = srv.url("/signed/new");
    let out = env.ok(&["set-url", &id, "0", &new]).await;
    assert!(out.stdout.starts_with(&format!("file 0: {new}")), "{out:?}");
    let files = env.json(&["files", &id]).await;
    assert_eq!(files["files"][0]["remote_url"], new.as_str());

    env.ok(&["resume", &id]).await;
    let out = env.ok(&["wait", &id, "--complete"]).await;
    assert_eq!(out.stdout.trim(), "acknowledged", "{out:?}");
    assert_eq!(sha256_file(&target), content.sha256);
    // A finished job's file keeps its URL.
    let out = env.run(&["set-url", &id, "0", &new]).await;
    out.expect_code(1);
    assert!(out.stderr.contains("acknowledged"), "{out:?}");
}
