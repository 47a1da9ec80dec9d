//! The burst run: one job with N small `file://` files handed over at once, `notify_flags` 16,
//! the live callback, then `job.resume`; every file's event-to-callback time is recorded.
//!
//! A job's `file_transferred` callbacks go strictly one at a time and in file order (a protocol
//! rule), and the files finish faster than callbacks can be delivered one by one, so a file's
//! time includes waiting behind the callbacks of all earlier files. What this run shows is
//! delivery throughput and the queueing it causes, not notification latency; the spans and the
//! callback rate make that visible.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ferry_proto::FileSpec;
use ferry_proto::method;
use ferry_proto::params::{CompleteResult, CreateParams, CreateResult};
use serde_json::json;
use time::OffsetDateTime;

use super::{
    FILE_SIZE, Latencies, Place, STALL_TIMEOUT, call, connect, describe_job, make_files,
    read_file_events, watch_files,
};
use crate::daemon::Daemon;

/// Files per `job.create`/`job.add_files` message, well under the 1 MiB line limit.
const FILES_PER_MESSAGE: usize = 1000;

/// What one burst run found.
pub(super) struct Burst {
    /// Per-file time from the `file_transferred` event to the callback.
    latencies: Latencies,
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

impl Burst {
    /// Callbacks per second between the first and the last one.
    fn callbacks_per_s(&self) -> f64 {
        let secs = self.delivery_span.as_seconds_f64();
        if secs > 0.0 {
            (self.latencies.len().saturating_sub(1)) as f64 / secs
        } else {
            0.0
        }
    }

    /// One line for the terminal.
    pub(super) fn summary(&self) -> String {
        format!(
            "{}; transfer span {:.3} s, delivery span {:.3} s ({:.0} callbacks/s); repeats {}, \
             out of order {}",
            self.latencies.summary(),
            self.transfer_span.as_seconds_f64(),
            self.delivery_span.as_seconds_f64(),
            self.callbacks_per_s(),
            self.repeats,
            self.out_of_order,
        )
    }
}

/// The burst run against a running daemon, with source and destination files under `work`.
pub(super) async fn measure(daemon: &Daemon, work: &Path, n: u64) -> Result<Burst> {
    let n = usize::try_from(n).context("--files is too large for this machine")?;
    let specs = make_files(work, n)?;
    let (peer, mut rx) = connect(daemon).await?;

    let mut chunks = specs.chunks(FILES_PER_MESSAGE);
    let create = CreateParams {
        display_name: "ferry-bench notify-latency burst".into(),
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
    watch_files(&peer, &job_id).await?;
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
            Err(_) => bail!(
                "no callback for {STALL_TIMEOUT:?} after {} of {n} file callbacks; job: {}; \
                 ferryd's log ends:\n{}",
                first.len(),
                describe_job(&peer, &job_id).await,
                daemon.log_tail()
            ),
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
    let complete: CompleteResult =
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
    let transfer_span = match (transferred.values().min(), transferred.values().max()) {
        (Some(lo), Some(hi)) => *hi - *lo,
        _ => time::Duration::ZERO,
    };
    let delivery_span = match (first_at, last_at) {
        (Some(a), Some(b)) => b - a,
        _ => time::Duration::ZERO,
    };
    Ok(Burst {
        latencies: Latencies::new(latencies),
        transfer_span,
        delivery_span,
        repeats,
        out_of_order,
        complete,
    })
}

/// The burst sub-section's Markdown (method and both tables).
pub(super) fn render(runs: &[(Place, Burst)], files: u64) -> String {
    let mut s = format!(
        "Not a latency measurement: this run shows callback delivery throughput and the \
         queueing it causes. One job with {files} local `file://` files of {FILE_SIZE} bytes \
         each (`job.create` with `files`), `notify_flags` 16 (file transferred), the live \
         callback, then `job.resume`; after all {files} callbacks, the event log is read with \
         `events.read` and the job completed. All files are handed over at once, they finish \
         faster than their callbacks are delivered, and a job's `file_transferred` callbacks go \
         strictly one at a time and in file order (a protocol rule), so a file's time below is \
         mostly spent waiting behind the callbacks of earlier files. The target does not apply \
         to these numbers.\n\n\
         | state dir | file system | notifications | p50 ms | p90 ms | p99 ms | max ms |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (place, r) in runs {
        let l = &r.latencies;
        s.push_str(&format!(
            "| {label} | {fs} | {count} | {p50:.3} | {p90:.3} | {p99:.3} | {max:.3} |\n",
            label = place.label(),
            fs = place.fs,
            count = l.len(),
            p50 = l.percentile_ms(50),
            p90 = l.percentile_ms(90),
            p99 = l.percentile_ms(99),
            max = l.max_ms(),
        ));
    }
    s.push_str(
        "\nContext (same runs): how fast files were recorded transferred and how fast callbacks \
         came; a delivery span longer than the transfer span is callbacks queueing.\n\n\
         | state dir | min ms | transfer span s | delivery span s | callbacks/s | repeated callbacks | out of order | `job.complete` |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for (place, r) in runs {
        s.push_str(&format!(
            "| {label} | {min:.3} | {ts:.3} | {ds:.3} | {rate:.0} | {rep} | {ooo} | {state}{partial} |\n",
            label = place.label(),
            min = r.latencies.min_ms(),
            ts = r.transfer_span.as_seconds_f64(),
            ds = r.delivery_span.as_seconds_f64(),
            rate = r.callbacks_per_s(),
            rep = r.repeats,
            ooo = r.out_of_order,
            state = r.complete.state.as_str(),
            partial = if r.complete.partial { ", partial" } else { "" },
        ));
    }
    s
}
