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
use ferry_proto::method::{self, Method};
use ferry_proto::params::Ack;
use ferry_proto::{ErrorCode, ProtoError};
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
pub struct Answer<T> {
    value: T,
    commit: Option<Commit<()>>,
}

/// What the handler of method `M` returns: `M`'s result type, so a handler cannot answer
/// anything but what the method promises.
pub type ApiResult<M> = Result<Answer<<M as Method>::Result>, ProtoError>;

/// An answer encoded for the wire.
type Encoded = Result<Answer<Value>, ProtoError>;

impl<T: Serialize> Answer<T> {
    /// An answer that needs no commit.
    pub fn now(value: T) -> Result<Answer<T>, ProtoError> {
        Ok(Answer {
            value,
            commit: None,
        })
    }

    /// An answer sent once `commit` is durable.
    pub fn after(value: T, commit: Commit<()>) -> Result<Answer<T>, ProtoError> {
        Ok(Answer {
            value,
            commit: Some(commit),
        })
    }

    fn encode(self) -> Encoded {
        let value = serde_json::to_value(self.value).map_err(|e| {
            ProtoError::kind(
                ferry_proto::ErrorKind::Internal,
                format!("cannot encode the answer: {e}"),
            )
        })?;
        Ok(Answer {
            value,
            commit: self.commit,
        })
    }
}

/// Decodes the params of `M`.
fn params_of<M: Method>(params: Option<Value>) -> Result<M::Params, ProtoError> {
    decode_params(params)
}

/// Encodes the answer of `M`.
fn encode<M: Method>(answer: ApiResult<M>) -> Encoded {
    answer?.encode()
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

    async fn dispatch(&self, peer: Arc<Peer>, name: &str, params: Option<Value>) -> Encoded {
        let d = &self.daemon;
        let c = &self.caller;
        // Each arm names its method type once: the params are decoded as that method's params
        // and the handler must answer that method's result.
        macro_rules! serve {
            ($m:ty, |$p:ident| $handler:expr) => {{
                let $p = params_of::<$m>(params)?;
                let answer: ApiResult<$m> = $handler;
                encode::<$m>(answer)
            }};
        }
        match name {
            method::Hello::NAME => serve!(method::Hello, |_p| hello(d, c)),
            method::JobCreate::NAME => serve!(method::JobCreate, |p| jobs::create(d, c, p).await),
            method::JobAddFiles::NAME => {
                serve!(method::JobAddFiles, |p| jobs::add_files(d, c, p).await)
            }
            method::JobGet::NAME => serve!(method::JobGet, |p| jobs::get(d, c, p).await),
            method::JobFiles::NAME => serve!(method::JobFiles, |p| jobs::files(d, c, p).await),
            method::JobGetError::NAME => {
                serve!(method::JobGetError, |p| jobs::get_error(d, c, p).await)
            }
            method::JobList::NAME => serve!(method::JobList, |p| jobs::list(d, c, p).await),
            method::JobSet::NAME => serve!(method::JobSet, |p| jobs::set(d, c, p).await),
            method::JobTakeOwnership::NAME => {
                serve!(method::JobTakeOwnership, |p| jobs::take_ownership(d, c, p)
                    .await)
            }
            method::JobSetNotifyInterface::NAME => {
                serve!(method::JobSetNotifyInterface, |p| {
                    jobs::set_notify_interface(d, c, &peer, p).await
                })
            }
            method::JobClearNotifyInterface::NAME => {
                serve!(method::JobClearNotifyInterface, |p| {
                    jobs::clear_notify_interface(d, c, p).await
                })
            }
            method::JobResume::NAME => {
                serve!(method::JobResume, |p| control::resume(d, c, p).await)
            }
            method::JobSuspend::NAME => {
                serve!(method::JobSuspend, |p| control::suspend(d, c, p).await)
            }
            method::JobCancel::NAME => {
                serve!(method::JobCancel, |p| control::cancel(d, c, p).await)
            }
            method::JobComplete::NAME => {
                serve!(method::JobComplete, |p| control::complete(d, c, p).await)
            }
            method::FileSetValidationState::NAME => {
                serve!(method::FileSetValidationState, |p| {
                    control::set_validation(d, c, p).await
                })
            }
            method::FileSetRemoteUrl::NAME => {
                serve!(method::FileSetRemoteUrl, |p| files::set_remote_url(d, c, p)
                    .await)
            }
            method::CacheList::NAME => serve!(method::CacheList, |p| cache::list(d, c, p)),
            method::CacheInfo::NAME => serve!(method::CacheInfo, |p| cache::info(d, c, p)),
            method::CacheDelete::NAME => serve!(method::CacheDelete, |p| cache::delete(d, c, p)),
            method::CacheClear::NAME => serve!(method::CacheClear, |p| cache::clear(d, c, p)),
            method::PeersList::NAME => serve!(method::PeersList, |p| cache::peers(d, c, p)),
            method::DaemonConditions::NAME => {
                serve!(method::DaemonConditions, |p| conditions::status(d, p))
            }
            method::HandlerRegister::NAME => {
                serve!(method::HandlerRegister, |p| handlers::register(d, c, p))
            }
            method::HandlerUnregister::NAME => {
                serve!(method::HandlerUnregister, |p| handlers::unregister(d, c, p))
            }
            method::HandlerList::NAME => serve!(method::HandlerList, |p| handlers::list(d, c, p)),
            method::HandlerAttach::NAME => {
                serve!(method::HandlerAttach, |p| handlers::attach(d, c, &peer, p))
            }
            method::EventsRead::NAME => serve!(method::EventsRead, |p| events::read(d, c, p).await),
            method::EventsFollow::NAME => {
                serve!(method::EventsFollow, |p| self.follow(d, c, peer, p).await)
            }
            method::EventsUnfollow::NAME => serve!(method::EventsUnfollow, |_p| {
                self.stop_following();
                Answer::now(Ack {})
            }),
            other => Err(ProtoError::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!(
                    "unknown method {other:?}; see docs/protocol.md for the methods of protocol 1"
                ),
            )),
        }
    }

    /// `events.follow`: starts (or replaces) this connection's event stream.
    async fn follow(
        &self,
        d: &Arc<Daemon>,
        c: &Caller,
        peer: Arc<Peer>,
        p: ferry_proto::params::EventsFollowParams,
    ) -> ApiResult<method::EventsFollow> {
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
}

/// `ferry.hello`
fn hello(d: &Daemon, c: &Caller) -> ApiResult<method::Hello> {
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
