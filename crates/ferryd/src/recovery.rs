//! Recovery at start: what the store holds after a clean stop or a crash becomes the daemon's
//! state. Final jobs past the retention period are deleted, interrupted transfers go back to
//! the queue, retry timers restart, owed notifications come back, and staging files nothing
//! records are removed (`leftovers`). Cold jobs stay in the store (`resident`); only their
//! counts are read, from the state index.

use std::time::Duration;

use ferry_proto::JobState;

use crate::clock::{self, Mono};
use crate::config::DaemonOptions;
use crate::daemon::{Counters, DaemonState};
use crate::error::DaemonError;
use crate::job::JobEntry;
use crate::limits::Quotas;
use crate::{handlers, leftovers, resident};

/// Loads what needs memory after a start or a crash: interrupted transfers go back to the
/// queue, retry timers restart, and final jobs past the retention period are dropped. Cold jobs
/// stay in the store (`resident`); only their counts are read, from the state index.
pub async fn recover(
    opts: &DaemonOptions,
    writer: &ferry_store::Writer,
    reader: &ferry_store::Reader,
    mono: &Mono,
    sweep: std::sync::Arc<tokio::sync::Notify>,
    crashed: bool,
) -> Result<DaemonState, DaemonError> {
    let final_states = [JobState::Acknowledged, JobState::Cancelled];
    let expired: Vec<String> = reader
        .final_times(&final_states)?
        .into_iter()
        .filter(|(_, t)| {
            t.as_deref()
                .is_some_and(|t| clock::since(t) > opts.history_retention)
        })
        .map(|(id, _)| id)
        .collect();
    if !expired.is_empty() {
        drop(writer.submit(move |tx| expired.iter().try_for_each(|id| tx.delete_job(id))));
        writer.flush().await?;
    }
    leftovers::discard_final_staging(opts, writer, reader, &final_states).await?;
    let mut jobs = resident::Jobs::new(reader.another()?, sweep);
    let live: Vec<JobState> = JobState::ALL
        .into_iter()
        .filter(|s| !s.is_final())
        .collect();
    let quotas = Quotas::counted(
        reader.count_jobs_by_owner(&live)?.into_iter().collect(),
        reader.count_files_by_owner(&live)?.into_iter().collect(),
    );
    let next_job_seq = reader.last_job_seq()? + 1;
    let now = clock::now_rfc3339();
    // After a crash, jobs that may have been transferring can have staging files no row names.
    let mut may_have_run = Vec::new();
    for mut row in reader.jobs_needing_memory(&resident::HOT_STATES)? {
        if crashed
            && matches!(
                row.state,
                JobState::Queued | JobState::Connecting | JobState::Transferring
            )
        {
            may_have_run.push((row.id.clone(), row.owner_uid));
        }
        let mut retry_at = None;
        match row.state {
            JobState::Connecting | JobState::Transferring => {
                let from = row.state;
                row.state = JobState::Queued;
                row.modified = now.clone();
                let r = row.clone();
                let t = now.clone();
                drop(writer.submit(move |tx| {
                    tx.update_job(&r)?;
                    tx.append_event(
                        &r.id,
                        r.owner_uid,
                        &t,
                        ferry_proto::EventKind::State {
                            from,
                            to: JobState::Queued,
                        },
                    )
                    .map(drop)
                }));
            }
            JobState::TransientError => {
                let wait = row
                    .retry_at
                    .as_deref()
                    .map(clock::until)
                    .unwrap_or(Duration::ZERO);
                retry_at = Some(mono.now() + u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            }
            _ => {}
        }
        let mut entry = JobEntry::from_store(row);
        entry.scheduling_mut().retry_when(retry_at);
        jobs.insert(entry);
    }
    leftovers::discard_unrecorded_staging(opts, reader, &may_have_run)?;
    let mut next_outbox = 0;
    let mut stale = Vec::new();
    for o in reader.outbox()? {
        next_outbox = next_outbox.max(o.id + 1);
        match jobs.get_mut(&o.job_id) {
            Some(e) if !e.row.state.is_final() => e.notification_mut().owe([o]),
            _ => stale.push(o.id),
        }
    }
    if !stale.is_empty() {
        drop(writer.submit(move |tx| tx.delete_outbox(&stale)));
    }
    let counters = Counters {
        next_job_seq,
        next_outbox_id: next_outbox.max(1),
        quotas,
        handlers: handlers::Registry::load(reader.handlers()?),
    };
    writer.flush().await?;
    Ok(DaemonState::new(jobs, counters))
}
