//! `ferry-bench notify-latency`: how long after a file is recorded transferred the client's
//! `callback.file_transferred` runs.
//!
//! Latency = the wall-clock time the callback was invoked in this process minus the `time` of
//! that file's `file_transferred` event in the daemon's event log (stamped when the daemon
//! recorded the file as transferred, just before that record's store commit, which the callback
//! waits for). Both clocks are the same host's `CLOCK_REALTIME`, so the
//! difference is meaningful at microsecond scale.
//!
//! Two measurements, each against a fresh daemon:
//!
//! - [`unqueued`] (the primary one): N notifications, each measured alone. One job with one
//!   small `file://` file at a time; the next job is created only after the previous job's
//!   callback arrived and the job was completed, so at most one notification is ever pending
//!   and nothing waits behind another callback. This is the latency the target is about.
//! - [`burst`]: one job with many files handed over at once. A job's `file_transferred`
//!   callbacks go strictly one at a time (a protocol rule) while the files finish faster than
//!   that, so this shows delivery throughput and queueing, not latency.
//!
//! Both are repeated with the daemon's state dir (its SQLite store, which syncs every commit)
//! on each requested file system — by default the temp dir (usually disk) and /dev/shm (tmpfs).

mod burst;
mod unqueued;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_proto::{ErrorCode, FileSpec, ProtoError, method};
use ferry_rpc::{Handled, Peer, Service};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

use crate::daemon::Daemon;
use crate::report::{self, Filesystem, Machine};

/// The report section this benchmark owns.
const SECTION: &str = "notify-latency";
/// Size of each source file: small, so the transfer itself is negligible.
const FILE_SIZE: usize = 1024;
/// The number of notifications a measurement needs for its percentiles to go into the report.
const MIN_REPORTED: u64 = 1000;
/// The p99 the project aims for on loopback, in milliseconds.
const TARGET_P99_MS: f64 = 2.0;
/// How long without the awaited callback before the daemon is declared stuck.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Page size for `events.read`.
const EVENTS_PAGE: u64 = 1000;

/// `notify-latency` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Notifications measured one at a time (one single-file job each) per state location; the
    /// report needs at least 1000.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    notifications: u64,
    /// Files of the one job of the burst run per state location; the report needs at least
    /// 1000.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    files: u64,
    /// Put the daemon's state dir on DIR's file system; repeat for several runs [default: the
    /// temp dir, then /dev/shm when it exists].
    #[arg(long = "state-on", value_name = "DIR")]
    state_on: Vec<PathBuf>,
}

/// Runs both measurements once per state location and records the results.
pub async fn run(env: &crate::Env, args: &Args) -> Result<()> {
    let machine = Machine::collect();
    let bases = if args.state_on.is_empty() {
        let mut b = vec![std::env::temp_dir()];
        let shm = PathBuf::from("/dev/shm");
        if shm.is_dir() {
            b.push(shm);
        }
        b
    } else {
        args.state_on.clone()
    };
    let mut unqueued_runs = Vec::new();
    let mut burst_runs = Vec::new();
    for base in &bases {
        eprintln!(
            "notify-latency: unqueued, {} single-file jobs one after another, state dir under {} …",
            args.notifications,
            base.display()
        );
        let (place, u) = with_daemon(&env.ferryd, base, async |daemon, work| {
            unqueued::measure(daemon, work, args.notifications).await
        })
        .await
        .with_context(|| format!("unqueued run with the state dir under {}", base.display()))?;
        println!("unqueued {}: {}", place.label(), u.summary());
        unqueued_runs.push((place, u));

        eprintln!(
            "notify-latency: burst, one job of {} files, state dir under {} …",
            args.files,
            base.display()
        );
        let (place, b) = with_daemon(&env.ferryd, base, async |daemon, work| {
            burst::measure(daemon, work, args.files).await
        })
        .await
        .with_context(|| format!("burst run with the state dir under {}", base.display()))?;
        println!("burst {}: {}", place.label(), b.summary());
        burst_runs.push((place, b));
    }
    match &env.report {
        Some(path) if args.notifications >= MIN_REPORTED && args.files >= MIN_REPORTED => {
            let body = render(&unqueued_runs, &burst_runs, &env.ferryd, args);
            report::write_section(path, SECTION, "Notification latency", &machine, &body)?;
            eprintln!(
                "notify-latency: wrote section {SECTION} of {}",
                path.display()
            );
        }
        Some(_) => eprintln!(
            "notify-latency: not written to the report: it needs at least {MIN_REPORTED} \
             notifications and {MIN_REPORTED} burst files per run"
        ),
        None => {}
    }
    Ok(())
}

/// Where a run's daemon kept its state.
struct Place {
    /// The file system of the daemon's state dir.
    fs: Filesystem,
    /// The directory the state dir was created under.
    base: PathBuf,
}

impl Place {
    /// Names a row: disk or memory, and where the state dir was.
    fn label(&self) -> String {
        let kind = if self.fs.in_memory() {
            "memory"
        } else {
            "disk"
        };
        format!("{kind} (`{}`, {})", self.base.display(), self.fs.fstype)
    }
}

/// Starts a fresh daemon with its state under `base`, runs `body` against it with a fresh
/// directory for source and destination files, and stops the daemon whatever happened.
async fn with_daemon<T>(
    ferryd: &Path,
    base: &Path,
    body: impl AsyncFnOnce(&Daemon, &Path) -> Result<T>,
) -> Result<(Place, T)> {
    let state_root = tempfile::Builder::new()
        .prefix("ferry-bench-")
        .tempdir_in(base)
        .with_context(|| format!("cannot create a temp dir under {}", base.display()))?;
    // Sources and destinations stay in the ordinary temp dir for every run, so the state dir
    // is the only thing that differs between runs.
    let work = tempfile::Builder::new()
        .prefix("ferry-bench-files-")
        .tempdir()
        .context("cannot create a temp dir for the files")?;
    let daemon = Daemon::start(ferryd, state_root.path()).await?;
    let fs = report::filesystem_of(daemon.state_dir());
    let measured = body(&daemon, work.path()).await;
    // Stopped whatever happened, so a failed run leaves no daemon behind.
    let stopped = daemon.stop().await;
    let m = measured?;
    stopped?;
    Ok((
        Place {
            fs,
            base: base.to_path_buf(),
        },
        m,
    ))
}

/// Latencies in nanoseconds, sorted.
struct Latencies(Vec<i128>);

impl Latencies {
    /// Sorts `ns`.
    fn new(mut ns: Vec<i128>) -> Latencies {
        ns.sort_unstable();
        Latencies(ns)
    }

    /// How many there are.
    fn len(&self) -> usize {
        self.0.len()
    }

    /// The p-th percentile in milliseconds.
    fn percentile_ms(&self, p: usize) -> f64 {
        ms(nearest_rank(&self.0, p))
    }

    /// The smallest, in milliseconds.
    fn min_ms(&self) -> f64 {
        ms(self.0.first().copied().unwrap_or(0))
    }

    /// The largest, in milliseconds.
    fn max_ms(&self) -> f64 {
        ms(self.0.last().copied().unwrap_or(0))
    }

    /// `n=… p50=… p90=… p99=… max=…` for the terminal.
    fn summary(&self) -> String {
        format!(
            "n={} p50={:.3} ms p90={:.3} ms p99={:.3} ms max={:.3} ms",
            self.len(),
            self.percentile_ms(50),
            self.percentile_ms(90),
            self.percentile_ms(99),
            self.max_ms(),
        )
    }
}

/// The p-th percentile by the nearest-rank method (the smallest value with at least p% of the
/// values at or below it); 0 for no values.
fn nearest_rank(sorted: &[i128], p: usize) -> i128 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Nanoseconds as fractional milliseconds.
fn ms(ns: i128) -> f64 {
    ns as f64 / 1e6
}

/// One callback as this process received it.
#[derive(Debug)]
struct Arrival {
    /// When the callback was invoked here (wall clock, to compare with the daemon's events).
    at: OffsetDateTime,
    /// The same moment on the monotonic clock, for spans measured only in this process.
    mono: Instant,
    /// `params.job.job_id`.
    job_id: String,
    /// `params.file.file_index`.
    file_index: Option<u64>,
    /// `params.delivery_id`, to name a malformed callback in an error.
    delivery_id: String,
}

/// The application side of the callback connection: answers `{}` to every callback at once
/// and stamps each `callback.file_transferred` on arrival.
struct Recorder {
    tx: mpsc::UnboundedSender<Arrival>,
}

impl Service for Recorder {
    fn request(
        &self,
        _peer: Arc<Peer>,
        method: String,
        params: Option<Value>,
    ) -> Pin<Box<dyn Future<Output = Handled> + Send + 'static>> {
        // Stamped before anything else, so parsing and bookkeeping here do not count as latency.
        let at = OffsetDateTime::now_utc();
        let mono = Instant::now();
        let reply = if method == method::CALLBACK_FILE_TRANSFERRED {
            let params = params.unwrap_or(Value::Null);
            let _ = self.tx.send(Arrival {
                at,
                mono,
                job_id: params["job"]["job_id"].as_str().unwrap_or("").to_string(),
                file_index: params["file"]["file_index"].as_u64(),
                delivery_id: params["delivery_id"].as_str().unwrap_or("").to_string(),
            });
            Ok(json!({}))
        } else if method.starts_with("callback.") {
            Ok(json!({}))
        } else {
            Err(ProtoError::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("ferry-bench does not serve {method}"),
            ))
        };
        Box::pin(std::future::ready(Handled::Reply(reply)))
    }
}

/// Connects to the daemon with one connection that both controls jobs and serves their
/// callbacks (like an application would), and says hello.
async fn connect(daemon: &Daemon) -> Result<(Arc<Peer>, mpsc::UnboundedReceiver<Arrival>)> {
    let stream = tokio::net::UnixStream::connect(daemon.socket())
        .await
        .with_context(|| format!("cannot connect to {}", daemon.socket().display()))?;
    let (r, w) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let (peer, _conn) = ferry_rpc::serve(r, w, Arc::new(Recorder { tx }));
    call(&peer, method::HELLO, json!({"client": "ferry-bench"})).await?;
    Ok((peer, rx))
}

/// Writes `n` source files of [`FILE_SIZE`] bytes under `dir/src` and returns the file specs
/// copying each to `dir/dst`.
fn make_files(dir: &Path, n: usize) -> Result<Vec<FileSpec>> {
    let src = dir.join("src");
    let dst = dir.join("dst");
    std::fs::create_dir_all(&src).with_context(|| format!("cannot create {}", src.display()))?;
    std::fs::create_dir_all(&dst).with_context(|| format!("cannot create {}", dst.display()))?;
    let mut specs = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("file-{i:06}.bin");
        let from = src.join(&name);
        // Distinct contents, so nothing could ever deduplicate them.
        let content: Vec<u8> = (0..FILE_SIZE)
            .map(|b| (b.wrapping_mul(31) ^ i) as u8)
            .collect();
        std::fs::write(&from, content)
            .with_context(|| format!("cannot write {}", from.display()))?;
        let url = url::Url::from_file_path(&from)
            .map_err(|()| anyhow::anyhow!("{} is not an absolute path", from.display()))?;
        specs.push(FileSpec {
            remote_url: url.to_string(),
            local_path: dst.join(&name).to_string_lossy().into_owned(),
            sha256: None,
            ranges: None,
        });
    }
    Ok(specs)
}

/// Calls `method` and turns a failure into an error naming the method.
async fn call(peer: &Peer, method: &str, params: Value) -> Result<Value> {
    peer.call(method, params)
        .await
        .with_context(|| format!("{method} failed"))
}

/// Selects `file_transferred` callbacks for the job and makes `peer` its live callback.
async fn watch_files(peer: &Peer, job_id: &str) -> Result<()> {
    call(
        peer,
        method::JOB_SET,
        json!({"job_id": job_id, "notify_flags": 16}),
    )
    .await?;
    call(
        peer,
        method::JOB_SET_NOTIFY_INTERFACE,
        json!({"job_id": job_id}),
    )
    .await?;
    Ok(())
}

/// `job.get` as a string for an error message (or why it could not be had).
async fn describe_job(peer: &Peer, job_id: &str) -> String {
    peer.call(method::JOB_GET, json!({"job_id": job_id}))
        .await
        .map(|j| j.to_string())
        .unwrap_or_else(|e| format!("(job.get failed: {e})"))
}

/// The `time` of every `file_transferred` event of the job, by file index, paging through
/// `events.read` until `next` stops moving.
async fn read_file_events(peer: &Peer, job_id: &str) -> Result<HashMap<u64, OffsetDateTime>> {
    let mut out = HashMap::new();
    let mut after: Option<u64> = None;
    loop {
        let mut params = json!({"job_id": job_id, "limit": EVENTS_PAGE});
        if let Some(a) = after {
            params["after"] = json!(a);
        }
        let page = call(peer, method::EVENTS_READ, params).await?;
        // Read as plain JSON rather than `ferry_proto::Event`: event kinds added later must not
        // make this benchmark fail, and it needs only three fields of one kind.
        let (Some(events), Some(next)) = (page["events"].as_array(), page["next"].as_u64()) else {
            bail!("events.read answered without events or next: {page}");
        };
        for event in events {
            if event["kind"] != "file_transferred" {
                continue;
            }
            let (Some(file_index), Some(time)) =
                (event["file_index"].as_u64(), event["time"].as_str())
            else {
                bail!("a file_transferred event without file_index or time: {event}");
            };
            let t = OffsetDateTime::parse(time, &Rfc3339)
                .with_context(|| format!("an event time that is not RFC 3339: {event}"))?;
            if out.insert(file_index, t).is_some() {
                bail!("the event log has two file_transferred events for file {file_index}");
            }
        }
        if after == Some(next) || events.is_empty() {
            return Ok(out);
        }
        after = Some(next);
    }
}

/// The verdict cell for a p99 against the target.
fn verdict(p99_ms: f64) -> String {
    if p99_ms < TARGET_P99_MS {
        "met".to_string()
    } else {
        format!("**missed** ({:.1}× the target)", p99_ms / TARGET_P99_MS)
    }
}

/// The section's Markdown: what is measured, the unqueued (primary) and burst (secondary)
/// results, and how to reproduce.
fn render(
    unqueued_runs: &[(Place, unqueued::Unqueued)],
    burst_runs: &[(Place, burst::Burst)],
    ferryd: &Path,
    args: &Args,
) -> String {
    let ferryd = ferryd
        .strip_prefix(crate::workspace_root())
        .unwrap_or(ferryd)
        .display()
        .to_string();
    let mut s = String::new();
    s.push_str(
        "What is measured: the time from a file's last byte being committed to the client's \
         callback being invoked. For each file, the `time` of its `file_transferred` event in \
         the daemon's event log (stamped when `ferryd` records the file as transferred, its bytes \
         already synced, just before the store transaction holding that record and the owed \
         notification commits; the callback goes out only after that commit, so the latency \
         includes it) is subtracted from the wall-clock time at which this process's \
         `callback.file_transferred` handler was invoked (both `CLOCK_REALTIME` on the same \
         host). Every run uses a fresh `",
    );
    s.push_str(&ferryd);
    s.push_str(
        "` and one client connection over the Unix socket that both controls the jobs and is \
         their live callback (`job.set_notify_interface`), answering `{}` at once. Rows differ \
         only in the file system of the daemon's state dir (its SQLite store, which syncs every \
         commit). Percentiles are nearest-rank over every notification of the run; nothing is \
         dropped or adjusted.\n\n",
    );
    s.push_str(&format!(
        "Target: p99 < {TARGET_P99_MS:.0} ms on loopback, judged on the unqueued measurement.\n\n"
    ));

    s.push_str("### Unqueued: one notification at a time\n\n");
    s.push_str(&unqueued::render(unqueued_runs, args.notifications));

    s.push_str(&format!("\n### Burst: {} files in one job\n\n", args.files));
    s.push_str(&burst::render(burst_runs, args.files));

    s.push_str(
        "\nReproduce (ferryd must be built with the same profile; the bench finds it next to \
         its own binary, or takes `--ferryd PATH`):\n\n\
         ```sh\n\
         cargo build --release -p ferryd -p ferry-bench\n\
         cargo run --release -p ferry-bench -- notify-latency\n\
         ```\n\n\
         Options: `--notifications N` (unqueued run, default 1000), `--files N` (burst run, \
         default 2000) — each at least 1000 to be recorded here; `--state-on DIR` (repeatable; \
         default: the temp dir, then `/dev/shm` when it exists).\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i128> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 50), 50);
        assert_eq!(nearest_rank(&v, 90), 90);
        assert_eq!(nearest_rank(&v, 99), 99);
        assert_eq!(nearest_rank(&v, 100), 100);
        let v: Vec<i128> = (1..=2000).collect();
        assert_eq!(nearest_rank(&v, 99), 1980);
        let v: Vec<i128> = (1..=1000).collect();
        assert_eq!(nearest_rank(&v, 99), 990);
        assert_eq!(nearest_rank(&[7], 50), 7);
        assert_eq!(nearest_rank(&[], 50), 0);
    }

    #[test]
    fn latencies_are_sorted_and_read_in_milliseconds() {
        let l = Latencies::new(vec![3_000_000, 1_000_000, 2_000_000]);
        assert_eq!(l.len(), 3);
        assert_eq!(l.min_ms(), 1.0);
        assert_eq!(l.percentile_ms(50), 2.0);
        assert_eq!(l.max_ms(), 3.0);
    }

    #[test]
    fn verdict_against_the_target() {
        assert_eq!(verdict(1.999), "met");
        assert_eq!(verdict(4.0), "**missed** (2.0× the target)");
    }
}
