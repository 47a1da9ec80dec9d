//! The local API: one [`Session`] per connection, dispatching each method to its module.
//!
//! `jobs` creates, reads and edits jobs; `control` moves them (resume, suspend, cancel,
//! complete, validation); `events` serves the event log; `handlers` keeps handler registrations.
//! `files` checks what a caller may add and replaces a file's URL; `cache` administers the peer cache. Every answer that reports a change is sent only after
//! the store committed it.

mod cache;
mod conditions;
mod control;
pub(crate) use control::discard;
mod events;
mod files;
mod handlers;
mod jobs;

use std::sync::{Arc, Mutex};

use ferry_proto::error::decode_params;
use ferry_proto::{ErrorCode, ProtoError, method};
use ferry_rpc::{Handled, Peer, Service};
use ferry_store::Commit;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::daemon::{Caller, Daemon, store_failed};
use crate::limits::{self, UidSlot};

pub use control::{spawn_auto_complete, spawn_drop_empty_staging};
pub use jobs::file_view;

/// The answer to a request: a value, sent after `commit` (if any) is durable.
pub struct Answer {
    value: Value,
    commit: Option<Commit<()>>,
}

/// What every method returns.
pub type ApiResult = Result<Answer, ProtoError>;

impl Answer {
    /// An answer that needs no commit.
    pub fn now(v: impl Serialize) -> ApiResult {
        Ok(Answer {
            value: to_value(v)?,
            commit: None,
        })
    }

    /// An answer sent once `commit` is durable.
    pub fn after(v: impl Serialize, commit: Commit<()>) -> ApiResult {
        Ok(Answer {
            value: to_value(v)?,
            commit: Some(commit),
        })
    }
}

fn to_value(v: impl Serialize) -> Result<Value, ProtoError> {
    serde_json::to_value(v).map_err(|e| {
        ProtoError::kind(
            ferry_proto::ErrorKind::Internal,
            format!("cannot encode the answer: {e}"),
        )
    })
}

/// The connection's event stream: what stops it, and its place among the uid's followers.
struct Follower {
    token: CancellationToken,
    slot: UidSlot,
}

/// One client connection.
pub struct Session {
    daemon: Arc<Daemon>,
    caller: Caller,
    follower: Mutex<Option<Follower>>,
}

impl Session {
    /// A session for a caller identified by the kernel.
    pub fn new(daemon: Arc<Daemon>, caller: Caller) -> Session {
        Session {
            daemon,
            caller,
            follower: Mutex::new(None),
        }
    }

    async fn dispatch(&self, peer: Arc<Peer>, method: &str, params: Option<Value>) -> ApiResult {
        let d = &self.daemon;
        let c = &self.caller;
        match method {
            method::HELLO => {
                let _: ferry_proto::params::HelloParams = decode_params(params)?;
                Answer::now(ferry_proto::params::HelloResult {
                    protocol: ferry_proto::PROTOCOL_VERSION,
                    server: format!("ferryd {}", env!("CARGO_PKG_VERSION")),
                    uid: c.uid,
                    mode: d.opts().mode.as_str().into(),
                    pid: Some(std::process::id()),
                    uptime_s: Some(d.mono().now() / 1000),
                    socket: Some(d.opts().socket.display().to_string()),
                    state_dir: Some(d.opts().state_dir.display().to_string()),
                    log: Some(
                        d.opts()
                            .log_file
                            .as_ref()
                            .map_or_else(|| "stderr".to_owned(), |p| p.display().to_string()),
                    ),
                })
            }
            method::JOB_CREATE => jobs::create(d, c, decode_params(params)?).await,
            method::JOB_ADD_FILES => jobs::add_files(d, c, decode_params(params)?).await,
            method::JOB_GET => jobs::get(d, c, decode_params(params)?).await,
            method::JOB_FILES => jobs::files(d, c, decode_params(params)?).await,
            method::JOB_GET_ERROR => jobs::get_error(d, c, decode_params(params)?).await,
            method::JOB_LIST => jobs::list(d, c, decode_params(params)?).await,
            method::JOB_SET => jobs::set(d, c, decode_params(params)?).await,
            method::JOB_TAKE_OWNERSHIP => jobs::take_ownership(d, c, decode_params(params)?).await,
            method::JOB_SET_NOTIFY_INTERFACE => {
                jobs::set_notify_interface(d, c, &peer, decode_params(params)?).await
            }
            method::JOB_CLEAR_NOTIFY_INTERFACE => {
                jobs::clear_notify_interface(d, c, decode_params(params)?).await
            }
            method::JOB_RESUME => control::resume(d, c, decode_params(params)?).await,
            method::JOB_SUSPEND => control::suspend(d, c, decode_params(params)?).await,
            method::JOB_CANCEL => control::cancel(d, c, decode_params(params)?).await,
            method::JOB_COMPLETE => control::complete(d, c, decode_params(params)?).await,
            method::FILE_SET_VALIDATION_STATE => {
                control::set_validation(d, c, decode_params(params)?).await
            }
            method::FILE_SET_REMOTE_URL => {
                files::set_remote_url(d, c, decode_params(params)?).await
            }
            method::CACHE_LIST => cache::list(d, c, decode_params(params)?),
            method::CACHE_INFO => cache::info(d, c, decode_params(params)?),
            method::CACHE_DELETE => cache::delete(d, c, decode_params(params)?),
            method::CACHE_CLEAR => cache::clear(d, c, decode_params(params)?),
            method::PEERS_LIST => cache::peers(d, c, decode_params(params)?),
            method::DAEMON_CONDITIONS => conditions::status(d, decode_params(params)?),
            method::HANDLER_REGISTER => handlers::register(d, c, decode_params(params)?),
            method::HANDLER_UNREGISTER => handlers::unregister(d, c, decode_params(params)?),
            method::HANDLER_LIST => handlers::list(d, c, decode_params(params)?),
            method::HANDLER_ATTACH => handlers::attach(d, c, &peer, decode_params(params)?),
            method::EVENTS_READ => events::read(d, c, decode_params(params)?).await,
            method::EVENTS_FOLLOW => {
                let p: ferry_proto::params::EventsFollowParams = decode_params(params)?;
                if let Some(id) = &p.job_id {
                    // Read a cold job before taking the follower's lock (see `Daemon::load`).
                    d.load(id).await?;
                }
                let mut current = self.follower.lock().unwrap_or_else(|p| p.into_inner());
                // Following again replaces this connection's stream and keeps its slot.
                let slot = match current.take() {
                    Some(old) => {
                        old.token.cancel();
                        old.slot
                    }
                    None => self.follower_slot()?,
                };
                let token = CancellationToken::new();
                let answer = events::follow(d, c, peer, p, token.clone())?;
                *current = Some(Follower { token, slot });
                Ok(answer)
            }
            method::EVENTS_UNFOLLOW => {
                let _: ferry_proto::params::Empty = decode_params(params)?;
                self.stop_following();
                Answer::now(serde_json::json!({}))
            }
            other => Err(ProtoError::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!(
                    "unknown method {other:?}; see docs/protocol.md for the methods of protocol 1"
                ),
            )),
        }
    }
}

impl Session {
    /// Ends the connection's event stream, if it follows one (`events.unfollow`, or the
    /// connection closed).
    fn stop_following(&self) {
        let follower = self
            .follower
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(f) = follower {
            f.token.cancel();
        }
    }

    /// A place among the caller's followers, or the `followers_per_user` refusal.
    fn follower_slot(&self) -> Result<UidSlot, ProtoError> {
        let limit = self.daemon.opts().limits.followers_per_user;
        let followers = self.daemon.lock().followers().clone();
        followers.take(self.caller.uid, limit).ok_or_else(|| {
            limits::exceeded(
                "followers_per_user",
                limit,
                format!(
                    "user {} already follows events on {limit} connections; \
                     unfollow (events.unfollow) or close some",
                    self.caller.uid
                ),
            )
        })
    }
}

/// The [`Service`] for one connection: a shared handle on its [`Session`].
pub struct Connection(pub Arc<Session>);

impl Service for Connection {
    fn request(
        &self,
        peer: Arc<Peer>,
        method: String,
        params: Option<Value>,
    ) -> BoxFuture<'static, Handled> {
        let session = self.0.clone();
        Box::pin(async move {
            match session.dispatch(peer, &method, params).await {
                Err(e) => Handled::Reply(Err(e)),
                Ok(Answer {
                    value,
                    commit: None,
                }) => Handled::Reply(Ok(value)),
                Ok(Answer {
                    value,
                    commit: Some(c),
                }) => Handled::Deferred(Box::pin(async move {
                    c.wait().await.map_err(store_failed)?;
                    Ok(value)
                })),
            }
        })
    }

    fn closed(&self, peer: Arc<Peer>) {
        if peer.overflowed() {
            let limit = self.0.daemon.opts().limits.unsent_reply_bytes;
            tracing::warn!(
                peer = peer.id(),
                uid = self.0.caller.uid,
                limit,
                "closed a connection that does not read its answers: more than \
                 [limits] unsent_reply_bytes were waiting for it, or a quarter of it for {} s",
                limits::STALL_PATIENCE.as_secs()
            );
        }
        self.0.stop_following();
        jobs::connection_closed(&self.0.daemon, peer.id());
        self.0.daemon.lock().handlers_mut().detach(peer.id());
    }
}
