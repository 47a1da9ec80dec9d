//! Creating, reading and editing jobs: `job.create`, `job.add_files`, `job.get`, `job.files`,
//! `job.get_error`, `job.list`, `job.set`, `job.take_ownership` and the live-callback
//! registration.

use std::sync::Arc;

use ferry_core::state::{self, Operation};
use ferry_proto::params::{
    AddFilesParams, AddFilesResult, CreateParams, CreateResult, FilesParams, FilesResult,
    JobIdParams, ListParams, ListResult, SetParams,
};
use ferry_proto::{ErrorKind, EventKind, File, JobState, JobType, ProtoError, SettingsChange};
use ferry_rpc::Peer;
use ferry_store::{FileRow, JobRow};

use super::{Answer, ApiResult, files};
use crate::clock;
use crate::daemon::{Caller, Daemon, DaemonState, refusal, store_failed};
use crate::job::JobEntry;
use crate::limits;
use ferry_proto::method;
use ferry_proto::params::Ack;

fn check_limits(d: &Daemon, inner: &DaemonState, uid: u32) -> Result<(), ProtoError> {
    inner.quotas().check_new_job(&d.opts().limits, uid)
}

fn check_file_count(d: &Daemon, have: u64, adding: usize) -> Result<(), ProtoError> {
    let max = d.opts().limits.files_per_job;
    let would = have.saturating_add(adding as u64);
    if would > max {
        return Err(limits::exceeded(
            "files_per_job",
            max,
            format!("this would make the job hold {would} files"),
        ));
    }
    Ok(())
}

/// Counts `adding` files more for `uid`, or refuses past `files_per_user`.
fn take_user_files(
    d: &Daemon,
    inner: &mut DaemonState,
    uid: u32,
    adding: u64,
) -> Result<(), ProtoError> {
    let max = d.opts().limits.files_per_user;
    inner.quotas_mut().take_files(uid, adding, max)
}

/// Runs the file-system checks of new rows as `owner`, off the runtime threads, in the owner's
/// share of the blocking pool (the paths are the user's; a look there may hang).
async fn check_on_disk(
    d: &Daemon,
    owner: Caller,
    rows: Vec<FileRow>,
) -> Result<Vec<FileRow>, ProtoError> {
    if rows.is_empty() {
        return Ok(rows);
    }
    // The identity the job's transfers will use.
    let identity = crate::identity::fs_identity_off_runtime(d.opts().mode, owner.uid).await;
    ferry_fetch::safe_open::blocking(identity, move || {
        files::check_on_disk(&rows, &owner).map(|()| rows)
    })
    .await
    .map_err(|e| {
        ProtoError::kind(
            ErrorKind::LocalIo,
            format!("cannot check the destinations: {e}; try again"),
        )
    })?
}

/// `job.create`
pub async fn create(d: &Arc<Daemon>, c: &Caller, p: CreateParams) -> ApiResult<method::JobCreate> {
    let change = SettingsChange::try_from(&p)?;
    let job_type = p.job_type.unwrap_or(JobType::Download);
    if job_type != JobType::Download {
        return Err(ProtoError::kind(
            ErrorKind::Unsupported,
            "upload jobs are not supported by this ferryd yet; create a download job",
        )
        .with("field", "type"));
    }
    let specs = p.files.unwrap_or_default();
    check_file_count(d, 0, specs.len())?;
    let mut rows = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        rows.push(files::check(spec, i, i as u64, &d.opts().limits)?);
    }
    let rows = check_on_disk(d, *c, rows).await?;
    let now = clock::now_rfc3339();
    let id = uuid::Uuid::new_v4().to_string();
    let mut inner = d.lock();
    check_limits(d, &inner, c.uid)?;
    take_user_files(d, &mut inner, c.uid, rows.len() as u64)?;
    let seq = inner.take_job_seq();
    let mut row = JobRow {
        seq,
        id: id.clone(),
        owner_uid: c.uid,
        job_type,
        state: JobState::Suspended,
        created: now.clone(),
        modified: now.clone(),
        files_total: rows.len() as u64,
        size_known_bytes: known_bytes(&rows),
        size_unknown_files: unknown_files(&rows),
        ..JobRow::default()
    };
    change.apply(&mut row.settings);
    row.settings.minimum_retry_delay_s = row
        .settings
        .minimum_retry_delay_s
        .max(d.opts().retry_delay_floor_s);
    row.refresh_total();
    let (r, f) = (row.clone(), rows);
    let commit = d.store().submit(move |tx| {
        tx.insert_job(&r)?;
        tx.put_files(&r.id, &f)?;
        tx.append_event(&r.id, r.owner_uid, &now, EventKind::Created)?;
        Ok(())
    });
    inner.quotas_mut().count_job(c.uid);
    inner.jobs_mut().insert(JobEntry::from_store(row));
    Answer::after(CreateResult { job_id: id }, commit)
}

/// `job.add_files`
pub async fn add_files(
    d: &Arc<Daemon>,
    c: &Caller,
    p: AddFilesParams,
) -> ApiResult<method::JobAddFiles> {
    d.load_existing(&p.job_id).await?;
    let (first, owner) = {
        let mut inner = d.lock();
        let e = Daemon::owned(&mut inner, c, &p.job_id)?;
        state::check(e.row.state, Operation::AddFiles).map_err(|r| refusal("add files", r))?;
        (e.row.files_total, e.row.owner_uid)
    };
    check_file_count(d, first, p.files.len())?;
    // Checked as the owner (root acting on someone's job must not widen what they may write).
    let owner = Caller {
        uid: owner,
        gid: if owner == c.uid {
            c.gid
        } else {
            owner_gid(owner).await
        },
        pid: None,
    };
    let mut rows = Vec::with_capacity(p.files.len());
    for (i, spec) in p.files.iter().enumerate() {
        rows.push(files::check(spec, i, first + i as u64, &d.opts().limits)?);
    }
    let mut rows = check_on_disk(d, owner, rows).await?;
    let mut inner = d.lock();
    let e = Daemon::owned(&mut inner, c, &p.job_id)?;
    state::check(e.row.state, Operation::AddFiles).map_err(|r| refusal("add files", r))?;
    if e.row.files_total != first {
        // Another add raced us; renumber.
        for (i, r) in rows.iter_mut().enumerate() {
            r.file_index = e.row.files_total + i as u64;
        }
    }
    let first = e.row.files_total;
    let count = rows.len() as u64;
    let owner = e.row.owner_uid;
    take_user_files(d, &mut inner, owner, count)?;
    let e = Daemon::owned(&mut inner, c, &p.job_id)?;
    e.files_added(count, known_bytes(&rows), unknown_files(&rows));
    d.modified(e);
    let row = e.row.clone();
    let time = row.modified.clone();
    let commit = d.store().submit(move |tx| {
        tx.put_files(&row.id, &rows)?;
        tx.update_job(&row)?;
        tx.append_event(
            &row.id,
            row.owner_uid,
            &time,
            EventKind::Modified {
                fields: vec!["files".into()],
            },
        )?;
        Ok(())
    });
    Answer::after(
        AddFilesResult {
            first_index: first,
            count,
        },
        commit,
    )
}

/// Bytes of the new files whose size is already known (ranged files with bounded ranges).
fn known_bytes(rows: &[FileRow]) -> u64 {
    rows.iter()
        .filter_map(|r| r.bytes_total)
        .fold(0, u64::saturating_add)
}

/// New files whose size the server will tell (every file but a fully bounded ranged one).
fn unknown_files(rows: &[FileRow]) -> u64 {
    rows.iter().filter(|r| r.bytes_total.is_none()).count() as u64
}

/// The owner's primary group, looked up on the blocking pool (a name service may be slow);
/// `u32::MAX`, a group nobody is in, when the owner has no passwd entry.
pub(super) async fn owner_gid(uid: u32) -> u32 {
    tokio::task::spawn_blocking(move || crate::identity::primary_gid(uid))
        .await
        .ok()
        .flatten()
        .unwrap_or(u32::MAX)
}

/// `job.get`
pub async fn get(d: &Arc<Daemon>, c: &Caller, p: JobIdParams) -> ApiResult<method::JobGet> {
    d.load_existing(&p.job_id).await?;
    let mut inner = d.lock();
    let e = Daemon::owned(&mut inner, c, &p.job_id)?;
    // Answer only once everything this view shows is durable: a client never sees a state
    // that a crash could take back.
    Answer::after(e.view(), d.durable())
}

/// The wire form of a stored file.
pub fn file_view(f: FileRow) -> File {
    File {
        file_index: f.file_index,
        remote_url: f.remote_url,
        local_path: f.local_path,
        bytes_total: f.bytes_total,
        bytes_transferred: f.bytes_transferred,
        transferred: f.transferred,
        completed: f.completed,
        ranges: f.ranges,
        sha256: f.sha256,
        validation: f.validation,
        from_peer: f.from_peer,
        bytes_from_peers: f.bytes_from_peers,
        bytes_from_origin: f.bytes_from_origin,
        temporary_path: f.temp_path,
    }
}

/// `job.files`
pub async fn files(d: &Arc<Daemon>, c: &Caller, p: FilesParams) -> ApiResult<method::JobFiles> {
    d.load_existing(&p.job_id).await?;
    {
        let mut inner = d.lock();
        Daemon::owned(&mut inner, c, &p.job_id)?;
    }
    let from = p.from.unwrap_or(0);
    // One more than asked tells whether another page follows.
    let limit = p.limit.map_or(u64::MAX, |l| l.clamp(1, 100_000));
    let mut rows = d
        .read_files(&p.job_id, from, limit.saturating_add(1))
        .await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        rows.last().map(|r| r.file_index + 1)
    } else {
        None
    };
    Answer::now(FilesResult {
        files: rows.into_iter().map(file_view).collect(),
        next,
    })
}

/// `job.get_error`
pub async fn get_error(
    d: &Arc<Daemon>,
    c: &Caller,
    p: JobIdParams,
) -> ApiResult<method::JobGetError> {
    d.load_existing(&p.job_id).await?;
    let mut inner = d.lock();
    let e = Daemon::owned(&mut inner, c, &p.job_id)?;
    let err = match e.row.state {
        JobState::Error | JobState::TransientError => e.row.error.clone(),
        _ => None,
    };
    Answer::after(err, d.durable())
}

/// `job.list`: pages through the store, so cold jobs are listed without being loaded; a
/// resident job shows its live view (bytes in flight, why it waits).
pub async fn list(d: &Arc<Daemon>, c: &Caller, p: ListParams) -> ApiResult<method::JobList> {
    let all = p.all_users.unwrap_or(false);
    if all && !c.is_root() {
        return Err(ProtoError::kind(
            ErrorKind::AccessDenied,
            "only root may list every user's jobs (all_users)",
        ));
    }
    let include_final = p.include_final.unwrap_or(false);
    let limit = p.limit.unwrap_or(1000).clamp(1, 10_000);
    let states: Vec<JobState> = JobState::ALL
        .into_iter()
        .filter(|s| include_final || !s.is_final())
        .filter(|s| p.states.as_ref().is_none_or(|want| want.contains(s)))
        .collect();
    let owner = (!all).then_some(c.uid);
    // Memory is ahead of the store by the writes in flight: let them land first.
    d.store().flush().await.map_err(store_failed)?;
    if let Some(after) = &p.after {
        d.load(after).await?;
    }
    let start = match &p.after {
        None => 0,
        Some(after) => match d.lock().jobs_mut().get(after) {
            Some(e) if all || e.row.owner_uid == c.uid => e.row.seq + 1,
            _ => {
                return Err(ProtoError::invalid_params(
                    "after",
                    format!("after names no job of this user: {after}"),
                ));
            }
        },
    };
    let reader = d.reader().clone();
    let mut rows =
        tokio::task::spawn_blocking(move || reader.job_page(start, owner, &states, limit + 1))
            .await
            .map_err(|e| {
                ProtoError::kind(ErrorKind::Internal, format!("listing jobs failed: {e}"))
            })?
            .map_err(store_failed)?;
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let inner = d.lock();
    let jobs: Vec<ferry_proto::Job> = rows
        .into_iter()
        .map(|row| match inner.jobs().peek(&row.id) {
            Some(e) => e.view(),
            None => JobEntry::from_store(row).view(),
        })
        .collect();
    drop(inner);
    let next = if more {
        jobs.last().map(|j| j.job_id.clone())
    } else {
        None
    };
    Answer::after(ListResult { jobs, next }, d.durable())
}

/// `job.set`
pub async fn set(d: &Arc<Daemon>, c: &Caller, p: SetParams) -> ApiResult<method::JobSet> {
    // Validate everything before changing anything.
    let change = SettingsChange::try_from(p)?;
    let job_id = change.job_id().to_owned();
    d.load_existing(&job_id).await?;
    let mut inner = d.lock();
    let e = Daemon::owned(&mut inner, c, &job_id)?;
    let op = if change.sets_credentials() {
        Operation::SetCredentials
    } else {
        Operation::SetProperty
    };
    state::check(e.row.state, op).map_err(|r| refusal("change the job", r))?;
    let auto_complete = change.enables_auto_complete();
    let fields = change.apply(&mut e.row.settings);
    if fields.iter().any(|f| f == "minimum_retry_delay_s") {
        let floor = d.opts().retry_delay_floor_s;
        let delay = &mut e.row.settings.minimum_retry_delay_s;
        *delay = (*delay).max(floor);
    }
    if auto_complete {
        // Set on a job that is transferred already: complete it now.
        super::spawn_auto_complete(d, &job_id);
    }
    e.row.modified = clock::now_rfc3339();
    if let Some(b) = e.transfer().bucket() {
        // Takes effect on the running transfer at once.
        b.set_rate(e.row.settings.bandwidth_limit_bps);
    }
    let notify_changed = fields.iter().any(|f| {
        matches!(
            f.as_str(),
            "notify_flags" | "notify_cmdline" | "notify_handler"
        )
    });
    d.modified(e);
    let commit = d.persist(e, vec![EventKind::Modified { fields }]);
    let view = e.view();
    // A priority change may change who runs.
    d.wake().notify_one();
    if notify_changed {
        // A target may have appeared, or flag 4 been lifted: owed notifications go at once.
        d.kick(&job_id, true);
    }
    Answer::after(view, commit)
}

/// `job.take_ownership`
pub async fn take_ownership(
    d: &Arc<Daemon>,
    c: &Caller,
    p: JobIdParams,
) -> ApiResult<method::JobTakeOwnership> {
    if !c.is_root() {
        return Err(ProtoError::kind(
            ErrorKind::AccessDenied,
            "only root may take ownership of a job",
        )
        .with("bits", "E_ACCESSDENIED"));
    }
    d.load_existing(&p.job_id).await?;
    let mut inner = d.lock();
    let e = Daemon::owned(&mut inner, c, &p.job_id)?;
    state::check(e.row.state, Operation::TakeOwnership)
        .map_err(|r| refusal("take ownership", r))?;
    let old = e.row.owner_uid;
    let files = e.row.files_total;
    e.row.owner_uid = c.uid;
    // Whatever the old owner set up must not reach them or act for them any more: their live
    // callback and handler would go on receiving the job (with what the new owner adds), their
    // command line would run as the new owner, their credentials and headers (tokens) would be
    // sent for the new owner.
    e.notification_mut().set_interface(None);
    e.row.settings.notify_handler = None;
    e.row.settings.notify_cmdline = None;
    let mut fields: Vec<String> = ["owner_uid", "notify_handler", "notify_cmdline"]
        .map(String::from)
        .into();
    if e.row.settings.credentials.is_some() || !e.row.settings.custom_headers.is_empty() {
        // What was fetched with the old owner's secrets may be private: without them the job
        // would look shareable, so it stops being offered to peers.
        e.row.settings.credentials = None;
        e.row.settings.custom_headers.clear();
        e.row.settings.peer_caching = false;
        fields.extend(["credentials", "custom_headers", "peer_caching"].map(String::from));
    }
    e.row.modified = clock::now_rfc3339();
    let commit = d.persist(e, vec![EventKind::Modified { fields }]);
    let view = e.view();
    inner.quotas_mut().job_moved(old, c.uid, files);
    Answer::after(view, commit)
}

/// `job.set_notify_interface`: delivery itself is the notifier's (see docs/protocol.md).
pub async fn set_notify_interface(
    d: &Arc<Daemon>,
    c: &Caller,
    peer: &Arc<Peer>,
    p: JobIdParams,
) -> ApiResult<method::JobSetNotifyInterface> {
    d.load_existing(&p.job_id).await?;
    let mut inner = d.lock();
    let e = Daemon::owned(&mut inner, c, &p.job_id)?;
    state::check(e.row.state, Operation::SetNotify)
        .map_err(|r| refusal("set the notify interface", r))?;
    e.notification_mut()
        .set_interface(Some(Arc::downgrade(peer)));
    d.kick(&p.job_id, true);
    Answer::now(Ack {})
}

/// `job.clear_notify_interface`
pub async fn clear_notify_interface(
    d: &Arc<Daemon>,
    c: &Caller,
    p: JobIdParams,
) -> ApiResult<method::JobClearNotifyInterface> {
    d.load_existing(&p.job_id).await?;
    let mut inner = d.lock();
    let e = Daemon::owned(&mut inner, c, &p.job_id)?;
    state::check(e.row.state, Operation::SetNotify)
        .map_err(|r| refusal("clear the notify interface", r))?;
    e.notification_mut().set_interface(None);
    Answer::now(Ack {})
}

/// A connection closed: it is nobody's callback target any more.
pub fn connection_closed(d: &Daemon, peer_id: u64) {
    let mut inner = d.lock();
    // A job with a live callback connection is hot, so resident.
    for e in inner.jobs_mut().resident_mut() {
        e.notification_mut().connection_closed(peer_id);
    }
}
