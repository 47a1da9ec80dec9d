//! Cold jobs live in the store, not in memory (the target: 100 000 suspended jobs, an idle
//! daemon under 20 MiB). What must hold: a start loads only the jobs something depends on, and
//! every read or change of a job that was left in the store behaves exactly as if it had stayed
//! in memory (`job.get`, `job.list` with its cursor and filters, quotas, resume → complete).
//! The test daemon drops cold jobs 10 ms after activity, so every other test exercises the
//! read-back path as well.

use ferry_client::ClientError;
use ferry_proto::params::{CreateParams, ListParams, SetParams};
use ferry_proto::{ErrorKind, Job, JobState};
use ferry_testkit::http::TestServer;

use crate::support::*;

/// The daemon's "ferryd is ready" log line.
fn ready_line(d: &ferry_testkit::daemon::TestDaemon) -> String {
    d.log
        .try_iter()
        .find(|l| l.contains("ferryd is ready"))
        .expect("the ready line was logged")
}

/// The `key=value` field of a log line.
fn field(line: &str, key: &str) -> u64 {
    let value = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"));
    value.parse().unwrap_or_else(|_| panic!("{key}={value:?}"))
}

/// Every job the caller can see, in list order, in pages of 7 (the cursor crosses pages).
async fn list_all(c: &ferry_client::Client, include_final: bool) -> Vec<Job> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = c
            .list(ListParams {
                include_final: Some(include_final),
                after: after.clone(),
                limit: Some(7),
                ..ListParams::default()
            })
            .await
            .expect("job.list");
        out.extend(page.jobs);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

#[tokio::test]
async fn issue_4_cold_jobs_stay_in_the_store_and_read_back_unchanged() {
    let mut d = daemon_with(&["--max-jobs-per-user", "32"]);
    let server = TestServer::start().await;
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    server.add_file("/a", body.clone());
    let dir = d.files_dir();
    let c = d.client().await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let id = job_with(
            &c,
            vec![spec(&server.url("/a"), &dir.join(format!("f{i}")))],
        )
        .await;
        if i % 3 == 0 {
            c.set(SetParams {
                job_id: id.clone(),
                display_name: Some(format!("job {i}")),
                ..SetParams::default()
            })
            .await
            .expect("job.set");
        }
        if i < 5 {
            c.cancel(&id).await.expect("job.cancel");
        }
        ids.push(id);
    }
    // One hot job: retrying against a closed port, with the default 600 s retry delay.
    let hot = job_with(&c, vec![spec("http://127.0.0.1:1/x", &dir.join("hot"))]).await;
    c.resume(&hot).await.expect("job.resume");
    wait_state(&c, &hot, JobState::TransientError).await;
    let mut before = Vec::new();
    for id in &ids {
        before.push(c.get(id).await.expect("job.get"));
    }
    let listed_before = list_all(&c, true).await;
    assert_eq!(listed_before.len(), 31);
    drop(c);

    d.restart();
    let ready = ready_line(&d);
    assert_eq!(field(&ready, "resident"), 1, "only the retrying job loads");
    assert_eq!(field(&ready, "unfinished"), 26);

    let c = d.client().await;
    for (id, old) in ids.iter().zip(&before) {
        assert_eq!(&c.get(id).await.expect("job.get"), old, "job {id}");
    }
    let listed = list_all(&c, true).await;
    let order = |jobs: &[Job]| jobs.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>();
    assert_eq!(order(&listed), order(&listed_before));
    for (new, old) in listed.iter().zip(&listed_before) {
        if new.job_id != hot {
            assert_eq!(new, old);
        }
    }
    assert_eq!(
        list_all(&c, false).await.len(),
        26,
        "final jobs are left out"
    );
    let cancelled = c
        .list(ListParams {
            include_final: Some(true),
            states: Some(vec![JobState::Cancelled]),
            ..ListParams::default()
        })
        .await
        .expect("job.list by state");
    assert_eq!(order(&cancelled.jobs), ids[..5].to_vec());

    // The quota counts the jobs left in the store: 26 unfinished of 32.
    for _ in 0..6 {
        job_with(&c, Vec::new()).await;
    }
    match c.create(CreateParams::default()).await {
        Err(ClientError::Daemon(e)) => assert!(e.is(ErrorKind::LimitExceeded), "{e:?}"),
        other => panic!("the 33rd job was not refused: {other:?}"),
    }

    // A cold job resumes, transfers and completes like any other.
    let id = &ids[7];
    c.resume(id).await.expect("job.resume");
    wait_state(&c, id, JobState::Transferred).await;
    c.complete(id).await.expect("job.complete");
    assert_eq!(
        c.get(id).await.expect("job.get").state,
        JobState::Acknowledged
    );
    assert_eq!(std::fs::read(dir.join("f7")).expect("delivered"), body);
}
