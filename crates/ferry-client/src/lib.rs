//! The Rust client library for Ferry.
//!
//! [`Client`] connects to the daemon (`FERRY_SOCKET`, else the per-user socket, else the system
//! socket; see [`connect`]), optionally starting a per-user `ferryd` when none answers
//! ([`autostart`]), and exposes every method of protocol 1 as a typed async call. It is a thin
//! layer over `ferry-rpc` and `ferry-proto`: no daemon logic lives here.

pub mod autostart;
pub mod connect;
mod error;

pub use error::ClientError;
pub use ferry_proto as proto;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_proto::params::*;
use ferry_proto::{File, Job, method};
use ferry_rpc::{CallError, Handled, Peer, Service};
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

/// A connection to `ferryd`.
pub struct Client {
    peer: Arc<Peer>,
    socket: PathBuf,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<ferry_proto::Event>>,
}

/// Collects `events.event` notifications; callbacks arrive through the same service later.
struct Inbound {
    events: mpsc::UnboundedSender<ferry_proto::Event>,
}

impl Service for Inbound {
    fn request(
        &self,
        _: Arc<Peer>,
        method: String,
        _: Option<Value>,
    ) -> BoxFuture<'static, Handled> {
        Box::pin(async move {
            Handled::Reply(Err(ferry_proto::ProtoError::new(
                ferry_proto::ErrorCode::METHOD_NOT_FOUND,
                format!("this client registered no callback for {method}"),
            )))
        })
    }

    fn notification(&self, _: Arc<Peer>, method: String, params: Option<Value>) {
        if method == method::EVENTS_EVENT
            && let Some(n) =
                params.and_then(|p| serde_json::from_value::<EventNotification>(p).ok())
        {
            let _ = self.events.send(n.event);
        }
    }
}

impl Client {
    /// Connects to the daemon at `socket`.
    pub async fn connect_to(socket: &Path) -> Result<Client, ClientError> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
        let (r, w) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let (peer, _task) = ferry_rpc::serve(r, w, Arc::new(Inbound { events: tx }));
        Ok(Client {
            peer,
            socket: socket.to_path_buf(),
            events: tokio::sync::Mutex::new(rx),
        })
    }

    /// Connects to the daemon found by [`connect::find_socket`].
    pub async fn connect() -> Result<Client, ClientError> {
        let socket = connect::find_socket()?;
        Client::connect_to(&socket).await
    }

    /// The socket this client is connected to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The underlying peer (for raw calls).
    pub fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }

    /// Calls any method with any params and decodes the result.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: P,
    ) -> Result<R, ClientError> {
        let params =
            serde_json::to_value(params).map_err(|e| ClientError::Decode(e.to_string()))?;
        let v = self.peer.call(method, params).await.map_err(|e| match e {
            CallError::Remote(e) => ClientError::Daemon(e),
            CallError::Closed | CallError::Timeout(_) => ClientError::Disconnected,
        })?;
        serde_json::from_value(v).map_err(|e| ClientError::Decode(format!("{method}: {e}")))
    }

    /// `ferry.hello`
    pub async fn hello(&self) -> Result<HelloResult, ClientError> {
        self.call(
            method::HELLO,
            HelloParams {
                client: Some("ferry-client".into()),
            },
        )
        .await
    }

    /// `job.create`
    pub async fn create(&self, p: CreateParams) -> Result<String, ClientError> {
        let r: CreateResult = self.call(method::JOB_CREATE, p).await?;
        Ok(r.job_id)
    }

    /// `job.add_files`
    pub async fn add_files(
        &self,
        job_id: &str,
        files: Vec<ferry_proto::FileSpec>,
    ) -> Result<AddFilesResult, ClientError> {
        self.call(
            method::JOB_ADD_FILES,
            AddFilesParams {
                job_id: job_id.into(),
                files,
            },
        )
        .await
    }

    fn id(job_id: &str) -> JobIdParams {
        JobIdParams {
            job_id: job_id.into(),
        }
    }

    /// `job.get`
    pub async fn get(&self, job_id: &str) -> Result<Job, ClientError> {
        self.call(method::JOB_GET, Self::id(job_id)).await
    }

    /// `job.files`
    pub async fn files(&self, job_id: &str) -> Result<Vec<File>, ClientError> {
        let r: FilesResult = self.call(method::JOB_FILES, Self::id(job_id)).await?;
        Ok(r.files)
    }

    /// `job.get_error`
    pub async fn get_error(
        &self,
        job_id: &str,
    ) -> Result<Option<ferry_proto::ErrorInfo>, ClientError> {
        self.call(method::JOB_GET_ERROR, Self::id(job_id)).await
    }

    /// `job.list`
    pub async fn list(&self, p: ListParams) -> Result<ListResult, ClientError> {
        self.call(method::JOB_LIST, p).await
    }

    /// `job.resume`
    pub async fn resume(&self, job_id: &str) -> Result<StateResult, ClientError> {
        self.call(method::JOB_RESUME, Self::id(job_id)).await
    }

    /// `job.suspend`
    pub async fn suspend(&self, job_id: &str) -> Result<StateResult, ClientError> {
        self.call(method::JOB_SUSPEND, Self::id(job_id)).await
    }

    /// `job.cancel`
    pub async fn cancel(&self, job_id: &str) -> Result<StateResult, ClientError> {
        self.call(method::JOB_CANCEL, Self::id(job_id)).await
    }

    /// `job.complete`
    pub async fn complete(&self, job_id: &str) -> Result<CompleteResult, ClientError> {
        self.call(method::JOB_COMPLETE, Self::id(job_id)).await
    }

    /// `job.set`
    pub async fn set(&self, p: SetParams) -> Result<Job, ClientError> {
        self.call(method::JOB_SET, p).await
    }

    /// `job.take_ownership`
    pub async fn take_ownership(&self, job_id: &str) -> Result<Job, ClientError> {
        self.call(method::JOB_TAKE_OWNERSHIP, Self::id(job_id))
            .await
    }

    /// `file.set_validation_state`
    pub async fn set_validation(
        &self,
        job_id: &str,
        file_index: u64,
        valid: bool,
    ) -> Result<File, ClientError> {
        self.call(
            method::FILE_SET_VALIDATION_STATE,
            ValidationParams {
                job_id: job_id.into(),
                file_index,
                valid,
            },
        )
        .await
    }

    /// `events.read`
    pub async fn read_events(&self, p: EventsReadParams) -> Result<EventsReadResult, ClientError> {
        self.call(method::EVENTS_READ, p).await
    }

    /// `events.follow`; events then arrive through [`Client::next_event`].
    pub async fn follow_events(&self, p: EventsFollowParams) -> Result<(), ClientError> {
        let _: Value = self.call(method::EVENTS_FOLLOW, p).await?;
        Ok(())
    }

    /// The next followed event; `None` once the connection closed.
    pub async fn next_event(&self) -> Option<ferry_proto::Event> {
        self.events.lock().await.recv().await
    }
}
