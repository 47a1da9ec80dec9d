//! No blocking work on the daemon's runtime threads or under its lock: a job that is not in
//! memory is read back from the store outside the daemon's lock, so a slow read of one job
//! never stalls calls about other jobs.

use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::time::Duration;

use ferry_proto::JobState;
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

use crate::support::{daemon, job_with, spec, wait_state};

/// Where SQLite's WAL read marks are locked in the `-shm` file: bytes 120 + 3 .. 120 + 8.
const READ_LOCKS: (i64, i64) = (123, 5);

/// Takes (or with `F_UNLCK`, gives back) every WAL read mark of the store, the way a
/// long-running reader or a stuck checkpoint would hold them; waits if one is held.
fn read_marks(shm: &std::fs::File, kind: i32) {
    let lock = libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: READ_LOCKS.0,
        l_len: READ_LOCKS.1,
        l_pid: 0,
    };
    fcntl(shm.as_fd(), FcntlArg::F_SETLKW(&lock)).expect("lock the WAL read marks");
}

/// The attack: the store is made slow to read (its read marks held), then a job that is not
/// in memory is asked for. Its read waits; a call about a job in memory must still be answered
/// at once, because the read does not hold the daemon's lock. Before, the read ran under the
/// lock and every other call waited for it (seconds, up to the store's busy timeout).
#[tokio::test]
async fn issue_12_a_slow_store_read_of_a_cold_job_does_not_stall_calls_about_other_jobs() {
    let mut d = daemon();
    let dir = d.files_dir();
    let c = d.client().await;
    let cold = job_with(&c, vec![spec("http://127.0.0.1:1/cold", &dir.join("cold"))]).await;
    // One hot job: retrying against a closed port (it stays in memory).
    let hot = job_with(&c, vec![spec("http://127.0.0.1:1/hot", &dir.join("hot"))]).await;
    c.resume(&hot).await.expect("job.resume");
    wait_state(&c, &hot, JobState::TransientError).await;
    drop(c);
    // After a restart only the retrying job is loaded; the suspended one stays in the store.
    d.restart();
    let c = d.client().await;
    wait_state(&c, &hot, JobState::TransientError).await;

    let shm = OpenOptions::new()
        .read(true)
        .write(true)
        .open(d.state_dir.join("ferry.db-shm"))
        .expect("the store's -shm file");
    let shm = tokio::task::spawn_blocking(move || {
        read_marks(&shm, libc::F_WRLCK);
        shm
    })
    .await
    .unwrap();

    let c2 = d.client().await;
    let cold_id = cold.clone();
    let slow = tokio::spawn(async move { c2.get(&cold_id).await });
    // Give the cold read a head start into the store (there is no event for "is reading").
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(300) && !slow.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !slow.is_finished(),
        "the cold read should wait on the held read marks"
    );
    // A call that takes the daemon's lock and answers without waiting on the store.
    let answered =
        tokio::time::timeout(Duration::from_secs(3), c.clear_notify_interface(&hot)).await;
    read_marks(&shm, libc::F_UNLCK);
    answered
        .expect("a call about a job in memory must not wait for another job's store read")
        .expect("job.clear_notify_interface of the hot job");
    let cold_job = tokio::time::timeout(Duration::from_secs(30), slow)
        .await
        .expect("the cold read ends once the store is readable")
        .unwrap();
    if let Ok(job) = cold_job {
        assert_eq!(job.state, JobState::Suspended);
    }
}
