//! The unqueued run: N notifications, each measured alone.
//!
//! For each one: `job.create` with one small `file://` file, `job.set` of `notify_flags` 16,
//! `job.set_notify_interface`, `job.resume`; wait for the job's `callback.file_transferred`
//! (stamped on arrival, answered `{}`), read the job's `file_transferred` event with
//! `events.read {job_id}`, `job.complete`, and only then the next job. At most one notification
//! is ever pending, so no callback waits behind another one and the time measured is the
//! daemon's own path from recording a file transferred to the client's callback.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_proto::method;
use ferry_proto::params::{CompleteResult, CreateParams, CreateResult};
use serde_json::json;

use super::{
    FILE_SIZE, Latencies, Place, STALL_TIMEOUT, TARGET_P99_MS, call, connect, describe_job,
    make_files, read_file_events, verdict, watch_files,
};
use crate::daemon::Daemon;

/// What one unqueued run found.
pub(super) struct Unqueued {
    /// Per notification: callback invoked here minus the `file_transferred` event's time.
    latencies: Latencies,
    /// Per notification, on this process's monotonic clock: from sending `job.resume` to the
    /// callback being invoked (transfer, commit and delivery together).
    resume_to_callback: Latencies,
    /// Callbacks received again for a job already measured (retries).
    repeats: usize,
    /// Callbacks for a job this run had not created or not yet resumed (there should be none).
    strays: usize,
    /// `job.complete` answers, by state (and `, partial`), with how many jobs gave each.
    completions: BTreeMap<String, usize>,
    /// The whole loop, first `job.create` to last `job.complete`.
    elapsed: Duration,
}

impl Unqueued {
    /// One line for the terminal.
    pub(super) fn summary(&self) -> String {
        format!(
            "{}; resume→callback p50 {:.3} ms p99 {:.3} ms; repeats {}, strays {}, complete {}; \
             {:.1} s",
            self.latencies.summary(),
            self.resume_to_callback.percentile_ms(50),
            self.resume_to_callback.percentile_ms(99),
            self.repeats,
            self.strays,
            self.completions_text(),
            self.elapsed.as_secs_f64(),
        )
    }

    /// `acknowledged ×1000` (several states comma-separated).
    fn completions_text(&self) -> String {
        self.completions
            .iter()
            .map(|(state, count)| format!("{state} ×{count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The unqueued run against a running daemon, with source and destination files under `work`.
pub(super) async fn measure(daemon: &Daemon, work: &Path, n: u64) -> Result<Unqueued> {
    let n = usize::try_from(n).context("--notifications is too large for this machine")?;
    let specs = make_files(work, n)?;
    let (peer, mut rx) = connect(daemon).await?;

    let mut latencies = Vec::with_capacity(n);
    let mut resume_to_callback = Vec::with_capacity(n);
    let mut measured: HashSet<String> = HashSet::with_capacity(n);
    let mut repeats = 0;
    let mut strays = 0;
    let mut completions: BTreeMap<String, usize> = BTreeMap::new();
    let started = Instant::now();
    for (i, spec) in specs.into_iter().enumerate() {
        let create = CreateParams {
            display_name: format!("ferry-bench notify-latency unqueued {i}"),
            files: Some(vec![spec]),
            ..CreateParams::default()
        };
        let created: CreateResult = serde_json::from_value(
            call(&peer, method::JOB_CREATE, serde_json::to_value(&create)?).await?,
        )
        .context("job.create answered something unexpected")?;
        let job_id = created.job_id;
        watch_files(&peer, &job_id).await?;
        let resumed_at = Instant::now();
        call(&peer, method::JOB_RESUME, json!({"job_id": job_id})).await?;

        let arrival = loop {
            let a = match tokio::time::timeout(STALL_TIMEOUT, rx.recv()).await {
                Ok(Some(a)) => a,
                Ok(None) => bail!(
                    "the daemon closed the connection after {i} of {n} notifications; its log \
                     ends:\n{}",
                    daemon.log_tail()
                ),
                Err(_) => bail!(
                    "no callback for {STALL_TIMEOUT:?} for notification {i} of {n}; job: {}; \
                     ferryd's log ends:\n{}",
                    describe_job(&peer, &job_id).await,
                    daemon.log_tail()
                ),
            };
            if a.job_id == job_id {
                break a;
            }
            if measured.contains(&a.job_id) {
                repeats += 1;
            } else {
                strays += 1;
            }
        };
        if arrival.file_index != Some(0) {
            bail!(
                "callback.file_transferred (delivery {}) for the job's only file has file_index \
                 {:?}, not 0",
                arrival.delivery_id,
                arrival.file_index
            );
        }
        measured.insert(job_id.clone());

        let events = read_file_events(&peer, &job_id).await?;
        let Some(recorded) = events.get(&0) else {
            bail!("job {job_id} was called back but its event log has no file_transferred");
        };
        latencies.push((arrival.at - *recorded).whole_nanoseconds());
        resume_to_callback.push(
            i128::try_from(arrival.mono.duration_since(resumed_at).as_nanos()).unwrap_or(i128::MAX),
        );

        let complete: CompleteResult = serde_json::from_value(
            call(&peer, method::JOB_COMPLETE, json!({"job_id": job_id})).await?,
        )
        .context("job.complete answered something unexpected")?;
        let key = format!(
            "{}{}",
            complete.state.as_str(),
            if complete.partial { ", partial" } else { "" }
        );
        *completions.entry(key).or_default() += 1;
    }
    let elapsed = started.elapsed();
    // Whatever else already came in after the last job counts too.
    while let Ok(a) = rx.try_recv() {
        if measured.contains(&a.job_id) {
            repeats += 1;
        } else {
            strays += 1;
        }
    }
    peer.close();

    Ok(Unqueued {
        latencies: Latencies::new(latencies),
        resume_to_callback: Latencies::new(resume_to_callback),
        repeats,
        strays,
        completions,
        elapsed,
    })
}

/// The unqueued sub-section's Markdown (method and both tables).
pub(super) fn render(runs: &[(Place, Unqueued)], n: u64) -> String {
    let mut s = format!(
        "Method: {n} notifications, each measured alone. For each: `job.create` with one local \
         `file://` file of {FILE_SIZE} bytes, `job.set` of `notify_flags` 16 (file \
         transferred), `job.set_notify_interface`, `job.resume`; wait for the job's \
         `callback.file_transferred`, read its `file_transferred` event with `events.read \
         {{job_id}}`, `job.complete`, and only then create the next job. At most one \
         notification is ever pending, so none waits behind another callback. All {n} are \
         counted, the first ones (a just-started daemon) included.\n\n\
         | state dir | file system | notifications | p50 ms | p90 ms | p99 ms | max ms | p99 < {TARGET_P99_MS:.0} ms |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for (place, r) in runs {
        let l = &r.latencies;
        let p99 = l.percentile_ms(99);
        s.push_str(&format!(
            "| {label} | {fs} | {count} | {p50:.3} | {p90:.3} | {p99:.3} | {max:.3} | {target} |\n",
            label = place.label(),
            fs = place.fs,
            count = l.len(),
            p50 = l.percentile_ms(50),
            p90 = l.percentile_ms(90),
            max = l.max_ms(),
            target = verdict(p99),
        ));
    }
    s.push_str(
        "\nContext (same runs): the smallest latency; `job.resume` → callback, timed in the \
         client alone (monotonic clock), covers the transfer, its commit and the delivery \
         together; repeated callbacks are retries of a notification already received, stray \
         ones are for a job other than the one awaited.\n\n\
         | state dir | min ms | resume → callback p50 ms | resume → callback p99 ms | repeated callbacks | stray callbacks | `job.complete` | run time s |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n",
    );
    for (place, r) in runs {
        s.push_str(&format!(
            "| {label} | {min:.3} | {rc50:.3} | {rc99:.3} | {rep} | {stray} | {complete} | {secs:.1} |\n",
            label = place.label(),
            min = r.latencies.min_ms(),
            rc50 = r.resume_to_callback.percentile_ms(50),
            rc99 = r.resume_to_callback.percentile_ms(99),
            rep = r.repeats,
            stray = r.strays,
            complete = r.completions_text(),
            secs = r.elapsed.as_secs_f64(),
        ));
    }
    s
}
