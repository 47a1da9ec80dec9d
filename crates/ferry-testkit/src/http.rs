//! A hand-written HTTP/1.1 test server with per-path fault knobs and a full request log.
//!
//! Written by hand (not axum/hyper) so a test controls every byte on the wire: it can cut a body
//! mid-way or reset the connection, stall with the socket open, ignore `Range`, change the ETag
//! on every request, drip the body slowly, or hold it until the test releases a permit; and,
//! for hostile-server tests, answer a range with an HTML page, lie in `Content-Range`, send more
//! than `Content-Length`, send megabytes of headers, never end a body, or never answer at all.
//! It serves files registered with [`TestServer::add_file`] with strong validators and
//! single-range support, keeps connections alive, and records every request so tests can check
//! what a client sent.
//!
//! Not for production, not a general web server: one listener on 127.0.0.1, no TLS, no
//! `multipart/byteranges` (a multi-range request gets the whole file, which RFC 9110 allows),
//! no compression. Waiting is event-driven ([`TestServer::wait_until`]); nothing here sleeps
//! except the pacing of [`Behavior::rate_bytes_per_sec`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// The longest request head (request line plus headers) the server accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Per-path fault knobs; the default serves the file normally.
///
/// Knobs are checked in this order: `never_answer`, `fail_first`, `redirect_to`, `status`,
/// `body_override`, then the file. The body knobs (`gate`, `rate_bytes_per_sec`, `stall_after`,
/// `cut_after`, `reset_after`, `extra_body_bytes`, `endless_body`) apply to file bodies and to
/// `body_override`, never to the short bodies of error answers; `huge_headers` and
/// `extra_headers` apply to every answer.
#[derive(Debug, Clone, Default)]
pub struct Behavior {
    /// Answer every request with this status (and a short text body) instead of the file.
    pub status: Option<u16>,
    /// The first N requests to the path get this status, later ones are served normally.
    pub fail_first: Option<(u32, u16)>,
    /// A `Retry-After` value sent with `status` / `fail_first` answers.
    pub retry_after: Option<String>,
    /// Ignore `Range` (always answer 200 with the whole file, no `Accept-Ranges`).
    pub ignore_range: bool,
    /// Send a different strong ETag on every request, so `If-Range` never matches it.
    pub etag_changes_every_request: bool,
    /// Send neither `ETag` nor `Last-Modified` (and so never honour `If-Range`).
    pub no_validators: bool,
    /// Drip the body at this many bytes per second (lets tests interrupt a transfer mid-way).
    pub rate_bytes_per_sec: Option<u64>,
    /// Send the headers and this many body bytes, then hang with the socket open until the
    /// client goes away or the server is dropped.
    pub stall_after: Option<u64>,
    /// Send this many body bytes, then close the connection (a body shorter than declared).
    pub cut_after: Option<u64>,
    /// Omit `Content-Length`; the body is then delimited by closing the connection.
    pub no_content_length: bool,
    /// Answer with a redirect to this `Location` (status `status`, else 302).
    pub redirect_to: Option<String>,
    /// Extra response headers, sent on every answer for the path.
    pub extra_headers: Vec<(String, String)>,
    /// Hold each file body (after the headers went out) until a permit is available; the permit
    /// is consumed, so each added permit releases exactly one body.
    pub gate: Option<Arc<Semaphore>>,
    /// Answer 200 with this body instead of the file, whatever the request's `Range` says: an
    /// HTML error page from a misconfigured server or proxy. It goes out with its own
    /// `Content-Length` (unless `no_content_length`) and `content-type: text/html;
    /// charset=utf-8`, without validators or `Accept-Ranges`; no file needs to exist at the path.
    pub body_override: Option<Bytes>,
    /// Answer a satisfiable single-range request with 206 and this `Content-Range` value, while
    /// the body (and its `Content-Length`) are still exactly the bytes requested. Requests
    /// without a usable `Range` are answered normally.
    pub content_range_override: Option<String>,
    /// After a complete body, send this many more bytes than `Content-Length` declared (filler
    /// that belongs to no file), then carry on with the connection as if nothing happened.
    pub extra_body_bytes: Option<u64>,
    /// Put about this many bytes of extra header lines (`x-filler-N: aaa…`, about 1 KiB each)
    /// into the answer's head, before the blank line that ends it.
    pub huge_headers: Option<usize>,
    /// Send the file body without `Content-Length` (delimited by closing the connection, which
    /// never happens), then filler, forever, until the client goes away or the server is
    /// dropped. Always 200 (a stream has no ranges; no `Accept-Ranges`). Pair it with
    /// `rate_bytes_per_sec`, or a client writing to disk fills it at loopback speed.
    pub endless_body: bool,
    /// Read the request and never answer: no status line, no byte, the socket stays open until
    /// the client goes away or the server is dropped. Logged with status 0.
    pub never_answer: bool,
    /// Send the headers and this many body bytes, then abort the connection with a TCP RST
    /// (`SO_LINGER` 0): the client sees "connection reset by peer", not a clean end of stream.
    pub reset_after: Option<u64>,
}

/// What `extra_body_bytes` and `endless_body` send: bytes that belong to no file.
const FILLER: &[u8] =
    b"ferry-testkit filler: these bytes belong to no file; a client must never keep them\n";

/// One request as the server saw it, and what it answered.
#[derive(Debug, Clone)]
pub struct RequestLog {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// Every request header, names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `If-Range` header, if any.
    pub if_range: Option<String>,
    /// When the request head was parsed.
    pub time: Instant,
    /// The status the server answered (0 while and when `never_answer` holds it).
    pub status: u16,
    /// Body bytes written to the socket for this answer (final once `finished`).
    pub body_bytes_sent: u64,
    /// False while the body is held by a gate, dripping or stalled; true once the server is
    /// done with the answer (sent in full, cut, or the client went away).
    pub finished: bool,
    /// Which accepted connection carried the request (equal ids prove keep-alive reuse).
    pub connection_id: u64,
    /// The request body, if one was sent (`Content-Length` or chunked).
    pub request_body: Bytes,
}

impl RequestLog {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A file registered with the server.
struct StoredFile {
    body: Bytes,
    /// Strong ETag, quotes included.
    etag: String,
    /// Last-Modified time; bumped by at least a second on every replacement so that a
    /// Last-Modified `If-Range` notices the change despite the header's one-second granularity.
    modified: SystemTime,
}

/// Everything the connection tasks and the test share.
#[derive(Default)]
struct State {
    files: HashMap<String, StoredFile>,
    behaviors: HashMap<String, Behavior>,
    /// Requests seen per path (1-based count after increment), for `fail_first` and ETags.
    hits: HashMap<String, u32>,
    log: Vec<RequestLog>,
    /// Answers received and not finished, and the most there ever were at once.
    in_flight: usize,
    peak_in_flight: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Woken on every log change, so waiters re-check their condition.
    changed: Notify,
    next_connection: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge every other user of the server.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_log(&self, index: usize, sent: u64, finished: bool) {
        {
            let mut st = self.lock();
            let mut ended = false;
            if let Some(entry) = st.log.get_mut(index) {
                entry.body_bytes_sent = sent;
                ended = finished && !entry.finished;
                entry.finished = finished;
            }
            if ended {
                st.in_flight = st.in_flight.saturating_sub(1);
            }
        }
        self.changed.notify_waiters();
    }
}

/// An HTTP/1.1 server on 127.0.0.1 with an ephemeral port; shuts down when dropped.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Ends the accept loop and every connection task, including stalled ones.
        self.shutdown.cancel();
    }
}

/// Makes every path key start with `/`, so `"a.bin"` and `"/a.bin"` name the same file.
fn normalize(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

impl TestServer {
    /// Binds 127.0.0.1:0 and starts serving in the background.
    #[expect(
        clippy::expect_used,
        reason = "a test server that cannot bind loopback cannot run any test; failing loudly is the point"
    )]
    pub async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the test server");
        let addr = listener
            .local_addr()
            .expect("local address of the test server");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            next_connection: AtomicU64::new(1),
        });
        let shutdown = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), shutdown.clone()));
        TestServer {
            addr,
            shared,
            shutdown,
        }
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/path` (a leading `/` is added when missing).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, normalize(path))
    }

    /// Serves `body` at `path` (replacing any earlier file there) with a strong ETag derived
    /// from the content, Last-Modified, Content-Length and `Accept-Ranges: bytes`.
    pub fn add_file(&self, path: &str, body: impl Into<Bytes>) {
        let body = body.into();
        let digest = hex::encode(Sha256::digest(&body));
        let etag = format!("\"{}\"", &digest[..32]);
        let path = normalize(path);
        let mut st = self.shared.lock();
        let now = SystemTime::now();
        let modified = match st.files.get(&path) {
            Some(old) => now.max(old.modified + Duration::from_secs(1)),
            None => now,
        };
        st.files.insert(
            path,
            StoredFile {
                body,
                etag,
                modified,
            },
        );
    }

    /// Stops serving `path` (later requests get 404).
    pub fn remove_file(&self, path: &str) {
        self.shared.lock().files.remove(&normalize(path));
    }

    /// The strong ETag (quotes included) `path` is served with, when no knob alters it.
    pub fn etag(&self, path: &str) -> Option<String> {
        self.shared
            .lock()
            .files
            .get(&normalize(path))
            .map(|f| f.etag.clone())
    }

    /// The `Last-Modified` value `path` is served with.
    pub fn last_modified(&self, path: &str) -> Option<String> {
        self.shared
            .lock()
            .files
            .get(&normalize(path))
            .map(|f| httpdate::fmt_http_date(f.modified))
    }

    /// Serves `body` at `path`, dripped at `rate` bytes per second, so that a test can act
    /// while the transfer is under way.
    pub fn add_dripped_file(&self, path: &str, body: impl Into<Bytes>, rate: u64) {
        self.add_file(path, body);
        self.set_behavior(
            path,
            Behavior {
                rate_bytes_per_sec: Some(rate),
                ..Behavior::default()
            },
        );
    }

    /// Sets the fault knobs of `path`; takes effect for the next request, even mid-test.
    pub fn set_behavior(&self, path: &str, b: Behavior) {
        self.shared.lock().behaviors.insert(normalize(path), b);
    }

    /// Restores normal serving of `path`.
    pub fn clear_behavior(&self, path: &str) {
        self.shared.lock().behaviors.remove(&normalize(path));
    }

    /// The most requests the server was answering at once so far (received, answer not
    /// finished): how many connections were really talking to it at the same time.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.lock().peak_in_flight
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.shared.lock().log.clone()
    }

    /// The requests so far to `path`, in arrival order.
    pub fn requests_for(&self, path: &str) -> Vec<RequestLog> {
        let path = normalize(path);
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `cond` holds for the whole request log; returns the log then, or `None` if
    /// `timeout` passed first. Event-driven: re-checked whenever the log changes.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&[RequestLog]) -> bool,
    ) -> Option<Vec<RequestLog>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so a change between the check and the await
            // is not missed.
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.shared.lock();
                if cond(&st.log) {
                    return Some(st.log.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Waits until at least `n` requests to `path` were received and returns all requests to
    /// it; returns fewer than `n` if `timeout` passed first.
    pub async fn wait_for_requests(
        &self,
        path: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<RequestLog> {
        let path = normalize(path);
        let _ = self
            .wait_until(timeout, |log| {
                log.iter().filter(|r| r.path == path).count() >= n
            })
            .await;
        self.requests_for(&path)
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _peer)) = accepted else {
            // Transient accept errors (e.g. EMFILE) should not kill the server for other tests.
            continue;
        };
        // Head and body go out in separate writes; Nagle plus delayed ACK would add 40 ms.
        let _ = stream.set_nodelay(true);
        let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = serve_connection(shared, stream, id) => {}
            }
        });
    }
}

/// A parsed request.
struct Request {
    method: String,
    target: String,
    version_1_0: bool,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after this request (HTTP/1.1 default, 1.0 opt-in).
    fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(|v| v.to_ascii_lowercase());
        match conn.as_deref() {
            Some(v) if v.split(',').any(|t| t.trim() == "close") => false,
            Some(v) if v.split(',').any(|t| t.trim() == "keep-alive") => true,
            _ => !self.version_1_0,
        }
    }
}

/// Why a request could not be read.
enum ReadError {
    /// The client closed the connection cleanly between requests.
    Eof,
    /// I/O error or a malformed request; the connection is closed (after a 400 if possible).
    Bad,
}

async fn read_line(r: &mut BufReader<TcpStream>, budget: &mut usize) -> Result<String, ReadError> {
    let mut line = Vec::new();
    let n = r
        .read_until(b'\n', &mut line)
        .await
        .map_err(|_| ReadError::Bad)?;
    if n == 0 {
        return Err(ReadError::Eof);
    }
    *budget = budget.checked_sub(n).ok_or(ReadError::Bad)?;
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| ReadError::Bad)
}

async fn read_request(r: &mut BufReader<TcpStream>) -> Result<Request, ReadError> {
    let mut budget = MAX_HEAD_BYTES;
    let mut first = read_line(r, &mut budget).await?;
    // RFC 9112, section 2.2: ignore empty lines before a request line.
    while first.is_empty() {
        first = read_line(r, &mut budget).await?;
    }
    let mut parts = first.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad);
    };
    let version_1_0 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Bad),
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut budget)
            .await
            .map_err(|_| ReadError::Bad)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or(ReadError::Bad)?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut req = Request {
        method,
        target,
        version_1_0,
        headers,
        body: Bytes::new(),
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(r).await?;
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().map_err(|_| ReadError::Bad)?;
        let mut body = vec![0; len];
        r.read_exact(&mut body).await.map_err(|_| ReadError::Bad)?;
        req.body = body.into();
    }
    Ok(req)
}

/// Decodes a chunked request body (trailers are read and dropped).
async fn read_chunked(r: &mut BufReader<TcpStream>) -> Result<Bytes, ReadError> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD_BYTES;
    loop {
        let line = read_line(r, &mut budget)
            .await
            .map_err(|_| ReadError::Bad)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| ReadError::Bad)?;
        if size == 0 {
            while !read_line(r, &mut budget)
                .await
                .map_err(|_| ReadError::Bad)?
                .is_empty()
            {}
            return Ok(body.into());
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])
            .await
            .map_err(|_| ReadError::Bad)?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).await.map_err(|_| ReadError::Bad)?;
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, connection_id: u64) {
    let mut conn = BufReader::new(stream);
    loop {
        let req = match read_request(&mut conn).await {
            Ok(req) => req,
            Err(ReadError::Eof) => return,
            Err(ReadError::Bad) => {
                let _ = conn
                    .get_mut()
                    .write_all(
                        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                return;
            }
        };
        match respond(&shared, &mut conn, req, connection_id).await {
            After::KeepAlive => {}
            After::Close => {
                let _ = conn.get_mut().shutdown().await;
                return;
            }
            After::Reset => {
                // SO_LINGER 0, then close: the kernel sends RST instead of FIN. With a zero
                // linger time the close does not block, which is what the deprecation is about.
                #[expect(deprecated, reason = "a zero linger never blocks the thread on drop")]
                let _ = conn.get_ref().set_linger(Some(Duration::ZERO));
                return;
            }
        }
    }
}

/// What to send for one request, decided under the lock.
struct Plan {
    /// 0: send nothing at all (`never_answer`).
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    /// Whether the body knobs apply (file bodies only).
    file_body: bool,
    behavior: Behavior,
    /// Whether the body is delimited by closing the connection.
    close_delimited: bool,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A short text answer (errors, redirects, 416).
fn short_answer(status: u16, b: &Behavior, mut headers: Vec<(String, String)>) -> Plan {
    let body = Bytes::from(format!("{status} {}\n", reason(status)));
    headers.push(("content-type".into(), "text/plain".into()));
    if let Some(ra) = &b.retry_after {
        headers.push(("retry-after".into(), ra.clone()));
    }
    Plan {
        status,
        headers,
        body,
        file_body: false,
        behavior: b.clone(),
        close_delimited: false,
    }
}

/// How a `Range` header applies to a resource.
#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// Inclusive byte bounds to send with 206.
    Part(u64, u64),
    /// No byte of the range exists: 416.
    Unsatisfiable,
}

/// Parses a single `bytes=` range against a resource of `total` bytes; `None` means there is
/// no usable range (serve the whole file).
fn parse_range(header: &str, total: u64) -> Option<RangeAnswer> {
    use RangeAnswer::{Part, Unsatisfiable};
    let (unit, spec) = header.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return None;
    }
    let (a, b) = spec.trim().split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), b.trim().is_empty()) {
        // "-n": the last n bytes.
        (true, false) => {
            let n = num(b)?;
            if n == 0 || total == 0 {
                return Some(Unsatisfiable);
            }
            Some(Part(total.saturating_sub(n), total - 1))
        }
        // "a-": from a to the end.
        (false, true) => {
            let a = num(a)?;
            if a >= total {
                return Some(Unsatisfiable);
            }
            Some(Part(a, total - 1))
        }
        (false, false) => {
            let (a, b) = (num(a)?, num(b)?);
            if b < a {
                return None; // Syntactically invalid: RFC 9110 says ignore the header.
            }
            if a >= total {
                return Some(Unsatisfiable);
            }
            Some(Part(a, b.min(total - 1)))
        }
        (true, true) => None,
    }
}

fn plan_for(st: &mut State, req: &Request, path: &str) -> Plan {
    let hits = st.hits.entry(path.to_owned()).or_insert(0);
    *hits += 1;
    let n = *hits;
    let b = st.behaviors.get(path).cloned().unwrap_or_default();
    let mut headers = b.extra_headers.clone();

    if b.never_answer {
        return Plan {
            status: 0,
            headers,
            body: Bytes::new(),
            file_body: false,
            behavior: b,
            close_delimited: false,
        };
    }
    if let Some((count, status)) = b.fail_first
        && n <= count
    {
        return short_answer(status, &b, headers);
    }
    if let Some(loc) = &b.redirect_to {
        headers.push(("location".into(), loc.clone()));
        return short_answer(b.status.unwrap_or(302), &b, headers);
    }
    if let Some(status) = b.status {
        return short_answer(status, &b, headers);
    }
    if let Some(page) = &b.body_override {
        headers.push(("content-type".into(), "text/html; charset=utf-8".into()));
        return Plan {
            status: 200,
            headers,
            body: page.clone(),
            file_body: true,
            close_delimited: b.no_content_length || b.endless_body,
            behavior: b,
        };
    }
    let Some(file) = st.files.get(path) else {
        return short_answer(404, &b, headers);
    };

    let total = file.body.len() as u64;
    let etag = if b.etag_changes_every_request {
        format!("{}-{n}\"", file.etag.trim_end_matches('"'))
    } else {
        file.etag.clone()
    };
    let last_modified = httpdate::fmt_http_date(file.modified);

    // An endless stream has no ranges: it ignores them like `ignore_range`.
    let ignore_range = b.ignore_range || b.endless_body;
    let mut range = None;
    if !ignore_range && let Some(r) = req.header("range") {
        // If-Range (RFC 9110, section 13.1.5): a strong ETag compares exactly, a date compares equal to
        // Last-Modified; a weak ETag never matches. A mismatch means "send the whole thing".
        let validator_ok = match req.header("if-range") {
            None => true,
            Some(_) if b.no_validators => false,
            Some(v) if v.starts_with("W/") => false,
            Some(v) if v.starts_with('"') => v == etag,
            Some(v) => v == last_modified,
        };
        if validator_ok {
            range = parse_range(r, total);
        }
    }

    if !b.no_validators {
        headers.push(("etag".into(), etag));
        headers.push(("last-modified".into(), last_modified));
    }
    if !ignore_range {
        headers.push(("accept-ranges".into(), "bytes".into()));
    }
    let (status, body) = match range {
        None => (200, file.body.clone()),
        Some(RangeAnswer::Unsatisfiable) => {
            headers.push(("content-range".into(), format!("bytes */{total}")));
            return short_answer(416, &b, headers);
        }
        Some(RangeAnswer::Part(start, end)) => {
            let content_range = match &b.content_range_override {
                Some(lie) => lie.clone(),
                None => format!("bytes {start}-{end}/{total}"),
            };
            headers.push(("content-range".into(), content_range));
            // Both bounds lie within the body (checked by parse_range), so the casts are exact.
            (206, file.body.slice(start as usize..=end as usize))
        }
    };
    headers.push(("content-type".into(), "application/octet-stream".into()));
    Plan {
        status,
        headers,
        body,
        file_body: true,
        close_delimited: b.no_content_length || b.endless_body,
        behavior: b,
    }
}

/// How a connection goes on after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Read the next request.
    KeepAlive,
    /// Close cleanly (FIN).
    Close,
    /// Abort with a TCP RST (`reset_after`).
    Reset,
}

/// Bytes of extra header lines for `huge_headers`: `x-filler-N: aaa…` lines of about 1 KiB.
fn filler_headers(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 1024);
    let mut i = 0u64;
    while out.len() < bytes {
        let name = format!("x-filler-{i}: ");
        // At least one value byte, so every line is a valid header.
        let room = bytes
            .saturating_sub(out.len() + name.len() + 2)
            .clamp(1, 1000);
        out.push_str(&name);
        out.extend(std::iter::repeat_n('a', room));
        out.push_str("\r\n");
        i += 1;
    }
    out
}

/// Answers one request; says how the connection goes on.
async fn respond(
    shared: &Shared,
    conn: &mut BufReader<TcpStream>,
    req: Request,
    connection_id: u64,
) -> After {
    // A request sent to us as a proxy names the whole URL (absolute form); serve its path, and
    // keep the full target in the log so a test can see the proxy was used.
    let origin_form = match req.target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => req.target.as_str(),
    };
    let path = normalize(origin_form.split('?').next().unwrap_or(""));
    let (plan, index) = {
        let mut st = shared.lock();
        let plan = plan_for(&mut st, &req, &path);
        st.log.push(RequestLog {
            method: req.method.clone(),
            path: path.clone(),
            target: req.target.clone(),
            range: req.header("range").map(str::to_owned),
            if_range: req.header("if-range").map(str::to_owned),
            headers: req.headers.clone(),
            time: Instant::now(),
            status: plan.status,
            body_bytes_sent: 0,
            finished: false,
            connection_id,
            request_body: req.body.clone(),
        });
        st.in_flight += 1;
        st.peak_in_flight = st.peak_in_flight.max(st.in_flight);
        (plan, st.log.len() - 1)
    };
    shared.changed.notify_waiters();

    if plan.status == 0 {
        // never_answer: hold the socket, send nothing, until the client gives up.
        wait_for_client_to_leave(conn).await;
        shared.update_log(index, 0, true);
        return After::Close;
    }

    let head_only = req.method.eq_ignore_ascii_case("HEAD");
    let keep = req.keep_alive() && !plan.close_delimited;
    let mut head = format!("HTTP/1.1 {} {}\r\n", plan.status, reason(plan.status));
    for (name, value) in &plan.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(n) = plan.behavior.huge_headers {
        head.push_str(&filler_headers(n));
    }
    if !plan.close_delimited {
        head.push_str(&format!("content-length: {}\r\n", plan.body.len()));
    }
    if !keep {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let ending = |ok: bool| {
        if ok && keep {
            After::KeepAlive
        } else {
            After::Close
        }
    };

    let stream = conn.get_mut();
    if head_only || !plan.file_body {
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&plan.body);
        }
        let ok = stream.write_all(&out).await.is_ok();
        let sent = if head_only { 0 } else { plan.body.len() as u64 };
        shared.update_log(index, if ok { sent } else { 0 }, true);
        return ending(ok);
    }

    if stream.write_all(head.as_bytes()).await.is_err() {
        shared.update_log(index, 0, true);
        return After::Close;
    }
    let b = &plan.behavior;
    if let Some(gate) = &b.gate {
        // Consumed, not returned: each permit the test adds releases exactly one body.
        // A closed semaphore (Err) opens the gate for good.
        if let Ok(permit) = gate.clone().acquire_owned().await {
            permit.forget();
        }
    }

    let len = plan.body.len() as u64;
    let stop_at = [b.stall_after, b.cut_after, b.reset_after]
        .into_iter()
        .flatten()
        .fold(len, u64::min);
    let mut pacer = Pacer::new(b.rate_bytes_per_sec);
    // stop_at <= body.len(), so the cast is exact.
    if pacer
        .write(stream, &plan.body[..stop_at as usize])
        .await
        .is_err()
    {
        shared.update_log(index, 0, true);
        return After::Close;
    }
    let mut sent = stop_at;
    if sent < len {
        if b.stall_after == Some(stop_at) {
            // Stall: keep the socket open, send nothing, until the client gives up (EOF or
            // error) or the server is dropped (the connection task is cancelled then).
            shared.update_log(index, sent, false);
            wait_for_client_to_leave(conn).await;
            shared.update_log(index, sent, true);
            return After::Close;
        }
        shared.update_log(index, sent, true);
        if b.reset_after == Some(stop_at) {
            return After::Reset;
        }
        // A cut body ends the connection.
        return After::Close;
    }

    if b.endless_body || b.extra_body_bytes.is_some() {
        // Filler past the end of the body: forever, or exactly `extra_body_bytes`.
        let mut left = if b.endless_body {
            u64::MAX
        } else {
            b.extra_body_bytes.unwrap_or(0)
        };
        let filler = filler_block();
        shared.update_log(index, sent, false);
        while left > 0 {
            let n = left.min(filler.len() as u64);
            // n <= filler.len(), so the cast is exact.
            if pacer.write(stream, &filler[..n as usize]).await.is_err() {
                // The client went away: the usual end of an endless body.
                shared.update_log(index, sent, true);
                return After::Close;
            }
            sent += n;
            left -= n;
            shared.update_log(index, sent, false);
        }
    }
    shared.update_log(index, sent, true);
    // A body delimited by close ends the connection.
    ending(true)
}

/// 64 KiB of [`FILLER`].
fn filler_block() -> Bytes {
    FILLER.iter().copied().cycle().take(64 * 1024).collect()
}

/// Reads and drops whatever the client sends until it closes the connection (or fails).
async fn wait_for_client_to_leave(conn: &mut BufReader<TcpStream>) {
    let mut sink = [0u8; 1024];
    while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// Writes body bytes, paced to a rate in bytes per second if one is set; the pace holds
/// across several writes of one answer.
struct Pacer {
    rate: Option<u64>,
    start: tokio::time::Instant,
    sent: u64,
}

impl Pacer {
    fn new(rate: Option<u64>) -> Pacer {
        Pacer {
            rate: rate.filter(|r| *r > 0),
            start: tokio::time::Instant::now(),
            sent: 0,
        }
    }

    async fn write(&mut self, stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
        let Some(rate) = self.rate else {
            stream.write_all(data).await?;
            self.sent += data.len() as u64;
            return Ok(());
        };
        // About 20 writes per second: smooth enough to interrupt anywhere, cheap enough to not
        // matter.
        let chunk = usize::try_from(rate / 20).unwrap_or(usize::MAX).max(1);
        for piece in data.chunks(chunk) {
            // A piece goes out when the rate allows its last byte, so the whole body takes
            // len / rate seconds and no byte is early.
            let due_nanos =
                (u128::from(self.sent) + piece.len() as u128) * 1_000_000_000 / u128::from(rate);
            let due = Duration::from_nanos(u64::try_from(due_nanos).unwrap_or(u64::MAX));
            tokio::time::sleep_until(self.start + due).await;
            stream.write_all(piece).await?;
            self.sent += piece.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const T: Duration = Duration::from_secs(10);

    /// Sends raw requests on one connection and reads raw answers (minimal client).
    struct RawClient {
        conn: BufReader<TcpStream>,
    }

    struct RawResponse {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl RawResponse {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    impl RawClient {
        async fn connect(server: &TestServer) -> RawClient {
            RawClient {
                conn: BufReader::new(TcpStream::connect(server.addr()).await.unwrap()),
            }
        }

        async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) {
            let mut s = format!("{method} {path} HTTP/1.1\r\nhost: test\r\n");
            for (n, v) in headers {
                s.push_str(&format!("{n}: {v}\r\n"));
            }
            s.push_str("\r\n");
            self.conn.get_mut().write_all(s.as_bytes()).await.unwrap();
        }

        /// Reads one answer; the body is read by Content-Length, or to EOF without it.
        async fn read(&mut self, head_only: bool) -> RawResponse {
            let mut line = String::new();
            self.conn.read_line(&mut line).await.unwrap();
            let status = line.split(' ').nth(1).unwrap().parse().unwrap();
            let mut headers = Vec::new();
            loop {
                let mut l = String::new();
                self.conn.read_line(&mut l).await.unwrap();
                let l = l.trim_end();
                if l.is_empty() {
                    break;
                }
                let (n, v) = l.split_once(':').unwrap();
                headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
            }
            let mut resp = RawResponse {
                status,
                headers,
                body: Vec::new(),
            };
            if head_only {
                return resp;
            }
            match resp.header("content-length") {
                Some(n) => {
                    let mut body = vec![0; n.parse().unwrap()];
                    self.conn.read_exact(&mut body).await.unwrap();
                    resp.body = body;
                }
                None => {
                    self.conn.read_to_end(&mut resp.body).await.unwrap();
                }
            }
            resp
        }

        async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> RawResponse {
            self.send("GET", path, headers).await;
            self.read(false).await
        }
    }

    fn body() -> Bytes {
        Bytes::from((0..1000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn serves_files_with_validators_and_keep_alive() {
        let server = TestServer::start().await;
        server.add_file("a.bin", body());
        let mut c = RawClient::connect(&server).await;
        let r = c.get("/a.bin", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body());
        assert_eq!(r.header("etag"), server.etag("a.bin").as_deref());
        assert_eq!(
            r.header("last-modified"),
            server.last_modified("/a.bin").as_deref()
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        // Second request on the same connection.
        let r = c.get("/missing", &[]).await;
        assert_eq!(r.status, 404);
        c.send("HEAD", "/a.bin", &[]).await;
        let r = c.read(true).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("1000"));
        let log = server.requests();
        assert_eq!(log.len(), 3);
        assert!(log.iter().all(|r| r.connection_id == log[0].connection_id));
        assert_eq!(log[0].body_bytes_sent, 1000);
        assert_eq!(log[2].method, "HEAD");
        assert_eq!(log[2].body_bytes_sent, 0);
        assert_eq!(log[1].status, 404);
    }

    #[tokio::test]
    async fn ranges_and_if_range() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        let etag = server.etag("/f").unwrap();
        let lm = server.last_modified("/f").unwrap();
        let mut c = RawClient::connect(&server).await;

        let r = c.get("/f", &[("range", "bytes=100-")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.header("content-range"), Some("bytes 100-999/1000"));
        assert_eq!(r.body, body()[100..]);

        let r = c.get("/f", &[("range", "bytes=10-19")]).await;
        assert_eq!((r.status, &r.body[..]), (206, &body()[10..20]));

        let r = c.get("/f", &[("range", "bytes=-5")]).await;
        assert_eq!((r.status, &r.body[..]), (206, &body()[995..]));

        let r = c.get("/f", &[("range", "bytes=990-5000")]).await;
        assert_eq!(r.header("content-range"), Some("bytes 990-999/1000"));

        let r = c.get("/f", &[("range", "bytes=1000-")]).await;
        assert_eq!(r.status, 416);
        assert_eq!(r.header("content-range"), Some("bytes */1000"));

        let r = c
            .get("/f", &[("range", "bytes=500-"), ("if-range", &etag)])
            .await;
        assert_eq!(r.status, 206);
        let r = c
            .get("/f", &[("range", "bytes=500-"), ("if-range", &lm)])
            .await;
        assert_eq!(r.status, 206);
        let r = c
            .get("/f", &[("range", "bytes=500-"), ("if-range", "\"other\"")])
            .await;
        assert_eq!((r.status, r.body.len()), (200, 1000));
        let weak = format!("W/{etag}");
        let r = c
            .get("/f", &[("range", "bytes=500-"), ("if-range", &weak)])
            .await;
        assert_eq!(r.status, 200);
        let r = c.get("/f", &[("range", "bytes=0-1,5-6")]).await;
        assert_eq!(r.status, 200);

        let log = server.requests_for("f");
        assert_eq!(log[0].range.as_deref(), Some("bytes=100-"));
        assert_eq!(log[5].if_range.as_deref(), Some(etag.as_str()));
    }

    #[tokio::test]
    async fn replacing_a_file_changes_both_validators() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        let (e1, l1) = (server.etag("/f"), server.last_modified("/f"));
        server.add_file("/f", Bytes::from_static(b"new"));
        assert_ne!(server.etag("/f"), e1);
        assert_ne!(server.last_modified("/f"), l1);
    }

    #[tokio::test]
    async fn knobs_ignore_range_etag_and_validators() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        let mut c = RawClient::connect(&server).await;
        server.set_behavior(
            "/f",
            Behavior {
                ignore_range: true,
                ..Behavior::default()
            },
        );
        let r = c.get("/f", &[("range", "bytes=10-")]).await;
        assert_eq!((r.status, r.body.len()), (200, 1000));
        assert_eq!(r.header("accept-ranges"), None);

        server.set_behavior(
            "/f",
            Behavior {
                etag_changes_every_request: true,
                ..Behavior::default()
            },
        );
        let e1 = c.get("/f", &[]).await.header("etag").unwrap().to_owned();
        let r = c
            .get("/f", &[("range", "bytes=10-"), ("if-range", &e1)])
            .await;
        assert_eq!(r.status, 200);
        assert_ne!(r.header("etag").unwrap(), e1);

        server.set_behavior(
            "/f",
            Behavior {
                no_validators: true,
                extra_headers: vec![("x-test".into(), "1".into())],
                ..Behavior::default()
            },
        );
        let r = c.get("/f", &[]).await;
        assert_eq!(r.header("etag"), None);
        assert_eq!(r.header("last-modified"), None);
        assert_eq!(r.header("x-test"), Some("1"));
    }

    #[tokio::test]
    async fn status_fail_first_retry_after_and_redirect() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        server.set_behavior(
            "/f",
            Behavior {
                fail_first: Some((2, 503)),
                retry_after: Some("7".into()),
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        for _ in 0..2 {
            let r = c.get("/f", &[]).await;
            assert_eq!(r.status, 503);
            assert_eq!(r.header("retry-after"), Some("7"));
        }
        assert_eq!(c.get("/f", &[]).await.status, 200);

        server.set_behavior(
            "/r",
            Behavior {
                redirect_to: Some("/f".into()),
                status: Some(307),
                ..Behavior::default()
            },
        );
        let r = c.get("/r", &[]).await;
        assert_eq!((r.status, r.header("location")), (307, Some("/f")));
        server.set_behavior(
            "/s",
            Behavior {
                status: Some(500),
                ..Behavior::default()
            },
        );
        assert_eq!(c.get("/s", &[]).await.status, 500);
        server.clear_behavior("/s");
        assert_eq!(c.get("/s", &[]).await.status, 404);
    }

    #[tokio::test]
    async fn cut_and_no_content_length_close_the_connection() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        server.set_behavior(
            "/f",
            Behavior {
                cut_after: Some(300),
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        c.send("GET", "/f", &[]).await;
        let r = c.read(true).await;
        assert_eq!(r.header("content-length"), Some("1000"));
        let mut rest = Vec::new();
        c.conn.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, body()[..300]);
        let log = server.requests_for("/f");
        assert_eq!((log[0].body_bytes_sent, log[0].finished), (300, true));

        server.set_behavior(
            "/f",
            Behavior {
                no_content_length: true,
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        let r = c.get("/f", &[]).await;
        assert_eq!(r.header("content-length"), None);
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.body, body());
    }

    #[tokio::test]
    async fn stall_keeps_the_socket_open_until_the_client_leaves() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        server.set_behavior(
            "/f",
            Behavior {
                stall_after: Some(10),
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        c.send("GET", "/f", &[]).await;
        let _ = c.read(true).await;
        let mut ten = [0u8; 10];
        c.conn.read_exact(&mut ten).await.unwrap();
        assert_eq!(ten[..], body()[..10]);
        // The server reports the stall without finishing the answer.
        let log = server
            .wait_until(T, |l| l.first().is_some_and(|r| r.body_bytes_sent == 10))
            .await
            .unwrap();
        assert!(!log[0].finished);
        drop(c);
        server
            .wait_until(T, |l| l.first().is_some_and(|r| r.finished))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn gate_holds_the_body_until_a_permit() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        let gate = Arc::new(Semaphore::new(0));
        server.set_behavior(
            "/f",
            Behavior {
                gate: Some(gate.clone()),
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        c.send("GET", "/f", &[]).await;
        let r = c.read(true).await;
        assert_eq!(r.status, 200);
        let log = server.wait_for_requests("/f", 1, T).await;
        assert!(!log[0].finished);
        gate.add_permits(1);
        let mut all = vec![0; 1000];
        c.conn.read_exact(&mut all).await.unwrap();
        assert_eq!(all, body());
        server
            .wait_until(T, |l| l.first().is_some_and(|r| r.finished))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn rate_limit_paces_the_body() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        server.set_behavior(
            "/f",
            Behavior {
                rate_bytes_per_sec: Some(10_000),
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        let started = Instant::now();
        let r = c.get("/f", &[]).await;
        assert_eq!(r.body, body());
        // 1000 bytes at 10 kB/s: at least ~100 ms.
        assert!(started.elapsed() >= Duration::from_millis(90));
    }

    #[tokio::test]
    async fn wait_for_requests_times_out_with_what_it_has() {
        let server = TestServer::start().await;
        let got = server
            .wait_for_requests("/nothing", 1, Duration::from_millis(20))
            .await;
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn request_bodies_are_logged() {
        let server = TestServer::start().await;
        let mut c = RawClient::connect(&server).await;
        c.conn
            .get_mut()
            .write_all(b"PUT /u HTTP/1.1\r\ncontent-length: 3\r\n\r\nabcPOST /v HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nxy\r\n1\r\nz\r\n0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(c.read(false).await.status, 404);
        assert_eq!(c.read(false).await.status, 404);
        let log = server.requests();
        assert_eq!(&log[0].request_body[..], b"abc");
        assert_eq!(&log[1].request_body[..], b"xyz");
        assert_eq!(log[1].method, "POST");
    }

    #[tokio::test]
    async fn body_override_answers_200_whatever_the_range() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        let page = Bytes::from_static(b"<html><body>502 Bad Gateway</body></html>");
        server.set_behavior(
            "/f",
            Behavior {
                body_override: Some(page.clone()),
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        let r = c
            .get("/f", &[("range", "bytes=100-"), ("if-range", "\"x\"")])
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, page);
        assert_eq!(r.header("content-length"), Some("41"));
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("etag"), None);
        assert_eq!(r.header("accept-ranges"), None);
        // No file needed, and the connection stays usable.
        server.set_behavior(
            "/none",
            Behavior {
                body_override: Some(page.clone()),
                ..Behavior::default()
            },
        );
        assert_eq!(c.get("/none", &[]).await.body, page);
    }

    #[tokio::test]
    async fn content_range_override_lies_about_the_requested_bytes() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        server.set_behavior(
            "/f",
            Behavior {
                content_range_override: Some("bytes 0-899/1000".into()),
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        let r = c.get("/f", &[("range", "bytes=100-")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.header("content-range"), Some("bytes 0-899/1000"));
        assert_eq!(r.body, body()[100..]);
        // Without a range: the whole file, no Content-Range.
        let r = c.get("/f", &[]).await;
        assert_eq!((r.status, r.header("content-range")), (200, None));
    }

    #[tokio::test]
    async fn extra_body_bytes_follow_the_declared_body() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        server.set_behavior(
            "/f",
            Behavior {
                extra_body_bytes: Some(500),
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        let r = c.get("/f", &[]).await;
        assert_eq!(r.header("content-length"), Some("1000"));
        assert_eq!(r.body, body());
        let mut extra = vec![0; 500];
        c.conn.read_exact(&mut extra).await.unwrap();
        assert_eq!(
            extra,
            FILLER.iter().copied().cycle().take(500).collect::<Vec<_>>()
        );
        let log = server
            .wait_until(T, |l| l.first().is_some_and(|r| r.finished))
            .await
            .unwrap();
        assert_eq!(log[0].body_bytes_sent, 1500);
    }

    #[tokio::test]
    async fn huge_headers_come_before_the_blank_line() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        server.set_behavior(
            "/f",
            Behavior {
                huge_headers: Some(100_000),
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        let r = c.get("/f", &[]).await;
        assert_eq!(r.body, body());
        let filler: usize = r
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-filler-"))
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        assert!((100_000..101_100).contains(&filler), "{filler}");
    }

    #[tokio::test]
    async fn endless_body_never_ends_until_the_client_leaves() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        server.set_behavior(
            "/f",
            Behavior {
                endless_body: true,
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        c.send("GET", "/f", &[("range", "bytes=10-")]).await;
        let r = c.read(true).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), None);
        assert_eq!(r.header("accept-ranges"), None);
        let mut start = vec![0; 1000];
        c.conn.read_exact(&mut start).await.unwrap();
        assert_eq!(start, body());
        // Far more than the file, and still going.
        let mut more = vec![0; 1 << 20];
        c.conn.read_exact(&mut more).await.unwrap();
        assert!(more.starts_with(FILLER));
        assert!(!server.requests()[0].finished);
        drop(c);
        let log = server
            .wait_until(T, |l| l.first().is_some_and(|r| r.finished))
            .await
            .unwrap();
        assert!(log[0].body_bytes_sent > 1 << 20);
    }

    #[tokio::test]
    async fn never_answer_holds_the_request_until_the_client_leaves() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        server.set_behavior(
            "/f",
            Behavior {
                never_answer: true,
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        c.send("GET", "/f", &[]).await;
        server.wait_for_requests("/f", 1, T).await;
        let mut one = [0u8; 1];
        let silent = tokio::time::timeout(Duration::from_millis(200), c.conn.read(&mut one)).await;
        assert!(silent.is_err(), "the server answered something");
        let log = server.requests();
        assert_eq!((log[0].status, log[0].finished), (0, false));
        drop(c);
        server
            .wait_until(T, |l| l.first().is_some_and(|r| r.finished))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn reset_after_aborts_with_rst() {
        let server = TestServer::start().await;
        server.add_file("/f", body());
        server.set_behavior(
            "/f",
            Behavior {
                reset_after: Some(300),
                ..Behavior::default()
            },
        );
        let mut c = RawClient::connect(&server).await;
        c.send("GET", "/f", &[]).await;
        let r = c.read(true).await;
        assert_eq!(r.header("content-length"), Some("1000"));
        let mut rest = Vec::new();
        let err = c.conn.read_to_end(&mut rest).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
        assert!(rest.len() <= 300);
        let log = server.requests_for("/f");
        assert_eq!((log[0].body_bytes_sent, log[0].finished), (300, true));
    }

    #[test]
    fn range_parsing() {
        use RangeAnswer::{Part, Unsatisfiable};
        assert_eq!(parse_range("bytes=0-", 10), Some(Part(0, 9)));
        assert_eq!(parse_range("bytes=3-4", 10), Some(Part(3, 4)));
        assert_eq!(parse_range("bytes=-3", 10), Some(Part(7, 9)));
        assert_eq!(parse_range("bytes=-30", 10), Some(Part(0, 9)));
        assert_eq!(parse_range("bytes=10-", 10), Some(Unsatisfiable));
        assert_eq!(parse_range("bytes=-0", 10), Some(Unsatisfiable));
        assert_eq!(parse_range("bytes=5-3", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
        assert_eq!(parse_range("bytes=x-1", 10), None);
    }
}
