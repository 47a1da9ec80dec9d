//! The Rust client library for Ferry.
//!
//! [`Client`] connects to the daemon (`FERRY_SOCKET`, else the per-user socket, else the system
//! socket; see [`connect`]), optionally starting a per-user `ferryd` when none answers
//! ([`ConnectOptions::autostart`], the same code the `ferry` CLI uses), and exposes every method
//! of protocol 1 as a typed async call. It is a thin layer over `ferry-rpc` and `ferry-proto`:
//! no daemon logic lives here.
//!
//! # Quickstart
//!
//! Download two files in the background: connect (starting a daemon if none runs), create a
//! job with its files, resume it (every job starts suspended), wait until it settles, and
//! complete it, which moves the files to their names (until then they are hidden `.part`
//! files).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use ferry_client::proto::params::CreateParams;
//! use ferry_client::proto::{FileSpec, JobState};
//! use ferry_client::{Client, ClientError, ConnectOptions, Until};
//!
//! # async fn example() -> Result<(), ClientError> {
//! let client = Client::connect_with(&ConnectOptions::new().autostart(true)).await?;
//! let file = |url: &str, path: &str| FileSpec {
//!     remote_url: url.into(),
//!     local_path: path.into(),
//!     sha256: None,
//!     ranges: None,
//! };
//! let job_id = client
//!     .create(CreateParams {
//!         display_name: "nightly update".into(),
//!         files: Some(vec![file("https://example.com/a.tar", "/var/tmp/a.tar")]),
//!         ..CreateParams::default()
//!     })
//!     .await?;
//! client
//!     .add_files(&job_id, vec![file("https://example.com/b.tar", "/var/tmp/b.tar")])
//!     .await?;
//! client.resume(&job_id).await?;
//! // Driven by the job's events, not by polling; `ClientError::Timeout` if it takes longer.
//! let job = client
//!     .wait_for(&job_id, Until::Settled, Duration::from_secs(3600))
//!     .await?;
//! match job.state {
//!     JobState::Transferred => {
//!         client.complete(&job_id).await?;
//!     }
//!     JobState::Error => {
//!         let why = client.get_error(&job_id).await?;
//!         eprintln!("download failed: {why:?}; `client.resume` retries it");
//!     }
//!     other => eprintln!("the job ended {other}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Notifications
//!
//! A *live callback* is an object on this connection that the daemon calls when the job is
//! transferred or fails (BITS `SetNotifyInterface`): implement [`Callback`] and register it
//! with [`Client::set_notify_interface`]. It lasts as long as the connection; a callback that
//! returns an error is retried later with the same `delivery_id`
//! ([`CallbackError::CODE`] is what the daemon sees).
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use ferry_client::proto::Job;
//! use ferry_client::{Callback, CallbackContext, CallbackError, CallbackFuture, Client};
//!
//! struct CompleteWhenDone;
//!
//! impl Callback for CompleteWhenDone {
//!     fn job_transferred(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
//!         Box::pin(async move {
//!             ctx.client.complete(&job.job_id).await?;
//!             Ok::<(), CallbackError>(())
//!         })
//!     }
//! }
//!
//! # async fn example(client: Client, job_id: String) -> Result<(), ferry_client::ClientError> {
//! client.set_notify_interface(&job_id, Arc::new(CompleteWhenDone)).await?;
//! client.resume(&job_id).await?;
//! client.closed().await; // the callback is served while the connection stays open
//! # Ok(())
//! # }
//! ```
//!
//! A *handler* is a program the daemon starts on demand when a notification is owed and no
//! connection serves it (BITS notification CLSID), so the application need not be running:
//! register it once with [`Client::register_handler`], name it in the job's `notify_handler`
//! (`job.set`), and have the program serve with [`handler::serve`]:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use ferry_client::proto::Job;
//! use ferry_client::{Callback, CallbackContext, CallbackError, CallbackFuture, handler};
//!
//! struct Installer;
//!
//! impl Callback for Installer {
//!     fn job_transferred(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
//!         Box::pin(async move {
//!             ctx.client.complete(&job.job_id).await?;
//!             Ok::<(), CallbackError>(())
//!         })
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), ferry_client::ClientError> {
//!     // Started by ferryd with FERRY_SOCKET, FERRY_HANDLER and FERRY_ACTIVATION set; serves
//!     // the owed callbacks, then returns after 5 s without one.
//!     handler::serve(Arc::new(Installer)).await
//! }
//! ```
//!
//! A job may also name a *command line* (`notify_cmdline`, an argv whose `argv[0]` is an
//! absolute path) that the daemon runs, without a shell, as the job's owner when the job is
//! transferred or fails. Its environment is cleared and then holds only:
//!
//! | Variable | Value |
//! |---|---|
//! | `FERRY_EVENT` | `transferred` or `error` |
//! | `FERRY_JOB_ID` | the job's id |
//! | `FERRY_SOCKET` | the daemon's socket, to call back (e.g. `ferry complete "$FERRY_JOB_ID"`) |
//! | `PATH` | `/usr/local/bin:/usr/bin:/bin` |
//! | `HOME`, `USER`, `LOGNAME` | the owner's, from the password database (a per-user daemon passes its own `HOME`) |
//! | `LANG`, `XDG_RUNTIME_DIR`, `XDG_STATE_HOME` | the daemon's own, when it runs as the job's owner (per-user mode) |
//!
//! Its stdin, stdout and stderr are `/dev/null`. Exit status 0 means handled; see
//! docs/protocol.md ("Notify command line") for retries and the time limit. A handler program
//! gets `FERRY_SOCKET`, `FERRY_HANDLER` and `FERRY_ACTIVATION` instead of `FERRY_EVENT` and
//! `FERRY_JOB_ID` ([`handler::ENV_SOCKET`] and the rest).

pub mod autostart;
pub mod callback;
pub mod connect;
mod error;
pub mod handler;
pub mod wait;

pub use autostart::ConnectOptions;
pub use callback::{Callback, CallbackContext, CallbackError, CallbackFuture};
pub use error::ClientError;
pub use ferry_proto as proto;
pub use wait::Until;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::cache::{
    CacheDeleteParams, CacheDeleteResult, CacheInfo, CacheListParams, CacheListResult,
    PeersListResult,
};
use ferry_proto::method::{self, Method};
use ferry_proto::params::*;
use ferry_proto::{File, Job};
use ferry_rpc::{CallError, Peer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use callback::{Inbound, Registry};

/// Encoded bytes of file specs per `job.create`/`job.add_files` request, well under the
/// protocol's 1 MiB line limit.
const FILES_BYTES_PER_REQUEST: usize = 512 * 1024;

/// Takes the next batch of file specs that fits one request (at least one spec).
fn next_batch(rest: &mut Vec<ferry_proto::FileSpec>) -> Vec<ferry_proto::FileSpec> {
    let mut bytes = 0;
    let mut n = 0;
    for spec in rest.iter() {
        // URL + path + JSON punctuation; ranges add a little more each.
        let size = spec.remote_url.len()
            + spec.local_path.len()
            + spec.sha256.as_ref().map_or(0, String::len)
            + spec.ranges.as_ref().map_or(0, |r| r.len() * 48)
            + 64;
        if n > 0 && bytes + size > FILES_BYTES_PER_REQUEST {
            break;
        }
        bytes += size;
        n += 1;
    }
    rest.drain(..n).collect()
}

/// Files per `job.files` page.
const FILES_PAGE: u64 = 2000;

/// The longest answer line this client accepts from the daemon.
const MAX_ANSWER_LINE: usize = 256 * 1024 * 1024;

/// A connection to `ferryd`. Cloning is cheap and shares the connection; it closes when the
/// last clone is dropped (or on [`Client::close`]).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// The shared state of a connection.
pub(crate) struct Inner {
    peer: Arc<Peer>,
    socket: PathBuf,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<ferry_proto::Event>>,
    registry: Arc<Registry>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Without this the connection would live on until the daemon closed it: ferry-rpc's
        // reader task holds the peer.
        self.peer.close();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.inner.socket)
            .field("peer", &self.inner.peer.id())
            .finish()
    }
}

impl Client {
    /// Connects to the daemon at `socket`. Before a byte is sent, the socket's directory (for
    /// the discovered per-user and system sockets) and the listener's uid (`SO_PEERCRED`, for
    /// every socket) must show that no other user stands in for the daemon
    /// ([`ClientError::UnsafeSocket`] otherwise).
    pub async fn connect_to(socket: &Path) -> Result<Client, ClientError> {
        connect::vet_socket_dir(socket)?;
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
        connect::vet_listener(socket, &stream)?;
        let (r, w) = stream.into_split();
        Ok(Client::from_parts(r, w, socket.to_path_buf()))
    }

    /// Connects to the daemon found by [`connect::find_socket`].
    pub async fn connect() -> Result<Client, ClientError> {
        let socket = connect::find_socket()?;
        Client::connect_to(&socket).await
    }

    /// A client over an already connected stream (e.g. one end of `UnixStream::pair` in tests);
    /// [`Client::socket`] is then empty. Must be called within a Tokio runtime.
    pub fn from_stream<S>(stream: S) -> Client
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(stream);
        Client::from_parts(r, w, PathBuf::new())
    }

    fn from_parts<R, W>(r: R, w: W, socket: PathBuf) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let registry = Arc::new(Registry::new());
        let inner = Arc::new_cyclic(|weak| {
            let inbound = Inbound {
                events: tx,
                registry: registry.clone(),
                client: weak.clone(),
            };
            // The reader task ends by itself once the connection closes.
            let (peer, _task) =
                ferry_rpc::serve_with_max_line(r, w, Arc::new(inbound), MAX_ANSWER_LINE);
            Inner {
                peer,
                socket,
                events: tokio::sync::Mutex::new(rx),
                registry,
            }
        });
        Client { inner }
    }

    /// The socket this client is connected to.
    pub fn socket(&self) -> &Path {
        &self.inner.socket
    }

    /// The underlying peer (for raw calls).
    pub fn peer(&self) -> &Arc<Peer> {
        &self.inner.peer
    }

    /// Closes the connection for every clone: pending calls fail, the daemon forgets this
    /// connection as a callback target or handler.
    pub fn close(&self) {
        self.inner.peer.close();
    }

    /// Whether the connection has closed (either side).
    pub fn is_closed(&self) -> bool {
        self.inner.peer.is_closed()
    }

    /// Resolves once the connection has closed.
    pub async fn closed(&self) {
        self.inner.peer.closed().await;
    }

    /// Calls method `M`: its params and result types are `M`'s, its name `M::NAME`
    /// (`client.call::<method::JobGet>(JobIdParams { job_id })`). Every typed call of this
    /// client goes through here.
    pub async fn call<M: Method>(&self, params: M::Params) -> Result<M::Result, ClientError> {
        self.call_raw(M::NAME, params).await
    }

    /// [`Client::call`] with a deadline: a daemon that does not answer within `timeout` is
    /// reported as [`ClientError::Timeout`] (not as a closed connection, which it is not).
    pub async fn call_timeout<M: Method>(
        &self,
        params: M::Params,
        timeout: Duration,
    ) -> Result<M::Result, ClientError> {
        let params =
            serde_json::to_value(params).map_err(|e| ClientError::Decode(e.to_string()))?;
        let answer = self.inner.peer.call_timeout(M::NAME, params, timeout).await;
        decode_answer(M::NAME, answer)
    }

    /// Calls method `M` and returns its result as the daemon sent it, for callers that show it
    /// verbatim (with fields a newer daemon added) and decode it themselves.
    pub async fn call_json<M: Method>(&self, params: M::Params) -> Result<Value, ClientError> {
        self.call_raw(M::NAME, params).await
    }

    /// Calls a method by name with any params: for methods this crate does not know (a newer
    /// daemon's) and for tests that send what no typed call would.
    pub async fn call_raw<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: P,
    ) -> Result<R, ClientError> {
        let params =
            serde_json::to_value(params).map_err(|e| ClientError::Decode(e.to_string()))?;
        let answer = self.inner.peer.call(method, params).await;
        decode_answer(method, answer)
    }

    /// `ferry.hello`
    pub async fn hello(&self) -> Result<HelloResult, ClientError> {
        self.call::<method::Hello>(HelloParams {
            client: Some("ferry-client".into()),
        })
        .await
    }

    /// `job.create`
    pub async fn create(&self, mut p: CreateParams) -> Result<String, ClientError> {
        // A request line may not exceed 1 MiB: many files go in batches, the first with the
        // create and the rest through `job.add_files`. A batch that fails cancels the job, so
        // no half-made job is left behind.
        let mut rest = p.files.take().unwrap_or_default();
        let first = next_batch(&mut rest);
        p.files = (!first.is_empty()).then_some(first);
        let r: CreateResult = self.call::<method::JobCreate>(p).await?;
        while !rest.is_empty() {
            let batch = next_batch(&mut rest);
            if let Err(e) = self.add_files(&r.job_id, batch).await {
                let _ = self.cancel(&r.job_id).await;
                return Err(e);
            }
        }
        Ok(r.job_id)
    }

    /// `job.add_files`
    pub async fn add_files(
        &self,
        job_id: &str,
        files: Vec<ferry_proto::FileSpec>,
    ) -> Result<AddFilesResult, ClientError> {
        self.call::<method::JobAddFiles>(AddFilesParams {
            job_id: job_id.into(),
            files,
        })
        .await
    }

    fn id(job_id: &str) -> JobIdParams {
        JobIdParams {
            job_id: job_id.into(),
        }
    }

    /// `job.get`
    pub async fn get(&self, job_id: &str) -> Result<Job, ClientError> {
        self.call::<method::JobGet>(Self::id(job_id)).await
    }

    /// `job.files`
    pub async fn files(&self, job_id: &str) -> Result<Vec<File>, ClientError> {
        // Page through: a job may hold 100 000 files, far more than one answer should carry.
        let mut all = Vec::new();
        let mut from = 0;
        loop {
            let p = FilesParams {
                job_id: job_id.into(),
                from: Some(from),
                limit: Some(FILES_PAGE),
            };
            let r: FilesResult = self.call::<method::JobFiles>(p).await?;
            all.extend(r.files);
            match r.next {
                Some(n) if n > from => from = n,
                _ => return Ok(all),
            }
        }
    }

    /// `job.get_error`
    pub async fn get_error(
        &self,
        job_id: &str,
    ) -> Result<Option<ferry_proto::ErrorInfo>, ClientError> {
        self.call::<method::JobGetError>(Self::id(job_id)).await
    }

    /// `job.list`
    pub async fn list(&self, p: ListParams) -> Result<ListResult, ClientError> {
        self.call::<method::JobList>(p).await
    }

    /// `job.resume`
    pub async fn resume(&self, job_id: &str) -> Result<StateResult, ClientError> {
        self.call::<method::JobResume>(Self::id(job_id)).await
    }

    /// `job.suspend`
    pub async fn suspend(&self, job_id: &str) -> Result<StateResult, ClientError> {
        self.call::<method::JobSuspend>(Self::id(job_id)).await
    }

    /// `job.cancel`
    pub async fn cancel(&self, job_id: &str) -> Result<StateResult, ClientError> {
        self.call::<method::JobCancel>(Self::id(job_id)).await
    }

    /// `job.complete`
    pub async fn complete(&self, job_id: &str) -> Result<CompleteResult, ClientError> {
        self.call::<method::JobComplete>(Self::id(job_id)).await
    }

    /// `job.set`
    pub async fn set(&self, p: SetParams) -> Result<Job, ClientError> {
        self.call::<method::JobSet>(p).await
    }

    /// `job.take_ownership`
    pub async fn take_ownership(&self, job_id: &str) -> Result<Job, ClientError> {
        self.call::<method::JobTakeOwnership>(Self::id(job_id))
            .await
    }

    /// `file.set_validation_state`
    pub async fn set_validation(
        &self,
        job_id: &str,
        file_index: u64,
        valid: bool,
    ) -> Result<File, ClientError> {
        self.call::<method::FileSetValidationState>(ValidationParams {
            job_id: job_id.into(),
            file_index,
            valid,
        })
        .await
    }

    /// `file.set_remote_url`: replaces the URL of a file not transferred yet (BITS
    /// `SetRemoteName`); bytes already here are kept when the new URL serves the same content.
    pub async fn set_remote_url(
        &self,
        job_id: &str,
        file_index: u64,
        remote_url: &str,
    ) -> Result<File, ClientError> {
        self.call::<method::FileSetRemoteUrl>(SetRemoteUrlParams {
            job_id: job_id.into(),
            file_index,
            remote_url: remote_url.into(),
        })
        .await
    }

    /// `events.read`
    pub async fn read_events(&self, p: EventsReadParams) -> Result<EventsReadResult, ClientError> {
        self.call::<method::EventsRead>(p).await
    }

    /// `events.follow`; events then arrive through [`Client::next_event`].
    pub async fn follow_events(&self, p: EventsFollowParams) -> Result<(), ClientError> {
        let _ = self.call::<method::EventsFollow>(p).await?;
        Ok(())
    }

    /// The next followed event; `None` once the connection closed.
    pub async fn next_event(&self) -> Option<ferry_proto::Event> {
        self.inner.events.lock().await.recv().await
    }

    /// `events.unfollow`
    pub async fn unfollow_events(&self) -> Result<(), ClientError> {
        let _ = self.call::<method::EventsUnfollow>(Empty {}).await?;
        Ok(())
    }

    /// Registers `callback` for `job_id` on this connection, then makes the connection the job's
    /// live callback (`job.set_notify_interface`; last caller wins). Registering first means a
    /// notification the daemon sends at once is served. The callback stays registered until
    /// [`Client::clear_notify_interface`] or the connection closes.
    pub async fn set_notify_interface(
        &self,
        job_id: &str,
        callback: Arc<dyn Callback>,
    ) -> Result<(), ClientError> {
        let previous = self.inner.registry.set_job(job_id, callback);
        let r = self
            .call::<method::JobSetNotifyInterface>(Self::id(job_id))
            .await;
        if let Err(e) = r {
            match previous {
                Some(p) => self.inner.registry.set_job(job_id, p),
                None => self.inner.registry.clear_job(job_id),
            };
            return Err(e);
        }
        Ok(())
    }

    /// `job.clear_notify_interface`, then forgets the job's callback here (also when the daemon
    /// refused, e.g. for a job that no longer exists).
    pub async fn clear_notify_interface(&self, job_id: &str) -> Result<(), ClientError> {
        let r = self
            .call::<method::JobClearNotifyInterface>(Self::id(job_id))
            .await;
        self.inner.registry.clear_job(job_id);
        r.map(drop)
    }

    /// Sets (or, with `None`, clears) the callback for jobs that have none of their own on this
    /// connection: a handler's. Set it before [`Client::attach_handler`], since owed
    /// notifications flow as soon as the connection is attached.
    pub fn set_default_callback(&self, callback: Option<Arc<dyn Callback>>) {
        self.inner.registry.set_default(callback);
    }

    /// `handler.register`: `argv[0]` must be an absolute path; `activation_timeout_s` defaults
    /// to 30 s in the daemon.
    pub async fn register_handler(
        &self,
        name: &str,
        argv: Vec<String>,
        activation_timeout_s: Option<u64>,
    ) -> Result<(), ClientError> {
        let _ = self
            .call::<method::HandlerRegister>(HandlerRegisterParams {
                name: name.into(),
                argv,
                activation_timeout_s,
            })
            .await?;
        Ok(())
    }

    /// `handler.unregister`
    pub async fn unregister_handler(&self, name: &str) -> Result<(), ClientError> {
        let _ = self
            .call::<method::HandlerUnregister>(HandlerNameParams { name: name.into() })
            .await?;
        Ok(())
    }

    /// `handler.list`: the caller's registered handlers.
    pub async fn list_handlers(&self) -> Result<Vec<HandlerInfo>, ClientError> {
        let r: HandlerListResult = self.call::<method::HandlerList>(Empty {}).await?;
        Ok(r.handlers)
    }

    /// `handler.attach`: this connection serves the callbacks of every job of the caller whose
    /// `notify_handler` is `name` (and that has no live callback), through the default callback
    /// ([`Client::set_default_callback`]). `token` is `FERRY_ACTIVATION` for a program ferryd
    /// started; a program that was already running passes `None`. Returns the jobs served.
    pub async fn attach_handler(
        &self,
        name: &str,
        token: Option<&str>,
    ) -> Result<Vec<String>, ClientError> {
        let r: HandlerAttachResult = self
            .call::<method::HandlerAttach>(HandlerAttachParams {
                name: name.into(),
                token: token.map(str::to_owned),
            })
            .await?;
        Ok(r.jobs)
    }

    /// `cache.list`: the validated files the peer cache holds, most recently used first.
    pub async fn cache_list(&self) -> Result<CacheListResult, ClientError> {
        self.call::<method::CacheList>(CacheListParams {}).await
    }

    /// `cache.info`: the peer cache's settings and use (`enabled: false` when it is off).
    pub async fn cache_info(&self) -> Result<CacheInfo, ClientError> {
        self.call::<method::CacheInfo>(Empty {}).await
    }

    /// `cache.delete`: removes the entry with `key`, or every entry downloaded from `url`.
    pub async fn cache_delete(
        &self,
        p: CacheDeleteParams,
    ) -> Result<CacheDeleteResult, ClientError> {
        self.call::<method::CacheDelete>(p).await
    }

    /// `cache.clear`: removes every entry the caller may remove.
    pub async fn cache_clear(&self) -> Result<CacheDeleteResult, ClientError> {
        self.call::<method::CacheClear>(Empty {}).await
    }

    /// `peers.list`: the peers this host knows and how they fared.
    pub async fn peers_list(&self) -> Result<PeersListResult, ClientError> {
        self.call::<method::PeersList>(Empty {}).await
    }

    /// `daemon.conditions`: the network and power state the daemon sees (what its network cost
    /// and power policy act on).
    pub async fn conditions(&self) -> Result<ferry_proto::policy::ConditionsResult, ClientError> {
        self.call::<method::DaemonConditions>(Empty {}).await
    }

    /// Watches the callbacks running on this connection (for a handler's idle clock).
    pub(crate) fn activity(&self) -> tokio::sync::watch::Receiver<callback::Activity> {
        self.inner.registry.activity()
    }
}

/// Maps the RPC layer's outcome of `method` to the client's errors and decodes the result: a
/// missed deadline stays a timeout, a closed connection is [`ClientError::Disconnected`].
fn decode_answer<R: DeserializeOwned>(
    method: &str,
    answer: Result<Value, CallError>,
) -> Result<R, ClientError> {
    let v = answer.map_err(|e| match e {
        CallError::Remote(e) => ClientError::Daemon(e),
        CallError::Closed => ClientError::Disconnected,
        CallError::Timeout(after) => ClientError::Timeout {
            method: method.to_owned(),
            after,
        },
    })?;
    serde_json::from_value(v).map_err(|e| ClientError::Decode(format!("{method}: {e}")))
}
