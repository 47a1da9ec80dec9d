//! Ctrl-C during `ferry transfer` suspends the job, exits 130 and says how to resume it; the
//! advice works.

use std::sync::Arc;

use ferry_testkit::content::TestContent;
use ferry_testkit::http::{Behavior, TestServer};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::Semaphore;

use crate::support::*;

#[tokio::test]
async fn ctrl_c_suspends_the_job_and_prints_how_to_resume() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let content = TestContent::new(7, 300_000);
    srv.add_file("/slow.bin", content.bytes.clone());
    // The body is held until the test opens the gate, so the transfer is surely in flight.
    let gate = Arc::new(Semaphore::new(0));
    srv.set_behavior(
        "/slow.bin",
        Behavior {
            gate: Some(gate.clone()),
            ..Behavior::default()
        },
    );
    let dest = env.dir("dest");
    let url = srv.url("/slow.bin");
    let child = env
        .cmd(&["transfer", &url, arg(&dest)])
        .spawn()
        .expect("spawn ferry");
    let pid = Pid::from_raw(i32::try_from(child.id().expect("pid")).unwrap());
    // `ferry transfer` watches for Ctrl-C before it resumes the job, so once the daemon has
    // asked the server for the file the handler is in place.
    let seen = srv.wait_for_requests("/slow.bin", 1, WAIT).await;
    assert!(!seen.is_empty(), "the daemon never requested the file");
    kill(pid, Signal::SIGINT).unwrap();
    let out = finish(child, format!("transfer {url} <dest> (SIGINT)"), WAIT).await;
    out.expect_code(130);
    // One line, with the 8-character id.
    let id = short_id_after(&out.stderr, "ferry resume ");
    let said: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.contains("saving to"))
        .collect();
    assert_eq!(said.len(), 1, "{out:?}");
    assert!(out.stderr.contains("suspended"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let job = env.info(&id).await;
    assert_eq!(job["state"], "suspended", "{job}");
    assert!(!dest.join("slow.bin").exists());

    // The hint works: resume, then `wait --complete` saves the file.
    gate.close();
    env.ok(&["resume", &id]).await;
    let out = env.ok(&["wait", &id, "--complete"]).await;
    assert_eq!(out.stdout.trim(), "acknowledged", "{out:?}");
    assert_eq!(sha256_file(&dest.join("slow.bin")), content.sha256);
}
