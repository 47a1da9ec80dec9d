//! Moving jobs: `job.resume`, `job.suspend`, `job.cancel`, `job.complete` and
//! `file.set_validation_state`. Whatever stops a transfer waits for its task to checkpoint and
//! end before the job changes state, so no task ever writes a file the caller just handed over
//! or deleted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::state::{self, Operation, Trigger};
use ferry_fetch::staging;
use ferry_proto::params::{CompleteResult, JobIdParams, StateResult, ValidationParams};
use ferry_proto::{ErrorContext, ErrorInfo, ErrorKind, JobState, ProtoError, Validation};
use ferry_store::FileRow;

use super::{Answer, ApiResult};

use crate::daemon::{Caller, Daemon, Hold, refusal, refused};

/// `job.resume`
pub async fn resume(
    d: &Arc<Daemon>,
    c: &Caller,
    p: JobIdParams,
) -> ApiResult<ferry_proto::method::JobResume> {
    d.load_existing(&p.job_id).await?;
    let mut inner = d.lock();
    let e = Daemon::owned(&mut inner, c, &p.job_id)?;
    let trigger = Trigger::Resume {
        files_total: e.row.files_total,
        files_pending: e.row.files_total - e.row.files_transferred.min(e.row.files_total),
    };
    let (state, commit) = d
        .transition(&mut inner, &p.job_id, trigger, |_| {})
        .map_err(|e| refused("resume", &p.job_id, e))?;
    Answer::after(StateResult { state }, commit)
}

/// Checks an owner operation, then holds the job against the scheduler and stops its transfer
/// (without the lock held). No task runs for the job until the returned hold drops.
async fn stop_for<'d>(
    d: &'d Arc<Daemon>,
    c: &Caller,
    job_id: &str,
    op: Operation,
    what: &str,
) -> Result<Hold<'d>, ProtoError> {
    d.load_existing(job_id).await?;
    {
        let mut inner = d.lock();
        let e = Daemon::owned(&mut inner, c, job_id)?;
        state::check(e.row.state, op).map_err(|r| refusal(what, r))?;
    }
    let hold = d.hold(job_id);
    d.stop_transfer(job_id).await;
    Ok(hold)
}

/// `job.suspend`
pub async fn suspend(
    d: &Arc<Daemon>,
    c: &Caller,
    p: JobIdParams,
) -> ApiResult<ferry_proto::method::JobSuspend> {
    let _hold = stop_for(d, c, &p.job_id, Operation::Suspend, "suspend").await?;
    let mut inner = d.lock();
    Daemon::owned(&mut inner, c, &p.job_id)?;
    let (state, commit) = d
        .transition(&mut inner, &p.job_id, Trigger::Suspend, |_| {})
        .map_err(|e| refused("suspend", &p.job_id, e))?;
    Answer::after(StateResult { state }, commit)
}

async fn load_files(d: &Arc<Daemon>, job_id: &str) -> Result<Vec<FileRow>, ProtoError> {
    d.read_files(job_id, 0, u64::MAX).await
}

/// How long `job.cancel` waits for its staging files to be deleted before it answers anyway.
const DISCARD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Deletes a staging file off the runtime threads, as `identity`.
async fn discard_off_runtime(temp: String, identity: Option<ferry_fetch::identity::FsIdentity>) {
    let _ =
        ferry_fetch::safe_open::blocking(identity, move || discard(Path::new(&temp), None)).await;
}

/// Deletes a staging file; a failure is logged (the job goes on) because the file is hidden
/// and unusable anyway.
pub(crate) fn discard(temp: &Path, identity: Option<ferry_fetch::identity::FsIdentity>) {
    if let Err(e) = staging::remove_as(temp, identity) {
        tracing::warn!(path = %temp.display(), error = %e, "could not delete a staging file");
    }
}

/// `job.cancel`: the job is cancelled first, with its staging files still recorded, and they
/// are deleted after that is durable; a crash in between leaves them to the next start
/// (`discard_final_staging`), never as files nobody knows about.
pub async fn cancel(
    d: &Arc<Daemon>,
    c: &Caller,
    p: JobIdParams,
) -> ApiResult<ferry_proto::method::JobCancel> {
    let _hold = stop_for(d, c, &p.job_id, Operation::Cancel, "cancel").await?;
    let identity = d.fs_identity(&p.job_id).await;
    let state = {
        let mut inner = d.lock();
        Daemon::owned(&mut inner, c, &p.job_id)?;
        d.transition(&mut inner, &p.job_id, Trigger::Cancel, |_| {})
            .map_err(|e| refused("cancel", &p.job_id, e))?
            .0
    };
    // Reading the files waits for the cancel to commit. File I/O happens outside the lock, as
    // the owner, off the runtime threads.
    let files = load_files(d, &p.job_id).await?;
    let deleting = ferry_fetch::safe_open::blocking(identity, move || {
        let mut files = files;
        for f in &mut files {
            if let Some(t) = f.temp_path.take() {
                discard(Path::new(&t), None);
            }
        }
        files
    });
    // A deletion that hangs (a stuck file system) does not hold the answer: the paths stay
    // recorded, and the next start deletes what is left.
    let commit = match tokio::time::timeout(DISCARD_WAIT, deleting).await {
        Ok(Ok(files)) => {
            let id = p.job_id.clone();
            d.store().submit(move |tx| tx.put_files(&id, &files))
        }
        Ok(Err(_)) | Err(_) => d.durable(),
    };
    Answer::after(StateResult { state }, commit)
}

/// `job.complete`: hands over every transferred file (sync, rename, directory sync), drops the
/// others, and acknowledges the job.
pub async fn complete(
    d: &Arc<Daemon>,
    c: &Caller,
    p: JobIdParams,
) -> ApiResult<ferry_proto::method::JobComplete> {
    d.load_existing(&p.job_id).await?;
    let job_type = {
        let mut inner = d.lock();
        let e = Daemon::owned(&mut inner, c, &p.job_id)?;
        e.row.job_type
    };
    let _hold = stop_for(
        d,
        c,
        &p.job_id,
        Operation::Complete { job_type },
        "complete",
    )
    .await?;
    let files = load_files(d, &p.job_id).await?;
    let identity = d.fs_identity(&p.job_id).await;
    // Every open, rename and directory sync runs as the owner, off the runtime threads.
    let Delivery {
        files,
        partial,
        failure,
        handed,
    } = ferry_fetch::safe_open::blocking(identity, move || deliver(files))
        .await
        .map_err(|e| {
            ProtoError::kind(
                ErrorKind::LocalIo,
                format!("cannot hand over the files: {e}; call complete again"),
            )
        })?;
    let mut inner = d.lock();
    Daemon::owned(&mut inner, c, &p.job_id)?;
    let id = p.job_id.clone();
    let files_commit = d.store().submit({
        let files = files.clone();
        move |tx| tx.put_files(&id, &files)
    });
    if let Some(err) = failure {
        // The job stays as it was (BITS keeps it transferred); a stopped transfer re-queues.
        let st = inner.jobs_mut().get(&p.job_id).map(|e| e.row.state);
        if matches!(st, Some(JobState::Connecting | JobState::Transferring)) {
            let _ = d.transition(&mut inner, &p.job_id, Trigger::Preempt, |_| {});
        }
        drop(files_commit);
        return Err(err);
    }
    drop(files_commit);
    if let (Some(pc), Some(e)) = (d.peer_cache(), inner.jobs_mut().get(&p.job_id)) {
        // Completing validates the content (BITS): it may now be served to peers.
        for f in files
            .iter()
            .filter(|f| f.completed && handed.contains(&f.file_index))
        {
            pc.offer(&e.row, f, PathBuf::from(&f.local_path), identity);
        }
    }
    let (state, commit) = d
        .transition(
            &mut inner,
            &p.job_id,
            Trigger::Complete { job_type },
            |_| {},
        )
        .map_err(|e| refused("complete", &p.job_id, e))?;
    Answer::after(CompleteResult { state, partial }, commit)
}

/// Completes the job in the background if it asked for that (`auto_complete`) and is
/// transferred: the program that started it may be gone (a closed terminal), and its files
/// must still arrive. A failure leaves the job transferred, logged, for a manual complete.
/// May be called with the daemon's lock held: the task looks at the job only once it runs.
pub fn spawn_auto_complete(d: &Arc<Daemon>, job_id: &str) {
    let (d, job_id) = (d.clone(), job_id.to_owned());
    tokio::spawn(async move {
        // After a restart a transferred job is not resident: read it in off the lock first.
        if !matches!(d.load(&job_id).await, Ok(true)) {
            return;
        }
        let owner = match d.lock().jobs_mut().get(&job_id) {
            Some(e) if e.row.settings.auto_complete && e.row.state == JobState::Transferred => {
                e.row.owner_uid
            }
            _ => return,
        };
        // As the owner, so completing is exactly what the owner's own call would do.
        let caller = Caller {
            uid: owner,
            gid: super::jobs::owner_gid(owner).await,
            pid: None,
        };
        let params = JobIdParams {
            job_id: job_id.clone(),
        };
        let result = match complete(&d, &caller, params).await {
            Ok(Answer {
                commit: Some(commit),
                ..
            }) => commit.wait().await.map_err(|e| e.to_string()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.message),
        };
        match result {
            Ok(()) => tracing::info!(job = %job_id, "completed the job (auto_complete)"),
            Err(why) => tracing::warn!(job = %job_id, error = %why,
                "could not complete the job (auto_complete); it stays transferred"),
        }
    });
}

/// Deletes the empty staging files of a job that failed, so a failure leaves no 0-byte
/// `.part` files behind; a resume creates them again. Files with bytes keep theirs (a resume
/// continues from them). Holds the job meanwhile, so it cannot start under the deletion.
pub fn spawn_drop_empty_staging(d: &Arc<Daemon>, job_id: &str) {
    let (d, job_id) = (d.clone(), job_id.to_owned());
    tokio::spawn(async move {
        let _hold = d.hold(&job_id);
        let failed = |d: &Daemon| {
            d.lock()
                .jobs()
                .peek(&job_id)
                .is_some_and(|e| e.row.state == JobState::Error)
        };
        if !failed(&d) {
            return;
        }
        let Ok(files) = load_files(&d, &job_id).await else {
            return;
        };
        let identity = d.fs_identity(&job_id).await;
        let emptied = ferry_fetch::safe_open::blocking(identity, move || {
            let mut changed = Vec::new();
            for mut f in files {
                if f.transferred || f.bytes_transferred > 0 {
                    continue;
                }
                if let Some(t) = f.temp_path.take() {
                    discard(Path::new(&t), None);
                    changed.push(f);
                }
            }
            changed
        })
        .await;
        if let Ok(changed) = emptied
            && !changed.is_empty()
        {
            let id = job_id.clone();
            if let Err(e) = d
                .store()
                .submit(move |tx| tx.put_files(&id, &changed))
                .wait()
                .await
            {
                tracing::warn!(job = %job_id, error = %e, "could not record the deleted staging files");
            }
        }
    });
}

/// What [`deliver`] did to a job's files.
struct Delivery {
    /// The rows, updated for what was handed over or dropped.
    files: Vec<FileRow>,
    /// Whether a file was not transferred (BITS: a partial completion).
    partial: bool,
    /// The first hand-over that failed; the files after it were left as they were.
    failure: Option<ProtoError>,
    /// The indexes of the files handed over now.
    handed: BTreeSet<u64>,
}

/// Hands over every transferred file and drops the others' staging files. Runs as the job's
/// owner on the blocking pool: each destination directory is opened once (a directory only,
/// never blocking) and the renames and the final fsync use that handle, so swapping a
/// directory for a symlink, or for a FIFO, in the middle changes nothing.
fn deliver(mut files: Vec<FileRow>) -> Delivery {
    let mut handover = staging::Handover::default();
    let (mut partial, mut failure, mut handed) = (false, None, BTreeSet::new());
    for f in &mut files {
        if f.completed {
            continue;
        }
        let Some(temp) = f.temp_path.clone() else {
            partial |= !f.transferred;
            continue;
        };
        if !f.transferred {
            partial = true;
            discard(Path::new(&temp), None);
            f.temp_path = None;
            continue;
        }
        let dest = PathBuf::from(&f.local_path);
        match handover.hand_over(Path::new(&temp), &dest) {
            Ok(()) => {
                f.completed = true;
                f.temp_path = None;
                handed.insert(f.file_index);
                if f.validation == Validation::Unset {
                    // BITS: complete implies the content is valid.
                    f.validation = Validation::Valid;
                }
            }
            Err(e) => {
                let kind = if e.source.kind() == std::io::ErrorKind::PermissionDenied {
                    ErrorKind::AccessDenied
                } else {
                    ErrorKind::LocalIo
                };
                failure = Some(
                    ProtoError::kind(
                        kind,
                        format!(
                            "cannot hand over {}: {e}; fix the problem and call complete again",
                            dest.display()
                        ),
                    )
                    .with("path", dest.to_string_lossy().into_owned()),
                );
                break;
            }
        }
    }
    // One fsync per directory makes every rename above durable.
    if let Err(e) = handover.sync() {
        failure.get_or_insert(
            ProtoError::kind(
                ErrorKind::LocalIo,
                format!("cannot make the delivered files durable: {e}; call complete again"),
            )
            .with("path", e.path.to_string_lossy().into_owned()),
        );
    }
    Delivery {
        files,
        partial,
        failure,
        handed,
    }
}

/// `file.set_validation_state` (BITS `SetValidationState`).
pub async fn set_validation(
    d: &Arc<Daemon>,
    c: &Caller,
    p: ValidationParams,
) -> ApiResult<ferry_proto::method::FileSetValidationState> {
    d.load_existing(&p.job_id).await?;
    {
        let mut inner = d.lock();
        let e = Daemon::owned(&mut inner, c, &p.job_id)?;
        state::check(e.row.state, Operation::SetValidation)
            .map_err(|r| refusal("set the validation state", r))?;
    }
    let mut file = d
        .read_files(&p.job_id, p.file_index, 1)
        .await?
        .into_iter()
        .find(|f| f.file_index == p.file_index)
        .ok_or_else(|| {
            ProtoError::invalid_params(
                "file_index",
                format!("the job has no file {}", p.file_index),
            )
        })?;
    if !file.transferred {
        return Err(ProtoError::kind(
            ErrorKind::Pending,
            format!(
                "file {} has not finished transferring yet; validate it after file_transferred",
                p.file_index
            ),
        )
        .with("bits", "E_PENDING"));
    }
    if p.valid {
        file.validation = Validation::Valid;
        let id = p.job_id.clone();
        let f = file.clone();
        let commit = d.store().submit(move |tx| tx.put_files(&id, &[f]));
        if let Some(pc) = d.peer_cache() {
            let identity = d.fs_identity(&p.job_id).await;
            let row = d.lock().jobs_mut().get(&p.job_id).map(|e| e.row.clone());
            let source = match (&file.temp_path, file.completed) {
                (Some(t), false) => Some(PathBuf::from(t)),
                (_, true) => Some(PathBuf::from(&file.local_path)),
                (None, false) => None,
            };
            if let (Some(row), Some(source)) = (row, source) {
                pc.offer(&row, &file, source, identity);
            }
        }
        return Answer::after(super::jobs::file_view(file), commit);
    }
    if !file.completed
        && file.bytes_from_peers > 0
        && let Some(pc) = d.peer_cache().cloned()
    {
        return refetch_from_origin(d, c, &pc, &p.job_id, file).await;
    }
    if file.completed {
        file.validation = Validation::Invalid;
        let id = p.job_id.clone();
        let f = file.clone();
        let commit = d.store().submit(move |tx| tx.put_files(&id, &[f]));
        return Answer::after(super::jobs::file_view(file), commit);
    }
    // Rejected content from the origin: drop it, reset the file, and fail the job so that a
    // resume fetches it again (BITS_E_VALIDATION_FAILED).
    let _hold = d.hold(&p.job_id);
    d.stop_transfer(&p.job_id).await;
    if let Some(t) = file.temp_path.take() {
        discard_off_runtime(t, d.fs_identity(&p.job_id).await).await;
    }
    let mut inner = d.lock();
    let e = Daemon::owned(&mut inner, c, &p.job_id)?;
    e.transfer_mut().file_untransferred(file.file_index);
    e.file_rejected(&file);
    file.bytes_transferred = 0;
    file.transferred = false;
    file.validator = None;
    file.content_sha256 = None;
    file.validation = Validation::Invalid;
    let info = ErrorInfo {
        context: ErrorContext::RemoteFile,
        code: "VALIDATION_FAILED".into(),
        http_status: None,
        transient: false,
        description: format!(
            "the application rejected the content of file {} ({}); resume fetches it again",
            file.file_index, file.remote_url
        ),
        file_index: Some(file.file_index),
        protocol: None,
    };
    let id = p.job_id.clone();
    let f = file.clone();
    drop(d.store().submit(move |tx| tx.put_files(&id, &[f])));
    let (_, commit) = d
        .transition(&mut inner, &p.job_id, Trigger::FatalError, |row| {
            row.error = Some(info)
        })
        .map_err(|e| refused("set the validation state", &p.job_id, e))?;
    Answer::after(super::jobs::file_view(file), commit)
}

/// The owner rejected content that came (partly) from a peer: the peer is
/// marked bad and any cache entry of that content evicted, the file starts over from the origin
/// alone, and `file_transferred` fires again when it arrives. The job is not failed: the peer,
/// not the origin, was wrong.
async fn refetch_from_origin(
    d: &Arc<Daemon>,
    c: &Caller,
    pc: &Arc<crate::peer_cache::PeerCache>,
    job_id: &str,
    mut file: FileRow,
) -> ApiResult<ferry_proto::method::FileSetValidationState> {
    let _hold = d.hold(job_id);
    d.stop_transfer(job_id).await;
    if let Some(t) = file.temp_path.take() {
        discard_off_runtime(t, d.fs_identity(job_id).await).await;
    }
    if let Some(peer) = &file.peer {
        pc.mark_bad(peer, "the application rejected content it served");
    }
    if let Some(key) = crate::peer_cache::PeerCache::key_of(&file) {
        pc.remove(|r| r.key == key, "rejected");
    }
    let mut inner = d.lock();
    let e = Daemon::owned(&mut inner, c, job_id)?;
    e.transfer_mut().file_untransferred(file.file_index);
    e.file_rejected(&file);
    let row = &e.row;
    let (owner, files_total, state) = (row.owner_uid, row.files_total, row.state);
    pc.event(
        job_id,
        owner,
        ferry_proto::EventKind::PeerCache {
            action: "rejected".into(),
            file_index: file.file_index,
            key: None,
            peer: file.peer.clone(),
            bytes: file.bytes_from_peers,
            waited_ms: 0,
            detail: Some("the application rejected content that came from a peer; fetching it again from the origin".into()),
        },
    );
    file = FileRow {
        file_index: file.file_index,
        remote_url: file.remote_url,
        local_path: file.local_path,
        sha256: file.sha256,
        ranges: file.ranges,
        // The job's size counters include it; the refetch corrects it if it changed.
        bytes_total: file.bytes_total,
        origin_only: true,
        ..FileRow::default()
    };
    let id = job_id.to_owned();
    let f = file.clone();
    let mut commit = d.store().submit(move |tx| tx.put_files(&id, &[f]));
    // Back to the queue: a stopped transfer is preempted, a finished job has a pending file.
    let trigger = match state {
        JobState::Connecting | JobState::Transferring => Some(Trigger::Preempt),
        JobState::Transferred => Some(Trigger::Resume {
            files_total,
            files_pending: 1,
        }),
        _ => None,
    };
    if let Some(t) = trigger {
        let (_, c) = d
            .transition(&mut inner, job_id, t, |_| {})
            .map_err(|e| refused("set the validation state", job_id, e))?;
        commit = c;
    } else if let Some(e) = inner.jobs_mut().get(job_id) {
        let row = e.row.clone();
        commit = d.store().submit(move |tx| tx.update_job(&row));
    }
    drop(inner);
    d.wake().notify_one();
    Answer::after(super::jobs::file_view(file), commit)
}
