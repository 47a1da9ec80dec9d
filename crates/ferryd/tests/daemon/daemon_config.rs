//! Daemon-wide settings from ferryd.toml's `[daemon]` section (what an autostarted daemon,
//! which gets no flags, runs with), against a real daemon and the testkit's HTTP server: the
//! per-host connection cap (counted at the server), the daemon-wide bandwidth limit over two
//! jobs, the retry floor over a job's 0, flags over the file, and clear errors for bad values.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_proto::params::{EventsReadParams, SetParams};
use ferry_proto::{EventKind, JobState};
use ferry_testkit::content::TestContent;
use ferry_testkit::daemon::TestDaemon;
use ferry_testkit::http::{Behavior, TestServer};
use tokio::sync::Semaphore;

use crate::support::{WAIT, job_with, spec, wait_state};

fn ferryd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferryd"))
}

fn daemon_config(toml: &str, extra: &[&str]) -> TestDaemon {
    TestDaemon::start_with_config(ferryd(), toml, extra)
}

#[tokio::test]
async fn issue_13_daemon_config_caps_connections_per_host_across_jobs() {
    let d = daemon_config("[daemon]\nconnections_per_host = 2\n", &[]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    // Every body waits at the gate: nothing finishes until the test lets it.
    let gate = Arc::new(Semaphore::new(0));
    let mut specs = Vec::new();
    for name in ["a1", "a2", "b", "c"] {
        let path = format!("/{name}");
        srv.add_file(&path, TestContent::new(13, 2000).bytes);
        srv.set_behavior(
            &path,
            Behavior {
                gate: Some(gate.clone()),
                ..Behavior::default()
            },
        );
        specs.push(spec(&srv.url(&path), &dir.join(name)));
    }
    // Three jobs, one with two files in parallel: four transfers want the one host.
    let a = job_with(&c, specs[..2].to_vec()).await;
    let b = job_with(&c, specs[2..3].to_vec()).await;
    let cc = job_with(&c, specs[3..].to_vec()).await;
    let ids = [a, b, cc];
    for id in &ids {
        c.resume(id).await.unwrap();
    }
    srv.wait_until(WAIT, |log| log.len() >= 2)
        .await
        .expect("two requests reach the host");
    // A transfer that waits for a slot says so in its job (no event marks it: bounded polling).
    let deadline = Instant::now() + WAIT;
    let waiting = loop {
        let mut found = None;
        for id in &ids {
            let j = c.get(id).await.unwrap();
            if j.waiting.as_ref().is_some_and(|w| w.reason == "host_busy") {
                found = Some(j);
            }
        }
        if let Some(j) = found {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "no job showed waiting.reason host_busy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!waiting.state.is_final(), "{:?}", waiting.state);
    assert_eq!(
        srv.requests().len(),
        2,
        "the other transfers wait for a slot of the host"
    );
    gate.add_permits(100);
    for id in &ids {
        let j = wait_state(&c, id, JobState::Transferred).await;
        assert!(
            j.waiting.as_ref().is_none_or(|w| w.reason != "host_busy"),
            "{:?}",
            j.waiting
        );
    }
    assert_eq!(srv.requests().len(), 4);
    assert_eq!(
        srv.peak_in_flight(),
        2,
        "never more than connections_per_host at once, and the cap was reached"
    );
}

#[tokio::test]
async fn issue_13_daemon_config_bandwidth_limit_bounds_the_sum_of_two_jobs() {
    let rate: u64 = 256 * 1024;
    let d = daemon_config("[daemon]\nbandwidth_limit = \"256K\"\n", &[]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let size = 384 * 1024;
    srv.add_file("/one", TestContent::new(31, size).bytes);
    srv.add_file("/two", TestContent::new(32, size).bytes);
    let one = job_with(&c, vec![spec(&srv.url("/one"), &dir.join("one"))]).await;
    let two = job_with(&c, vec![spec(&srv.url("/two"), &dir.join("two"))]).await;
    let started = Instant::now();
    c.resume(&one).await.unwrap();
    c.resume(&two).await.unwrap();
    wait_state(&c, &one, JobState::Transferred).await;
    wait_state(&c, &two, JobState::Transferred).await;
    let took = started.elapsed().as_secs_f64();
    // One bucket for both: their sum moves at the daemon-wide rate (less the bucket's burst of a
    // tenth of a second). A lower bound only, with a generous margin: a slow machine only
    // takes longer, and without the shared bucket both finish in milliseconds.
    let least = (2 * size as u64 - rate / 10) as f64 / rate as f64;
    assert!(
        took >= least * 0.75,
        "two jobs took {took:.2} s; one shared {rate} B/s bucket needs at least about {least:.2} s"
    );
    // And they did run side by side: each began transferring before either was transferred
    // (so the bound above is their sum, not one after the other).
    let log = c
        .read_events(EventsReadParams::default())
        .await
        .unwrap()
        .events;
    let seq_of = |id: &str, to: JobState| {
        log.iter()
            .find(|e| {
                e.job_id == id && matches!(&e.kind, EventKind::State { to: t, .. } if *t == to)
            })
            .map(|e| e.seq)
            .unwrap_or_else(|| panic!("no state event to {to:?} for {id}"))
    };
    let last_start = seq_of(&one, JobState::Transferring).max(seq_of(&two, JobState::Transferring));
    let first_end = seq_of(&one, JobState::Transferred).min(seq_of(&two, JobState::Transferred));
    assert!(last_start < first_end, "the two jobs did not overlap");
}

#[tokio::test]
async fn issue_13_daemon_config_retry_floor_overrides_a_jobs_zero() {
    let d = daemon_config("[daemon]\nretry_delay_floor_s = 30\n", &[]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/busy", TestContent::new(7, 100).bytes);
    srv.set_behavior(
        "/busy",
        Behavior {
            status: Some(503),
            ..Behavior::default()
        },
    );
    let id = job_with(&c, vec![spec(&srv.url("/busy"), &d.files_dir().join("b"))]).await;
    let job = c
        .set(SetParams {
            job_id: id.clone(),
            minimum_retry_delay_s: Some(0),
            ..SetParams::default()
        })
        .await
        .unwrap();
    assert_eq!(
        job.settings.minimum_retry_delay_s, 30,
        "the floor wins over the job's 0"
    );
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::TransientError).await;
    let waiting = job.waiting.expect("a job in transient_error waits");
    let until = time::OffsetDateTime::parse(
        waiting.until.as_deref().expect("until"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = until - time::OffsetDateTime::now_utc();
    assert!(
        left >= time::Duration::seconds(20),
        "the retry waits the floor ({} s left, reason {})",
        left.whole_seconds(),
        waiting.reason
    );
    assert_eq!(srv.requests_for("/busy").len(), 1);
}

#[tokio::test]
async fn issue_13_daemon_config_flags_win_over_the_file() {
    let d = daemon_config(
        "[daemon]\nretry_delay_floor_s = 30\n",
        &["--retry-delay-floor", "2"],
    );
    let c = d.client().await;
    let id = job_with(&c, vec![]).await;
    let job = c
        .set(SetParams {
            job_id: id,
            minimum_retry_delay_s: Some(0),
            ..SetParams::default()
        })
        .await
        .unwrap();
    assert_eq!(job.settings.minimum_retry_delay_s, 2);
}

/// Runs ferryd with `config` and returns its exit code and stderr (it must stop at start).
fn refused(config: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferryd.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(ferryd())
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--config")
        .arg(&path)
        .args(extra)
        .env("FERRY_SYSTEM_BUS", "none")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn issue_13_daemon_config_bad_values_stop_the_daemon_with_a_clear_message() {
    let cases = [
        ("bandwidth_limit = \"fast\"", "bandwidth_limit", "500K"),
        ("bandwidth_limit = 0", "bandwidth_limit", "500K"),
        (
            "connections_per_host = 0",
            "connections_per_host",
            "1 to 1024",
        ),
        (
            "connections_per_host = 5000",
            "connections_per_host",
            "1 to 1024",
        ),
        (
            "retry_delay_floor_s = -1",
            "retry_delay_floor_s",
            "0 to 86400",
        ),
        ("retry_floor = 3", "retry_floor", "unknown"),
    ];
    for (line, key, hint) in cases {
        let (code, stderr) = refused(&format!("[daemon]\n{line}\n"), &[]);
        assert_eq!(code, Some(2), "{line}: {stderr}");
        assert!(
            stderr.contains("ferryd.toml") && stderr.contains(key) && stderr.contains(hint),
            "{line}: {stderr}"
        );
    }
    // The flag takes the same units as the file (and as `ferry --limit-rate`).
    let (code, stderr) = refused("", &["--bandwidth-limit", "1Q"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("500K"), "{stderr}");
}

#[tokio::test]
async fn issue_13_daemon_config_bandwidth_flag_takes_units() {
    // Starts (ready) with a unit on the flag.
    let d = crate::support::daemon_with(&["--bandwidth-limit", "1M"]);
    let c = d.client().await;
    c.hello().await.unwrap();
}
