//! The transfer of an upload job's file: `ferry-send` sends it over the BITS Upload Protocol
//! or tus, and this module executes what it reports. A new server-side upload (session, upload
//! URL) is committed to the store before the engine sends its first byte, every acknowledged
//! offset is checkpointed like a download's durable bytes, and the finished upload is a
//! transferred file (`file_done`), so states, retries, notifications and `complete` work as for
//! downloads. The source is opened as the job's owner, off the runtime threads.

use std::path::PathBuf;
use std::sync::Arc;

use ferry_fetch::{FetchDone, FetchError};
use ferry_proto::{ErrorContext, ErrorInfo, UploadProtocol};
use ferry_send::{Protocol, ProtocolChoice, SendEvent, SendRequest, SourceIdentity, Target};
use ferry_store::FileRow;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    FileFailure, RunSettings, checkpoint, connected, file_done, host_permit, live_progress,
};
use crate::daemon::Daemon;

/// Sends one upload file; `Ok` also when the token fired (the canceller decides).
pub(super) async fn send_one(
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
    let recorded: Option<SourceIdentity> = file
        .upload_source
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    let path = PathBuf::from(&file.local_path);
    let (source, now) = tokio::select! {
        r = open_source(identity, path.clone(), file.file_index) => r?,
        () = token.cancelled() => return Ok(()),
    };
    // Recorded when the job was made; a job from before that records it now.
    let want = recorded.unwrap_or(now);
    let mut req = SendRequest::new(file.remote_url.clone(), source, want);
    req.target = target_of(&file, settings);
    req.protocol =
        match ferry_core::upload::protocol_to_use(settings.upload_protocol, file.upload_protocol) {
            Some(UploadProtocol::Bits) => ProtocolChoice::Only(Protocol::Bits),
            Some(UploadProtocol::Tus) => ProtocolChoice::Only(Protocol::Tus),
            Some(UploadProtocol::Auto) | None => ProtocolChoice::Auto,
        };
    req.source_path = Some(path.clone());
    req.fs_identity = identity;
    req.resume = file
        .upload_session
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    req.content_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    req.stall_timeout = settings.stall_timeout;
    req.throttle = settings.throttle.clone();
    req.fragment_size = ferry_upload_proto::bits_client::fragment_for_rate(req.throttle.rate());
    if file.upload_source.is_none() {
        file.upload_source = serde_json::to_value(want).ok();
    }
    let result = drive(d, job_id, &mut file, &req, token).await;
    match result {
        Ok(done) => {
            // The server put the file in place and forgot the session.
            file.upload_session = None;
            let done = FetchDone {
                bytes: done.bytes,
                validator: None,
                sha256: None,
                pieces: None,
            };
            file_done(d, job_id, file, done);
            Ok(())
        }
        Err(e) => Err(FileFailure::Fetch(e)),
    }
}

/// The wire name of an engine's protocol.
fn wire_protocol(p: Protocol) -> UploadProtocol {
    match p {
        Protocol::Bits => UploadProtocol::Bits,
        Protocol::Tus => UploadProtocol::Tus,
    }
}

/// Where the file goes, with the job's headers and credentials.
fn target_of(file: &FileRow, settings: &RunSettings) -> Target {
    Target {
        url: file.remote_url.clone(),
        headers: settings.headers.clone(),
        basic_auth: settings.basic_auth.clone(),
    }
}

/// Opens the source as the owner (no FIFOs, devices or magic links) and reads its identity.
async fn open_source(
    identity: Option<ferry_fetch::identity::FsIdentity>,
    path: PathBuf,
    index: u64,
) -> Result<(std::fs::File, SourceIdentity), FileFailure> {
    let shown = path.display().to_string();
    let opened = ferry_fetch::safe_open::blocking(identity, move || {
        let f = ferry_fetch::safe_open::open_source(&path)?;
        let meta = f.metadata()?;
        Ok::<_, std::io::Error>((f, SourceIdentity::of(&meta)))
    })
    .await;
    match opened {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(e)) => Err(FileFailure::Local(source_error(&shown, &e, index))),
        Err(e) => Err(FileFailure::Local(source_error(&shown, &e, index))),
    }
}

/// The error for a source that cannot be opened: fatal, naming the file and what to do.
pub(crate) fn source_error(shown: &str, e: &std::io::Error, index: u64) -> ErrorInfo {
    let (code, hint) = match e.kind() {
        std::io::ErrorKind::NotFound => ("FILE_NOT_FOUND", "it does not exist (any more)"),
        std::io::ErrorKind::PermissionDenied => {
            ("ACCESS_DENIED", "the job's owner may not read it")
        }
        _ if ferry_fetch::safe_open::is_wrong_kind(e) => {
            ("LOCAL_IO", "only regular files can be uploaded")
        }
        _ => ("LOCAL_IO", "it cannot be read"),
    };
    ErrorInfo {
        context: ErrorContext::LocalFile,
        code: code.into(),
        http_status: None,
        transient: false,
        description: format!("cannot upload {shown}: {hint} ({e})"),
        file_index: Some(index),
        protocol: None,
    }
}

/// Runs one send, applying its events to the file and the job as they come.
async fn drive(
    d: &Arc<Daemon>,
    job_id: &str,
    file: &mut FileRow,
    req: &SendRequest,
    token: &CancellationToken,
) -> Result<ferry_send::SendDone, FetchError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut live = 0u64;
    let result = {
        let send = d.sender().send(req, &tx, token);
        tokio::pin!(send);
        loop {
            tokio::select! {
                r = &mut send => break r,
                Some(ev) = rx.recv() => on_event(d, job_id, file, &mut live, ev),
            }
        }
    };
    drop(tx);
    while let Ok(ev) = rx.try_recv() {
        on_event(d, job_id, file, &mut live, ev);
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

/// Applies a send event to the file and the job.
fn on_event(d: &Arc<Daemon>, job_id: &str, file: &mut FileRow, live: &mut u64, ev: SendEvent) {
    let now = d.mono().now();
    let mut inner = d.lock();
    connected(d, &mut inner, job_id);
    match ev {
        SendEvent::Probed { protocol } => {
            tracing::info!(job = %job_id, protocol = protocol.as_str(), "the upload server speaks");
            // Recorded with the session that follows: the probe is not repeated.
            file.upload_protocol = Some(wire_protocol(protocol));
        }
        SendEvent::Progress { bytes, total } => {
            live_progress(&mut inner, job_id, file, live, bytes, Some(total), now);
        }
        SendEvent::Created { state, commit } => {
            let Some(entry) = inner.jobs_mut().get_resident_mut(job_id) else {
                return;
            };
            // A new server-side upload starts from zero: the bytes the file counted are gone.
            let lost = file.bytes_transferred;
            file.upload_protocol = Some(wire_protocol(state.protocol()));
            file.upload_session = serde_json::to_value(&state).ok();
            file.bytes_transferred = 0;
            entry.bytes_lost(lost);
            let (row, f) = (entry.row.clone(), file.clone());
            let written = d.store().submit(move |tx| {
                tx.update_job(&row)?;
                tx.put_files(&row.id, &[f])
            });
            // The engine sends the first byte only once the session is durable.
            tokio::spawn(async move {
                if written.wait().await.is_ok() {
                    commit.committed();
                }
            });
        }
        SendEvent::Acked { state } => {
            let total = file.bytes_total;
            file.upload_session = serde_json::to_value(&state).ok();
            checkpoint(
                d,
                &mut inner,
                job_id,
                file,
                live,
                state.acked(),
                total,
                true,
            );
        }
    }
}
