//! The tus 1.0 client: OPTIONS once, POST (the upload URL committed before any byte), PATCH
//! chunks from the acknowledged offset with a SHA-1 checksum where the server offers one; on
//! resume HEAD says where to go on; an expired or vanished upload starts one new upload (a
//! bounded number of times). What to do after each answer is `ferry_upload_proto::tus`'s.

use std::time::{Duration, SystemTime};

use ferry_fetch::FetchError;
use ferry_proto::ErrorContext;
use ferry_upload_proto::offset::{OffsetError, Tracker};
use ferry_upload_proto::tus::{self, Failure, MAX_CHECKSUM_RETRIES, MAX_NEW_UPLOADS, Step};
use url::Url;

use crate::wire::{Reply, Wire, answer_error};
use crate::{Protocol, Run, SendDone, ServerState, mismatch};

struct Upload {
    url: Url,
    t: Tracker,
    expires: Option<String>,
}

impl Upload {
    fn state(&self) -> ServerState {
        ServerState::Tus {
            upload_url: self.url.to_string(),
            acked: self.t.acked,
            expires: self.expires.clone(),
        }
    }
}

fn step_error(reply: Option<&Reply>, f: &Failure, transient: bool) -> FetchError {
    answer_error(
        reply,
        transient,
        ErrorContext::RemoteFile,
        format!("tus upload server: {f}"),
    )
}

/// The error of a step that ends the attempt.
fn stop(reply: &Reply, step: Step) -> FetchError {
    match step {
        Step::Transient(f) => step_error(Some(reply), &f, true),
        Step::Fatal(f) => step_error(Some(reply), &f, false),
        other => step_error(
            Some(reply),
            &Failure::Status(reply.status),
            !matches!(other, Step::Created(_)),
        ),
    }
}

pub(crate) async fn send(
    run: &Run<'_>,
    resume: Option<ServerState>,
) -> Result<SendDone, FetchError> {
    let w = &run.w;
    let total = run.src.size();
    let Some(caps) = w.tus_options(&w.start).await? else {
        return Err(mismatch(format!(
            "{} is not a tus 1.0 server (its OPTIONS answer has no Tus-Version 1.0.0)",
            ferry_fetch::redact(&w.start)
        )));
    };
    if !tus::fits(&caps, total) {
        return Err(step_error(None, &Failure::TooLarge, false));
    }
    let checksum = tus::checksum_for(&caps);
    let chunk = run.req.fragment_size.max(1);
    let mut new_uploads = 0u32;
    let mut cur: Option<Upload> = None;
    if let Some(ServerState::Tus {
        upload_url,
        acked,
        expires,
    }) = resume
    {
        let url = Url::parse(&upload_url)
            .map_err(|e| FetchError::invalid_request(format!("bad stored tus upload URL: {e}")))?;
        let gone = expires
            .as_deref()
            .is_some_and(|e| tus::expired(e, SystemTime::now()));
        if !gone {
            let mut up = Upload {
                url,
                t: Tracker::resumed(total, acked),
                expires,
            };
            if head(run, &mut up).await? {
                cur = Some(up);
            }
        }
    }
    loop {
        let mut up = match cur.take() {
            Some(u) => u,
            None => {
                new_uploads += 1;
                if new_uploads > MAX_NEW_UPLOADS {
                    return Err(step_error(
                        None,
                        &Failure::UploadsLost(new_uploads - 1),
                        false,
                    ));
                }
                if !caps.has("creation") {
                    return Err(step_error(None, &Failure::NoCreation, false));
                }
                create(run, total).await?
            }
        };
        let mut gone = false;
        let mut checksum_failures = 0u32;
        while let Some((first, end)) = up.t.next(chunk) {
            let len = usize::try_from(end - first).unwrap_or(usize::MAX);
            let (data, digest) = run.src.read(first, len, checksum.is_some()).await?;
            let sum = checksum
                .zip(digest)
                .map(|(a, d)| tus::checksum_header(a, &d));
            up.t.sending(end);
            let progress = run.progress(first);
            let reply = w
                .exchange(
                    "PATCH",
                    &up.url,
                    &tus::patch_headers(first, sum),
                    Some((data, progress)),
                )
                .await?;
            match tus::on_patch(reply.status, reply.h()) {
                Step::Offset { offset, expires } => {
                    up.t.server_says(offset).map_err(|e| lie(run, &up, e))?;
                    if expires.is_some() {
                        up.expires = expires;
                    }
                    checksum_failures = 0;
                }
                Step::Conflict => {
                    if !head(run, &mut up).await? {
                        gone = true;
                        break;
                    }
                    continue;
                }
                Step::ChecksumMismatch => {
                    checksum_failures += 1;
                    if checksum_failures > MAX_CHECKSUM_RETRIES {
                        return Err(step_error(
                            Some(&reply),
                            &Failure::ChecksumsFailed(checksum_failures),
                            true,
                        ));
                    }
                    continue;
                }
                Step::Gone => {
                    gone = true;
                    break;
                }
                other => return Err(stop(&reply, other)),
            }
            run.acked(up.state());
        }
        if gone {
            continue;
        }
        return Ok(SendDone {
            protocol: Protocol::Tus,
            bytes: total,
            reply_url: None,
            state: up.state(),
        });
    }
}

/// HEAD of the upload: moves the tracker to the server's offset; `false` when the upload is
/// gone.
async fn head(run: &Run<'_>, up: &mut Upload) -> Result<bool, FetchError> {
    let reply = run
        .w
        .exchange("HEAD", &up.url, &tus::plain_headers(), None)
        .await?;
    match tus::on_head(reply.status, reply.h(), up.t.total) {
        Step::Offset { offset, expires } => {
            up.t.server_says(offset).map_err(|e| lie(run, up, e))?;
            if expires.is_some() {
                up.expires = expires;
            }
            run.acked(up.state());
            Ok(true)
        }
        Step::Gone => Ok(false),
        other => Err(stop(&reply, other)),
    }
}

/// The creation POST, then waits for the caller's commit.
async fn create(run: &Run<'_>, total: u64) -> Result<Upload, FetchError> {
    let w = &run.w;
    let headers = tus::creation_headers(total, run.req.content_name.as_deref());
    let reply = w.exchange("POST", &w.start, &headers, None).await?;
    match tus::on_create(reply.status, reply.h(), &w.start) {
        Step::Created(url) => {
            let up = Upload {
                url,
                t: Tracker::fresh(total),
                expires: None,
            };
            run.created(up.state()).await?;
            Ok(up)
        }
        other => Err(stop(&reply, other)),
    }
}

/// A server that claims bytes it cannot have: its upload is terminated (best effort) and the
/// send fails.
fn lie(run: &Run<'_>, up: &Upload, e: OffsetError) -> FetchError {
    if !e.transient() {
        let client = run.w.client.clone();
        let target = run.req.target.clone();
        let url = up.url.to_string();
        tokio::spawn(async move {
            let cancel = tokio_util::sync::CancellationToken::new();
            if let Ok(w) = Wire::new(&client, &target, Duration::from_secs(60), &cancel) {
                let _ = terminate(&w, &url).await;
            }
        });
    }
    answer_error(
        None,
        e.transient(),
        ErrorContext::RemoteFile,
        format!("tus upload server: {e}"),
    )
}

/// DELETE of the upload when the server offers termination.
pub(crate) async fn terminate(w: &Wire<'_>, upload_url: &str) -> Result<(), FetchError> {
    let url = Url::parse(upload_url)
        .map_err(|e| FetchError::invalid_request(format!("bad stored tus upload URL: {e}")))?;
    let offered = w
        .tus_options(&w.start)
        .await?
        .is_some_and(|c| c.has("termination"));
    if !offered {
        return Ok(());
    }
    let reply = w
        .exchange("DELETE", &url, &tus::plain_headers(), None)
        .await?;
    match tus::on_delete(reply.status) {
        Step::Terminated => Ok(()),
        other => Err(stop(&reply, other)),
    }
}
