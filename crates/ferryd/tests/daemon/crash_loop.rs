//! The crash loop: a mixed workload — downloads of various sizes, handler callbacks
//! that complete jobs, completes and cancels from the application — with `kill -9` of ferryd at
//! random moments, restarting each time. What must hold at the end: every job is complete with
//! the right content or still resumable, no final file is wrong, no staging file is left for a
//! final job, every job-transferred notification was delivered with one stable `delivery_id`,
//! and SQLite's `integrity_check` is `ok` after every restart.
//!
//! `FERRY_CRASH_LOOPS` sets the number of kills (default 20, as in CI; `scripts/crash-loop.sh`
//! runs 100) and `FERRY_CRASH_SEED` the random seed (printed, so a failure can be replayed).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ferry_client::Client;
use ferry_proto::JobState;
use ferry_proto::params::{CreateParams, ListParams, SetParams};
use ferry_testkit::content::TestContent;
use ferry_testkit::http::{Behavior, TestServer};
use serde_json::json;

use crate::callbacks::{handler_script, log_lines, shared_log};
use crate::support::*;

/// A small deterministic PRNG (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn integrity_ok(state_dir: &std::path::Path) {
    let db = rusqlite::Connection::open_with_flags(
        state_dir.join("ferry.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let r: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(r, "ok");
}

#[tokio::test]
async fn kill_9_at_random_moments_loses_nothing() {
    let loops: u32 = std::env::var("FERRY_CRASH_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("FERRY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash loop: {loops} kills, FERRY_CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let mut d = daemon();
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let log = shared_log(d.dir.path(), "handler.log");
    let argv = handler_script(d.dir.path(), &log, true);
    // Sources of various sizes; the big ones drip so that kills land mid-transfer.
    let sizes = [1_000usize, 50_000, 300_000, 2_000_000, 6_000_000];
    let mut expected: HashMap<String, String> = HashMap::new();
    for (i, size) in sizes.iter().enumerate() {
        let c = TestContent::new(200 + i as u64, *size);
        let path = format!("/src{i}");
        srv.add_file(&path, c.bytes.clone());
        if *size >= 2_000_000 {
            srv.set_behavior(
                &path,
                Behavior {
                    rate_bytes_per_sec: Some(4_000_000),
                    ..Behavior::default()
                },
            );
        }
        expected.insert(path, c.sha256);
    }
    // local path → source path, for the final content check.
    let mut sources: HashMap<String, String> = HashMap::new();
    let mut handler_jobs: HashSet<String> = HashSet::new();
    let mut next_file = 0u64;

    for round in 0..loops {
        {
            let c = d.client().await;
            if round == 0 {
                let _: serde_json::Value = c
                    .call_raw("handler.register", json!({"name": "crash", "argv": argv}))
                    .await
                    .unwrap();
            }
            // A few new jobs each round, some served by the handler.
            for _ in 0..1 + rng.below(2) {
                let mut files = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    let src = format!("/src{}", rng.below(sizes.len() as u64));
                    let local = dir.join(format!("f{next_file}"));
                    next_file += 1;
                    sources.insert(local.to_string_lossy().into_owned(), src.clone());
                    files.push(spec(&srv.url(&src), &local));
                }
                let id = c
                    .create(CreateParams {
                        display_name: format!("r{round}"),
                        files: Some(files),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let handled = rng.below(2) == 0;
                c.set(SetParams {
                    job_id: id.clone(),
                    minimum_retry_delay_s: Some(1),
                    notify_handler: if handled {
                        Some(Some("crash".into()))
                    } else {
                        None
                    },
                    ..Default::default()
                })
                .await
                .unwrap();
                if handled {
                    handler_jobs.insert(id.clone());
                }
                c.resume(&id).await.unwrap();
            }
            // The application acts on some of its other jobs.
            let jobs = c.list(ListParams::default()).await.unwrap().jobs;
            for j in jobs.iter().filter(|j| !handler_jobs.contains(&j.job_id)) {
                match (j.state, rng.below(6)) {
                    (JobState::Transferred, _) => {
                        let _ = c.complete(&j.job_id).await;
                    }
                    (_, 0) => {
                        let _ = c.cancel(&j.job_id).await;
                    }
                    (JobState::Suspended | JobState::Error, _) => {
                        let _ = c.resume(&j.job_id).await;
                    }
                    _ => {}
                }
            }
        }
        // Let it run for a random moment, then pull the plug.
        tokio::time::sleep(Duration::from_millis(20 + rng.below(400))).await;
        d.kill9();
        integrity_ok(&d.state_dir);
        d.restart();
        integrity_ok(&d.state_dir);
    }

    // Let everything settle: resume what is left, complete what the application owns.
    let c = d.client().await;
    let jobs = c.list(ListParams::default()).await.unwrap().jobs;
    for j in &jobs {
        if matches!(
            j.state,
            JobState::Suspended | JobState::Error | JobState::TransientError
        ) {
            c.resume(&j.job_id).await.unwrap();
        }
    }
    for j in &jobs {
        let job = ferry_testkit::daemon::wait_for(&c, &j.job_id, WAIT, |j| {
            matches!(
                j.state,
                JobState::Transferred | JobState::Acknowledged | JobState::Cancelled
            )
        })
        .await;
        if job.state == JobState::Transferred && !handler_jobs.contains(&job.job_id) {
            c.complete(&job.job_id).await.unwrap();
        }
        if handler_jobs.contains(&job.job_id) {
            wait_any_final(&c, &job.job_id).await;
        }
    }

    // Every final file is right; no staging file belongs to a final job.
    let all = c
        .list(ListParams {
            include_final: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .jobs;
    let mut live_temps = HashSet::new();
    for j in &all {
        for f in c.files(&j.job_id).await.unwrap() {
            if f.completed {
                let src = &sources[&f.local_path];
                assert_eq!(
                    sha256_file(std::path::Path::new(&f.local_path)),
                    expected[src],
                    "{}",
                    f.local_path
                );
            }
            if let Some(t) = f.temporary_path {
                assert!(
                    !j.state.is_final(),
                    "job {} is {} but keeps staging file {t}",
                    j.job_id,
                    j.state
                );
                live_temps.insert(t);
            }
        }
        assert!(
            !matches!(j.state, JobState::Error),
            "job {} ended in error: {:?}",
            j.job_id,
            j.error
        );
    }
    for t in temp_files(&dir) {
        assert!(
            live_temps.contains(&t.to_string_lossy().into_owned()),
            "orphan staging file {}",
            t.display()
        );
    }
    // Handler jobs: job_transferred reached the handler, always with one delivery_id per job.
    let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
    for l in log_lines(&log) {
        if l["event"] == "callback.job_transferred" {
            ids.entry(l["job_id"].as_str().unwrap().to_string())
                .or_default()
                .insert(l["delivery_id"].as_str().unwrap().to_string());
        }
    }
    for j in all
        .iter()
        .filter(|j| handler_jobs.contains(&j.job_id) && j.state == JobState::Acknowledged)
    {
        let got = ids.get(&j.job_id).map(HashSet::len).unwrap_or(0);
        assert_eq!(
            got, 1,
            "job {}: job_transferred delivered with {got} distinct delivery ids",
            j.job_id
        );
    }
    integrity_ok(&d.state_dir);
}

async fn wait_any_final(c: &Client, id: &str) {
    ferry_testkit::daemon::wait_for(c, id, WAIT, |j| j.state.is_final()).await;
}
