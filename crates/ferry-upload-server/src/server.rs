//! The HTTP layer: accepts connections (plain or TLS), authenticates, hands each `BITS_POST`
//! to the rules in [`crate::protocol`] and does the I/O they decide on.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Seek, SeekFrom};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::auth::Users;
use crate::config::{Config, NotificationType};
use crate::notify::{Notification, ReplySource};
use crate::protocol::{
    self, FragmentRange, Limits, Packet, Refusal, hresult, map_path, parse_packet,
};
use crate::store::{Meta, Notified, Store, io_refusal, now_secs};

/// URL path under which stored replies are served; it starts with a dot, so no upload can
/// name it.
pub const REPLY_PREFIX: &str = "/.ferry-upload/replies/";

/// Longest a request's headers may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Password verifications at once.
const PASSWORD_CHECKS: usize = 4;
/// Longest wait for the next piece of a request body: a client that stops sending mid-fragment
/// releases its session after this.
const BODY_IDLE: Duration = Duration::from_secs(60);
/// Largest body drained from a refused request so the connection stays usable; a larger one
/// closes the connection instead.
const DRAIN_MAX: u64 = 16 * 1024 * 1024;

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The users file is unusable.
    #[error(transparent)]
    Users(#[from] crate::auth::UsersError),
    /// The listening address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("cannot use the TLS certificate {cert} / key {key}: {message}")]
    Tls {
        /// Certificate file.
        cert: String,
        /// Key file.
        key: String,
        /// Why.
        message: String,
    },
    /// The HTTP client for notifications could not be built.
    #[error("cannot build the notification client: {0}")]
    Client(String),
}

struct Dir {
    conf: crate::config::Directory,
    store: Store,
}

/// Everything a request needs.
struct Shared {
    dirs: Vec<Dir>,
    config: Config,
    users: Option<Users>,
    http: reqwest::Client,
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// Password checks running at once: each argon2 verification takes tens of MiB and
    /// milliseconds, so a flood of wrong passwords must queue, not exhaust memory.
    checks: tokio::sync::Semaphore,
}

impl Shared {
    /// Serialises packets of one session (a client sends one at a time; a second connection
    /// racing it must not interleave writes).
    fn lock(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id).or_default().clone()
    }

    fn forget(&self, id: Uuid) {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// A server bound to its address, ready to [`Server::serve`].
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Opens the stores, loads users and TLS material, and binds.
    pub async fn bind(config: Config) -> Result<Server, RunError> {
        let mut dirs = Vec::new();
        for d in &config.directories {
            dirs.push(Dir {
                store: Store::open(&d.path, &d.sessions(), d.mode())?,
                conf: d.clone(),
            });
        }
        let users = match &config.auth {
            Some(a) => Some(Users::load(&a.users_file)?),
            None => None,
        };
        let tls = match &config.tls {
            Some(t) => Some(tls_acceptor(t)?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RunError::Client(e.to_string()))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| RunError::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                dirs,
                config,
                users,
                http,
                locks: Mutex::new(HashMap::new()),
                checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS),
            }),
            tls,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves; expired sessions are swept meanwhile.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        for i in 0..self.shared.dirs.len() {
            tokio::spawn(sweeper(self.shared.clone(), i));
        }
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(self.shared.clone());
        tokio::pin!(shutdown);
        loop {
            let (stream, remote) = tokio::select! {
                _ = &mut shutdown => return,
                r = self.listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of descriptors and the like: keep serving the others.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let router = router.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let mut router = router.clone();
                        async move {
                            let resp =
                                tower_service::Service::call(&mut router, req.map(Body::new)).await;
                            Ok::<_, Infallible>(resp.unwrap_or_else(|n| match n {}))
                        }
                    },
                );
                let builder = {
                    let mut b = hyper::server::conn::http1::Builder::new();
                    b.timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .title_case_headers(true)
                        .keep_alive(true);
                    b
                };
                let r = match tls {
                    None => builder.serve_connection(TokioIo::new(stream), svc).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(s)) => builder.serve_connection(TokioIo::new(s), svc).await,
                            Ok(Err(e)) => {
                                tracing::info!(%remote, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                };
                if let Err(e) = r {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
            });
        }
    }
}

fn tls_acceptor(t: &crate::config::Tls) -> Result<tokio_rustls::TlsAcceptor, RunError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |message: String| RunError::Tls {
        cert: t.cert.display().to_string(),
        key: t.key.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(&t.cert)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("the certificate file holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key).map_err(|e| err(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

async fn sweeper(shared: Arc<Shared>, i: usize) {
    let timeout = shared.dirs[i].conf.session_timeout();
    let every = (timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let s = shared.clone();
        let n = tokio::task::spawn_blocking(move || s.dirs[i].store.sweep(timeout))
            .await
            .unwrap_or(0);
        if n > 0 {
            tracing::info!(directory = %shared.dirs[i].conf.url_prefix, sessions = n, "deleted expired sessions");
        }
        tokio::time::sleep(every).await;
    }
}

/// An Ack: `BITS-Packet-Type: Ack` first, the given headers, `Content-Length: 0` last.
fn ack(status: u16, headers: &[(&str, String)]) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("BITS-Packet-Type", "Ack");
    for (n, v) in headers {
        b = b.header(*n, v.as_str());
    }
    b.header(header::CONTENT_LENGTH, "0")
        .body(Body::empty())
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR))
}

fn plain(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// The error Ack for a refusal, echoing the session id when the request named one.
fn refuse(r: &Refusal, session: Option<&str>) -> Response {
    let a = r.answer();
    let mut h = Vec::new();
    if let Some(s) = session {
        h.push(("BITS-Session-Id", s.to_owned()));
    }
    if let Some(n) = a.received {
        h.push(("BITS-Received-Content-Range", n.to_string()));
    }
    if let Some(code) = a.code {
        // The specification names the header BITS-Error, Windows' documentation and clients
        // BITS-Error-Code: send both.
        h.push(("BITS-Error-Code", hresult(code)));
        h.push(("BITS-Error", hresult(code)));
        h.push(("BITS-Error-Context", a.context.header().to_owned()));
    }
    tracing::info!(refusal = %r, status = a.status, "refused a packet");
    ack(a.status, &h)
}

async fn handle(State(st): State<Arc<Shared>>, req: Request) -> Response {
    let user = match authenticate(&st, req.headers()).await {
        Ok(u) => u,
        // Drained: a client that sent a fragment before the challenge resends it with
        // credentials on the same connection.
        Err(r) => return drained(req, r).await,
    };
    let path = req.uri().path().to_owned();
    if (req.method() == Method::GET || req.method() == Method::HEAD)
        && let Some(id) = path.strip_prefix(REPLY_PREFIX)
    {
        return serve_reply(&st, id, user.as_deref(), req.method() == Method::HEAD).await;
    }
    if req.method().as_str() != protocol::METHOD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("BITS_POST"));
        return r;
    }
    let session_hdr = req
        .headers()
        .get("bits-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let packet = parse_packet(req.method().as_str(), req.headers());
    let Some((di, rest)) = st.config.directory_for(&path) else {
        return drained(req, refuse(&Refusal::NotEnabled, session_hdr.as_deref())).await;
    };
    let packet = match packet {
        Ok(p) => p,
        Err(r) => return drained(req, refuse(&r, session_hdr.as_deref())).await,
    };
    let dir = &st.dirs[di];
    match packet {
        Packet::Ping => ack(200, &[]),
        Packet::CreateSession => create(&st, dir, &path, rest, user).await,
        Packet::Fragment { session, range, .. } => {
            let r = fragment(&st, dir, &path, &session, range, user.as_deref(), req).await;
            r.unwrap_or_else(|e| refuse(&e, Some(&session)))
        }
        Packet::CloseSession { session } => {
            let r = close(&st, dir, &path, &session, user.as_deref(), false).await;
            r.unwrap_or_else(|e| refuse(&e, Some(&session)))
        }
        Packet::CancelSession { session } => {
            let r = close(&st, dir, &path, &session, user.as_deref(), true).await;
            r.unwrap_or_else(|e| refuse(&e, Some(&session)))
        }
    }
}

/// Reads and drops a refused request's body (if it is small enough) so the client can send
/// its next packet on the same connection.
async fn drained(req: Request, resp: Response) -> Response {
    let len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if len.is_some_and(|l| l <= DRAIN_MAX) {
        let mut s = req.into_body().into_data_stream();
        while let Ok(Some(Ok(_))) = tokio::time::timeout(BODY_IDLE, s.next()).await {}
    }
    resp
}

/// Checks `Authorization` when authentication is on: `Ok(Some(user))`, `Ok(None)` when it is
/// off, or the 401 answer.
async fn authenticate(st: &Arc<Shared>, headers: &HeaderMap) -> Result<Option<String>, Response> {
    let (Some(auth), Some(_)) = (&st.config.auth, &st.users) else {
        return Ok(None);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let user = match given {
        None => None,
        Some(h) => {
            // A known client's header skips the queue of slow checks.
            if let Some(u) = st.users.as_ref().and_then(|u| u.cached(&h)) {
                return Ok(Some(u));
            }
            let _permit = st.checks.acquire().await.ok();
            let s = st.clone();
            tokio::task::spawn_blocking(move || s.users.as_ref().and_then(|u| u.check(&h)))
                .await
                .unwrap_or(None)
        }
    };
    match user {
        Some(u) => Ok(Some(u)),
        None => {
            let mut r = plain(StatusCode::UNAUTHORIZED);
            let realm = auth.realm.replace(['"', '\\'], "");
            if let Ok(v) =
                HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
            {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            Err(r)
        }
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    st: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    let s = st.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .unwrap_or(Err(Refusal::Internal))
}

fn dir_index(st: &Shared, dir: &Dir) -> usize {
    st.dirs
        .iter()
        .position(|d| std::ptr::eq(d, dir))
        .unwrap_or(0)
}

async fn create(
    st: &Arc<Shared>,
    dir: &Dir,
    url_path: &str,
    rest: &str,
    user: Option<String>,
) -> Response {
    let dest = match map_path(rest) {
        Ok(d) => d,
        Err(r) => return refuse(&r, None),
    };
    let uuid = Uuid::new_v4();
    let id = protocol::format_session_id(&uuid);
    let meta = Meta {
        id: id.clone(),
        url_path: url_path.to_owned(),
        dirs: dest.dirs.clone(),
        name: dest.name.clone(),
        user,
        total: None,
        received: 0,
        last_activity: now_secs(),
        notified: None,
    };
    let di = dir_index(st, dir);
    let overwrite = dir.conf.allow_overwrite;
    let max = dir.conf.max_sessions;
    let r = blocking(st, move |s| {
        let store = &s.dirs[di].store;
        store.check_destination(&dest, overwrite)?;
        if store.count() >= max {
            return Err(Refusal::TooManySessions);
        }
        store.create(uuid, &meta)
    })
    .await;
    match r {
        Ok(()) => {
            tracing::info!(session = %id, url = %url_path, "created a session");
            ack(
                200,
                &[
                    ("BITS-Protocol", protocol::PROTOCOL_GUID.to_owned()),
                    ("BITS-Session-Id", id),
                    ("Accept-Encoding", "identity".to_owned()),
                ],
            )
        }
        Err(r) => refuse(&r, None),
    }
}

/// Loads a session for a packet: it must exist, belong to this URL and user, and not have
/// expired (an expired one is deleted on the spot).
async fn load_session(
    st: &Arc<Shared>,
    di: usize,
    url_path: &str,
    session: &str,
    user: Option<&str>,
) -> Result<(Uuid, Meta), Refusal> {
    let uuid = protocol::parse_session_id(session).ok_or(Refusal::SessionNotFound)?;
    let meta = blocking(st, move |s| {
        s.dirs[di].store.load(uuid).ok_or(Refusal::SessionNotFound)
    })
    .await?;
    if meta.id != session || meta.url_path != url_path || meta.user.as_deref() != user {
        return Err(Refusal::SessionNotFound);
    }
    if crate::store::expired(
        meta.last_activity,
        st.dirs[di].conf.session_timeout(),
        now_secs(),
    ) {
        blocking(st, move |s| {
            s.dirs[di].store.remove(uuid);
            Ok(())
        })
        .await?;
        st.forget(uuid);
        return Err(Refusal::SessionNotFound);
    }
    Ok((uuid, meta))
}

async fn fragment(
    st: &Arc<Shared>,
    dir: &Dir,
    url_path: &str,
    session: &str,
    range: FragmentRange,
    user: Option<&str>,
    req: Request,
) -> Result<Response, Refusal> {
    let di = dir_index(st, dir);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let lock = st.lock(protocol::parse_session_id(session).unwrap_or_default());
    let _guard = lock.lock().await;
    let (uuid, mut meta) = match load_session(st, di, url_path, session, user).await {
        Ok(x) => x,
        Err(e) => return Ok(drained(req, refuse(&e, Some(session))).await),
    };
    let limits = Limits {
        max_upload_size: dir.conf.max_upload_size,
        max_fragment_size: dir.conf.max_fragment_size,
    };
    let plan = match protocol::plan_fragment(meta.received, meta.total, range, limits) {
        Ok(p) => p,
        Err(e) => return Ok(drained(req, refuse(&e, Some(session))).await),
    };
    let received = meta.received;
    let mut body = req.into_body().into_data_stream();
    if plan.write > 0 {
        let file = blocking(st, move |s| {
            let mut f = s.dirs[di].store.open_data(uuid, received).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Refusal::SessionNotFound
                } else {
                    io_refusal(&e)
                }
            })?;
            f.seek(SeekFrom::Start(received))
                .map_err(|e| io_refusal(&e))?;
            Ok(f)
        })
        .await?;
        let mut file = tokio::fs::File::from_std(file);
        let written = copy_range(&mut body, &mut file, plan.skip, plan.write).await;
        let synced = match written {
            Ok(()) => file.sync_all().await.map_err(|e| io_refusal(&e)),
            Err(e) => Err(e),
        };
        if let Err(e) = synced {
            drop(file);
            let _ = blocking(st, move |s| {
                s.dirs[di].store.truncate_data(uuid, received);
                Ok(())
            })
            .await;
            return Err(e);
        }
    } else {
        while let Ok(Some(Ok(_))) = tokio::time::timeout(BODY_IDLE, body.next()).await {}
    }
    meta.received = plan.ack;
    meta.total = Some(range.total);
    meta.last_activity = now_secs();
    let complete = meta.received == range.total;
    let mut headers = vec![
        ("BITS-Session-Id", session.to_owned()),
        ("BITS-Received-Content-Range", plan.ack.to_string()),
    ];
    if complete && dir.conf.notification != NotificationType::None {
        if meta.notified.is_none() {
            // Record the bytes before asking the application, so a failed notification is
            // retried by the client's repeated final fragment without the bytes again.
            save(st, di, uuid, &meta).await?;
            meta.notified = Some(notify_app(st, di, uuid, &meta, host.as_deref()).await?);
        }
        if let Some(url) = meta.notified.as_ref().and_then(|n| n.reply_url.clone()) {
            headers.push(("BITS-Reply-URL", url));
        }
    }
    save(st, di, uuid, &meta).await?;
    Ok(ack(200, &headers))
}

/// Records a session's metadata (synced) off the async threads.
async fn save(st: &Arc<Shared>, di: usize, uuid: Uuid, meta: &Meta) -> Result<(), Refusal> {
    let m = meta.clone();
    blocking(st, move |s| {
        s.dirs[di]
            .store
            .write_meta(uuid, &m)
            .map_err(|e| io_refusal(&e))
    })
    .await
}

/// Streams a fragment's body: drops the first `skip` bytes (already held), writes the next
/// `write`. The body is exactly `skip + write` bytes long (hyper enforces Content-Length).
async fn copy_range(
    body: &mut axum::body::BodyDataStream,
    file: &mut tokio::fs::File,
    mut skip: u64,
    mut write: u64,
) -> Result<(), Refusal> {
    loop {
        let next = tokio::time::timeout(BODY_IDLE, body.next())
            .await
            .map_err(|_| Refusal::Malformed("the fragment's body stalled"))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| {
            tracing::info!(error = %e, "a fragment's body broke off");
            Refusal::Malformed("the fragment's body is shorter than its Content-Length")
        })?;
        let mut data: &[u8] = &chunk;
        let s = usize::try_from(skip).unwrap_or(usize::MAX).min(data.len());
        data = &data[s..];
        skip -= s as u64;
        let w = usize::try_from(write).unwrap_or(usize::MAX).min(data.len());
        file.write_all(&data[..w])
            .await
            .map_err(|e| io_refusal(&e))?;
        write -= w as u64;
    }
    if skip != 0 || write != 0 {
        return Err(Refusal::Malformed(
            "the fragment's body is shorter than its Content-Length",
        ));
    }
    file.flush().await.map_err(|e| io_refusal(&e))
}

async fn notify_app(
    st: &Arc<Shared>,
    di: usize,
    uuid: Uuid,
    meta: &Meta,
    host: Option<&str>,
) -> Result<Notified, Refusal> {
    let conf = &st.dirs[di].conf;
    let Some(url) = conf.notification_url.as_deref() else {
        return Err(Refusal::Internal);
    };
    let scheme = if st.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let origin = match (&st.config.public_origin, host) {
        (Some(o), _) => o.clone(),
        (None, Some(h)) => format!("{scheme}://{h}"),
        (None, None) => String::new(),
    };
    let original = format!("{origin}{}", meta.url_path);
    let data = st.dirs[di].store.data_path(uuid);
    let reply = st.dirs[di].store.reply_path(uuid);
    let answer = crate::notify::notify(
        &st.http,
        &Notification {
            kind: conf.notification,
            url,
            original_url: &original,
            data: &data,
            reply: &reply,
            timeout: Duration::from_secs(conf.notification_timeout_secs),
        },
    )
    .await?;
    let reply_url = match answer.reply {
        ReplySource::Static(u) => Some(u),
        ReplySource::Stored => Some(format!("{origin}{REPLY_PREFIX}{}", uuid.hyphenated())),
        ReplySource::None => None,
    };
    Ok(Notified {
        reply_url,
        copy_to_destination: answer.copy_to_destination,
    })
}

async fn close(
    st: &Arc<Shared>,
    dir: &Dir,
    url_path: &str,
    session: &str,
    user: Option<&str>,
    cancel: bool,
) -> Result<Response, Refusal> {
    let di = dir_index(st, dir);
    let lock = st.lock(protocol::parse_session_id(session).unwrap_or_default());
    let _guard = lock.lock().await;
    let (uuid, meta) = load_session(st, di, url_path, session, user).await?;
    let overwrite = dir.conf.allow_overwrite;
    let notified = dir.conf.notification != NotificationType::None;
    blocking(st, move |s| {
        let store = &s.dirs[di].store;
        if cancel {
            store.remove(uuid);
            return Ok(());
        }
        if let Some(total) = meta.total
            && meta.received < total
        {
            return Err(Refusal::Incomplete {
                received: meta.received,
                total,
            });
        }
        match &meta.notified {
            // The application took the upload over and did not ask for a copy.
            Some(n) if !n.copy_to_destination => {
                store.remove(uuid);
                Ok(())
            }
            None if notified && meta.total.is_some() => Err(Refusal::Application(
                "the server application was not notified yet; resend the last fragment".into(),
            )),
            _ => store.commit(uuid, &meta, overwrite),
        }
    })
    .await?;
    st.forget(uuid);
    tracing::info!(session = %session, url = %url_path, cancelled = cancel, "closed a session");
    Ok(ack(200, &[("BITS-Session-Id", session.to_owned())]))
}

async fn serve_reply(st: &Arc<Shared>, id: &str, user: Option<&str>, head: bool) -> Response {
    let Ok(uuid) = Uuid::try_parse(id) else {
        return plain(StatusCode::NOT_FOUND);
    };
    for (di, d) in st.dirs.iter().enumerate() {
        let Some(meta) = d.store.load(uuid) else {
            continue;
        };
        if meta.user.as_deref() != user {
            return plain(StatusCode::NOT_FOUND);
        }
        let path = st.dirs[di].store.reply_path(uuid);
        return match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let len = bytes.len();
                let body = if head {
                    Body::empty()
                } else {
                    Body::from(bytes)
                };
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, len.to_string())
                    .body(body)
                    .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR))
            }
            Err(_) => plain(StatusCode::NOT_FOUND),
        };
    }
    plain(StatusCode::NOT_FOUND)
}
