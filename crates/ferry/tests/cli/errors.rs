//! A job that fails: `ferry transfer` exits 3 with the daemon's error on stderr and leaves the
//! job in `error` for the user to inspect, resume or cancel.

use ferry_testkit::http::{Behavior, TestServer};

use crate::support::*;

#[tokio::test]
async fn http_404_exits_3_and_keeps_the_job() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let dest = env.dir("dest");
    let url = srv.url("/gone/missing.bin");
    let out = env.run(&["transfer", &url, arg(&dest)]).await;
    out.expect_code(3);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("404"), "{out:?}");
    let id = id_after(&out.stderr, "ferry: job ");
    assert!(
        out.stderr.contains(&format!("ferry cancel {id}")),
        "{out:?}"
    );
    // The job stays, in error, with the daemon's error info.
    let jobs = env.list(&[]).await;
    let job = find_job(&jobs, &id).unwrap_or_else(|| panic!("job {id} not listed: {jobs:?}"));
    assert_eq!(job["state"], "error", "{job}");
    assert_eq!(job["error"]["code"], "HTTP_404", "{job}");
    assert!(!dest.join("missing.bin").exists());
    // It can be dropped as the hint says, which removes its staging file.
    let out = env.ok(&["cancel", &id]).await;
    assert_eq!(out.stdout.trim(), "cancelled");
    assert!(staging_files(&dest).is_empty());
}

#[tokio::test]
async fn json_error_summary() {
    let env = Env::start();
    let srv = TestServer::start().await;
    srv.add_file("/f", vec![1u8; 10]);
    srv.set_behavior(
        "/f",
        Behavior {
            status: Some(403),
            ..Behavior::default()
        },
    );
    let dest = env.dir("dest");
    let out = env
        .run(&["--json", "transfer", &srv.url("/f"), arg(&dest)])
        .await;
    out.expect_code(3);
    let v = out.json();
    assert_eq!(v["state"], "error", "{v}");
    assert_eq!(v["error"]["code"], "HTTP_403", "{v}");
    assert_eq!(v["error"]["http_status"], 403, "{v}");
    let id = v["job_id"].as_str().expect("job_id");
    assert_eq!(env.info(id).await["state"], "error");
    assert!(out.stderr.contains("403"), "{out:?}");
}
