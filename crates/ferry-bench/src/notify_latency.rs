//! `ferry-bench notify-latency`: how long after a file is recorded transferred the client's
//! `callback.file_transferred` runs.
//!
//! One job with N small `file://` files, `notify_flags` 16 (file transferred), a live callback
//! connection (`job.set_notify_interface`) that answers `{}` at once, then `job.resume`. For each
//! file, latency = the wall-clock time the callback was invoked in this process minus the `time`
//! of that file's `file_transferred` event in the daemon's event log (stamped when the daemon
//! recorded the file as transferred, its bytes already synced). Both clocks are the same host's
//! `CLOCK_REALTIME`, so the difference is meaningful at microsecond scale.
//!
//! All N files are handed over at once and callbacks go strictly one at a time per job, so a
//! file's latency includes waiting behind the callbacks of earlier files; the report therefore
//! also gives the transfer and delivery spans and the callback rate, which show that queueing.
//!
//! The run is repeated with the daemon's state dir (its SQLite store, which syncs every commit)
//! on each requested file system — by default the temp dir (usually disk) and /dev/shm (tmpfs).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_proto::params::{CompleteResult, CreateParams, CreateResult};
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
/// The number of notifications a run needs for its percentiles to go into the report.
const MIN_REPORTED: u64 = 1000;
/// The p99 the project aims for on loopback, in milliseconds.
const TARGET_P99_MS: f64 = 2.0;
/// Files per `job.create`/`job.add_files` message, well under the 1 MiB line limit.
const FILES_PER_MESSAGE: usize = 1000;
/// How long without a single callback before the daemon is declared stuck.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Page size for `events.read`.
const EVENTS_PAGE: u64 = 1000;

/// `notify-latency` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files (so notifications) per run; the report needs at least 1000.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    files: u64,
    /// Put the daemon's state dir on DIR's file system; repeat for several runs [default: the
    /// temp dir, then /dev/shm when it exists].
    #[arg(long = "state-on", value_name = "DIR")]
    state_on: Vec<PathBuf>,
}

/// Runs the benchmark once per state location and records the results.
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
    let mut results = Vec::new();
    for base in &bases {
        eprintln!(
            "notify-latency: {} files, state dir under {} …",
            args.files,
            base.display()
        );
        let r = run_once(&env.ferryd, base, args.files)
            .await
            .with_context(|| format!("run with the state dir under {}", base.display()))?;
        println!("{}", r.summary_line());
        results.push(r);
    }
    match &env.report {
        Some(path) if args.files >= MIN_REPORTED => {
            let body = render(&results, &env.ferryd, args);
            report::write_section(path, SECTION, "Notification latency", &machine, &body)?;
            eprintln!(
                "notify-latency: wrote section {SECTION} of {}",
                path.display()
            );
        }
        Some(_) => eprintln!(
            "notify-latency: not written to the report: it needs at least {MIN_REPORTED} files per run"
        ),
        None => {}
    }
    Ok(())
}

/// One callback as this process received it.
#[derive(Debug)]
struct Arrival {
    /// When the callback was invoked here.
    at: OffsetDateTime,
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
        let reply = if method == method::CALLBACK_FILE_TRANSFERRED {
            let params = params.unwrap_or(Value::Null);
            let _ = self.tx.send(Arrival {
                at,
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

/// What [`measure`] found against one daemon.
struct Measured {
    /// Per-file latencies in nanoseconds, sorted.
    latencies_ns: Vec<i128>,
    /// First to last `file_transferred` event.
    transfer_span: time::Duration,
    /// First to last callback.
    delivery_span: time::Duration,
    /// Callbacks received again for a file already called back (retries).
    repeats: usize,
    /// Callbacks that came in a lower file order than one before them.
    out_of_order: usize,
    /// `job.complete`'s answer.
    complete: CompleteResult,
}

/// The outcome of one run.
struct RunResult {
    /// The file system of the daemon's state dir.
    fs: Filesystem,
    /// The directory the state dir was created under.
    base: PathBuf,
    /// The measurements.
    m: Measured,
}

impl RunResult {
    /// The p-th percentile latency in milliseconds.
    fn percentile_ms(&self, p: usize) -> f64 {
        ms(nearest_rank(&self.m.latencies_ns, p))
    }

    /// The largest latency in milliseconds.
    fn max_ms(&self) -> f64 {
        ms(self.m.latencies_ns.last().copied().unwrap_or(0))
    }

    /// Names the row: disk or memory, and where the state dir was.
    fn label(&self) -> String {
        if self.fs.in_memory() {
            format!("memory (`{}`, {})", self.base.display(), self.fs.fstype)
        } else {
            format!("disk (`{}`, {})", self.base.display(), self.fs.fstype)
        }
    }

    /// Callbacks per second between the first and the last one.
    fn callbacks_per_s(&self) -> f64 {
        let secs = self.m.delivery_span.as_seconds_f64();
        if secs > 0.0 {
            (self.m.latencies_ns.len().saturating_sub(1)) as f64 / secs
        } else {
            0.0
        }
    }

    /// One line for the terminal.
    fn summary_line(&self) -> String {
        format!(
            "{}: n={} p50={:.3} ms p90={:.3} ms p99={:.3} ms max={:.3} ms; transfer span {:.3} s, \
             delivery span {:.3} s ({:.0} callbacks/s); repeats {}, out of order {}",
            self.label(),
            self.m.latencies_ns.len(),
            self.percentile_ms(50),
            self.percentile_ms(90),
            self.percentile_ms(99),
            self.max_ms(),
            self.m.transfer_span.as_seconds_f64(),
            self.m.delivery_span.as_seconds_f64(),
            self.callbacks_per_s(),
            self.m.repeats,
            self.m.out_of_order,
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

/// One full run: a fresh daemon with its state under `base`, `n` files, all callbacks, the
/// event log, `job.complete`, and the daemon stopped.
async fn run_once(ferryd: &Path, base: &Path, n: u64) -> Result<RunResult> {
    let n_files = usize::try_from(n).context("--files is too large for this machine")?;
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
    let specs = make_files(work.path(), n_files)?;

    let daemon = Daemon::start(ferryd, state_root.path()).await?;
    let fs = report::filesystem_of(daemon.state_dir());
    let measured = measure(&daemon, specs).await;
    // Stopped whatever happened, so a failed run leaves no daemon behind.
    let stopped = daemon.stop().await;
    let m = measured?;
    stopped?;
    Ok(RunResult {
        fs,
        base: base.to_path_buf(),
        m,
    })
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

/// The benchmark proper, against a running daemon.
async fn measure(daemon: &Daemon, specs: Vec<FileSpec>) -> Result<Measured> {
    let n = specs.len();
    let stream = tokio::net::UnixStream::connect(daemon.socket())
        .await
        .with_context(|| format!("cannot connect to {}", daemon.socket().display()))?;
    let (r, w) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    // One connection both controls the job and serves its callbacks, like an application would.
    let (peer, _conn) = ferry_rpc::serve(r, w, Arc::new(Recorder { tx }));

    call(&peer, method::HELLO, json!({"client": "ferry-bench"})).await?;
    let mut chunks = specs.chunks(FILES_PER_MESSAGE);
    let create = CreateParams {
        display_name: "ferry-bench notify-latency".into(),
        files: Some(chunks.next().map(<[FileSpec]>::to_vec).unwrap_or_default()),
        ..CreateParams::default()
    };
    let created: CreateResult = serde_json::from_value(
        call(&peer, method::JOB_CREATE, serde_json::to_value(&create)?).await?,
    )
    .context("job.create answered something unexpected")?;
    let job_id = created.job_id;
    for chunk in chunks {
        call(
            &peer,
            method::JOB_ADD_FILES,
            json!({"job_id": job_id, "files": chunk}),
        )
        .await?;
    }
    call(
        &peer,
        method::JOB_SET,
        json!({"job_id": job_id, "notify_flags": 16}),
    )
    .await?;
    call(
        &peer,
        method::JOB_SET_NOTIFY_INTERFACE,
        json!({"job_id": job_id}),
    )
    .await?;
    call(&peer, method::JOB_RESUME, json!({"job_id": job_id})).await?;

    // First arrival per file; later ones (retries of the same delivery) are only counted.
    let mut first: HashMap<u64, OffsetDateTime> = HashMap::with_capacity(n);
    let mut repeats = 0;
    let mut out_of_order = 0;
    let mut last_index: Option<u64> = None;
    let mut first_at: Option<OffsetDateTime> = None;
    let mut last_at: Option<OffsetDateTime> = None;
    while first.len() < n {
        let arrival = match tokio::time::timeout(STALL_TIMEOUT, rx.recv()).await {
            Ok(Some(a)) => a,
            Ok(None) => bail!(
                "the daemon closed the connection after {} of {n} file callbacks; its log ends:\n{}",
                first.len(),
                daemon.log_tail()
            ),
            Err(_) => {
                let job = peer
                    .call(method::JOB_GET, json!({"job_id": job_id}))
                    .await
                    .map(|j| j.to_string())
                    .unwrap_or_else(|e| format!("(job.get failed: {e})"));
                bail!(
                    "no callback for {STALL_TIMEOUT:?} after {} of {n} file callbacks; job: {job}; \
                     ferryd's log ends:\n{}",
                    first.len(),
                    daemon.log_tail()
                );
            }
        };
        let Some(index) = arrival.file_index else {
            bail!(
                "callback.file_transferred (delivery {}) without file.file_index",
                arrival.delivery_id
            );
        };
        if first.contains_key(&index) {
            repeats += 1;
            continue;
        }
        if last_index.is_some_and(|l| index < l) {
            out_of_order += 1;
        }
        last_index = Some(index);
        first_at.get_or_insert(arrival.at);
        last_at = Some(arrival.at);
        first.insert(index, arrival.at);
    }

    let transferred = read_file_events(&peer, &job_id).await?;
    let completed: CompleteResult =
        serde_json::from_value(call(&peer, method::JOB_COMPLETE, json!({"job_id": job_id})).await?)
            .context("job.complete answered something unexpected")?;
    peer.close();

    let mut latencies = Vec::with_capacity(n);
    for (index, at) in &first {
        let Some(recorded) = transferred.get(index) else {
            bail!("file {index} was called back but the event log has no file_transferred for it");
        };
        latencies.push((*at - *recorded).whole_nanoseconds());
    }
    latencies.sort_unstable();
    let transfer_span = match (transferred.values().min(), transferred.values().max()) {
        (Some(lo), Some(hi)) => *hi - *lo,
        _ => time::Duration::ZERO,
    };
    let delivery_span = match (first_at, last_at) {
        (Some(a), Some(b)) => b - a,
        _ => time::Duration::ZERO,
    };
    Ok(Measured {
        latencies_ns: latencies,
        transfer_span,
        delivery_span,
        repeats,
        out_of_order,
        complete: completed,
    })
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
/// The section's Markdown: what is measured, the results table, and how to reproduce.
fn render(results: &[RunResult], ferryd: &Path, args: &Args) -> String {
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
         already synced) is subtracted from the wall-clock time at which this process's \
         `callback.file_transferred` handler was invoked (both `CLOCK_REALTIME` on the same \
         host).\n\n",
    );
    s.push_str(&format!(
        "Method: a fresh `{ferryd}` per row; one job with {n} local `file://` files of {FILE_SIZE} \
         bytes each (`job.create` with `files`), `notify_flags` 16 (file transferred), a live \
         callback connection over the Unix socket (`job.set_notify_interface`) that answers `{{}}` \
         at once, then `job.resume`; after all {n} callbacks, the event log is read with \
         `events.read` and the job completed. Percentiles are nearest-rank over all {n} \
         notifications. All files are handed over at once and a job's callbacks are delivered \
         one at a time, so a file's latency includes waiting behind earlier files' callbacks. \
         The rows differ only in the file system of the daemon's state dir (its SQLite store, \
         which syncs every commit).\n\n",
        n = args.files,
    ));
    s.push_str(&format!(
        "Target: p99 < {TARGET_P99_MS:.0} ms on loopback.\n\n"
    ));
    s.push_str(
        "| state dir | file system | notifications | p50 ms | p90 ms | p99 ms | max ms | p99 < 2 ms |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in results {
        let p99 = r.percentile_ms(99);
        let target = if p99 < TARGET_P99_MS {
            "met".to_string()
        } else {
            format!("**missed** ({:.1}× the target)", p99 / TARGET_P99_MS)
        };
        s.push_str(&format!(
            "| {label} | {fs} | {count} | {p50:.3} | {p90:.3} | {p99:.3} | {max:.3} | {target} |\n",
            label = r.label(),
            fs = r.fs,
            count = r.m.latencies_ns.len(),
            p50 = r.percentile_ms(50),
            p90 = r.percentile_ms(90),
            max = r.max_ms(),
        ));
    }
    s.push_str(
        "\nContext (same runs): how fast files were recorded transferred and how fast callbacks \
         came, which shows how much of the latency is queueing.\n\n\
         | state dir | min ms | transfer span s | delivery span s | callbacks/s | repeated callbacks | out of order | `job.complete` |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {label} | {min:.3} | {ts:.3} | {ds:.3} | {rate:.0} | {rep} | {ooo} | {state}{partial} |\n",
            label = r.label(),
            min = ms(r.m.latencies_ns.first().copied().unwrap_or(0)),
            ts = r.m.transfer_span.as_seconds_f64(),
            ds = r.m.delivery_span.as_seconds_f64(),
            rate = r.callbacks_per_s(),
            rep = r.m.repeats,
            ooo = r.m.out_of_order,
            state = r.m.complete.state.as_str(),
            partial = if r.m.complete.partial { ", partial" } else { "" },
        ));
    }
    s.push_str(
        "\nReproduce (ferryd must be built with the same profile; the bench finds it next to \
         its own binary, or takes `--ferryd PATH`):\n\n\
         ```sh\n\
         cargo build --release -p ferryd\n\
         cargo run --release -p ferry-bench -- notify-latency\n\
         ```\n\n\
         Options: `--files N` (default 2000; at least 1000 to be recorded here), `--state-on DIR` \
         (repeatable; default: the temp dir, then `/dev/shm` when it exists).\n",
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
        assert_eq!(nearest_rank(&[7], 50), 7);
        assert_eq!(nearest_rank(&[], 50), 0);
    }
}
