//! The HTTP server other Ferry hosts fetch cached content from (`ferry_peer::wire`).
//!
//! Connections are TLS 1.3 with the fleet's key on both sides (`ferry_peer::tls`): a host
//! without the fleet secret fails the handshake and sends or receives nothing else. Inside,
//! every request must also carry a valid fleet credential (`ferry_peer::auth`), accepted once;
//! without one the answer is `401` with an empty body, whatever was asked. Only validated
//! content in the index is served (`404` otherwise), by at most `max_uploads` peers at once
//! (`503` beyond), within the upload bandwidth limit. A peer that received wrong bytes reports
//! it, and the copy is checked again (and evicted when it no longer matches).
//!
//! Connections that never finish a handshake are bounded: at most [`MAX_HANDSHAKES`] at once
//! (a new one pushes out the oldest), each for at most [`HANDSHAKE_TIMEOUT`], so idle or slow
//! connections cannot keep members out; authenticated connections are capped at
//! [`MAX_CONNECTIONS`] and closed when idle for [`IDLE_TIMEOUT`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferry_peer::{auth, wire};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{PeerCache, unix_now};

type Body = BoxBody<Bytes, std::io::Error>;

/// Authenticated connections served at once; more are closed after their handshake.
const MAX_CONNECTIONS: usize = 256;
/// Connections in their TLS handshake at once; a new one closes the oldest.
const MAX_HANDSHAKES: usize = 64;
/// The longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// An authenticated connection sending no request for this long is closed (and a request's
/// headers must arrive within it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from the cache file per body frame.
const CHUNK: usize = 256 * 1024;

/// Connections still in their handshake, oldest first, each with the token that closes it.
#[derive(Default)]
struct Handshakes {
    next: u64,
    queue: VecDeque<(u64, CancellationToken)>,
}

impl Handshakes {
    /// Registers a new handshake, closing the oldest when [`MAX_HANDSHAKES`] are running.
    fn admit(&mut self, token: CancellationToken) -> u64 {
        if self.queue.len() >= MAX_HANDSHAKES
            && let Some((_, oldest)) = self.queue.pop_front()
        {
            oldest.cancel();
        }
        self.next += 1;
        self.queue.push_back((self.next, token));
        self.next
    }

    fn done(&mut self, id: u64) {
        self.queue.retain(|(i, _)| *i != id);
    }
}

/// Accepts peer connections until shutdown: never waits for a free slot before accepting, so
/// connections that hold slots without finishing a handshake cannot stall the accept loop.
pub(super) async fn serve(
    pc: Arc<PeerCache>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shutdown: CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let handshakes = Arc::new(Mutex::new(Handshakes::default()));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!(error = %e, "cannot accept a peer connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (pc, acceptor, connections) = (pc.clone(), acceptor.clone(), connections.clone());
        let token = shutdown.child_token();
        let id = lock(&handshakes).admit(token.clone());
        let handshakes = handshakes.clone();
        tokio::spawn(async move {
            let tls = tokio::select! {
                _ = token.cancelled() => None,
                r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => match r {
                    Ok(Ok(tls)) => Some(tls),
                    Ok(Err(e)) => {
                        pc.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%remote, error = %e, "refused a peer connection (TLS handshake failed: not a member of this fleet?)");
                        None
                    }
                    Err(_) => None,
                },
            };
            lock(&handshakes).done(id);
            let Some(tls) = tls else { return };
            let Ok(_permit) = connections.try_acquire_owned() else {
                tracing::warn!(%remote, "too many peer connections; closing a new one");
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let pc = pc.clone();
                async move { Ok::<_, Infallible>(handle(&pc, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(IDLE_TIMEOUT)
                .serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%remote, error = %e, "peer connection ended with an error");
            }
        });
    }
}

/// The handshakes in progress (a poisoned lock still holds a usable queue).
fn lock(h: &Mutex<Handshakes>) -> std::sync::MutexGuard<'_, Handshakes> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Empty::new().map_err(|n: Infallible| match n {}).boxed());
    *r.status_mut() = status;
    r
}

async fn handle(pc: &Arc<PeerCache>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    // The MAC covers the whole target: a query string added to a signed path breaks it.
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |t| t.as_str().to_owned());
    let credential = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let now = unix_now();
    let checked = auth::verify(&pc.cfg.secret, &method, &target, credential, now)
        .and_then(|v| pc.nonces().admit(&v, now));
    if let Err(e) = checked {
        pc.refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(method, path, why = %e, "refused a peer request");
        let mut r = empty(StatusCode::UNAUTHORIZED);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(auth::SCHEME),
        );
        return r;
    }
    if method == "POST" {
        return match wire::parse_verify_path(&path) {
            Some(key) => {
                pc.verify(key);
                empty(StatusCode::ACCEPTED)
            }
            None => empty(StatusCode::NOT_FOUND),
        };
    }
    if method != "GET" && method != "HEAD" {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    if let Some(key) = wire::parse_pieces_path(&path) {
        return match pc.entry(key).and_then(|e| e.pieces) {
            Some(list) if method == "GET" => {
                let mut r = Response::new(
                    http_body_util::Full::new(Bytes::from(list))
                        .map_err(|n: Infallible| match n {})
                        .boxed(),
                );
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                r
            }
            Some(_) => empty(StatusCode::METHOD_NOT_ALLOWED),
            None => empty(StatusCode::NOT_FOUND),
        };
    }
    let Some(entry) = wire::parse_content_path(&path).and_then(|k| pc.entry(k)) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let described = |mut r: Response<Body>| {
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&entry.sha256) {
            h.insert(wire::SHA256_HEADER, v);
        }
        h.insert(wire::SIZE_HEADER, HeaderValue::from(entry.size));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        r
    };
    if method == "HEAD" {
        let mut r = described(empty(StatusCode::OK));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(entry.size));
        return r;
    }
    let Ok(permit) = pc.uploads.clone().try_acquire_owned() else {
        let mut r = empty(StatusCode::SERVICE_UNAVAILABLE);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let from = match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        None => 0,
        Some(v) => match wire::parse_range_from(v) {
            Some(from) if from < entry.size => from,
            _ => {
                let mut r = empty(StatusCode::RANGE_NOT_SATISFIABLE);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", entry.size)) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
        },
    };
    let path = pc.content_path(&entry.key);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cached content unreadable");
            return empty(StatusCode::NOT_FOUND);
        }
    };
    if from > 0
        && let Err(e) = file.seek(std::io::SeekFrom::Start(from)).await
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot seek cached content");
        return empty(StatusCode::INTERNAL_SERVER_ERROR);
    }
    pc.touch(&entry.key);
    let len = entry.size - from;
    let throttle = ferry_fetch::throttle::Throttle::new(vec![pc.upload_bucket.clone()]);
    let state = (file, len, permit, pc.clone(), throttle);
    let stream =
        futures_util::stream::unfold(state, |(mut file, left, permit, pc, throttle)| async move {
            if left == 0 {
                return None;
            }
            let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            let mut buf = vec![0u8; want];
            let frame = match file.read(&mut buf).await {
                Ok(0) => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                Ok(n) => {
                    buf.truncate(n);
                    let wait = throttle.take(n as u64);
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    pc.bytes_served.fetch_add(n as u64, Ordering::Relaxed);
                    Ok(Frame::data(Bytes::from(buf)))
                }
                Err(e) => Err(e),
            };
            let left = match &frame {
                Ok(f) => left - f.data_ref().map_or(0, |b| b.len() as u64),
                // One error ends the body (the peer sees a short answer and checks nothing in).
                Err(_) => 0,
            };
            Some((frame, (file, left, permit, pc, throttle)))
        });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if from > 0 {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) =
            HeaderValue::from_str(&format!("bytes {from}-{}/{}", entry.size - 1, entry.size))
        {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    described(r)
}
