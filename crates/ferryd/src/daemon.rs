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
use ferry_proto::{ErrorInfo, ErrorKind, EventKind, Job, JobState, Progress, ProtoError, Waiting};
use ferry_store::{Commit, JobRow, OutboxRow, Reader, Writer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Mono};
use crate::config::DaemonOptions;

/// Who is calling, as the kernel reported it (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
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

/// A transfer task that is running for a job.
#[derive(Debug)]
pub struct Running {
    /// Fires to stop the transfer (it checkpoints and returns).
    pub token: CancellationToken,
    /// Resolves when the task has ended.
    pub done: tokio::sync::watch::Receiver<bool>,
    /// Monotonic ms when it started (max download time accounting).
    pub started_ms: u64,
}

/// What the daemon knows about a job beyond its stored row; rebuilt at start, and the default
/// for a job read back from the store (nothing in it matters while a job is cold).
#[derive(Debug, Default)]
pub struct Runtime {
    /// The transfer task, while one runs.
    pub running: Option<Running>,
    /// FIFO key among queued jobs of one priority.
    pub queued_seq: u64,
    /// When the job last started running (round-robin key).
    pub last_started: Option<u64>,
    /// When a transient error is retried (monotonic ms).
    pub retry_at: Option<u64>,
    /// Start of the current run of transient errors.
    pub first_transient_at: Option<u64>,
    /// Last time the job reached bytes it never had before.
    pub last_progress_at: Option<u64>,
    /// The most bytes the job has had at once since the owner last resumed it.
    pub furthest: u64,
    /// When the job's last `progress` event was logged (they are coalesced).
    pub last_progress_event: Option<u64>,
    /// Bytes received but not yet checkpointed (shown in progress, not durable).
    pub live_bytes: u64,
    /// Why a queued job waits (set by the scheduler).
    pub waiting: Option<Waiting>,
    /// The live callback connection (`job.set_notify_interface`), while it is open.
    pub notify_peer: Option<std::sync::Weak<ferry_rpc::Peer>>,
    /// The previous transfer task of a preempted job, until it has checkpointed and ended.
    pub finishing: Option<tokio::sync::watch::Receiver<bool>>,
    /// Notifications owed (mirror of the durable outbox), in creation order.
    pub outbox: Vec<OutboxRow>,
    /// Wakes the job's courier task, while one runs.
    pub courier: Option<Arc<Notify>>,
    /// When all targets failed: the next delivery attempt (monotonic ms).
    pub notify_retry_at: Option<u64>,
    /// Something changed that a `job_modification` callback should report.
    pub modified_pending: bool,
    /// When the last `job_modification` went out (coalescing).
    pub last_modification_ms: Option<u64>,
    /// Indices of files not transferred yet, as of the last transfer run (file notifications
    /// wait for lower files). Empty when unknown (no run since the daemon started).
    pub untransferred: std::collections::BTreeSet<u64>,
    /// The job's own bandwidth limit, shared by its running transfers (changeable live).
    pub bucket: Option<Arc<ferry_fetch::throttle::Bucket>>,
}

/// A job: its durable row and its runtime.
#[derive(Debug)]
pub struct Entry {
    /// The stored row.
    pub row: JobRow,
    /// Runtime-only state.
    pub rt: Runtime,
    /// When it was last accessed ([`crate::resident::Jobs`]' stamp).
    pub touched: u64,
}

/// State guarded by the daemon's mutex.
#[derive(Debug)]
pub struct Inner {
    /// Every job: the hot ones in memory, the others read back from the store on access.
    pub jobs: crate::resident::Jobs,
    /// Next job `seq`.
    pub next_job_seq: u64,
    /// Next FIFO key.
    pub next_queue_seq: u64,
    /// Non-final jobs per uid.
    pub per_user: HashMap<u32, u64>,
    /// Files of the non-final jobs per uid.
    pub files_per_user: HashMap<u32, u64>,
    /// Non-final jobs in total.
    pub live_jobs: u64,
    /// Set when shutting down: no new transfers start.
    pub stopping: bool,
    /// Next outbox row id.
    pub next_outbox_id: u64,
    /// Registered and attached notification handlers.
    pub handlers: crate::handlers::Registry,
    /// Connections following events, per uid.
    pub followers: Arc<crate::limits::UidCounts>,
}

impl Inner {
    /// Empty counters over `jobs` (the start fills them in).
    pub fn new(jobs: crate::resident::Jobs) -> Inner {
        Inner {
            jobs,
            next_job_seq: 0,
            next_queue_seq: 0,
            per_user: HashMap::new(),
            files_per_user: HashMap::new(),
            live_jobs: 0,
            stopping: false,
            next_outbox_id: 0,
            handlers: crate::handlers::Registry::default(),
            followers: Arc::default(),
        }
    }
}

/// The daemon: shared by every connection and task.
pub struct Daemon {
    /// Settings.
    pub opts: DaemonOptions,
    /// Store writer.
    pub store: Writer,
    /// Store reader.
    pub reader: Arc<Reader>,
    /// The transfer engine.
    pub fetcher: Arc<Fetcher>,
    /// Timer clock.
    pub mono: Mono,
    /// Jobs.
    pub inner: Mutex<Inner>,
    /// Wakes the scheduler.
    pub wake: Notify,
    /// Fires at shutdown.
    pub shutdown: CancellationToken,
    /// Asks the notifier to (re)consider a job's notifications.
    pub kicks: tokio::sync::mpsc::UnboundedSender<Kick>,
    /// At most 4 callbacks outstanding per user (docs/protocol.md, delivery rules).
    pub user_slots: Mutex<HashMap<u32, Arc<tokio::sync::Semaphore>>>,
    /// The global background bandwidth limit.
    pub global_bucket: Arc<ferry_fetch::throttle::Bucket>,
    /// Per-host connection budgets (host:port → permits), shared by every job.
    pub host_slots: Arc<crate::host_slots::HostSlots>,
    /// The peer cache, when the configuration enables it.
    pub peer_cache: Option<Arc<crate::peer_cache::PeerCache>>,
    /// Jobs an owner operation is stopping or changing ([`Hold`]): the scheduler starts none of
    /// them. A separate lock, always taken after `inner` if both are held.
    pub holds: Mutex<HashMap<String, u32>>,
    /// The network and power state seen on the system bus (`conditions`); the scheduler
    /// holds jobs the policy says must wait.
    pub conditions: tokio::sync::watch::Sender<crate::conditions::Seen>,
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
    /// The job.
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

impl Entry {
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
                bytes_transferred: r.bytes_transferred + self.rt.live_bytes,
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
                JobState::Queued | JobState::TransientError => self.rt.waiting.clone(),
                // A running job's transfers may be waiting for a slot of their host.
                JobState::Connecting | JobState::Transferring => self
                    .rt
                    .waiting
                    .clone()
                    .filter(|w| w.reason == ferry_core::hosts::WAIT_REASON),
                _ => None,
            },
            notify_interface: self
                .rt
                .notify_peer
                .as_ref()
                .is_some_and(|w| w.upgrade().is_some_and(|p| !p.is_closed())),
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
    /// Locks the in-memory state. A poisoned lock is still consistent enough to keep serving:
    /// every mutation is a single assignment sequence without awaits.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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
        inner: &'a mut Inner,
        caller: &Caller,
        job_id: &str,
    ) -> Result<&'a mut Entry, ProtoError> {
        match inner.jobs.try_get_mut(job_id).map_err(store_failed)? {
            Some(e) if e.row.owner_uid == caller.uid || caller.is_root() => Ok(e),
            _ => Err(not_found(job_id)),
        }
    }

    /// Writes the job's row (and `events`) to the store.
    pub fn persist(&self, entry: &Entry, events: Vec<EventKind>) -> Commit<()> {
        self.persist_with(entry, events, Vec::new(), Vec::new())
    }

    /// Writes the job's row, `events`, and outbox changes in one transaction.
    pub fn persist_with(
        &self,
        entry: &Entry,
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
    pub fn owe(inner: &mut Inner, job_id: &str, kind: Kind, file_index: Option<u64>) -> OutboxRow {
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
        let owner = self.lock().jobs.get(job_id).map(|e| e.row.owner_uid)?;
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
                inner.jobs.cold_lookup(job_id)
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
            let settled = self.lock().jobs.settle(job_id, &lookup, row);
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
    pub fn modified(&self, entry: &mut Entry) {
        entry.rt.modified_pending = true;
        if entry.row.settings.notify_flags & ferry_proto::NotifyFlags::JOB_MODIFICATION != 0 {
            self.kick(&entry.row.id, false);
        }
    }

    /// Applies a state-machine trigger to a job, runs `edit` on its row, persists both with a
    /// `state` event, and keeps the counters and the scheduler in step. The rules are
    /// [`ferry_core::transition::apply`]; this executes the effects it decides.
    pub fn transition(
        &self,
        inner: &mut Inner,
        job_id: &str,
        trigger: Trigger,
        edit: impl FnOnce(&mut JobRow),
    ) -> Result<(JobState, Commit<()>), TransitionError> {
        let queue_seq = inner.next_queue_seq;
        let Some(entry) = inner.jobs.get_mut(job_id) else {
            return Err(TransitionError::NotFound);
        };
        let outbox: Vec<OwedRow> = entry
            .rt
            .outbox
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
            entry.rt.retry_at = None;
        }
        if fx.restart_windows {
            row.active_ms = 0;
            entry.rt.first_transient_at = None;
            entry.rt.furthest = 0;
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
        if fx.enqueue {
            entry.rt.queued_seq = queue_seq;
        }
        entry.rt.outbox.retain(|o| !fx.lapse.contains(&o.id));
        if fx.modified {
            entry.rt.modified_pending = true;
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
        entry.rt.outbox.extend(owe.iter().cloned());
        let commit = self.persist_with(entry, events, owe, fx.lapse);
        if fx.kick_notifier {
            self.kick(job_id, false);
        }
        if fx.enqueue {
            inner.next_queue_seq += 1;
        }
        if fx.finalize {
            inner.live_jobs = inner.live_jobs.saturating_sub(1);
            if let Some(n) = inner.per_user.get_mut(&owner) {
                *n = n.saturating_sub(1);
            }
            if let Some(n) = inner.files_per_user.get_mut(&owner) {
                *n = n.saturating_sub(files);
            }
        }
        if fx.wake_scheduler {
            self.wake.notify_one();
        }
        Ok((fx.to, commit))
    }

    /// Records an error on a job and moves it to `error` (fatal) or `transient_error`.
    pub fn fail(
        &self,
        inner: &mut Inner,
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
        let (running, finishing) = {
            let mut inner = self.lock();
            let Some(entry) = inner.jobs.get_mut(job_id) else {
                return;
            };
            let running = entry.rt.running.take();
            if let Some(r) = &running {
                r.token.cancel();
                entry.row.active_ms += self.mono.now().saturating_sub(r.started_ms);
            }
            (running, entry.rt.finishing.clone())
        };
        for mut done in running.map(|r| r.done).into_iter().chain(finishing) {
            let _ = done.wait_for(|d| *d).await;
        }
    }
}
