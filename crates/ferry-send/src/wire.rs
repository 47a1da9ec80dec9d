//! One request and its answer: headers, credentials kept to the target's origin, a throttled
//! body that reports progress, the stall watchdog and cancellation, and every failure
//! classified as `ferry-fetch` classifies download failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferry_fetch::throttle::Throttle;
use ferry_fetch::{FetchError, FetchErrorKind};
use ferry_proto::ErrorContext;
use ferry_upload_proto::bits_client::{self, Request};
use ferry_upload_proto::tus::{self, Capabilities};
use futures_util::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::{SendEvent, Target};

/// Body slices handed to the connection, each accounted in the throttle.
const SLICE: usize = 64 * 1024;

/// The most of an answer's body that is read (and dropped) to keep the connection reusable.
const MAX_DRAIN: usize = 1024 * 1024;

/// How often, at most, a progress event is sent.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// An answer's status and headers.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
}

impl Reply {
    /// The headers as the protocol rules read them.
    pub(crate) fn h(&self) -> &HeaderMap {
        &self.headers
    }

    /// `Retry-After` of a 429 or 503.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        if !matches!(self.status, 429 | 503) {
            return None;
        }
        ferry_fetch::header_str(&self.headers, &header::RETRY_AFTER)
            .and_then(|v| ferry_fetch::parse_retry_after(v, SystemTime::now()))
    }
}

/// When the connection last took a byte (or a request started), in ms since `epoch`.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    /// Active until `at` (a throttle wait is not a stall).
    fn touch_until(&self, at: Instant) {
        let ms =
            u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Where a body's progress goes.
pub(crate) struct Progress {
    pub(crate) events: UnboundedSender<SendEvent>,
    /// Bytes before this body (the acknowledged prefix).
    pub(crate) base: u64,
    /// The file's size.
    pub(crate) total: u64,
    /// Limits to honour.
    pub(crate) throttle: Throttle,
}

/// The requests of one send to one target.
pub(crate) struct Wire<'a> {
    pub(crate) client: &'a reqwest::Client,
    /// The target's URL: its origin alone gets the custom headers and credentials.
    pub(crate) start: Url,
    target: &'a Target,
    custom: Vec<(HeaderName, HeaderValue)>,
    stall: Duration,
    cancel: &'a CancellationToken,
}

impl<'a> Wire<'a> {
    pub(crate) fn new(
        client: &'a reqwest::Client,
        target: &'a Target,
        stall: Duration,
        cancel: &'a CancellationToken,
    ) -> Result<Wire<'a>, FetchError> {
        let start = Url::parse(&target.url).map_err(|e| {
            FetchError::invalid_request(format!(
                "invalid upload URL {:?}: {e}",
                ferry_fetch::redact_url_str(&target.url)
            ))
        })?;
        if !matches!(start.scheme(), "http" | "https") {
            return Err(FetchError::invalid_request(format!(
                "uploads go to http or https URLs, not {:?}",
                start.scheme()
            )));
        }
        let custom = ferry_fetch::custom_headers(&target.headers)?;
        Ok(Wire {
            client,
            start,
            target,
            custom,
            stall,
            cancel,
        })
    }

    /// Sends one request and reads its answer's head (the body is read and dropped).
    pub(crate) async fn exchange(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&'static str, String)],
        body: Option<(Bytes, Progress)>,
    ) -> Result<Reply, FetchError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| FetchError::invalid_request(format!("bad method {method}")))?;
        let mut rb = self.client.request(method, url.clone());
        for (n, v) in headers {
            rb = rb.header(*n, v.as_str());
        }
        rb = self.authorized(rb, url);
        let act = Activity::new();
        act.touch_until(Instant::now());
        rb = match body {
            None => rb
                .header(header::CONTENT_LENGTH, "0")
                .body(reqwest::Body::from(Bytes::new())),
            Some((data, progress)) => rb
                .header(header::CONTENT_LENGTH, data.len().to_string())
                .body(throttled(data, progress, act.clone())),
        };
        let fut = async {
            let resp = rb
                .send()
                .await
                .map_err(|e| ferry_fetch::send_error(&e, url))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let mut stream = resp.bytes_stream();
            let mut drained = 0;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => drained += c.len(),
                    // The head is what matters; a broken body only costs the connection.
                    Err(_) => break,
                }
                if drained > MAX_DRAIN {
                    break;
                }
            }
            Ok(Reply { status, headers })
        };
        self.guarded(&act, url, fut).await
    }

    /// `rb` with the job's custom headers and credentials when `url` is on the target's origin.
    fn authorized(&self, mut rb: reqwest::RequestBuilder, url: &Url) -> reqwest::RequestBuilder {
        if url.origin() == self.start.origin() {
            for (n, v) in &self.custom {
                rb = rb.header(n.clone(), v.clone());
            }
            if let Some((user, pass)) = &self.target.basic_auth {
                rb = rb.basic_auth(user, Some(pass));
            }
        }
        rb
    }

    /// Runs `fut` until it ends, the send is cancelled, or `act` shows nothing for the stall
    /// timeout (a transient `STALLED`).
    async fn guarded<T>(
        &self,
        act: &Activity,
        url: &Url,
        fut: impl std::future::Future<Output = Result<T, FetchError>>,
    ) -> Result<T, FetchError> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(FetchError::cancelled()),
            r = fut => r,
            () = watchdog(act, self.stall) => Err(FetchError::new(
                ErrorContext::GeneralTransport,
                FetchErrorKind::Stalled,
                true,
                format!(
                    "{} took no data and sent no answer for {:?}",
                    ferry_fetch::redact(url),
                    self.stall
                ),
            )),
        }
    }

    /// A GET of `url` whose 200 body is returned, at most `max` bytes.
    pub(crate) async fn get_bounded(&self, url: &Url, max: usize) -> Result<Vec<u8>, FetchError> {
        let rb = self.authorized(self.client.get(url.clone()), url);
        let act = Activity::new();
        act.touch_until(Instant::now());
        let fut = async {
            let resp = rb
                .send()
                .await
                .map_err(|e| ferry_fetch::send_error(&e, url))?;
            if resp.status().as_u16() != 200 {
                return Err(ferry_fetch::status_error(&resp, url));
            }
            let mut body = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ferry_fetch::body_error(&e))?;
                act.touch_until(Instant::now());
                if body.len() + chunk.len() > max {
                    return Err(FetchError::new(
                        ErrorContext::RemoteFile,
                        FetchErrorKind::InvalidServerResponse,
                        false,
                        format!(
                            "the reply at {} is larger than {max} bytes (BG_E_TOO_LARGE)",
                            ferry_fetch::redact(url)
                        ),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        self.guarded(&act, url, fut).await
    }

    /// A BITS packet to `url`.
    pub(crate) async fn bits(
        &self,
        url: &Url,
        req: &Request,
        content_name: Option<&str>,
        body: Option<(Bytes, Progress)>,
    ) -> Result<(Reply, bits_client::Answer), FetchError> {
        let reply = self
            .exchange(
                ferry_upload_proto::METHOD,
                url,
                &req.headers(content_name),
                body,
            )
            .await?;
        let answer = bits_client::parse_answer(reply.status, reply.h());
        Ok((reply, answer))
    }

    /// A tus OPTIONS to `url`: the capabilities, or `None` when it is not a tus server.
    pub(crate) async fn tus_options(&self, url: &Url) -> Result<Option<Capabilities>, FetchError> {
        let r = self
            .exchange("OPTIONS", url, &tus::plain_headers(), None)
            .await?;
        Ok(tus::parse_options(r.status, r.h()))
    }

    /// A BITS Ping to `url`: whether the answer is an Ack.
    pub(crate) async fn bits_ping(&self, url: &Url) -> Result<bool, FetchError> {
        let (_, a) = self.bits(url, &Request::Ping, None, None).await?;
        Ok(a.is_ack)
    }
}

/// Resolves when `act` saw nothing for `stall` (zero: never).
async fn watchdog(act: &Activity, stall: Duration) {
    if stall.is_zero() {
        return std::future::pending().await;
    }
    loop {
        let due = act.last() + stall;
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due).await;
    }
}

/// `data` as a body handed over in slices, each waiting for the throttle and marking
/// activity; progress events go out as slices are taken.
fn throttled(data: Bytes, p: Progress, act: Arc<Activity>) -> reqwest::Body {
    let state = (data, 0usize, None::<Instant>, p, act);
    let stream = futures_util::stream::unfold(state, |(data, pos, last, p, act)| async move {
        if pos >= data.len() {
            return None;
        }
        let end = (pos + SLICE).min(data.len());
        let wait = p.throttle.take((end - pos) as u64);
        if !wait.is_zero() {
            act.touch_until(Instant::now() + wait);
            tokio::time::sleep(wait).await;
        }
        let now = Instant::now();
        act.touch_until(now);
        let mut last = last;
        if end == data.len() || last.is_none_or(|t| now - t >= PROGRESS_EVERY) {
            last = Some(now);
            let _ = p.events.send(SendEvent::Progress {
                bytes: p.base + end as u64,
                total: p.total,
            });
        }
        let chunk = data.slice(pos..end);
        Some((Ok::<_, std::io::Error>(chunk), (data, end, last, p, act)))
    });
    reqwest::Body::wrap_stream(stream)
}

/// An error for an answer the protocol rules refused: `status` when it came from one.
pub(crate) fn answer_error(
    reply: Option<&Reply>,
    transient: bool,
    context: ErrorContext,
    description: String,
) -> FetchError {
    let status = reply.map(|r| r.status).filter(|s| *s >= 300);
    let kind = match status {
        Some(s) => FetchErrorKind::Http(s),
        None => FetchErrorKind::InvalidServerResponse,
    };
    let mut e = FetchError::new(context, kind, transient, description);
    e.http_status = status;
    e.retry_after = reply.and_then(Reply::retry_after);
    e
}
