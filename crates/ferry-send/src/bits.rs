//! The BITS Upload Protocol client: Create-Session (committed before any byte), Fragments
//! from the acknowledged offset, Close-Session; resume with Ping then the next fragment. What
//! to do after each answer is `ferry_upload_proto::bits_client`'s; this module sends it.

use std::time::Duration;

use ferry_fetch::FetchError;
use ferry_proto::ErrorContext;
use ferry_upload_proto::FragmentRange;
use ferry_upload_proto::bits_client::{
    self, Failure, MAX_NEW_SESSIONS, MIN_FRAGMENT, Request, Step,
};
use ferry_upload_proto::offset::{OffsetError, Tracker};
use tokio::time::Instant;
use url::Url;

use crate::wire::{Reply, Wire, answer_error};
use crate::{Protocol, Run, SendDone, ServerState};

/// A session in use.
struct Session {
    id: String,
    host_id: Option<String>,
    /// Where packets go: the destination, or its `BITS-Host-Id` host.
    url: Url,
    /// Seconds without progress on the Host-Id host before falling back to the destination.
    fallback: Option<Duration>,
    t: Tracker,
    reply_url: Option<String>,
}

impl Session {
    fn state(&self) -> ServerState {
        ServerState::Bits {
            session: self.id.clone(),
            acked: self.t.acked,
            host_id: self.host_id.clone(),
            reply_url: self.reply_url.clone(),
        }
    }
}

fn packet_url(w: &Wire<'_>, host_id: Option<&str>) -> Url {
    host_id
        .and_then(|h| bits_client::host_id_url(&w.start, h))
        .unwrap_or_else(|| w.start.clone())
}

/// The error for a refusing [`Step`].
fn step_error(reply: &Reply, f: &Failure, transient: bool) -> FetchError {
    let context = match f {
        Failure::Application { .. } => ErrorContext::RemoteApplication,
        _ => ErrorContext::RemoteFile,
    };
    answer_error(Some(reply), transient, context, f.to_string())
}

fn offset_error(e: OffsetError) -> FetchError {
    answer_error(
        None,
        e.transient(),
        ErrorContext::RemoteFile,
        format!("BITS upload server: {e}"),
    )
}

pub(crate) async fn send(
    run: &Run<'_>,
    resume: Option<ServerState>,
) -> Result<SendDone, FetchError> {
    let w = &run.w;
    let total = run.src.size();
    let name = run.req.content_name.as_deref();
    let mut fragment = run.req.fragment_size.max(MIN_FRAGMENT);
    let mut new_sessions = 0u32;
    let mut cur: Option<Session> = None;
    if let Some(ServerState::Bits {
        session,
        acked,
        host_id,
        reply_url,
    }) = resume
    {
        let url = packet_url(w, host_id.as_deref());
        // Windows pings whenever an interrupted session resumes.
        let (reply, a) = w.bits(&url, &Request::Ping, None, None).await?;
        match bits_client::on_answer(&Request::Ping, &a, fragment, total) {
            Step::Ended => {}
            Step::Transient(f) => return Err(step_error(&reply, &f, true)),
            Step::Fatal(f) => return Err(step_error(&reply, &f, false)),
            _ => {}
        }
        let mut t = Tracker::resumed(total, acked);
        if run.req.want_reply && reply_url.is_none() && t.complete() && total > 0 {
            // The reply URL was not recorded: the server answers a repeated final fragment
            // with the same Ack.
            t.acked = total - 1;
        }
        cur = Some(Session {
            id: session,
            host_id,
            url,
            fallback: None,
            t,
            reply_url,
        });
    }
    let mut last_progress = Instant::now();
    loop {
        let mut s = match cur.take() {
            Some(s) => s,
            None => {
                new_sessions += 1;
                if new_sessions > MAX_NEW_SESSIONS {
                    return Err(answer_error(
                        None,
                        false,
                        ErrorContext::RemoteFile,
                        Failure::SessionsLost(new_sessions - 1).to_string(),
                    ));
                }
                create(run, fragment, total).await?
            }
        };
        // Fragments until every byte is acknowledged.
        let mut reply_url = s.reply_url.clone();
        let mut lost = false;
        let mut fell_back = false;
        while let Some((first, end)) = s.t.next(fragment) {
            let range = FragmentRange {
                first,
                last: end - 1,
                total,
            };
            let len = usize::try_from(end - first).unwrap_or(usize::MAX);
            let (data, _) = run.src.read(first, len, false).await?;
            s.t.sending(end);
            let req = Request::Fragment {
                session: s.id.clone(),
                range,
            };
            let progress = run.progress(first);
            let sent = w.bits(&s.url, &req, name, Some((data, progress))).await;
            let (reply, a) = match sent {
                Ok(r) => r,
                Err(e) => {
                    // A Host-Id host that makes no progress: back to the destination (which
                    // then most likely knows no session and starts a new one).
                    if let Some(fb) = s.fallback
                        && e.transient
                        && last_progress.elapsed() >= fb
                    {
                        s.url = w.start.clone();
                        s.host_id = None;
                        s.fallback = None;
                        fell_back = true;
                        break;
                    }
                    return Err(e);
                }
            };
            match bits_client::on_answer(&req, &a, fragment, total) {
                Step::Continue { offset } => {
                    s.t.server_says(offset).map_err(|e| lie(run, &s, e))?;
                }
                Step::Complete { reply_url: r } => {
                    s.t.server_says(total).map_err(|e| lie(run, &s, e))?;
                    reply_url = r;
                }
                Step::NewSession => {
                    lost = true;
                    break;
                }
                Step::Shrink { fragment: f } => {
                    fragment = f;
                    continue;
                }
                Step::Transient(f) => return Err(step_error(&reply, &f, true)),
                Step::Fatal(f) => return Err(step_error(&reply, &f, false)),
                Step::Session { .. } | Step::Ended => {
                    return Err(step_error(
                        &reply,
                        &Failure::NotBits("an unexpected Ack to a fragment".into()),
                        false,
                    ));
                }
            }
            last_progress = Instant::now();
            if run.req.want_reply {
                s.reply_url = reply_url.clone();
            }
            run.acked(s.state());
        }
        if fell_back {
            // The Host-Id host gave way to the destination: the session goes on there.
            cur = Some(s);
            continue;
        }
        if lost {
            // The server forgot the session: a new one, from byte zero.
            continue;
        }
        if run.req.want_reply {
            let Some(r) = reply_url else {
                return Err(answer_error(
                    None,
                    false,
                    ErrorContext::RemoteFile,
                    Failure::NoReply.to_string(),
                ));
            };
            let resolved = bits_client::resolve_reply_url(&w.start, &r)
                .map_err(|f| answer_error(None, false, ErrorContext::RemoteFile, f.to_string()))?;
            s.reply_url = Some(r);
            return Ok(SendDone {
                protocol: Protocol::Bits,
                bytes: total,
                reply_url: Some(resolved.to_string()),
                state: s.state(),
            });
        }
        let req = Request::CloseSession {
            session: s.id.clone(),
        };
        let (reply, a) = w.bits(&s.url, &req, None, None).await?;
        match bits_client::on_answer(&req, &a, fragment, total) {
            Step::Ended => {
                return Ok(SendDone {
                    protocol: Protocol::Bits,
                    bytes: total,
                    reply_url: None,
                    state: s.state(),
                });
            }
            Step::NewSession => continue,
            Step::Transient(f) => return Err(step_error(&reply, &f, true)),
            Step::Fatal(f) => return Err(step_error(&reply, &f, false)),
            _ => {
                return Err(step_error(
                    &reply,
                    &Failure::NotBits("an unexpected Ack to Close-Session".into()),
                    false,
                ));
            }
        }
    }
}

/// A server that claims bytes it cannot have holds something that is not the file: the
/// session is cancelled (best effort) so nothing lands, and the upload fails.
fn lie(run: &Run<'_>, s: &Session, e: OffsetError) -> FetchError {
    if !e.transient() {
        let client = run.w.client.clone();
        let target = run.req.target.clone();
        let id = s.id.clone();
        let host = s.host_id.clone();
        tokio::spawn(async move {
            let token = tokio_util::sync::CancellationToken::new();
            if let Ok(w) = Wire::new(&client, &target, Duration::from_secs(60), &token) {
                let _ = cancel(&w, &id, host.as_deref()).await;
            }
        });
    }
    offset_error(e)
}

/// Create-Session, then waits for the caller's commit.
async fn create(run: &Run<'_>, fragment: u64, total: u64) -> Result<Session, FetchError> {
    let w = &run.w;
    let name = run.req.content_name.as_deref();
    let (reply, a) = w
        .bits(&w.start, &Request::CreateSession, name, None)
        .await?;
    match bits_client::on_answer(&Request::CreateSession, &a, fragment, total) {
        Step::Session {
            id,
            host_id,
            host_id_fallback_secs,
        } => {
            let s = Session {
                url: packet_url(w, host_id.as_deref()),
                id,
                host_id,
                fallback: host_id_fallback_secs.map(Duration::from_secs),
                t: Tracker::fresh(total),
                reply_url: None,
            };
            run.created(s.state()).await?;
            if s.host_id.is_some() {
                // Windows pings a Host-Id host before its first fragment.
                let _ = w.bits(&s.url, &Request::Ping, None, None).await?;
            }
            Ok(s)
        }
        Step::Transient(f) => Err(step_error(&reply, &f, true)),
        Step::Fatal(f) => Err(step_error(&reply, &f, false)),
        _ => Err(step_error(
            &reply,
            &Failure::NotBits("an unexpected Ack to Create-Session".into()),
            false,
        )),
    }
}

async fn end_session(w: &Wire<'_>, req: Request, host_id: Option<&str>) -> Result<(), FetchError> {
    let url = packet_url(w, host_id);
    let (reply, a) = w.bits(&url, &req, None, None).await?;
    match bits_client::on_answer(&req, &a, MIN_FRAGMENT, 0) {
        Step::Ended => Ok(()),
        Step::NewSession => Err(answer_error(
            Some(&reply),
            false,
            ErrorContext::RemoteFile,
            "the server no longer knows the upload session (BG_E_SESSION_NOT_FOUND)".into(),
        )),
        Step::Transient(f) => Err(step_error(&reply, &f, true)),
        Step::Fatal(f) => Err(step_error(&reply, &f, false)),
        _ => Err(step_error(
            &reply,
            &Failure::NotBits("an unexpected Ack".into()),
            false,
        )),
    }
}

/// Close-Session for `id`.
pub(crate) async fn close(w: &Wire<'_>, id: &str, host_id: Option<&str>) -> Result<(), FetchError> {
    end_session(
        w,
        Request::CloseSession {
            session: id.to_owned(),
        },
        host_id,
    )
    .await
}

/// Cancel-Session for `id` (a session the server does not know is cancelled already).
pub(crate) async fn cancel(
    w: &Wire<'_>,
    id: &str,
    host_id: Option<&str>,
) -> Result<(), FetchError> {
    end_session(
        w,
        Request::CancelSession {
            session: id.to_owned(),
        },
        host_id,
    )
    .await
}
