//! Helpers shared by the topic modules.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_client::Client;
use ferry_proto::params::CreateParams;
use ferry_proto::{FileSpec, Job, JobState};
use ferry_testkit::daemon::{TestDaemon, wait_for};

/// The test daemon binary built with this package.
pub fn daemon() -> TestDaemon {
    TestDaemon::start_with(Path::new(env!("CARGO_BIN_EXE_ferryd")), &[])
}

/// A daemon with extra flags.
pub fn daemon_with(args: &[&str]) -> TestDaemon {
    TestDaemon::start_with(Path::new(env!("CARGO_BIN_EXE_ferryd")), args)
}

/// Generous bound for waits; a hang is caught by nextest's slow-timeout anyway.
pub const WAIT: Duration = Duration::from_secs(60);

/// A file spec.
pub fn spec(url: &str, path: &Path) -> FileSpec {
    FileSpec {
        remote_url: url.into(),
        local_path: path.to_string_lossy().into_owned(),
        sha256: None,
        ranges: None,
    }
}

/// Creates a job with files and returns its id.
pub async fn job_with(c: &Client, files: Vec<FileSpec>) -> String {
    c.create(CreateParams {
        display_name: "test".into(),
        files: Some(files),
        ..CreateParams::default()
    })
    .await
    .expect("job.create")
}

/// Creates `n` empty jobs, `batch` at a time on one connection (each makes one event).
pub async fn create_jobs(c: &Client, n: usize, batch: usize) {
    for start in (0..n).step_by(batch) {
        let creates = (start..n.min(start + batch)).map(|i| {
            c.create(CreateParams {
                display_name: format!("job {i}"),
                ..CreateParams::default()
            })
        });
        futures_util::future::try_join_all(creates)
            .await
            .expect("job.create");
    }
}

/// Lowers the job's retry delay and timeouts for tests.
pub async fn fast_retry(c: &Client, id: &str, no_progress_s: Option<u64>) {
    c.set(ferry_proto::params::SetParams {
        job_id: id.into(),
        minimum_retry_delay_s: Some(1),
        no_progress_timeout_s: no_progress_s,
        ..Default::default()
    })
    .await
    .expect("job.set");
}

/// Waits for a state.
pub async fn wait_state(c: &Client, id: &str, st: JobState) -> Job {
    wait_for(c, id, WAIT, |j| j.state == st).await
}

/// Waits for a daemon log line containing `needle`, `count` times, or fails naming `what`.
pub fn wait_log(d: &ferry_testkit::daemon::TestDaemon, needle: &str, count: usize, what: &str) {
    let deadline = Instant::now() + WAIT;
    let mut seen = 0;
    while seen < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match d.log.recv_timeout(left) {
            Ok(line) if line.contains(needle) => seen += 1,
            Ok(_) => {}
            Err(e) => panic!("{what}: saw {seen} of {count} {needle:?} lines ({e})"),
        }
    }
}

pub use ferry_testkit::content::{sha256_file, staging_files as temp_files};
