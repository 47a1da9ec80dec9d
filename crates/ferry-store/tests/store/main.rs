//! Integration tests of the store against real SQLite files in temp dirs.

// Test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use ferry_proto::{EventKind, JobState};
use ferry_store::{FileRow, JobRow, StoreError};

fn job(seq: u64, id: &str) -> JobRow {
    JobRow {
        seq,
        id: id.into(),
        owner_uid: 1000,
        settings: ferry_proto::JobSettings {
            display_name: format!("job {seq}"),
            ..ferry_proto::JobSettings::default()
        },
        ..JobRow::default()
    }
}

#[tokio::test]
async fn rows_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (w, _r) = ferry_store::open(dir.path()).unwrap();
        let j = job(1, "a");
        w.submit(move |tx| {
            tx.insert_job(&j)?;
            tx.put_files(
                "a",
                &[FileRow {
                    file_index: 0,
                    remote_url: "http://x/y".into(),
                    ..FileRow::default()
                }],
            )?;
            tx.append_event("a", 1000, "t", EventKind::Created)
        })
        .wait()
        .await
        .unwrap();
    }
    let (_w, r) = ferry_store::open(dir.path()).unwrap();
    let jobs = r.jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].settings.display_name, "job 1");
    assert_eq!(r.files("a", 0, 10).unwrap()[0].remote_url, "http://x/y");
    let ev = r.events(0, Some(1000), None, 10).unwrap();
    assert_eq!(ev.len(), 1);
    assert!(r.events(0, Some(1), None, 10).unwrap().is_empty());
    assert_eq!(r.integrity_check().unwrap(), "ok");
}

#[tokio::test]
async fn a_failing_operation_rolls_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (w, r) = ferry_store::open(dir.path()).unwrap();
    let mut rx = w.subscribe();
    let good = w.submit(|tx| {
        tx.insert_job(&job(1, "a"))?;
        tx.append_event("a", 1000, "t", EventKind::Created)
    });
    let bad = w.submit(|tx| {
        tx.append_event("b", 1000, "t", EventKind::Created)?;
        // Same primary key: fails, and its event must vanish with it.
        tx.insert_job(&job(1, "b"))
    });
    let good2 = w.submit(|tx| {
        tx.append_event(
            "a",
            1000,
            "t",
            EventKind::State {
                from: JobState::Suspended,
                to: JobState::Queued,
            },
        )
    });
    assert_eq!(good.wait().await.unwrap(), 1);
    assert!(bad.wait().await.is_err());
    assert_eq!(good2.wait().await.unwrap(), 2);
    assert_eq!(rx.recv().await.unwrap().seq, 1);
    assert_eq!(rx.recv().await.unwrap().seq, 2);
    assert_eq!(r.jobs().unwrap().len(), 1);
    assert_eq!(r.last_event_seq().unwrap(), 2);
}

#[test]
fn a_foreign_database_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(ferry_store::DB_FILE);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("CREATE TABLE other(x); INSERT INTO other VALUES (1);")
        .unwrap();
    drop(c);
    let err = ferry_store::open(dir.path()).err().unwrap();
    assert!(matches!(err, StoreError::Unusable { .. }), "{err}");
    assert!(err.to_string().contains("another program"), "{err}");
    assert!(path.exists());
}

#[test]
fn garbage_file_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(ferry_store::DB_FILE);
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let err = ferry_store::open(dir.path()).err().unwrap();
    assert!(
        err.to_string().contains("not a usable Ferry job store"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x42u8; 8192]);
}

/// Job rewrites are written once per batch, in their last version; a failed
/// operation's rewrite is dropped with it, and the reader's paging and counting see the result.
#[tokio::test]
async fn issue_4_job_rewrites_keep_the_last_successful_version() {
    let dir = tempfile::tempdir().unwrap();
    let (w, r) = ferry_store::open(dir.path()).unwrap();
    w.submit(|tx| (1..=3).try_for_each(|i| tx.insert_job(&job(i, &format!("j{i}")))))
        .wait()
        .await
        .unwrap();
    // Queued back to back, so most land in one batch.
    let mut commits = Vec::new();
    for state in [
        JobState::Queued,
        JobState::Transferring,
        JobState::Transferred,
    ] {
        let mut j = job(1, "j1");
        j.state = state;
        commits.push(w.submit(move |tx| tx.update_job(&j)));
    }
    let mut failed = job(1, "j1");
    failed.state = JobState::Error;
    let failing = w.submit(move |tx| {
        tx.update_job(&failed)?;
        tx.insert_job(&job(2, "j2")) // a duplicate: this operation fails
    });
    let mut cancelled = job(3, "j3");
    cancelled.state = JobState::Cancelled;
    commits.push(w.submit(move |tx| tx.update_job(&cancelled)));
    for c in commits {
        c.wait().await.unwrap();
    }
    assert!(failing.wait().await.is_err());
    assert_eq!(
        r.job("j1").unwrap().map(|j| j.state),
        Some(JobState::Transferred)
    );
    assert_eq!(r.job("nope").unwrap(), None);

    let live = [JobState::Suspended, JobState::Transferred];
    assert_eq!(r.count_jobs_by_owner(&live).unwrap(), vec![(1000, 2)]);
    let page = r.job_page(2, Some(1000), &live, 10).unwrap();
    assert_eq!(page.iter().map(|j| j.seq).collect::<Vec<_>>(), vec![2]);
    assert!(r.job_page(1, Some(1), &live, 10).unwrap().is_empty());
    let hot = r.jobs_needing_memory(&[JobState::Transferred]).unwrap();
    assert_eq!(
        hot.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["j1"]
    );
    assert_eq!(r.last_job_seq().unwrap(), 3);
    let finals = r.final_times(&[JobState::Cancelled]).unwrap();
    assert_eq!(finals, vec![("j3".to_string(), None)]);
}

/// A job's `progress` events replace each other; every other event stays.
#[tokio::test]
async fn a_progress_event_replaces_the_jobs_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (w, r) = ferry_store::open(dir.path()).unwrap();
    let progress = |n| EventKind::Progress {
        bytes_transferred: n,
        bytes_total: Some(100),
    };
    w.submit(move |tx| {
        tx.insert_job(&job(1, "a"))?;
        tx.insert_job(&job(2, "b"))?;
        tx.append_event("a", 1000, "t", EventKind::Created)?;
        tx.append_event("a", 1000, "t", progress(10))?;
        tx.append_event("b", 1000, "t", progress(5))?;
        tx.append_event("a", 1000, "t", progress(20))?;
        tx.append_event("a", 1000, "t", EventKind::FileTransferred { file_index: 0 })?;
        tx.append_event("a", 1000, "t", progress(30))
    })
    .wait()
    .await
    .unwrap();
    let kinds: Vec<EventKind> = r
        .events(0, None, Some("a"), 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Created,
            EventKind::FileTransferred { file_index: 0 },
            progress(30)
        ]
    );
    assert_eq!(r.events(0, None, Some("b"), 100).unwrap().len(), 1);
}

/// A start finds the staging files of final jobs from the staging index, which file
/// writes keep in step and migration 5 fills from rows written before it existed.
#[tokio::test]
async fn issue_5_staging_files_of_final_jobs_are_found_after_migration_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let staged = |i: u64, temp: Option<&str>| FileRow {
        file_index: i,
        temp_path: temp.map(str::to_owned),
        ..FileRow::default()
    };
    let finals = [JobState::Cancelled, JobState::Acknowledged];
    {
        let (w, _r) = ferry_store::open(dir.path()).unwrap();
        let mut cancelled = job(1, "gone");
        cancelled.state = JobState::Cancelled;
        let running = job(2, "live");
        let files = [staged(0, Some("/d/.ferry-a.part")), staged(1, None)];
        w.submit(move |tx| {
            tx.insert_job(&cancelled)?;
            tx.insert_job(&running)?;
            tx.put_files("gone", &files)?;
            tx.put_files("live", &[staged(0, Some("/d/.ferry-b.part"))])
        })
        .wait()
        .await
        .unwrap();
    }
    // Back to a schema-4 store, as an older ferryd wrote it.
    {
        let db = rusqlite::Connection::open(dir.path().join("ferry.db")).unwrap();
        db.execute_batch(
            "DROP INDEX files_staging; ALTER TABLE files DROP COLUMN staging; PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let (w, r) = ferry_store::open(dir.path()).unwrap();
    let found = r.staging_files_of(&finals).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (
            found[0].0.as_str(),
            found[0].1,
            found[0].2.temp_path.as_deref()
        ),
        ("gone", 1000, Some("/d/.ferry-a.part"))
    );
    // Clearing the path takes the file out of the index.
    w.submit(move |tx| tx.put_files("gone", &[staged(0, None)]))
        .wait()
        .await
        .unwrap();
    assert!(r.staging_files_of(&finals).unwrap().is_empty());
    assert_eq!(r.staging_files_of(&[JobState::Suspended]).unwrap().len(), 1);
    assert_eq!(r.integrity_check().unwrap(), "ok");
}
