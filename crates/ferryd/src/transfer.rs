//! One job's transfer task: fetches the job's untransferred files through `ferry-fetch`,
//! commits checkpoints (file bytes are synced by the fetcher before it reports them), and turns
//! the outcome into a state transition.
//!
//! The task never changes the job's state once its cancellation token has fired: whoever
//! cancelled it (suspend, cancel, complete, preemption, shutdown) owns the next transition.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::retry::{self, TransientDecision, TransientInput};
use ferry_core::state::Trigger;
use ferry_fetch::{FetchDone, FetchError, FetchErrorKind, FetchEvent, FetchRequest, staging};
use ferry_proto::{ErrorContext, ErrorInfo, EventKind, JobState};
use ferry_store::{FileRow, JobRow};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::daemon::{Daemon, DaemonState};

mod peers;
mod upload;

/// A transfer task that is running for a job.
#[derive(Debug)]
pub struct Running {
    /// Fires to stop the transfer (it checkpoints and returns).
    token: CancellationToken,
    /// Resolves when the task has ended.
    done: watch::Receiver<bool>,
    /// Monotonic ms when it started (max download time accounting).
    started_ms: u64,
}

/// What the transfer keeps in memory for one job: its task, the bytes it has received but not
/// checkpointed, how far the job has come, which files are left and the job's bandwidth bucket.
/// Changed only through these methods.
#[derive(Debug, Default)]
pub struct TransferRuntime {
    /// The transfer task, while one runs.
    running: Option<Running>,
    /// The previous transfer task of a preempted job, until it has checkpointed and ended.
    finishing: Option<watch::Receiver<bool>>,
    /// Bytes received but not yet checkpointed (shown in progress, not durable).
    live_bytes: u64,
    /// Last time the job reached bytes it never had before.
    last_progress_at: Option<u64>,
    /// The most bytes the job has had at once since the owner last resumed it.
    furthest: u64,
    /// When the job's last `progress` event was logged (they are coalesced).
    last_progress_event: Option<u64>,
    /// Indices of files not transferred yet, as of the last transfer run (file notifications
    /// wait for lower files). Empty when unknown (no run since the daemon started).
    untransferred: BTreeSet<u64>,
    /// The job's own bandwidth limit, shared by its running transfers (changeable live).
    bucket: Option<Arc<ferry_fetch::throttle::Bucket>>,
}

impl TransferRuntime {
    /// Whether a transfer task runs for the job.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Whether the task of an earlier preemption is still checkpointing.
    pub fn is_finishing(&self) -> bool {
        self.finishing.as_ref().is_some_and(|done| !*done.borrow())
    }

    /// Resolves when the task of an earlier preemption has ended.
    pub fn finishing(&self) -> Option<watch::Receiver<bool>> {
        self.finishing.clone()
    }

    /// Forgets the ended task of an earlier preemption (a new one is about to start).
    pub fn forget_finished(&mut self) {
        self.finishing = None;
    }

    /// Whether a task of the job runs or still checkpoints (the job must stay in memory).
    pub fn is_busy(&self) -> bool {
        self.is_running() || self.is_finishing()
    }

    /// Bytes received but not checkpointed yet.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Stops the running task for a preemption: it checkpoints and ends by itself, and the
    /// job may not start again before. Returns when it had started, `None` if none ran.
    pub fn preempt(&mut self) -> Option<u64> {
        let r = self.running.take()?;
        r.token.cancel();
        self.live_bytes = 0;
        self.finishing = Some(r.done);
        Some(r.started_ms)
    }

    /// Stops the running task for an owner operation: returns when it had started (if one
    /// ran) and what resolves when it, and the task of an earlier preemption, have ended.
    pub fn cancel(&mut self) -> (Option<u64>, Vec<watch::Receiver<bool>>) {
        let running = self.running.take();
        if let Some(r) = &running {
            r.token.cancel();
        }
        let started = running.as_ref().map(|r| r.started_ms);
        let done = running
            .map(|r| r.done)
            .into_iter()
            .chain(self.finishing.clone());
        (started, done.collect())
    }

    /// The job forgets how far it came: the owner resumed it, a new progress window starts.
    pub fn restart_window(&mut self) {
        self.furthest = 0;
    }

    /// Which files the last run had left to transfer.
    pub fn untransferred(&self) -> &BTreeSet<u64> {
        &self.untransferred
    }

    /// A file's content was rejected: it is untransferred again.
    pub fn file_untransferred(&mut self, file_index: u64) {
        self.untransferred.insert(file_index);
    }

    /// The job's own bandwidth bucket, if a transfer made one (changed live by `job.set`).
    pub fn bucket(&self) -> Option<&Arc<ferry_fetch::throttle::Bucket>> {
        self.bucket.as_ref()
    }

    /// When the job last reached bytes it never had before.
    pub fn last_progress_at(&self) -> Option<u64> {
        self.last_progress_at
    }
}

/// A durable checkpoint is taken at least every this many bytes …
const CHECKPOINT_BYTES: u64 = 8 * 1024 * 1024;
/// … or this often, whichever comes first; a crash loses at most that much work.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// The longest a connection may stay silent before it counts as a transient error.
const MAX_STALL: Duration = Duration::from_secs(60);

/// How a job's transfer run ended.
enum Outcome {
    /// Every file is transferred.
    Done,
    /// The token fired; the canceller decides what happens next.
    Stopped,
    /// A file failed.
    Failed(FetchError, u64),
    /// The daemon could not prepare the transfer (store or staging problem).
    Local(ErrorInfo),
}

/// Starts the transfer task of a queued job (called by the scheduler with the lock held).
pub fn start(daemon: &Arc<Daemon>, inner: &mut DaemonState, job_id: &str) {
    let Ok((_, _commit)) = daemon.transition(inner, job_id, Trigger::Start, |_| {}) else {
        return;
    };
    let Some(entry) = inner.jobs_mut().get_resident_mut(job_id) else {
        return;
    };
    let token = CancellationToken::new();
    let (done_tx, done_rx) = watch::channel(false);
    let now = daemon.mono().now();
    entry.scheduling_mut().started(now);
    let transfer = entry.transfer_mut();
    transfer.live_bytes = 0;
    transfer.running = Some(Running {
        token: token.clone(),
        done: done_rx,
        started_ms: now,
    });
    let budget_ms = (entry.row.settings.max_download_time_s.saturating_mul(1000))
        .saturating_sub(entry.row.active_ms);
    let d = daemon.clone();
    let id = job_id.to_owned();
    tokio::spawn(async move {
        // Signals "ended" even if the task is dropped mid-way.
        let _done = DoneGuard(done_tx, d.clone());
        let run = run(&d, &id, &token);
        let outcome = tokio::time::timeout(Duration::from_millis(budget_ms), run)
            .await
            .ok();
        finish(&d, &id, &token, outcome);
    });
}

struct DoneGuard(watch::Sender<bool>, Arc<Daemon>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.0.send(true);
        // A job waiting for this task to end before restarting can go now.
        self.1.wake().notify_one();
    }
}

/// Settings copied out of the job row when the run starts.
struct RunSettings {
    throttle: ferry_fetch::throttle::Throttle,
    proxy: Option<String>,
    headers: Vec<(String, String)>,
    basic_auth: Option<(String, String)>,
    allow_https_to_http: bool,
    stall_timeout: Duration,
    /// The job lets this host ask peers (and the cache is enabled).
    peer_caching: bool,
    /// The cache is enabled and may publish this job's whole files: their SHA-256 is recorded.
    publishable: bool,
    owner_uid: u32,
    /// Upload jobs send their file (`upload`) instead of fetching it.
    job_type: ferry_proto::JobType,
    /// Upload jobs: the protocol setting.
    upload_protocol: ferry_proto::UploadProtocol,
}

impl RunSettings {
    fn of(row: &JobRow) -> RunSettings {
        // Parsed and checked when they were set; the transfer only copies them.
        let headers = row
            .settings
            .custom_headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let npt = Duration::from_secs(row.settings.no_progress_timeout_s.max(1));
        RunSettings {
            throttle: ferry_fetch::throttle::Throttle::default(),
            proxy: row.settings.proxy.clone(),
            headers,
            basic_auth: row
                .settings
                .credentials
                .as_ref()
                .map(|c| (c.user.clone(), c.password.clone())),
            allow_https_to_http: row.settings.allow_https_to_http,
            stall_timeout: npt.min(MAX_STALL),
            peer_caching: row.settings.peer_caching,
            publishable: false,
            owner_uid: row.owner_uid,
            job_type: row.job_type,
            upload_protocol: row.settings.upload_protocol,
        }
    }
}

async fn run(d: &Arc<Daemon>, job_id: &str, token: &CancellationToken) -> Outcome {
    let (settings, parallel) = {
        let mut inner = d.lock();
        match inner.jobs_mut().get_resident_mut(job_id) {
            Some(e) => {
                let mut s = RunSettings::of(&e.row);
                // The job's own limit, plus the global one unless the job is foreground (BITS).
                let limit = e.row.settings.bandwidth_limit_bps;
                let own = e
                    .transfer_mut()
                    .bucket
                    .get_or_insert_with(|| ferry_fetch::throttle::Bucket::new(limit))
                    .clone();
                let mut buckets = vec![own];
                if e.row.settings.priority != ferry_proto::Priority::Foreground {
                    buckets.push(d.global_bucket().clone());
                }
                s.throttle = ferry_fetch::throttle::Throttle::new(buckets);
                s.publishable = d.peer_cache().is_some() && crate::peer_cache::may_share(&e.row);
                (s, e.row.settings.max_parallel_files.max(1) as usize)
            }
            None => return Outcome::Stopped,
        }
    };
    let files = match load_pending_files(d, job_id).await {
        Ok(f) => f,
        Err(info) => return Outcome::Local(info),
    };
    {
        // Which files are still missing: a file's notification waits for every lower one.
        let mut inner = d.lock();
        if let Some(e) = inner.jobs_mut().get_resident_mut(job_id) {
            e.transfer_mut().untransferred = files.iter().map(|f| f.file_index).collect();
        }
    }
    // Up to `max_parallel_files` files in flight; the first failure stops the others (they
    // checkpoint) and is reported once they have ended.
    let siblings = token.child_token();
    let mut queue = files.into_iter();
    let mut inflight = FuturesUnordered::new();
    let mut failure = None;
    loop {
        while failure.is_none() && inflight.len() < parallel && !siblings.is_cancelled() {
            let Some(file) = queue.next() else { break };
            let (settings, siblings) = (&settings, &siblings);
            inflight.push(async move {
                let index = file.file_index;
                let result = if settings.job_type == ferry_proto::JobType::Download {
                    fetch_one(d, job_id, file, settings, siblings).await
                } else {
                    upload::send_one(d, job_id, file, settings, siblings).await
                };
                (index, result)
            });
        }
        let Some((index, result)) = inflight.next().await else {
            break;
        };
        let failed = match result {
            Ok(()) => None,
            Err(FileFailure::Fetch(e)) if e.is_cancelled() => None,
            Err(FileFailure::Fetch(e)) => Some(Outcome::Failed(e, index)),
            Err(FileFailure::Local(info)) => Some(Outcome::Local(info)),
        };
        if let (Some(f), None) = (failed, &failure) {
            failure = Some(f);
            siblings.cancel();
        }
    }
    if token.is_cancelled() {
        return Outcome::Stopped;
    }
    failure.unwrap_or(Outcome::Done)
}

async fn load_pending_files(d: &Arc<Daemon>, job_id: &str) -> Result<Vec<FileRow>, ErrorInfo> {
    let rows = d
        .read_files(job_id, 0, u64::MAX)
        .await
        .map_err(|e| local_info(None, e.message))?;
    Ok(rows.into_iter().filter(|f| !f.transferred).collect())
}

fn local_info(file_index: Option<u64>, description: String) -> ErrorInfo {
    ErrorInfo {
        context: ErrorContext::LocalFile,
        code: "LOCAL_IO".into(),
        http_status: None,
        transient: false,
        description,
        file_index,
        protocol: None,
    }
}

enum FileFailure {
    Fetch(FetchError),
    Local(ErrorInfo),
}

/// Makes sure the file has a staging file on disk, recording its path durably before any byte
/// is written to it (so cancel and complete can always find it, even after a crash).
async fn ensure_temp(
    d: &Arc<Daemon>,
    job_id: &str,
    file: &mut FileRow,
    identity: Option<ferry_fetch::identity::FsIdentity>,
    token: &CancellationToken,
) -> Result<Option<PathBuf>, FileFailure> {
    let recorded = file.temp_path.clone().map(PathBuf::from);
    let dir = Path::new(&file.local_path)
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let (in_dir, tag) = (dir.clone(), job_id.to_owned());
    // As the owner and off the runtime threads: both paths are the user's, and a look or a
    // create there may hang. A cancel does not wait for it.
    let mut work = Box::pin(ferry_fetch::safe_open::blocking(
        identity,
        move || match recorded {
            Some(p) if p.exists() => Ok((p, false)),
            _ => staging::create_temp_as(&in_dir, &tag, None).map(|p| (p, true)),
        },
    ));
    let found = tokio::select! {
        r = &mut work => r,
        () = token.cancelled() => {
            // A staging file created after the cancel is recorded nowhere: delete it then.
            tokio::spawn(async move {
                if let Ok(Ok((fresh, true))) = work.await {
                    let _ = ferry_fetch::safe_open::blocking(identity, move || {
                        crate::api::discard(&fresh, None);
                    })
                    .await;
                }
            });
            return Ok(None);
        }
    };
    let created = match found {
        Ok(Ok((p, false))) => return Ok(Some(p)),
        Ok(created) => created.map(|(p, _)| p),
        Err(e) => Err(staging::StagingError {
            path: dir.clone(),
            action: "create a staging file in".into(),
            source: e,
        }),
    };
    let temp = created.map_err(|e| {
        let denied = e.source.kind() == std::io::ErrorKind::PermissionDenied;
        FileFailure::Local(ErrorInfo {
            code: if denied { "ACCESS_DENIED" } else { "LOCAL_IO" }.into(),
            ..local_info(
                Some(file.file_index),
                format!(
                    "cannot create the staging file in {}: {e}{}",
                    dir.display(),
                    if denied {
                        " (the job's owner may not write there)"
                    } else {
                        ""
                    }
                ),
            )
        })
    })?;
    file.temp_path = Some(temp.to_string_lossy().into_owned());
    let lost = file.bytes_transferred;
    file.bytes_transferred = 0;
    file.validator = None;
    file.pieces = None;
    let commit = {
        let mut inner = d.lock();
        // The job's row changes only when the file had bytes (a fresh file: just its path).
        let row = match inner.jobs_mut().get_resident_mut(job_id) {
            Some(e) if lost > 0 => {
                e.bytes_lost(lost);
                Some(e.row.clone())
            }
            _ => None,
        };
        let f = file.clone();
        let id = job_id.to_owned();
        d.store().submit(move |tx| {
            if let Some(row) = &row {
                tx.update_job(row)?;
            }
            tx.put_files(&id, &[f])
        })
    };
    // Not awaited: the store applies writes in order, so this path is committed before any
    // checkpoint that counts bytes in the file. A crash in between leaves a file no row names; its
    // name carries the job's id, so the next start deletes it (`leftovers`).
    drop(commit);
    Ok(Some(temp))
}

async fn fetch_one(
    d: &Arc<Daemon>,
    job_id: &str,
    mut file: FileRow,
    settings: &RunSettings,
    token: &CancellationToken,
) -> Result<(), FileFailure> {
    let Some(_slot) = host_permit(d, job_id, &file.remote_url, token).await else {
        return Ok(());
    };
    let identity = d.fs_identity(job_id).await;
    let Some(temp) = ensure_temp(d, job_id, &mut file, identity, token).await? else {
        return Ok(());
    };
    // Each round fetches from one source; a peer that fails hands over to the next peer or the
    // origin (it is marked bad, so it is not asked again), so the rounds are few.
    let (mut rounds, mut busy_waits) = (0, 0);
    loop {
        rounds += 1;
        let mut req = FetchRequest {
            url: file.remote_url.clone(),
            temp_path: temp.clone(),
            offset: file.bytes_transferred,
            validator: file
                .validator
                .clone()
                .and_then(|v| serde_json::from_value(v).ok()),
            expected_total: file.bytes_total,
            // Bytes a peer sent stay unverified until the whole content has its SHA-256.
            sha256: file.sha256.clone().or_else(|| file.peer_sha256.clone()),
            // Hashing costs CPU on every byte: only for content the cache may publish.
            hash: settings.publishable && file.ranges.is_none(),
            pieces: file.pieces.clone(),
            headers: settings.headers.clone(),
            basic_auth: settings.basic_auth.clone(),
            allow_https_to_http: settings.allow_https_to_http,
            stall_timeout: settings.stall_timeout,
            min_rate_bps: None,
            checkpoint_bytes: CHECKPOINT_BYTES,
            checkpoint_interval: CHECKPOINT_INTERVAL,
            max_redirects: 10,
            throttle: settings.throttle.clone(),
            identity,
            proxy: settings.proxy.clone(),
            ranges: file.ranges.clone(),
            peer: None,
        };
        let choice = peers::choose(d, job_id, &file, &req, settings, rounds).await;
        if let (Some(pc), Some(c)) = (d.peer_cache(), &choice) {
            peers::aim(pc, &mut req, c);
        }
        let started = std::time::Instant::now();
        let result = drive(d, job_id, &mut file, &req, choice.as_ref(), token).await;
        let pc = d.peer_cache();
        match result {
            Ok(done) => {
                if let (Some(pc), Some(c)) = (pc, &choice) {
                    // With the owner's own SHA-256 the content is proven already; otherwise
                    // a sample of the origin's bytes proves the version.
                    let proven = if file.sha256.is_some() {
                        Ok(true)
                    } else {
                        peers::same_as_origin(d, &req, c).await
                    };
                    match proven {
                        Ok(true) => peers::fetched(pc, job_id, settings.owner_uid, &file, c),
                        Ok(false) => {
                            let why = "it served another version than the origin's";
                            peers::failed(
                                pc,
                                job_id,
                                settings.owner_uid,
                                &file,
                                &c.peer,
                                why,
                                started,
                            );
                            reset_file(d, job_id, &mut file, true);
                            continue;
                        }
                        Err(e) => return Err(FileFailure::Fetch(e)),
                    }
                }
                file_done(d, job_id, file, done);
                return Ok(());
            }
            Err(e) if e.is_cancelled() => return Err(FileFailure::Fetch(e)),
            Err(e) => {
                let Some(pc) = pc else {
                    return Err(FileFailure::Fetch(e));
                };
                let mismatch = e.kind == FetchErrorKind::Sha256Mismatch;
                if choice.is_some() && e.http_status == Some(503) && busy_waits < MAX_BUSY_WAITS {
                    // The peer serves as many hosts as it allows: not a fault. Wait as it
                    // asks, then look again (it, or another peer, may have room by then).
                    busy_waits += 1;
                    rounds -= 1;
                    let wait = e.retry_after.unwrap_or(BUSY_WAIT).min(BUSY_WAIT_MAX);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = token.cancelled() => return Ok(()),
                    }
                }
                if let Some(c) = &choice {
                    // The peer failed mid-way or sent wrong bytes: the origin (or another
                    // peer) continues from what is durable, or from zero after wrong bytes.
                    let why = &e.description;
                    peers::failed(pc, job_id, settings.owner_uid, &file, &c.peer, why, started);
                    if mismatch {
                        // Its copy may have rotted on disk: let it check and evict it.
                        pc.report(d.fetcher(), &c.peer, &c.key);
                        reset_file(d, job_id, &mut file, false);
                    }
                    continue;
                }
                if mismatch && file.bytes_from_peers > 0 {
                    // Peer bytes plus origin bytes are not what the peer advertised: the peer's
                    // bytes were wrong. Start over from the origin alone.
                    if let Some(peer) = file.peer.clone() {
                        let why = &e.description;
                        peers::failed(pc, job_id, settings.owner_uid, &file, &peer, why, started);
                    }
                    reset_file(d, job_id, &mut file, true);
                    continue;
                }
                return Err(FileFailure::Fetch(e));
            }
        }
    }
}

/// Times a file waits for a busy peer (`503`) before the origin is used instead.
const MAX_BUSY_WAITS: u32 = 30;
/// The wait when a busy peer names none, and the longest wait one asks for.
const BUSY_WAIT: Duration = Duration::from_secs(1);
const BUSY_WAIT_MAX: Duration = Duration::from_secs(5);

/// Runs one fetch, applying its events to the file and the job as they come.
async fn drive(
    d: &Arc<Daemon>,
    job_id: &str,
    file: &mut FileRow,
    req: &FetchRequest,
    source: Option<&peers::Choice>,
    token: &CancellationToken,
) -> Result<FetchDone, FetchError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Bytes of this file received but not yet checkpointed (part of the job's live bytes).
    let mut live = 0u64;
    let result = {
        let fetch = d.fetcher().fetch(req, &tx, token);
        tokio::pin!(fetch);
        loop {
            tokio::select! {
                r = &mut fetch => break r,
                Some(ev) = rx.recv() => on_event(d, job_id, file, &mut live, ev, true, source),
            }
        }
    };
    drop(tx);
    // After a success, `file_done` writes the final state at once: the last checkpoint need
    // not be written first (one transaction per small file instead of two).
    let persist = result.is_err();
    while let Ok(ev) = rx.try_recv() {
        on_event(d, job_id, file, &mut live, ev, persist, source);
    }
    if live > 0 {
        let mut inner = d.lock();
        if let Some(e) = inner.jobs_mut().get_resident_mut(job_id) {
            let transfer = e.transfer_mut();
            transfer.live_bytes = transfer.live_bytes.saturating_sub(live);
        }
    }
    result
}

/// Drops the file's bytes (its staging file is truncated by the next fetch) and its peer
/// record; `origin_only` keeps peers out of this file from now on.
fn reset_file(d: &Arc<Daemon>, job_id: &str, file: &mut FileRow, origin_only: bool) {
    let lost = file.bytes_transferred;
    file.bytes_transferred = 0;
    file.validator = None;
    file.from_peer = false;
    file.bytes_from_peers = 0;
    file.bytes_from_origin = 0;
    file.peer_sha256 = None;
    file.peer = None;
    file.pieces = None;
    file.origin_only |= origin_only;
    let mut inner = d.lock();
    let Some(e) = inner.jobs_mut().get_resident_mut(job_id) else {
        return;
    };
    e.bytes_lost(lost);
    let (row, f) = (e.row.clone(), file.clone());
    drop(d.store().submit(move |tx| {
        tx.update_job(&row)?;
        tx.put_files(&row.id, &[f])
    }));
}

/// Applies a fetch event to the file and the job.
fn on_event(
    d: &Arc<Daemon>,
    job_id: &str,
    file: &mut FileRow,
    live: &mut u64,
    ev: FetchEvent,
    persist: bool,
    source: Option<&peers::Choice>,
) {
    let now = d.mono().now();
    let mut inner = d.lock();
    connected(d, &mut inner, job_id);
    match ev {
        FetchEvent::Progress { bytes, total } => {
            live_progress(&mut inner, job_id, file, live, bytes, total, now);
        }
        FetchEvent::Checkpoint {
            offset,
            total,
            validator,
            restarted,
            pieces,
        } => {
            peers::attribute(file, offset, restarted, source);
            file.validator = validator.and_then(|v| serde_json::to_value(v).ok());
            file.pieces = pieces;
            checkpoint(d, &mut inner, job_id, file, live, offset, total, persist);
        }
    }
}

/// First sign of life from the server: connecting → transferring.
fn connected(d: &Arc<Daemon>, inner: &mut DaemonState, job_id: &str) {
    if inner.jobs().peek(job_id).map(|e| e.row.state) == Some(JobState::Connecting) {
        let _ = d.transition(inner, job_id, Trigger::Connected, |_| {});
    }
}

/// Live (not yet durable) progress of `file`: `bytes` of `total` so far.
fn live_progress(
    inner: &mut DaemonState,
    job_id: &str,
    file: &mut FileRow,
    live: &mut u64,
    bytes: u64,
    total: Option<u64>,
    now: u64,
) {
    let Some(entry) = inner.jobs_mut().get_resident_mut(job_id) else {
        return;
    };
    let now_live = bytes.saturating_sub(file.bytes_transferred);
    let durable = entry.row.bytes_transferred;
    let transfer = entry.transfer_mut();
    transfer.live_bytes = transfer.live_bytes.saturating_sub(*live) + now_live;
    *live = now_live;
    // Progress is reaching bytes the job never had: fetching the same bytes again after
    // a restart from zero does not count, or a server that changes the file and cuts
    // every answer would keep the job retrying forever.
    let position = durable + transfer.live_bytes;
    if position > transfer.furthest {
        transfer.furthest = position;
        transfer.last_progress_at = Some(now);
        entry.scheduling_mut().progressed();
    }
    entry.file_size_seen(file, total);
}

/// `file` has `offset` bytes durable (of `total`): the job's counters follow, and with
/// `persist` the file and job are written, with at most one `progress` event per job per
/// second in the event log.
#[allow(clippy::too_many_arguments)]
fn checkpoint(
    d: &Arc<Daemon>,
    inner: &mut DaemonState,
    job_id: &str,
    file: &mut FileRow,
    live: &mut u64,
    offset: u64,
    total: Option<u64>,
    persist: bool,
) {
    let Some(entry) = inner.jobs_mut().get_resident_mut(job_id) else {
        return;
    };
    entry.checkpointed(file, offset, total);
    let transfer = entry.transfer_mut();
    transfer.live_bytes = transfer.live_bytes.saturating_sub(*live);
    *live = 0;
    d.modified(entry);
    if !persist {
        return;
    }
    let now = d.mono().now();
    let transfer = entry.transfer_mut();
    let log_progress = transfer
        .last_progress_event
        .is_none_or(|t| now.saturating_sub(t) >= 1000);
    if log_progress {
        transfer.last_progress_event = Some(now);
    }
    let (row, f) = (entry.row.clone(), file.clone());
    let time = row.modified.clone();
    let _ = d.store().submit(move |tx| {
        tx.put_files(&row.id, &[f])?;
        tx.update_job(&row)?;
        if log_progress {
            tx.append_event(
                &row.id,
                row.owner_uid,
                &time,
                EventKind::Progress {
                    bytes_transferred: row.bytes_transferred,
                    bytes_total: row.bytes_total,
                },
            )?;
        }
        Ok(())
    });
}

/// Politeness: however many jobs and files want one host, at most a few talk to it at once.
/// Waits for a slot of the URL's host (`Some(None)` for `file://`, which needs none); `None`
/// when the token fired first.
async fn host_permit(
    d: &Arc<Daemon>,
    job_id: &str,
    url: &str,
    token: &CancellationToken,
) -> Option<Option<crate::host_slots::Slot>> {
    match crate::host_slots::host_of(url) {
        Some(host) => tokio::select! {
            s = d.host_slots().take_for(job_id, &host, &**d) => Some(Some(s)),
            _ = token.cancelled() => None,
        },
        None => Some(None),
    }
}

/// A job whose transfer waits for a slot of its host says so in `waiting`, unless it already
/// shows another reason; the reason goes when its last waiting transfer got a slot.
impl crate::host_slots::ShowWaiting for Daemon {
    fn show(&self, job_id: &str, waiting: bool) {
        use ferry_core::hosts::WAIT_REASON;
        let mut state = self.lock();
        let Some(e) = state.jobs_mut().get_mut(job_id) else {
            return;
        };
        let scheduling = e.scheduling_mut();
        let shows_it = scheduling
            .waiting()
            .is_some_and(|w| w.reason == WAIT_REASON);
        if waiting && scheduling.waiting().is_none() {
            scheduling.wait(Some(ferry_proto::Waiting {
                reason: WAIT_REASON.into(),
                until: None,
                ahead: None,
            }));
        } else if !waiting && shows_it {
            scheduling.wait(None);
        }
    }
}

fn file_done(d: &Arc<Daemon>, job_id: &str, mut file: FileRow, done: FetchDone) {
    use ferry_core::notify::{Kind, Verdict, verdict};
    let mut inner = d.lock();
    let Some(entry) = inner.jobs_mut().get_resident_mut(job_id) else {
        return;
    };
    // The file's notification is owed in the same transaction that records it transferred,
    // unless the job's flags would drop it anyway (the default: most jobs of many small files
    // then cost no outbox write, deletion and notifier round per file).
    let wanted = verdict(
        entry.row.settings.notify_flags,
        Kind::FileTransferred,
        entry.row.state,
    ) != Verdict::Drop;
    let owed = wanted.then(|| {
        Daemon::owe(
            &mut inner,
            job_id,
            Kind::FileTransferred,
            Some(file.file_index),
        )
    });
    let Some(entry) = inner.jobs_mut().get_resident_mut(job_id) else {
        return;
    };
    entry.file_finished(&mut file, done.bytes);
    file.bytes_from_origin = done.bytes.saturating_sub(file.bytes_from_peers);
    file.transferred = true;
    file.validation = ferry_proto::Validation::Unset;
    file.content_sha256 = done.sha256;
    file.pieces = done.pieces;
    file.validator = done.validator.and_then(|v| serde_json::to_value(v).ok());
    entry.transfer_mut().untransferred.remove(&file.file_index);
    entry.notification_mut().owe(owed.iter().cloned());
    d.modified(entry);
    let (row, f) = (entry.row.clone(), file);
    let time = row.modified.clone();
    let _ = d.store().submit(move |tx| {
        tx.put_files(&row.id, std::slice::from_ref(&f))?;
        tx.update_job(&row)?;
        if let Some(o) = &owed {
            tx.put_outbox(o)?;
        }
        tx.append_event(
            &row.id,
            row.owner_uid,
            &time,
            EventKind::FileTransferred {
                file_index: f.file_index,
            },
        )?;
        Ok(())
    });
    if wanted {
        d.kick(job_id, false);
    }
}

/// Turns the run's outcome into the job's next state.
fn finish(d: &Arc<Daemon>, job_id: &str, token: &CancellationToken, outcome: Option<Outcome>) {
    let now = d.mono().now();
    let mut inner = d.lock();
    if token.is_cancelled() {
        return;
    }
    let Some(entry) = inner.jobs_mut().get_resident_mut(job_id) else {
        return;
    };
    let transfer = entry.transfer_mut();
    let ran = transfer.running.take();
    transfer.live_bytes = 0;
    if let Some(r) = ran {
        entry.add_active_ms(now.saturating_sub(r.started_ms));
    }
    match outcome {
        Some(Outcome::Stopped) => {}
        Some(Outcome::Done) => {
            let _ = d.transition(&mut inner, job_id, Trigger::AllTransferred, |_| {});
            crate::api::spawn_auto_complete(d, job_id);
        }
        None => {
            let info = ErrorInfo {
                context: ErrorContext::GeneralQueueManager,
                code: "MAX_DOWNLOAD_TIME".into(),
                http_status: None,
                transient: false,
                description: format!(
                    "the job was active longer than its max_download_time_s ({} s); raise it with job.set and resume",
                    entry.row.settings.max_download_time_s
                ),
                file_index: None,
                protocol: None,
            };
            d.fail(&mut inner, job_id, Trigger::MaxDownloadTime, info);
        }
        Some(Outcome::Local(info)) => {
            d.fail(&mut inner, job_id, Trigger::FatalError, info);
        }
        Some(Outcome::Failed(e, index)) => on_failure(d, &mut inner, job_id, e, index, now),
    }
    if inner
        .jobs()
        .peek(job_id)
        .is_some_and(|e| e.row.state == JobState::Error)
    {
        crate::api::spawn_drop_empty_staging(d, job_id);
    }
}

fn on_failure(
    d: &Arc<Daemon>,
    inner: &mut DaemonState,
    job_id: &str,
    e: FetchError,
    index: u64,
    now: u64,
) {
    let Some(entry) = inner.jobs_mut().get_resident_mut(job_id) else {
        return;
    };
    let info = e.to_error_info(Some(index));
    if !e.transient {
        d.fail(inner, job_id, Trigger::FatalError, info);
        return;
    }
    let row = &entry.row;
    let npt_ms = row.settings.no_progress_timeout_s.saturating_mul(1000);
    let stalled_whole_window = e.kind == FetchErrorKind::Stalled
        && Duration::from_millis(npt_ms) <= RunSettings::of(row).stall_timeout;
    let delay_s = retry::retry_delay_floor(
        row.settings.minimum_retry_delay_s,
        d.opts().retry_delay_floor_s,
    );
    let retry_after_ms = e
        .retry_after
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let minimum_retry_delay_ms = delay_s.saturating_mul(1000);
    let decision = if stalled_whole_window {
        TransientDecision::Fail
    } else {
        retry::on_transient(&TransientInput {
            now,
            first_transient_at: entry.scheduling().first_transient_at(),
            last_progress_at: entry.transfer().last_progress_at(),
            minimum_retry_delay_ms,
            no_progress_timeout_ms: npt_ms,
            retry_after_ms,
        })
    };
    match decision {
        TransientDecision::RetryAt(at) => {
            let wall = clock::rfc3339_in(Duration::from_millis(at.saturating_sub(now)));
            let waiting = ferry_proto::Waiting {
                reason: retry::waiting_reason(minimum_retry_delay_ms, retry_after_ms).into(),
                until: Some(wall.clone()),
                ahead: None,
            };
            entry.scheduling_mut().retry(now, at, waiting);
            let _ = d.transition(inner, job_id, Trigger::TransientError, |row| {
                row.error = Some(info);
                row.retry_at = Some(wall);
            });
        }
        TransientDecision::Fail => {
            let info = ErrorInfo {
                code: "NO_PROGRESS_TIMEOUT".into(),
                transient: false,
                description: format!(
                    "no progress for {} s (no_progress_timeout_s); the last error was: {}",
                    row.settings.no_progress_timeout_s, info.description
                ),
                ..info
            };
            d.fail(inner, job_id, Trigger::NoProgressTimeout, info);
        }
    }
}
