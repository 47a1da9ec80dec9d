//! The daemon's shared state: the jobs (rows and runtimes of the hot ones in memory, the rest
//! read back from the store on access: `resident`), the store handles, and the one place where
//! a job changes state ([`Daemon::transition`]).
//!
//! Locking rule: `inner` is a plain mutex held only for in-memory work and for *queueing* store
//! writes, never across an await. Because writes are queued under the lock, the store applies
//! them in the same order as memory changed; callers await the commit (outside the lock) before
//! they answer or act.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_core::notify::Kind;
use ferry_core::state::{Refusal, Trigger};
use ferry_core::transition::{self, JobFacts, OwedRow};
use ferry_fetch::Fetcher;
use ferry_proto::{ErrorInfo, ErrorKind, EventKind, Job, JobState, Progress, ProtoError};
use ferry_store::{Commit, JobRow, OutboxRow, Reader, Writer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Mono};
use crate::config::DaemonOptions;
use crate::job::JobEntry;
use crate::limits::Quotas;
use crate::resident::{Jobs, LockedJobs, Sweeper};

/// Who is calling, as the kernel reported it (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The caller's user id: whose jobs it sees and acts on.
    pub uid: u32,
    /// The caller's primary group id (destination checks run with it).
    pub gid: u32,
    /// Process id, when known.
    pub pid: Option<i32>,
}

impl Caller {
    /// Root may see and act on every job.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Everything guarded by the daemon's mutex: the jobs, the quota counters, the sequence
/// counters, the handler registry and the event followers. Fields are private; callers use the
/// methods, which keep each counter in step with what it counts.
#[derive(Debug)]
pub struct DaemonState {
    /// Every job: the hot ones in memory, the others read back from the store on access.
    jobs: Jobs,
    /// Next job `seq`.
    next_job_seq: u64,
    /// Next FIFO key.
    next_queue_seq: u64,
    /// Unfinished jobs and their files, in total and per uid.
    quotas: Quotas,
    /// Set when shutting down: no new transfers start.
    stopping: bool,
    /// Next outbox row id.
    next_outbox_id: u64,
    /// Registered and attached notification handlers.
    handlers: crate::handlers::Registry,
    /// Connections following events, per uid.
    followers: Arc<crate::limits::UidCounts>,
}

/// Where the counters of [`DaemonState`] start, as recovered from the store.
#[derive(Debug)]
pub struct Counters {
    /// The next job `seq` (also the next FIFO key).
    pub next_job_seq: u64,
    /// The next outbox row id.
    pub next_outbox_id: u64,
    /// Unfinished jobs and their files.
    pub quotas: Quotas,
    /// The handlers registered in the store.
    pub handlers: crate::handlers::Registry,
}

impl DaemonState {
    /// The state at start: `jobs` (the hot ones loaded) and the counters recovered.
    pub fn new(jobs: Jobs, counters: Counters) -> DaemonState {
        DaemonState {
            jobs,
            next_job_seq: counters.next_job_seq,
            next_queue_seq: counters.next_job_seq,
            quotas: counters.quotas,
            stopping: false,
            next_outbox_id: counters.next_outbox_id,
            handlers: counters.handlers,
            followers: Arc::default(),
        }
    }

    /// The jobs, for reading.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// The jobs, for looking up and changing.
    pub fn jobs_mut(&mut self) -> &mut Jobs {
        &mut self.jobs
    }

    /// The jobs and the handler registry at once (a delivery plan changes a job and reads
    /// which handlers are available).
    pub fn jobs_and_handlers(&mut self) -> (&mut Jobs, &crate::handlers::Registry) {
        (&mut self.jobs, &self.handlers)
    }

    /// The notification handlers, registered and attached.
    pub fn handlers(&self) -> &crate::handlers::Registry {
        &self.handlers
    }

    /// The notification handlers, for registering, attaching and detaching.
    pub fn handlers_mut(&mut self) -> &mut crate::handlers::Registry {
        &mut self.handlers
    }

    /// The unfinished-job counters the limits are checked against.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// The unfinished-job counters, for the calls that create, grow or hand over a job.
    pub fn quotas_mut(&mut self) -> &mut Quotas {
        &mut self.quotas
    }

    /// Takes the next job `seq`.
    pub fn take_job_seq(&mut self) -> u64 {
        let seq = self.next_job_seq;
        self.next_job_seq += 1;
        seq
    }

    /// Whether the daemon is shutting down (no transfer starts any more).
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Marks the daemon as shutting down.
    pub fn stop_starting(&mut self) {
        self.stopping = true;
    }

    /// The per-uid counts of connections following events.
    pub fn followers(&self) -> &Arc<crate::limits::UidCounts> {
        &self.followers
    }
}

/// What [`Daemon::new`] builds the daemon from (assembled by `run` at start).
pub struct DaemonParts {
    /// The daemon's settings.
    pub opts: DaemonOptions,
    /// Queues the store's writes.
    pub store: Writer,
    /// Reads the store outside the writer.
    pub reader: Reader,
    /// Runs the file transfers.
    pub fetcher: Fetcher,
    /// Runs the uploads.
    pub sender: ferry_send::Sender,
    /// The monotonic clock timers use.
    pub mono: Mono,
    /// The jobs and counters recovered at start.
    pub state: DaemonState,
    /// Where [`Daemon::kick`] sends the notifier's work.
    pub kicks: tokio::sync::mpsc::UnboundedSender<Kick>,
    /// The peer cache, when the configuration enables it.
    pub peer_cache: Option<Arc<crate::peer_cache::PeerCache>>,
    /// Fires at shutdown.
    pub shutdown: CancellationToken,
}

/// The daemon: shared by every connection and task. Its fields are private: connections and
/// tasks reach the parts they use through the accessors and change state through the methods
/// (the jobs under [`Daemon::lock`]).
pub struct Daemon {
    opts: DaemonOptions,
    store: Writer,
    reader: Arc<Reader>,
    fetcher: Arc<Fetcher>,
    sender: ferry_send::Sender,
    mono: Mono,
    /// Shared with the sweeper, which reaches nothing else of the daemon.
    state: Arc<Mutex<DaemonState>>,
    /// Wakes the scheduler.
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    /// Asks the notifier to (re)consider a job's notifications.
    kicks: tokio::sync::mpsc::UnboundedSender<Kick>,
    /// At most 4 callbacks outstanding per user (docs/protocol.md, delivery rules).
    user_slots: Mutex<HashMap<u32, Arc<tokio::sync::Semaphore>>>,
    /// The global background bandwidth limit.
    global_bucket: Arc<ferry_fetch::throttle::Bucket>,
    /// Per-host connection budgets (host:port → permits), shared by every job.
    host_slots: Arc<crate::host_slots::HostSlots>,
    peer_cache: Option<Arc<crate::peer_cache::PeerCache>>,
    /// Jobs an owner operation is stopping or changing ([`Hold`]): the scheduler starts none of
    /// them. A separate lock, always taken after `state` if both are held.
    holds: Mutex<HashMap<String, u32>>,
    /// The network and power state seen on the system bus (`conditions`); the scheduler
    /// holds jobs the policy says must wait.
    conditions: Arc<tokio::sync::watch::Sender<crate::conditions::Seen>>,
}

impl LockedJobs for Mutex<DaemonState> {
    fn with_jobs<R>(&self, f: impl FnOnce(&mut Jobs) -> R) -> R {
        // Poisoned or not, the state is consistent (see `Daemon::lock`).
        f(&mut self.lock().unwrap_or_else(|p| p.into_inner()).jobs)
    }
}

/// Keeps the scheduler from starting a job while an owner operation (cancel, suspend, complete,
/// rejecting content) stops it and changes it; released on drop, whatever path the operation
/// takes. Without it, a queued job could start between the operation's stop and its change, and
/// that task would write a staging file the operation never sees.
pub struct Hold<'a> {
    daemon: &'a Daemon,
    job_id: String,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut holds = self.daemon.holds();
        if let Some(n) = holds.get_mut(&self.job_id) {
            *n -= 1;
            if *n == 0 {
                holds.remove(&self.job_id);
            }
        }
        drop(holds);
        // A queued job skipped while held may start now.
        self.daemon.wake.notify_one();
    }
}

/// A request to the notifier about one job.
#[derive(Debug, Clone)]
pub struct Kick {
    /// The job whose notifications to look at.
    pub job_id: String,
    /// A target just appeared: retry at once instead of after the retry delay.
    pub urgent: bool,
}

/// How often [`Daemon::load`] reads a job again when an eviction raced its read.
const LOAD_ATTEMPTS: usize = 3;

/// Shorthand for a not-found answer (another user's job looks the same).
pub fn not_found(job_id: &str) -> ProtoError {
    ProtoError::kind(
        ErrorKind::NotFound,
        format!("no job {job_id} exists for this user"),
    )
}

/// Why [`Daemon::transition`] left a job as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionError {
    /// The job is not in memory (it never existed, or it left): there is nothing to move.
    NotFound,
    /// The state machine does not allow the trigger in the job's state.
    Refused(Refusal),
}

impl From<Refusal> for TransitionError {
    fn from(r: Refusal) -> TransitionError {
        TransitionError::Refused(r)
    }
}

/// Turns a failed transition of `job_id` into the documented error: a missing job is
/// `not_found`, a refused trigger [`refusal`].
pub fn refused(op: &str, job_id: &str, e: TransitionError) -> ProtoError {
    match e {
        TransitionError::NotFound => not_found(job_id),
        TransitionError::Refused(r) => refusal(op, r),
    }
}

/// Turns a state-machine refusal into the documented error.
pub fn refusal(op: &str, r: Refusal) -> ProtoError {
    match r {
        Refusal::InvalidState(s) => ProtoError::kind(
            ErrorKind::InvalidState,
            format!("cannot {op}: the job is {s}, which does not allow it"),
        )
        .with("state", s.as_str())
        .with("bits", "BG_E_INVALID_STATE"),
        Refusal::Empty => ProtoError::kind(
            ErrorKind::InvalidState,
            format!("cannot {op}: the job has no files; add files first"),
        )
        .with("state", "suspended")
        .with("reason", "empty")
        .with("bits", "BG_E_EMPTY"),
    }
}

/// A store failure seen by a caller.
pub fn store_failed(e: ferry_store::StoreError) -> ProtoError {
    ProtoError::kind(
        ErrorKind::Internal,
        format!("the job store failed: {e}; the change may not be durable"),
    )
}

impl JobEntry {
    /// The wire view of the job.
    pub fn view(&self) -> Job {
        let r = &self.row;
        Job {
            job_id: r.id.clone(),
            job_type: r.job_type,
            owner_uid: r.owner_uid,
            state: r.state,
            progress: Progress {
                bytes_total: r.bytes_total,
                bytes_transferred: r.bytes_transferred + self.transfer().live_bytes(),
                files_total: r.files_total,
                files_transferred: r.files_transferred,
            },
            times: ferry_proto::JobTimes {
                created: r.created.clone(),
                modified: r.modified.clone(),
                transfer_completed: r.transfer_completed.clone(),
            },
            error: r.error.clone(),
            error_count: r.error_count,
            waiting: match r.state {
                JobState::Queued | JobState::TransientError => self.scheduling().waiting().cloned(),
                // A running job's transfers may be waiting for a slot of their host.
                JobState::Connecting | JobState::Transferring => self
                    .scheduling()
                    .waiting()
                    .filter(|w| w.reason == ferry_core::hosts::WAIT_REASON)
                    .cloned(),
                _ => None,
            },
            notify_interface: self.notification().interface_live(),
            credentials_set: r.settings.credentials.is_some(),
            // The view goes to clients: the credentials stay in the row.
            settings: ferry_proto::JobSettings {
                credentials: None,
                ..r.settings.clone()
            },
        }
    }
}

impl Daemon {
    /// The daemon over the parts `run` assembled.
    pub fn new(parts: DaemonParts) -> Daemon {
        let bandwidth = parts.opts.bandwidth_limit_bps;
        let per_host = parts.opts.max_connections_per_host;
        Daemon {
            opts: parts.opts,
            store: parts.store,
            reader: Arc::new(parts.reader),
            fetcher: Arc::new(parts.fetcher),
            sender: parts.sender,
            mono: parts.mono,
            state: Arc::new(Mutex::new(parts.state)),
            wake: Arc::new(Notify::new()),
            shutdown: parts.shutdown,
            kicks: parts.kicks,
            user_slots: Mutex::new(HashMap::new()),
            global_bucket: ferry_fetch::throttle::Bucket::new(bandwidth),
            host_slots: crate::host_slots::HostSlots::new(per_host),
            peer_cache: parts.peer_cache,
            holds: Mutex::new(HashMap::new()),
            conditions: Arc::new(tokio::sync::watch::Sender::new(Default::default())),
        }
    }

    /// Locks the in-memory state. A poisoned lock is still consistent enough to keep serving:
    /// every mutation is a single assignment sequence without awaits.
    pub fn lock(&self) -> MutexGuard<'_, DaemonState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sweeper task's handles: the jobs under the lock, the store writer and the shutdown
    /// signal, nothing else of the daemon.
    pub fn sweeper(
        &self,
        wake: Arc<Notify>,
        grace: std::time::Duration,
    ) -> Sweeper<Mutex<DaemonState>> {
        Sweeper {
            jobs: Arc::clone(&self.state),
            store: self.store.clone(),
            wake,
            shutdown: self.shutdown.clone(),
            grace,
        }
    }

    /// The daemon's settings.
    pub fn opts(&self) -> &DaemonOptions {
        &self.opts
    }

    /// Queues writes to the store (applied in the order they were queued).
    pub fn store(&self) -> &Writer {
        &self.store
    }

    /// Reads the store (listings, files, events) outside the writer.
    pub fn reader(&self) -> &Arc<Reader> {
        &self.reader
    }

    /// The transfer engine every job's files go through.
    pub fn fetcher(&self) -> &Arc<Fetcher> {
        &self.fetcher
    }

    /// The upload engine every upload job's file goes through.
    pub fn sender(&self) -> &ferry_send::Sender {
        &self.sender
    }

    /// The monotonic clock the daemon's timers use.
    pub fn mono(&self) -> &Mono {
        &self.mono
    }

    /// The scheduler's wake-up: notified when a job may start or must stop.
    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// Fires when the daemon shuts down; every task ends on it.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The bandwidth limit every background job shares.
    pub fn global_bucket(&self) -> &Arc<ferry_fetch::throttle::Bucket> {
        &self.global_bucket
    }

    /// The peer cache, when the configuration enables it.
    pub fn peer_cache(&self) -> Option<&Arc<crate::peer_cache::PeerCache>> {
        self.peer_cache.as_ref()
    }

    /// The network and power state seen on the system bus (`conditions` sends it, the
    /// scheduler reads it).
    pub fn conditions(&self) -> &Arc<tokio::sync::watch::Sender<crate::conditions::Seen>> {
        &self.conditions
    }

    /// The connection slots of every host, shared by every job talking to it.
    pub fn host_slots(&self) -> &Arc<crate::host_slots::HostSlots> {
        &self.host_slots
    }

    /// The callbacks `uid` may have outstanding at once (4, docs/protocol.md delivery rules).
    pub fn callback_slots(&self, uid: u32) -> Arc<tokio::sync::Semaphore> {
        let mut slots = self.user_slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(uid)
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(4)))
            .clone()
    }

    fn holds(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        // A poisoned map is still a valid map: every update is a single step.
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds a job against the scheduler until the returned guard drops.
    pub fn hold(&self, job_id: &str) -> Hold<'_> {
        *self.holds().entry(job_id.to_owned()).or_default() += 1;
        Hold {
            daemon: self,
            job_id: job_id.to_owned(),
        }
    }

    /// Whether an owner operation holds the job (the scheduler leaves it alone).
    pub fn is_held(&self, job_id: &str) -> bool {
        self.holds().contains_key(job_id)
    }

    /// Finds a job the caller may act on.
    pub fn owned<'a>(
        inner: &'a mut DaemonState,
        caller: &Caller,
        job_id: &str,
    ) -> Result<&'a mut JobEntry, ProtoError> {
        match inner.jobs_mut().try_get_mut(job_id).map_err(store_failed)? {
            Some(e) if e.row.owner_uid == caller.uid || caller.is_root() => Ok(e),
            _ => Err(not_found(job_id)),
        }
    }

    /// Writes the job's row (and `events`) to the store.
    pub fn persist(&self, entry: &JobEntry, events: Vec<EventKind>) -> Commit<()> {
        self.persist_with(entry, events, Vec::new(), Vec::new())
    }

    /// Writes the job's row, `events`, and outbox changes in one transaction.
    pub fn persist_with(
        &self,
        entry: &JobEntry,
        events: Vec<EventKind>,
        owe: Vec<OutboxRow>,
        settled: Vec<u64>,
    ) -> Commit<()> {
        let row = entry.row.clone();
        let time = row.modified.clone();
        self.store.submit(move |tx| {
            tx.update_job(&row)?;
            for kind in events {
                tx.append_event(&row.id, row.owner_uid, &time, kind)?;
            }
            for o in &owe {
                tx.put_outbox(o)?;
            }
            tx.delete_outbox(&settled)
        })
    }

    /// A new owed notification for a job (the caller persists it and adds it to the outbox).
    pub fn owe(
        inner: &mut DaemonState,
        job_id: &str,
        kind: Kind,
        file_index: Option<u64>,
    ) -> OutboxRow {
        let id = inner.next_outbox_id;
        inner.next_outbox_id += 1;
        OutboxRow {
            id,
            job_id: job_id.to_owned(),
            kind: kind.name().to_owned(),
            file_index,
            delivery_id: uuid::Uuid::new_v4().to_string(),
            attempts: 0,
            created: clock::now_rfc3339(),
        }
    }

    /// The identity a job's file operations run as (system mode: its owner). Takes the
    /// daemon's lock: never call it with the lock held. The owner's passwd entry is looked up
    /// on the blocking pool (a name service may be slow).
    pub async fn fs_identity(&self, job_id: &str) -> Option<ferry_fetch::identity::FsIdentity> {
        let owner = self
            .lock()
            .jobs_mut()
            .get(job_id)
            .map(|e| e.row.owner_uid)?;
        crate::identity::fs_identity_off_runtime(self.opts.mode, owner).await
    }

    /// Makes `job_id` resident, reading a cold job from the store on the blocking pool and
    /// outside the daemon's lock, so that callers which then take the lock find it in memory.
    /// `Ok(false)` when no such job exists. Safe against a concurrent load, creation or
    /// eviction (see [`crate::resident::Jobs::settle`]); if evictions keep racing the read,
    /// it gives up and leaves the job to the lookup under the lock.
    pub async fn load(&self, job_id: &str) -> Result<bool, ProtoError> {
        for _ in 0..LOAD_ATTEMPTS {
            let lookup = {
                let inner = self.lock();
                inner.jobs().cold_lookup(job_id)
            };
            let Some(lookup) = lookup else {
                return Ok(true);
            };
            let rows = Arc::clone(&lookup.rows);
            let id = job_id.to_owned();
            let row = tokio::task::spawn_blocking(move || rows.job(&id))
                .await
                .map_err(|e| {
                    ProtoError::kind(
                        ErrorKind::Internal,
                        format!("reading job {job_id} from the store failed: {e}; try again"),
                    )
                })?
                .map_err(store_failed)?;
            let settled = self.lock().jobs_mut().settle(job_id, &lookup, row);
            match settled {
                crate::resident::Settled::Resident => return Ok(true),
                crate::resident::Settled::Missing => return Ok(false),
                crate::resident::Settled::Stale => {}
            }
        }
        Ok(true)
    }

    /// [`Daemon::load`], answering `not_found` for a job that does not exist.
    pub async fn load_existing(&self, job_id: &str) -> Result<(), ProtoError> {
        if self.load(job_id).await? {
            Ok(())
        } else {
            Err(not_found(job_id))
        }
    }

    /// Resolves once every write queued so far is committed.
    pub fn durable(&self) -> Commit<()> {
        self.store.submit(|_| Ok(()))
    }

    /// Asks the notifier to look at a job's notifications.
    pub fn kick(&self, job_id: &str, urgent: bool) {
        let _ = self.kicks.send(Kick {
            job_id: job_id.to_owned(),
            urgent,
        });
    }

    /// Notes a change for `job_modification` (coalesced by the notifier).
    pub fn modified(&self, entry: &mut JobEntry) {
        entry.notification_mut().mark_modified();
        if entry.row.settings.notify_flags & ferry_proto::NotifyFlags::JOB_MODIFICATION != 0 {
            self.kick(&entry.row.id, false);
        }
    }

    /// Applies a state-machine trigger to a job, runs `edit` on its row, persists both with a
    /// `state` event, and keeps the counters and the scheduler in step. The rules are
    /// [`ferry_core::transition::apply`]; this executes the effects it decides.
    pub fn transition(
        &self,
        inner: &mut DaemonState,
        job_id: &str,
        trigger: Trigger,
        edit: impl FnOnce(&mut JobRow),
    ) -> Result<(JobState, Commit<()>), TransitionError> {
        let queue_seq = inner.next_queue_seq;
        let Some(entry) = inner.jobs.get_mut(job_id) else {
            return Err(TransitionError::NotFound);
        };
        let outbox: Vec<OwedRow> = entry
            .notification()
            .outbox()
            .iter()
            .map(|o| OwedRow {
                id: o.id,
                kind: Kind::parse(&o.kind),
            })
            .collect();
        let fx = transition::apply(
            &JobFacts {
                state: entry.row.state,
                notify_flags: entry.row.settings.notify_flags,
                outbox: &outbox,
            },
            trigger,
        )?;
        let now = clock::now_rfc3339();
        if fx.clear_retry {
            entry.scheduling_mut().retry_when(None);
        }
        if fx.restart_windows {
            entry.scheduling_mut().progressed();
            entry.transfer_mut().restart_window();
        }
        if fx.enqueue {
            entry.scheduling_mut().enqueue(queue_seq);
        }
        entry.notification_mut().lapse(&fx.lapse);
        if fx.modified {
            entry.notification_mut().mark_modified();
        }
        let row = &mut entry.row;
        row.state = fx.to;
        row.modified = now.clone();
        if fx.clear_error {
            row.error = None;
        }
        if fx.count_error {
            row.error_count += 1;
        }
        if fx.stamp_transfer_completed {
            row.transfer_completed = Some(now.clone());
        }
        if fx.clear_retry {
            row.retry_at = None;
        }
        if fx.restart_windows {
            row.active_ms = 0;
        }
        edit(row);
        if fx.finalize {
            row.final_at = Some(now);
            row.settings.credentials = None;
            row.settings.custom_headers.clear();
        }
        let mut events = Vec::new();
        if fx.log_state {
            crate::logfile::log_job_transition(job_id, fx.from, fx.to, row.error.as_ref());
            events.push(EventKind::State {
                from: fx.from,
                to: fx.to,
            });
        }
        if let (Some(err), true) = (row.error.clone(), fx.log_error) {
            events.push(EventKind::Error { error: err });
        }
        let owner = entry.row.owner_uid;
        let files = entry.row.files_total;
        let owe: Vec<OutboxRow> = fx
            .owe
            .map(|kind| Daemon::owe(inner, job_id, kind, None))
            .into_iter()
            .collect();
        let Some(entry) = inner.jobs.get_mut(job_id) else {
            return Err(TransitionError::NotFound);
        };
        entry.notification_mut().owe(owe.iter().cloned());
        let commit = self.persist_with(entry, events, owe, fx.lapse);
        if fx.kick_notifier {
            self.kick(job_id, false);
        }
        if fx.enqueue {
            inner.next_queue_seq += 1;
        }
        if fx.finalize {
            inner.quotas.job_finished(owner, files);
        }
        if fx.wake_scheduler {
            self.wake.notify_one();
        }
        Ok((fx.to, commit))
    }

    /// Records an error on a job and moves it to `error` (fatal) or `transient_error`.
    pub fn fail(
        &self,
        inner: &mut DaemonState,
        job_id: &str,
        trigger: Trigger,
        info: ErrorInfo,
    ) -> Option<Commit<()>> {
        self.transition(inner, job_id, trigger, |row| row.error = Some(info))
            .ok()
            .map(|(_, c)| c)
    }

    /// Reads a job's files from the store, after every write queued so far has committed (the
    /// in-memory job may be ahead of the store by the writes still in flight).
    pub async fn read_files(
        &self,
        job_id: &str,
        from: u64,
        limit: u64,
    ) -> Result<Vec<ferry_store::FileRow>, ProtoError> {
        self.store.flush().await.map_err(store_failed)?;
        self.read_files_committed(job_id, from, limit).await
    }

    /// [`Daemon::read_files`] for a caller that already waited for the writes it needs.
    pub async fn read_files_committed(
        &self,
        job_id: &str,
        from: u64,
        limit: u64,
    ) -> Result<Vec<ferry_store::FileRow>, ProtoError> {
        let reader = self.reader.clone();
        let id = job_id.to_owned();
        tokio::task::spawn_blocking(move || reader.files(&id, from, limit))
            .await
            .map_err(|e| {
                ProtoError::kind(
                    ErrorKind::Internal,
                    format!("reading the job's files failed: {e}"),
                )
            })?
            .map_err(store_failed)
    }

    /// Stops a job's transfer task (it checkpoints first) and waits until it, and the task of
    /// an earlier preemption still checkpointing, have ended: no task writes the job's files
    /// after this returns, unless the scheduler starts a new one ([`Daemon::hold`] prevents
    /// that). Must be called without holding the lock.
    pub async fn stop_transfer(&self, job_id: &str) {
        let ended = {
            let mut inner = self.lock();
            // A job that is not resident has no task to stop.
            let Some(entry) = inner.jobs.get_resident_mut(job_id) else {
                return;
            };
            let (started, ended) = entry.transfer_mut().cancel();
            if let Some(started_ms) = started {
                entry.add_active_ms(self.mono.now().saturating_sub(started_ms));
            }
            ended
        };
        for mut done in ended {
            let _ = done.wait_for(|d| *d).await;
        }
    }
}
