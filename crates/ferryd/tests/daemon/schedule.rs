//! Scheduling: background jobs share the active slots in priority order; foreground jobs start
//! at once; a higher priority preempts a lower one; waiting jobs say why.

use std::sync::Arc;

use ferry_proto::params::CreateParams;
use ferry_proto::{JobState, Priority};
use ferry_testkit::content::TestContent;
use ferry_testkit::daemon::wait_for;
use ferry_testkit::http::{Behavior, TestServer};
use tokio::sync::Semaphore;

use crate::support::*;

async fn job(
    c: &ferry_client::Client,
    srv: &TestServer,
    dir: &std::path::Path,
    name: &str,
    p: Priority,
) -> String {
    c.create(CreateParams {
        display_name: name.into(),
        priority: Some(p),
        files: Some(vec![spec(&srv.url(&format!("/{name}")), &dir.join(name))]),
        ..CreateParams::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn priorities_slots_and_preemption() {
    let d = daemon_with(&["--max-active-jobs", "1"]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let gate = Arc::new(Semaphore::new(0));
    for name in ["a", "b", "f", "h"] {
        srv.add_file(&format!("/{name}"), TestContent::new(40, 10_000).bytes);
        srv.set_behavior(
            &format!("/{name}"),
            Behavior {
                gate: Some(gate.clone()),
                ..Behavior::default()
            },
        );
    }
    let a = job(&c, &srv, &dir, "a", Priority::Normal).await;
    let b = job(&c, &srv, &dir, "b", Priority::Normal).await;
    c.resume(&a).await.unwrap();
    srv.wait_for_requests("/a", 1, WAIT).await;
    c.resume(&b).await.unwrap();
    let jb = wait_for(&c, &b, WAIT, |j| j.waiting.is_some()).await;
    assert_eq!(jb.state, JobState::Queued);
    let w = jb.waiting.unwrap();
    assert_eq!(w.reason, "slots_busy");
    assert_eq!(w.ahead, Some(1));
    assert!(
        srv.requests_for("/b").is_empty(),
        "b waits for the only slot"
    );

    // Foreground needs no slot.
    let f = job(&c, &srv, &dir, "f", Priority::Foreground).await;
    c.resume(&f).await.unwrap();
    srv.wait_for_requests("/f", 1, WAIT).await;

    // High preempts the running normal job at once.
    let h = job(&c, &srv, &dir, "h", Priority::High).await;
    c.resume(&h).await.unwrap();
    srv.wait_for_requests("/h", 1, WAIT).await;
    let ja = wait_state(&c, &a, JobState::Queued).await;
    assert_eq!(ja.waiting.map(|w| w.reason), Some("slots_busy".to_string()));

    // Let everything through: all four finish.
    gate.add_permits(100);
    for id in [&a, &b, &f, &h] {
        wait_state(&c, id, JobState::Transferred).await;
        c.complete(id).await.unwrap();
    }
    for name in ["a", "b", "f", "h"] {
        assert_eq!(
            sha256_file(&dir.join(name)),
            TestContent::new(40, 10_000).sha256
        );
    }
}

#[tokio::test]
async fn per_host_connection_budget_is_shared_by_jobs() {
    let d = daemon_with(&["--max-connections-per-host", "2"]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let gate = Arc::new(Semaphore::new(0));
    let mut ids = Vec::new();
    for name in ["h1", "h2", "h3", "h4"] {
        srv.add_file(&format!("/{name}"), TestContent::new(41, 1000).bytes);
        srv.set_behavior(
            &format!("/{name}"),
            Behavior {
                gate: Some(gate.clone()),
                ..Behavior::default()
            },
        );
        let id = job(&c, &srv, &dir, name, Priority::Foreground).await;
        c.resume(&id).await.unwrap();
        ids.push(id);
    }
    // Four foreground jobs run, but only two requests reach the host at once.
    srv.wait_until(WAIT, |log| log.len() >= 2)
        .await
        .expect("two requests");
    assert_eq!(
        srv.requests().len(),
        2,
        "the third waits for a connection slot"
    );
    gate.add_permits(100);
    for id in &ids {
        wait_state(&c, id, JobState::Transferred).await;
    }
    assert_eq!(srv.requests().len(), 4);
}
