//! The HTTP server other Ferry hosts fetch cached content from (`ferry_peer::wire`).
//!
//! Every request must carry a valid fleet credential (`ferry_peer::auth`); without one the
//! answer is `401` with an empty body, whatever was asked. Only validated content in the index
//! is served (`404` otherwise), by at most `max_uploads` peers at once (`503` beyond), within
//! the upload bandwidth limit. A peer that received wrong bytes reports it, and the copy is
//! checked again (and evicted when it no longer matches).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
use tokio_util::sync::CancellationToken;

use super::{PeerCache, unix_now};

type Body = BoxBody<Bytes, std::io::Error>;

/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 256;
/// Bytes read from the cache file per body frame.
const CHUNK: usize = 256 * 1024;

/// Accepts peer connections until shutdown.
pub(super) async fn serve(pc: Arc<PeerCache>, listener: TcpListener, shutdown: CancellationToken) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
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
        let pc = pc.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let pc = pc.clone();
                async move { Ok::<_, Infallible>(handle(&pc, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%remote, error = %e, "peer connection ended with an error");
            }
        });
    }
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Empty::new().map_err(|n: Infallible| match n {}).boxed());
    *r.status_mut() = status;
    r
}

async fn handle(pc: &Arc<PeerCache>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let credential = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = auth::verify(&pc.cfg.secret, &method, &path, credential, unix_now()) {
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
