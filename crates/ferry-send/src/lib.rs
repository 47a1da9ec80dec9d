//! Ferry's upload engine for one file: send a local file to an upload server with the BITS
//! Upload Protocol or tus 1.0, resuming the same server-side upload after any failure or
//! restart, and report the server-side state for the caller to commit.
//!
//! The daemon drives it as it drives `ferry-fetch` for downloads: it opens the source as the
//! job's owner (`ferry_fetch::safe_open`), records the file's [`SourceIdentity`], and calls
//! [`Sender::send`] with the state its store holds ([`SendRequest::resume`]). The engine
//! reports [`SendEvent`]s: [`SendEvent::Created`] for a new BITS session or tus upload — the
//! engine sends no byte of it until the caller confirms it committed the state
//! ([`Commit::committed`]), so a `kill -9` at any point never leaves a second server-side
//! upload — and [`SendEvent::Acked`] for every offset the server acknowledged. The protocols'
//! rules are pure functions in `ferry-upload-proto` (`bits_client`, `tus`, `offset`); this
//! crate sends what they say and reads what comes back. Errors come back as
//! [`ferry_fetch::FetchError`]s, classified like download errors (context, code, transient).
//!
//! Not here: retry timing, scheduling, downloading an upload-reply's reply (the daemon uses
//! `ferry-fetch` for it, then [`Sender::close`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_fetch::identity::FsIdentity;
use ferry_fetch::throttle::Throttle;
use ferry_fetch::{FetchError, FetchErrorKind, FetchSetupError, FetcherOptions};
use ferry_proto::ErrorContext;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

mod bits;
mod source;
mod tus;
mod wire;

pub use source::SourceIdentity;

/// An upload protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The BITS Upload Protocol ([MC-BUP]): `BITS_POST` packets to the destination URL.
    Bits,
    /// tus 1.0: the URL is the server's creation endpoint.
    Tus,
}

impl Protocol {
    /// The wire name (`bits`, `tus`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Bits => "bits",
            Protocol::Tus => "tus",
        }
    }
}

/// Which protocol a send uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolChoice {
    /// This one, without probing.
    Only(Protocol),
    /// Probe the server once ([`Sender::probe`]) and use what it speaks
    /// ([`SendEvent::Probed`] reports it, to record).
    #[default]
    Auto,
}

/// The server-side state of an upload: what the caller stores so a later send resumes the
/// same server-side upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum ServerState {
    /// A BITS session.
    Bits {
        /// The session id, exactly as the server issued it.
        session: String,
        /// The last offset the server acknowledged.
        acked: u64,
        /// The `BITS-Host-Id` the server named, if any: later packets go there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_id: Option<String>,
        /// The final Ack's `BITS-Reply-URL` (upload-reply), once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_url: Option<String>,
    },
    /// A tus upload.
    Tus {
        /// The upload's URL (the creation answer's `Location`, resolved).
        upload_url: String,
        /// The last offset the server acknowledged.
        acked: u64,
        /// The server's `Upload-Expires`, if it sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<String>,
    },
}

impl ServerState {
    /// The last offset the server acknowledged.
    pub fn acked(&self) -> u64 {
        match self {
            ServerState::Bits { acked, .. } | ServerState::Tus { acked, .. } => *acked,
        }
    }

    /// The protocol the state belongs to.
    pub fn protocol(&self) -> Protocol {
        match self {
            ServerState::Bits { .. } => Protocol::Bits,
            ServerState::Tus { .. } => Protocol::Tus,
        }
    }
}

/// Where an upload goes and with which credentials.
#[derive(Clone, Default)]
pub struct Target {
    /// BITS: the destination URL; tus: the creation endpoint. `http` or `https`.
    pub url: String,
    /// Custom request headers, sent only to the URL's origin.
    pub headers: Vec<(String, String)>,
    /// Basic-auth user and password, sent only to the URL's origin.
    pub basic_auth: Option<(String, String)>,
}

impl std::fmt::Debug for Target {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &ferry_fetch::redact_url_str(&self.url))
            .field("headers", &self.headers.len())
            .field("basic_auth", &self.basic_auth.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// One file to upload (or to resume uploading).
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// Where it goes.
    pub target: Target,
    /// Which protocol.
    pub protocol: ProtocolChoice,
    /// The source, already opened for reading (as the owner, with `ferry_fetch::safe_open`).
    pub source: Arc<std::fs::File>,
    /// The source's path, checked again before every read: a file renamed over it (a new
    /// inode) fails the upload like a changed one. `None` checks the open file only.
    pub source_path: Option<PathBuf>,
    /// The file as it was when the job was made: any difference is `LOCAL_FILE_CHANGED`.
    pub identity: SourceIdentity,
    /// Whom path checks run as (system mode: the job's owner).
    pub fs_identity: Option<FsIdentity>,
    /// The state the caller committed last, to resume that server-side upload.
    pub resume: Option<ServerState>,
    /// Largest BITS fragment or tus PATCH, bytes (the memory one upload holds).
    pub fragment_size: u64,
    /// The file name sent to the server (BITS `Content-Name`, tus `filename` metadata).
    pub content_name: Option<String>,
    /// Upload-reply (BITS only): stop after the final Ack and return its reply URL, without
    /// Close-Session, which [`Sender::close`] sends once the reply is fetched.
    pub want_reply: bool,
    /// No byte taken by the connection, and no answer, for this long is a transient `STALLED`.
    pub stall_timeout: Duration,
    /// Bandwidth limits to honour while sending.
    pub throttle: Throttle,
}

impl SendRequest {
    /// A fresh upload of `source` to `url` with default limits (auto-probed protocol, 8 MiB
    /// fragments, 60 s stall timeout).
    pub fn new(url: impl Into<String>, source: std::fs::File, identity: SourceIdentity) -> Self {
        SendRequest {
            target: Target {
                url: url.into(),
                ..Target::default()
            },
            protocol: ProtocolChoice::Auto,
            source: Arc::new(source),
            source_path: None,
            identity,
            fs_identity: None,
            resume: None,
            fragment_size: ferry_upload_proto::bits_client::DEFAULT_FRAGMENT,
            content_name: None,
            want_reply: false,
            stall_timeout: Duration::from_secs(60),
            throttle: Throttle::default(),
        }
    }
}

/// The caller's confirmation that it committed a [`SendEvent::Created`] state.
#[derive(Debug)]
pub struct Commit(oneshot::Sender<()>);

impl Commit {
    /// The state is durable: the engine may send the upload's first byte.
    pub fn committed(self) {
        // The engine may have given up waiting (cancelled); then nothing is sent anyway.
        let _ = self.0.send(());
    }
}

/// What a running send reports.
#[derive(Debug)]
pub enum SendEvent {
    /// `ProtocolChoice::Auto` probed the server: record the protocol for later sends.
    Probed {
        /// What the server speaks.
        protocol: Protocol,
    },
    /// A new server-side upload (BITS session, tus upload) exists: commit `state`, then call
    /// [`Commit::committed`]. Nothing is sent to it before. It replaces any earlier state.
    Created {
        /// The state to commit.
        state: ServerState,
        /// Confirms the commit.
        commit: Commit,
    },
    /// The server acknowledged an offset: commit `state` (no confirmation needed; a state
    /// lost in a crash only costs resending from the one before).
    Acked {
        /// The state to commit.
        state: ServerState,
    },
    /// Live byte count (for progress display), at most every ~50 ms.
    Progress {
        /// Bytes the connection took so far, including the acknowledged prefix.
        bytes: u64,
        /// The file's size.
        total: u64,
    },
}

/// A finished send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendDone {
    /// The protocol used.
    pub protocol: Protocol,
    /// The file's size.
    pub bytes: u64,
    /// Upload-reply: the reply's URL (resolved against the destination). `Close-Session` is
    /// still owed ([`Sender::close`]).
    pub reply_url: Option<String>,
    /// The final server-side state (for upload-reply, what [`Sender::close`] needs).
    pub state: ServerState,
}

/// Uploads single files; one per daemon, shared by every upload so connections are reused.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    /// Builds the HTTP client with the settings of every Ferry transfer
    /// ([`ferry_fetch::Fetcher::client_builder`]; socket options added there apply to uploads
    /// too), HTTP/1.1 only: the BITS Upload Protocol is defined over HTTP/1.1.
    pub fn new(opts: &FetcherOptions) -> Result<Sender, FetchSetupError> {
        let client = ferry_fetch::Fetcher::client_builder(opts)
            .http1_only()
            .build()?;
        Ok(Sender { client })
    }

    /// Asks the server which protocol it speaks: a tus `OPTIONS` first (harmless anywhere),
    /// then a BITS Ping. Neither is `UPLOAD_PROTOCOL_MISMATCH`, fatal.
    pub async fn probe(
        &self,
        target: &Target,
        cancel: &CancellationToken,
    ) -> Result<Protocol, FetchError> {
        let w = wire::Wire::new(&self.client, target, Duration::from_secs(60), cancel)?;
        if w.tus_options(&w.start).await?.is_some() {
            return Ok(Protocol::Tus);
        }
        if w.bits_ping(&w.start).await? {
            return Ok(Protocol::Bits);
        }
        Err(mismatch(format!(
            "{} speaks neither the BITS Upload Protocol nor tus 1.0; check the upload URL",
            ferry_fetch::redact_url_str(&target.url)
        )))
    }

    /// Uploads `req.source` to `req.target`, resuming `req.resume` when given.
    ///
    /// Sends [`SendEvent`]s on `events`; a `Created` must be confirmed before the upload goes
    /// on (a dropped receiver ends the send as cancelled). When `cancel` fires the result is an
    /// error with kind `Cancelled`; the server-side upload stays (resumable) unless the caller
    /// [`abandon`](Sender::abandon)s it.
    pub async fn send(
        &self,
        req: &SendRequest,
        events: &UnboundedSender<SendEvent>,
        cancel: &CancellationToken,
    ) -> Result<SendDone, FetchError> {
        let w = wire::Wire::new(&self.client, &req.target, req.stall_timeout, cancel)?;
        let src = source::Source::new(req);
        src.check().await?;
        let protocol = match (req.protocol, &req.resume) {
            (ProtocolChoice::Only(p), _) => p,
            (ProtocolChoice::Auto, Some(state)) => state.protocol(),
            (ProtocolChoice::Auto, None) => {
                let p = self.probe(&req.target, cancel).await?;
                let _ = events.send(SendEvent::Probed { protocol: p });
                p
            }
        };
        let resume = req.resume.clone().filter(|s| s.protocol() == protocol);
        let run = Run {
            w,
            req,
            src,
            events,
            cancel,
        };
        match protocol {
            Protocol::Bits => bits::send(&run, resume).await,
            Protocol::Tus => {
                if req.want_reply {
                    return Err(FetchError::invalid_request(
                        "upload-reply needs the BITS Upload Protocol; tus has no reply",
                    ));
                }
                tus::send(&run, resume).await
            }
        }
    }

    /// Sends BITS Close-Session for an upload-reply whose reply was fetched: the server then
    /// puts the file in place (if the application asked) and forgets the session.
    pub async fn close(&self, target: &Target, state: &ServerState) -> Result<(), FetchError> {
        let cancel = CancellationToken::new();
        let w = wire::Wire::new(&self.client, target, Duration::from_secs(60), &cancel)?;
        match state {
            ServerState::Bits {
                session, host_id, ..
            } => bits::close(&w, session, host_id.as_deref()).await,
            ServerState::Tus { .. } => Ok(()),
        }
    }

    /// Fetches an upload-reply's reply (the `reply_url` of [`SendDone`]) into memory, at most
    /// `max` bytes (BITS keeps reply data in memory up to 1 MiB): a longer reply is a fatal
    /// error, as is any status but 200. The job's credentials go only to the target's origin.
    pub async fn fetch_reply(
        &self,
        target: &Target,
        reply_url: &str,
        max: usize,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, FetchError> {
        let w = wire::Wire::new(&self.client, target, Duration::from_secs(60), cancel)?;
        let url = url::Url::parse(reply_url).map_err(|e| {
            FetchError::invalid_response(format!("the reply URL {reply_url:?} is not valid: {e}"))
        })?;
        w.get_bounded(&url, max).await
    }

    /// Abandons a server-side upload (a cancelled job): BITS Cancel-Session, tus DELETE when
    /// the server offers termination. An upload the server no longer knows counts as done.
    pub async fn abandon(&self, target: &Target, state: &ServerState) -> Result<(), FetchError> {
        let cancel = CancellationToken::new();
        let w = wire::Wire::new(&self.client, target, Duration::from_secs(60), &cancel)?;
        match state {
            ServerState::Bits {
                session, host_id, ..
            } => bits::cancel(&w, session, host_id.as_deref()).await,
            ServerState::Tus { upload_url, .. } => tus::terminate(&w, upload_url).await,
        }
    }
}

/// The state of one send.
pub(crate) struct Run<'a> {
    pub(crate) w: wire::Wire<'a>,
    pub(crate) req: &'a SendRequest,
    pub(crate) src: source::Source,
    pub(crate) events: &'a UnboundedSender<SendEvent>,
    pub(crate) cancel: &'a CancellationToken,
}

impl Run<'_> {
    /// Reports a new server-side upload and waits until the caller committed it. If the
    /// caller stops listening or the send is cancelled first, the upload is abandoned (it was
    /// never recorded, so nothing could resume it).
    pub(crate) async fn created(&self, state: ServerState) -> Result<(), FetchError> {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .events
            .send(SendEvent::Created {
                state: state.clone(),
                commit: Commit(tx),
            })
            .is_ok();
        let ok = sent
            && tokio::select! {
                r = rx => r.is_ok(),
                () = self.cancel.cancelled() => false,
            };
        if ok {
            return Ok(());
        }
        let fresh = CancellationToken::new();
        if let Ok(w) = wire::Wire::new(
            self.w.client,
            &self.req.target,
            self.req.stall_timeout,
            &fresh,
        ) {
            let _ = match &state {
                ServerState::Bits {
                    session, host_id, ..
                } => bits::cancel(&w, session, host_id.as_deref()).await,
                ServerState::Tus { upload_url, .. } => tus::terminate(&w, upload_url).await,
            };
        }
        Err(FetchError::cancelled())
    }

    /// Where the progress of a body sent from offset `base` goes.
    pub(crate) fn progress(&self, base: u64) -> wire::Progress {
        wire::Progress {
            events: self.events.clone(),
            base,
            total: self.src.size(),
            throttle: self.req.throttle.clone(),
        }
    }

    pub(crate) fn acked(&self, state: ServerState) {
        let _ = self.events.send(SendEvent::Acked { state });
    }
}

/// A fatal `UPLOAD_PROTOCOL_MISMATCH`.
pub(crate) fn mismatch(description: String) -> FetchError {
    FetchError::new(
        ErrorContext::RemoteFile,
        FetchErrorKind::UploadProtocolMismatch,
        false,
        description,
    )
}
