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
//! The daemon's own tasks (scheduler, transfers, notifier) only ever act on hot jobs, so they
//! look jobs up with [`Jobs::get_resident_mut`], which never reads the store under the lock;
//! API calls make a job resident first with `Daemon::load`, which reads it outside the lock.
//!
//! Not here: listing (`job.list` pages through the store) and counting (the quota counters,
//! `limits::Quotas`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::JobState;
use ferry_store::{JobRow, Reader, StoreError, Writer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::job::JobEntry;

/// The states in which a job is always resident.
pub const HOT_STATES: [JobState; 4] = [
    JobState::Queued,
    JobState::Connecting,
    JobState::Transferring,
    JobState::TransientError,
];

/// The resident jobs, with the store behind them for the rest.
pub struct Jobs {
    map: HashMap<String, JobEntry>,
    /// Point lookups of cold jobs (a connection of its own: never queued behind a long read).
    /// Shared with `Daemon::load`, which reads outside the daemon's lock.
    rows: Arc<Reader>,
    /// How many jobs have left memory so far: a row read outside the lock may be inserted only
    /// if none left meanwhile (one that left may have been written after the read began).
    departed: u64,
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

/// Whether anything in memory depends on `entry` (see the module doc).
pub fn is_hot(entry: &JobEntry) -> bool {
    let row = &entry.row;
    HOT_STATES.contains(&row.state)
        || entry.transfer().is_busy()
        || entry
            .notification()
            .keeps_hot(row.settings.notify_flags, row.state)
}

impl Jobs {
    /// An empty set over the store read by `rows`; `sweep` is the sweeper's wake-up.
    pub fn new(rows: Reader, sweep: Arc<Notify>) -> Jobs {
        Jobs {
            map: HashMap::new(),
            rows: Arc::new(rows),
            departed: 0,
            sweep,
            clock: 0,
        }
    }

    /// Adds a job (created, or loaded at start).
    pub fn insert(&mut self, entry: JobEntry) {
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
        self.map
            .insert(job_id.to_owned(), JobEntry::from_store(row));
        Ok(true)
    }

    /// What a read of `job_id` outside the lock needs, or `None` when it is resident already.
    pub fn cold_lookup(&self, job_id: &str) -> Option<ColdLookup> {
        if self.map.contains_key(job_id) {
            return None;
        }
        Some(ColdLookup {
            rows: Arc::clone(&self.rows),
            departed: self.departed,
        })
    }

    /// Makes a row read through `lookup` resident, unless that read may be stale.
    pub fn settle(&mut self, job_id: &str, lookup: &ColdLookup, row: Option<JobRow>) -> Settled {
        if self.map.contains_key(job_id) {
            // Loaded or created meanwhile: memory is at least as new as the read.
            return Settled::Resident;
        }
        if self.departed != lookup.departed {
            return Settled::Stale;
        }
        // Nothing left memory since before the read: the job was not resident at any time in
        // between, so nobody wrote it and the row is current.
        let Some(row) = row else {
            return Settled::Missing;
        };
        self.clock += 1;
        let mut entry = JobEntry::from_store(row);
        entry.touch(self.clock);
        self.map.insert(job_id.to_owned(), entry);
        self.sweep.notify_one();
        Settled::Resident
    }

    /// A resident job, without reading the store (a listing shows the others from their rows).
    pub fn peek(&self, job_id: &str) -> Option<&JobEntry> {
        self.map.get(job_id)
    }

    /// A job for reading, read back from the store when it is not resident.
    pub fn get(&mut self, job_id: &str) -> Option<&JobEntry> {
        self.get_mut(job_id).map(|e| &*e)
    }

    /// A job for changing, read back from the store when it is not resident. Every access
    /// stamps the job: a caller may queue a write for it right after, and the sweeper must not
    /// drop it before that write commits.
    pub fn get_mut(&mut self, job_id: &str) -> Option<&mut JobEntry> {
        self.try_get_mut(job_id).unwrap_or_else(|e| {
            tracing::error!(job = job_id, error = %e, "cannot read a job back from the store");
            None
        })
    }

    /// [`Jobs::get_mut`] that reports a store failure instead of treating it as "no such job".
    pub fn try_get_mut(&mut self, job_id: &str) -> Result<Option<&mut JobEntry>, StoreError> {
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
        e.touch(stamp);
        Ok(Some(e))
    }

    /// A resident job for changing, never read from the store: for the daemon's own tasks,
    /// which act on hot jobs only (a job that left memory has nothing for them). Stamps the
    /// job like [`Jobs::get_mut`].
    pub fn get_resident_mut(&mut self, job_id: &str) -> Option<&mut JobEntry> {
        let e = self.map.get_mut(job_id)?;
        self.clock += 1;
        e.touch(self.clock);
        self.sweep.notify_one();
        Some(e)
    }

    /// The ids of the jobs whose transfer task runs (they are hot, so resident).
    pub fn running(&self) -> Vec<String> {
        self.map
            .iter()
            .filter(|(_, e)| e.transfer().is_running())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The resident jobs only: every hot job, and cold ones not swept yet. For passes that
    /// concern hot jobs (scheduling, shutdown, notification retries).
    pub fn resident(&self) -> impl Iterator<Item = (&String, &JobEntry)> {
        self.map.iter()
    }

    /// [`Jobs::resident`], mutably.
    pub fn resident_mut(&mut self) -> impl Iterator<Item = &mut JobEntry> {
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
            .filter(|(_, e)| !is_hot(e))
            .map(|(id, e)| (id.clone(), e.touched()))
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
                .is_some_and(|e| e.touched() == *stamp && !is_hot(e))
            {
                self.map.remove(id);
                self.departed += 1;
                dropped += 1;
            }
        }
        if self.map.capacity() > 2 * self.map.len() + 64 {
            self.map.shrink_to_fit();
        }
        dropped
    }
}

/// A read of a cold job prepared under the daemon's lock and done outside it.
pub struct ColdLookup {
    /// The store's point-lookup connection.
    pub rows: Arc<Reader>,
    /// [`Jobs`]'s departure count when the lookup was prepared.
    departed: u64,
}

/// What [`Jobs::settle`] made of a row read outside the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The job is in memory now.
    Resident,
    /// The job does not exist.
    Missing,
    /// A job left memory during the read, so the row may be older than what was written
    /// before it left: read again.
    Stale,
}

/// The jobs as the sweeper reaches them: under the daemon's lock, and nothing else of it.
pub trait LockedJobs: Send + Sync + 'static {
    /// Runs `f` on the jobs with the daemon's lock held (briefly: no awaits inside).
    fn with_jobs<R>(&self, f: impl FnOnce(&mut Jobs) -> R) -> R;
}

/// What the sweeper task is given: the jobs under the lock, the store writer (to wait for
/// writes to commit), its wake-up, and the shutdown signal.
pub struct Sweeper<L> {
    /// The jobs, reached under the daemon's lock.
    pub jobs: Arc<L>,
    /// Flushed before anything leaves memory.
    pub store: Writer,
    /// Fires when a job may have gone cold.
    pub wake: Arc<Notify>,
    /// Fires at shutdown.
    pub shutdown: CancellationToken,
    /// How long activity must settle before a sweep.
    pub grace: Duration,
}

impl<L: LockedJobs> Sweeper<L> {
    /// The sweeper task: `grace` after a job was last inserted or accessed, drops cold jobs
    /// whose writes have committed. It runs only when woken that way, so an idle daemon never
    /// wakes for it.
    pub async fn run(self) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.shutdown.cancelled() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(self.grace) => {}
                _ = self.shutdown.cancelled() => return,
            }
            crate::supervise::test_fault("sweeper");
            let candidates = self.jobs.with_jobs(|jobs| jobs.cold());
            if candidates.is_empty() {
                continue;
            }
            if let Err(e) = self.store.flush().await {
                // Nothing is dropped whose row may not be durable.
                tracing::error!(error = %e, "the store did not flush; cold jobs stay in memory");
                continue;
            }
            let (dropped, resident) = self
                .jobs
                .with_jobs(|jobs| (jobs.evict(&candidates), jobs.resident_len()));
            tracing::debug!(dropped, resident, "cold jobs left memory");
        }
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
            settings: ferry_proto::JobSettings {
                display_name: format!("job {seq}"),
                ..ferry_proto::JobSettings::default()
            },
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
        jobs.insert(JobEntry::from_store(r.clone()));
        let cold = jobs.cold();
        assert_eq!(cold.len(), 1);
        assert_eq!(jobs.evict(&cold), 1);
        assert_eq!(jobs.resident_len(), 0);
        let back = jobs.get("job-1").expect("read back from the store");
        assert_eq!(back.row, r);
        assert_eq!(back.scheduling().queued_seq(), 1);
        assert_eq!(jobs.resident_len(), 1);
        assert!(jobs.get("job-2").is_none());
    }

    #[test]
    fn hot_jobs_stay_in_memory() {
        let (_dir, writer, mut jobs) = store();
        for (seq, state) in HOT_STATES.iter().enumerate() {
            let r = row(seq as u64 + 1, *state);
            put(&writer, &r);
            jobs.insert(JobEntry::from_store(r));
        }
        let mut watched = JobEntry::from_store(row(10, JobState::Error));
        watched.row.settings.notify_flags |= ferry_proto::NotifyFlags::JOB_MODIFICATION;
        watched.notification_mut().mark_modified();
        jobs.insert(watched);
        assert!(jobs.cold().is_empty());
        assert_eq!(jobs.evict(&[("job-1".into(), 0)]), 0);
        assert_eq!(jobs.resident_len(), 5);
        // A modification nobody asked for does not keep a job in memory.
        let mut unwatched = JobEntry::from_store(row(11, JobState::Suspended));
        unwatched.notification_mut().mark_modified();
        jobs.insert(unwatched);
        assert_eq!(jobs.cold(), vec![("job-11".to_string(), 0)]);
    }

    #[test]
    fn a_job_touched_after_the_listing_stays() {
        let (_dir, writer, mut jobs) = store();
        let r = row(1, JobState::Suspended);
        put(&writer, &r);
        jobs.insert(JobEntry::from_store(r));
        let cold = jobs.cold();
        if let Some(e) = jobs.get_mut("job-1") {
            e.row.settings.display_name = "renamed".into();
        }
        assert_eq!(jobs.evict(&cold), 0);
        assert_eq!(
            jobs.get("job-1")
                .map(|e| e.row.settings.display_name.clone()),
            Some("renamed".into())
        );
    }

    /// What `Daemon::load` does, without the lock in between: prepare, read, settle.
    fn read_outside(jobs: &Jobs, id: &str) -> (ColdLookup, Option<JobRow>) {
        let lookup = jobs.cold_lookup(id).expect("not resident");
        let row = lookup.rows.job(id).expect("read");
        (lookup, row)
    }

    #[test]
    fn a_row_read_outside_the_lock_becomes_resident_and_a_missing_one_is_missing() {
        let (_dir, writer, mut jobs) = store();
        let r = row(1, JobState::Suspended);
        put(&writer, &r);
        let (lookup, got) = read_outside(&jobs, "job-1");
        assert_eq!(jobs.settle("job-1", &lookup, got), Settled::Resident);
        assert_eq!(jobs.peek("job-1").map(|e| e.row.clone()), Some(r));
        // Resident now: nothing to read outside the lock any more.
        assert!(jobs.cold_lookup("job-1").is_none());
        let (lookup, got) = read_outside(&jobs, "job-2");
        assert_eq!(jobs.settle("job-2", &lookup, got), Settled::Missing);
        assert!(jobs.peek("job-2").is_none());
    }

    #[test]
    fn a_job_loaded_and_changed_during_the_read_keeps_its_change() {
        let (_dir, writer, mut jobs) = store();
        put(&writer, &row(1, JobState::Suspended));
        let (lookup, stale) = read_outside(&jobs, "job-1");
        // Meanwhile another caller loads it under the lock and changes it.
        jobs.get_mut("job-1")
            .expect("exists")
            .row
            .settings
            .display_name = "renamed".into();
        assert_eq!(jobs.settle("job-1", &lookup, stale), Settled::Resident);
        assert_eq!(resident_name(&jobs).as_deref(), Some("renamed"));
    }

    #[test]
    fn a_row_read_while_the_job_was_changed_and_evicted_is_stale() {
        let (_dir, writer, mut jobs) = store();
        put(&writer, &row(1, JobState::Suspended));
        let (lookup, stale) = read_outside(&jobs, "job-1");
        // Meanwhile: loaded, renamed, written, and evicted again.
        let e = jobs.get_mut("job-1").expect("exists");
        e.row.settings.display_name = "renamed".into();
        let renamed = e.row.clone();
        writer
            .submit(move |tx| tx.update_job(&renamed))
            .wait_blocking()
            .expect("update");
        let cold = jobs.cold();
        assert_eq!(jobs.evict(&cold), 1);
        assert_eq!(jobs.settle("job-1", &lookup, stale), Settled::Stale);
        assert!(
            jobs.peek("job-1").is_none(),
            "the old row must not come back"
        );
        let (lookup, fresh) = read_outside(&jobs, "job-1");
        assert_eq!(jobs.settle("job-1", &lookup, fresh), Settled::Resident);
        assert_eq!(resident_name(&jobs).as_deref(), Some("renamed"));
    }

    #[test]
    fn a_job_created_during_a_read_that_found_nothing_is_resident() {
        let (_dir, _writer, mut jobs) = store();
        let (lookup, none) = read_outside(&jobs, "job-1");
        assert!(none.is_none());
        jobs.insert(JobEntry::from_store(row(1, JobState::Suspended)));
        assert_eq!(jobs.settle("job-1", &lookup, none), Settled::Resident);
        assert!(jobs.peek("job-1").is_some());
    }

    #[test]
    fn issue_12_the_resident_lookup_never_reads_the_store() {
        let (_dir, writer, mut jobs) = store();
        let r = row(1, JobState::Suspended);
        put(&writer, &r);
        assert!(jobs.get_resident_mut("job-1").is_none());
        assert_eq!(jobs.resident_len(), 0, "nothing was read back");
        jobs.insert(JobEntry::from_store(r));
        let cold = jobs.cold();
        assert!(jobs.get_resident_mut("job-1").is_some());
        // It stamps the job like `get_mut`: a write queued after it keeps the job in memory.
        assert_eq!(jobs.evict(&cold), 0);
        assert_eq!(jobs.running(), Vec::<String>::new());
    }

    /// The display name of `job-1` if it is resident.
    fn resident_name(jobs: &Jobs) -> Option<String> {
        jobs.peek("job-1")
            .map(|e| e.row.settings.display_name.clone())
    }
}
