//! The bitsadmin-style verbs in sequence: create → add → files → set → info → resume →
//! wait --complete → list, and cancel.

use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;

use crate::support::*;

#[tokio::test]
async fn verbs_round_trip() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let content = TestContent::new(8, 12_345);
    srv.add_file("/pkg/quick.tar", content.bytes.clone());
    let url = srv.url("/pkg/quick.tar");
    let dest = env.dir("dest");
    let target = dest.join("quick.tar");

    // create prints the bare id.
    let out = env.ok(&["create", "roundtrip"]).await;
    let id = out.stdout.trim().to_owned();
    assert_eq!(id.len(), 36, "{out:?}");
    assert_eq!(env.info("roundtrip").await["state"], "suspended");

    // add: a directory as PATH names the file after the URL.
    let out = env.ok(&["add", "roundtrip", &url, arg(&dest)]).await;
    assert_eq!(
        out.stdout.trim(),
        format!("added 1 file to job {id} (from index 0)"),
        "{out:?}"
    );
    let files = env.json(&["files", "roundtrip"]).await;
    let files = files["files"].as_array().expect("files");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["file_index"], 0);
    assert_eq!(files[0]["remote_url"], url.as_str());
    assert_eq!(files[0]["local_path"], arg(&target));
    assert_eq!(files[0]["transferred"], false);
    // The table form shows the same file.
    let out = env.ok(&["files", &id[..8]]).await;
    assert!(out.stdout.contains(&url), "{out:?}");
    assert!(out.stdout.contains("pending"), "{out:?}");

    // set prints the job; info shows the change.
    let out = env.ok(&["set", "roundtrip", "--priority", "high"]).await;
    assert!(
        out.lines()
            .iter()
            .any(|l| l.starts_with("priority:") && l.ends_with("high")),
        "{out:?}"
    );
    assert_eq!(env.info("roundtrip").await["priority"], "high");
    let v = env
        .json(&["set", "roundtrip", "--description", "from the CLI test"])
        .await;
    assert_eq!(v["description"], "from the CLI test");
    assert_eq!(v["priority"], "high");
    // `set` without a property is a usage error.
    env.run(&["set", "roundtrip"]).await.expect_code(2);

    let out = env.ok(&["resume", "roundtrip"]).await;
    assert!(!out.stdout.trim().is_empty(), "{out:?}");
    let out = env.ok(&["wait", "roundtrip", "--complete"]).await;
    assert_eq!(out.stdout.trim(), "acknowledged", "{out:?}");
    assert_eq!(sha256_file(&target), content.sha256);
    assert!(staging_files(&dest).is_empty());

    // Final jobs are listed only with --all.
    let all = env.list(&["--all"]).await;
    let job = find_job(&all, &id).unwrap_or_else(|| panic!("{id} not in {all:?}"));
    assert_eq!(job["state"], "acknowledged");
    assert_eq!(job["priority"], "high");
    assert!(find_job(&env.list(&[]).await, &id).is_none());
    // Waiting on a job that is already acknowledged returns at once.
    let out = env.ok(&["wait", &id]).await;
    assert_eq!(out.stdout.trim(), "acknowledged");

    // Cancel another job.
    let other = env.create("doomed").await;
    env.ok(&["add", "doomed", &url, arg(&dest.join("never.tar"))])
        .await;
    let out = env.ok(&["cancel", "doomed"]).await;
    assert_eq!(out.stdout.trim(), "cancelled", "{out:?}");
    assert!(!dest.join("never.tar").exists());
    let all = env.list(&["--all"]).await;
    assert_eq!(find_job(&all, &other).unwrap()["state"], "cancelled");
    let cancelled = env.list(&["--all", "--state", "cancelled"]).await;
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    // Nothing can change a final job.
    let out = env.run(&["resume", "doomed"]).await;
    out.expect_code(1);
    assert!(out.stderr.contains(&other), "{out:?}");
    // Waiting on a cancelled job fails.
    let out = env.run(&["wait", "doomed"]).await;
    out.expect_code(1);
    assert_eq!(out.stdout.trim(), "cancelled", "{out:?}");
}

#[tokio::test]
async fn list_table_and_json_agree() {
    let env = Env::start();
    let a = env.create("alpha").await;
    let b = env.create("beta").await;
    let jobs = env.list(&[]).await;
    assert_eq!(jobs.len(), 2);
    assert!(find_job(&jobs, &a).is_some() && find_job(&jobs, &b).is_some());
    let out = env.ok(&["list"]).await;
    let lines = out.lines();
    assert!(lines[0].starts_with("ID"), "{out:?}");
    assert_eq!(lines.len(), 3, "{out:?}");
    for (id, name) in [(&a, "alpha"), (&b, "beta")] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&id[..8]) && l.ends_with(name) && l.contains("suspended")),
            "{out:?}"
        );
    }
    // A state filter.
    assert_eq!(env.list(&["--state", "queued"]).await.len(), 0);
    assert_eq!(env.list(&["--state", "suspended"]).await.len(), 2);
}

#[tokio::test]
async fn wait_gives_up_after_its_timeout() {
    let env = Env::start();
    let id = env.create("idle").await;
    // A suspended job never gets anywhere; `--timeout` bounds the wait (exit 7).
    let out = env.run(&["wait", "idle", "--timeout", "1"]).await;
    // Timed out: exit 7.
    out.expect_code(7);
    assert!(out.stderr.contains("timed out"), "{out:?}");
    assert!(out.stderr.contains(&id), "{out:?}");
}
