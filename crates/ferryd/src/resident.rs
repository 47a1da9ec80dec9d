//! Which jobs the daemon keeps in memory, and the sweeper that drops the others.
//!
//! A job is *hot* while something in memory depends on it: it is queued, running or waiting to
//! retry, its previous transfer is still checkpointing, it owes a notification (or a
//! `job_modification` it asked for), or a courier or a live callback connection watches it. Hot
//! jobs stay resident. Every other job (suspended, in
//! error, transferred, final) is *cold*: once its last write has committed, the sweeper drops it
//! from memory, and the next lookup reads it back from the store with a default runtime, which
//! is all a cold job ever has. Eviction is therefore invisible to callers: [`Jobs::get`] and
//! [`Jobs::get_mut`] find every job that exists. This is what lets 100 000 suspended jobs cost
//! the daemon nothing but their rows on disk.
//!
//! Not here: listing (`job.list` pages through the store) and counting (the quota counters in
//! `Inner`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::notify::{self, Kind, Verdict};
use ferry_proto::JobState;
use ferry_store::{JobRow, Reader, StoreError};
use tokio::sync::Notify;

use crate::daemon::{Daemon, Entry, Runtime};

/// The states in which a job is always resident.
pub const HOT_STATES: [JobState; 4] = [
    JobState::Queued,
    JobState::Connecting,
    JobState::Transferring,
    JobState::TransientError,
];

/// The resident jobs, with the store behind them for the rest.
pub struct Jobs {
    map: HashMap<String, Entry>,
    /// Point lookups of cold jobs (a connection of its own: never queued behind a long read).
    rows: Reader,
    /// Wakes the sweeper when a job may have gone cold.
    sweep: Arc<Notify>,
    /// Stamps every mutable access, so the sweeper can tell a job touched since it looked.
    clock: u64,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("resident", &self.map.len())
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// A job read back from the store: the runtime a cold job has.
    pub fn from_store(row: JobRow) -> Entry {
        let rt = Runtime {
            queued_seq: row.seq,
            ..Runtime::default()
        };
        Entry {
            row,
            rt,
            touched: 0,
        }
    }

    /// Whether anything in memory depends on this job (see the module doc).
    pub fn is_hot(&self) -> bool {
        let rt = &self.rt;
        HOT_STATES.contains(&self.row.state)
            || rt.running.is_some()
            || rt.finishing.as_ref().is_some_and(|done| !*done.borrow())
            || !rt.outbox.is_empty()
            || rt.courier.is_some()
            || rt.notify_retry_at.is_some()
            || (rt.modified_pending
                && notify::verdict(self.row.notify_flags, Kind::JobModification, self.row.state)
                    != Verdict::Drop)
            || rt
                .notify_peer
                .as_ref()
                .is_some_and(|w| w.upgrade().is_some_and(|p| !p.is_closed()))
    }
}

impl Jobs {
    /// An empty set over the store read by `rows`; `sweep` is the sweeper's wake-up.
    pub fn new(rows: Reader, sweep: Arc<Notify>) -> Jobs {
        Jobs {
            map: HashMap::new(),
            rows,
            sweep,
            clock: 0,
        }
    }

    /// Adds a job (created, or loaded at start).
    pub fn insert(&mut self, entry: Entry) {
        self.map.insert(entry.row.id.clone(), entry);
        self.sweep.notify_one();
    }

    /// Makes `job_id` resident if it exists; `Ok(false)` when it does not.
    fn load(&mut self, job_id: &str) -> Result<bool, StoreError> {
        if self.map.contains_key(job_id) {
            return Ok(true);
        }
        let Some(row) = self.rows.job(job_id)? else {
            return Ok(false);
        };
        self.map.insert(job_id.to_owned(), Entry::from_store(row));
        Ok(true)
    }

    /// A resident job, without reading the store (a listing shows the others from their rows).
    pub fn peek(&self, job_id: &str) -> Option<&Entry> {
        self.map.get(job_id)
    }

    /// A job for reading, read back from the store when it is not resident.
    pub fn get(&mut self, job_id: &str) -> Option<&Entry> {
        self.get_mut(job_id).map(|e| &*e)
    }

    /// A job for changing, read back from the store when it is not resident. Every access
    /// stamps the job: a caller may queue a write for it right after, and the sweeper must not
    /// drop it before that write commits.
    pub fn get_mut(&mut self, job_id: &str) -> Option<&mut Entry> {
        self.try_get_mut(job_id).unwrap_or_else(|e| {
            tracing::error!(job = job_id, error = %e, "cannot read a job back from the store");
            None
        })
    }

    /// [`Jobs::get_mut`] that reports a store failure instead of treating it as "no such job".
    pub fn try_get_mut(&mut self, job_id: &str) -> Result<Option<&mut Entry>, StoreError> {
        if !self.load(job_id)? {
            return Ok(None);
        }
        self.clock += 1;
        let stamp = self.clock;
        // The job may go cold after this access; the sweeper looks once activity settles.
        self.sweep.notify_one();
        let Some(e) = self.map.get_mut(job_id) else {
            return Ok(None);
        };
        e.touched = stamp;
        Ok(Some(e))
    }

    /// The resident jobs only: every hot job, and cold ones not swept yet. For passes that
    /// concern hot jobs (scheduling, shutdown, notification retries).
    pub fn resident(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.map.iter()
    }

    /// [`Jobs::resident`], mutably.
    pub fn resident_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.map.values_mut()
    }

    /// How many jobs are resident.
    pub fn resident_len(&self) -> usize {
        self.map.len()
    }

    /// The cold resident jobs, with the stamp each had when looked at.
    fn cold(&self) -> Vec<(String, u64)> {
        self.map
            .iter()
            .filter(|(_, e)| !e.is_hot())
            .map(|(id, e)| (id.clone(), e.touched))
            .collect()
    }

    /// Drops the `candidates` that are still cold and untouched since [`Jobs::cold`] listed
    /// them. The caller has waited for every write queued before that listing to commit, so
    /// what the store holds for them is what memory held. Returns how many were dropped.
    fn evict(&mut self, candidates: &[(String, u64)]) -> usize {
        let mut dropped = 0;
        for (id, stamp) in candidates {
            if self
                .map
                .get(id)
                .is_some_and(|e| e.touched == *stamp && !e.is_hot())
            {
                self.map.remove(id);
                dropped += 1;
            }
        }
        if self.map.capacity() > 2 * self.map.len() + 64 {
            self.map.shrink_to_fit();
        }
        dropped
    }
}

/// The sweeper task: `grace` after a job was last inserted or accessed, drops cold jobs whose
/// writes have committed. It runs only when woken that way, so an idle daemon never wakes for
/// it.
pub async fn sweeper(d: Arc<Daemon>, wake: Arc<Notify>, grace: Duration) {
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = d.shutdown.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = d.shutdown.cancelled() => return,
        }
        crate::supervise::test_fault("sweeper");
        let candidates = d.lock().jobs.cold();
        if candidates.is_empty() {
            continue;
        }
        if let Err(e) = d.store.flush().await {
            // Nothing is dropped whose row may not be durable.
            tracing::error!(error = %e, "the store did not flush; cold jobs stay in memory");
            continue;
        }
        let (dropped, resident) = {
            let mut inner = d.lock();
            (inner.jobs.evict(&candidates), inner.jobs.resident_len())
        };
        tracing::debug!(dropped, resident, "cold jobs left memory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ferry_store::Writer, Jobs) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (writer, reader) = ferry_store::open(dir.path()).expect("open the store");
        let jobs = Jobs::new(reader, Arc::new(Notify::new()));
        (dir, writer, jobs)
    }

    fn row(seq: u64, state: JobState) -> JobRow {
        JobRow {
            seq,
            id: format!("job-{seq}"),
            state,
            display_name: format!("job {seq}"),
            ..JobRow::default()
        }
    }

    fn put(writer: &ferry_store::Writer, r: &JobRow) {
        let r = r.clone();
        writer
            .submit(move |tx| tx.insert_job(&r))
            .wait_blocking()
            .expect("insert");
    }

    #[test]
    fn a_cold_job_leaves_memory_and_comes_back_unchanged() {
        let (_dir, writer, mut jobs) = store();
        let r = row(1, JobState::Suspended);
        put(&writer, &r);
        jobs.insert(Entry::from_store(r.clone()));
        let cold = jobs.cold();
        assert_eq!(cold.len(), 1);
        assert_eq!(jobs.evict(&cold), 1);
        assert_eq!(jobs.resident_len(), 0);
        let back = jobs.get("job-1").expect("read back from the store");
        assert_eq!(back.row, r);
        assert_eq!(back.rt.queued_seq, 1);
        assert_eq!(jobs.resident_len(), 1);
        assert!(jobs.get("job-2").is_none());
    }

    #[test]
    fn hot_jobs_stay_in_memory() {
        let (_dir, writer, mut jobs) = store();
        for (seq, state) in HOT_STATES.iter().enumerate() {
            let r = row(seq as u64 + 1, *state);
            put(&writer, &r);
            jobs.insert(Entry::from_store(r));
        }
        let mut watched = Entry::from_store(row(10, JobState::Error));
        watched.row.notify_flags |= ferry_proto::NotifyFlags::JOB_MODIFICATION;
        watched.rt.modified_pending = true;
        jobs.insert(watched);
        assert!(jobs.cold().is_empty());
        assert_eq!(jobs.evict(&[("job-1".into(), 0)]), 0);
        assert_eq!(jobs.resident_len(), 5);
        // A modification nobody asked for does not keep a job in memory.
        let mut unwatched = Entry::from_store(row(11, JobState::Suspended));
        unwatched.rt.modified_pending = true;
        jobs.insert(unwatched);
        assert_eq!(jobs.cold(), vec![("job-11".to_string(), 0)]);
    }

    #[test]
    fn a_job_touched_after_the_listing_stays() {
        let (_dir, writer, mut jobs) = store();
        let r = row(1, JobState::Suspended);
        put(&writer, &r);
        jobs.insert(Entry::from_store(r));
        let cold = jobs.cold();
        if let Some(e) = jobs.get_mut("job-1") {
            e.row.display_name = "renamed".into();
        }
        assert_eq!(jobs.evict(&cold), 0);
        assert_eq!(
            jobs.get("job-1").map(|e| e.row.display_name.clone()),
            Some("renamed".into())
        );
    }
}
