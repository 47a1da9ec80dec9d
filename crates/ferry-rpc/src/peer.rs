//! One end of a JSON-RPC connection: outgoing calls with id correlation, incoming requests
//! dispatched in order to a [`Service`], and clean failure of everything pending when the other
//! side goes away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_proto::{ErrorCode, MAX_LINE_BYTES, ProtoError};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::codec::{Incoming, decode_line};

/// Why an outgoing call produced no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The other side answered with an error.
    #[error("{0}")]
    Remote(ProtoError),
    /// The connection closed before an answer came.
    #[error("the connection closed before the other side answered")]
    Closed,
    /// No answer within the time allowed.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What a [`Service`] made of a request.
pub enum Handled {
    /// The answer is ready; it is sent before the next request is handled.
    Reply(Result<Value, ProtoError>),
    /// The request's effects are applied, but the answer waits on something (e.g. a durable
    /// commit). The next request is handled meanwhile; the answer is sent when this resolves.
    Deferred(BoxFuture<'static, Result<Value, ProtoError>>),
}

/// The handler of incoming requests and notifications on a connection.
pub trait Service: Send + Sync + 'static {
    /// Handles one request. Requests of a connection are handled one at a time, in order.
    fn request(
        &self,
        peer: Arc<Peer>,
        method: String,
        params: Option<Value>,
    ) -> BoxFuture<'static, Handled>;

    /// Handles a notification (no answer is sent). The default ignores it.
    fn notification(&self, _peer: Arc<Peer>, _method: String, _params: Option<Value>) {}

    /// Called once when the connection has closed.
    fn closed(&self, _peer: Arc<Peer>) {}
}

enum Out {
    Line(Vec<u8>),
    Close,
}

/// What one connection may cost. The defaults (the protocol's line limit, nothing else) suit a
/// client: it trusts its daemon, and it must keep reading whatever it sends, because two peers
/// that both stop reading while their writes are blocked would wait on each other for ever. A
/// server facing untrusted peers sets the other bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Incoming lines longer than this are refused and the connection is closed.
    pub max_line: usize,
    /// Reading pauses while the requests read and not yet handled plus the messages not yet
    /// written to the other side reach this many bytes, and resumes once they drain below it:
    /// a peer that sends requests without reading the answers stops being read.
    pub pause_reading_at: usize,
    /// A message that would leave more than this many bytes queued behind the line being
    /// written closes the connection at once, dropping what is queued (one answer larger than
    /// this is still sent when nothing waits behind the one being written).
    pub close_at: usize,
    /// While `pause_reading_at` bytes are unsent, the next request also waits before it is
    /// handled (so one request cannot pile up answers); when they do not shrink for this long
    /// the connection is closed as if past `close_at`. `None` waits for ever.
    pub stall_timeout: Option<Duration>,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_line: MAX_LINE_BYTES,
            pause_reading_at: usize::MAX,
            close_at: usize::MAX,
            stall_timeout: None,
        }
    }
}

/// The byte accounting of one connection, shared by its reader, worker, writer and senders.
#[derive(Debug)]
struct Flow {
    bounds: Bounds,
    /// Bytes queued for the writer and not yet written (what a slow reader costs us).
    unsent: AtomicUsize,
    /// The bytes left of the line the writer is writing now (0 when idle).
    writing: AtomicUsize,
    /// Bytes of requests read and not yet handled.
    queued: AtomicUsize,
    /// Set once `close_at` was passed or `stall_timeout` ran out: everything queued is dropped
    /// and the connection closed.
    overflowed: AtomicBool,
    /// Set when the writer gave up (killed, or a write failed): reading on is pointless.
    stopped: AtomicBool,
    /// Woken whenever a count above drops, or the connection overflows or stops writing.
    changed: Notify,
    /// Tells the writer to stop at once (a permit is kept if it is not waiting).
    kill: Notify,
}

impl Flow {
    fn new(bounds: Bounds) -> Flow {
        Flow {
            bounds,
            unsent: AtomicUsize::new(0),
            writing: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            changed: Notify::new(),
            kill: Notify::new(),
        }
    }

    fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Whether nothing more can be sent: overflowed, or the writer is gone.
    fn broken(&self) -> bool {
        self.overflowed() || self.stopped.load(Ordering::Acquire)
    }

    /// Whether the reader may take another request now.
    fn may_read(&self) -> bool {
        let waiting = self
            .queued
            .load(Ordering::Acquire)
            .saturating_add(self.unsent.load(Ordering::Acquire));
        waiting < self.bounds.pause_reading_at
    }

    /// Resolves once `done` holds; checked again after every change of the counts.
    async fn until(&self, done: impl Fn(&Flow) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change between the two is not missed.
            changed.as_mut().enable();
            if done(self) {
                return;
            }
            changed.await;
        }
    }

    /// Reserves `len` unsent bytes, or marks the connection overflowed and returns false.
    fn admit(&self, len: usize) -> bool {
        if self.overflowed() {
            return false;
        }
        let before = self.unsent.fetch_add(len, Ordering::AcqRel);
        let behind = before.saturating_sub(self.writing.load(Ordering::Acquire));
        if behind > 0 && behind.saturating_add(len) > self.bounds.close_at {
            self.unsent.fetch_sub(len, Ordering::AcqRel);
            self.overflow();
            return false;
        }
        true
    }

    fn overflow(&self) {
        if !self.overflowed.swap(true, Ordering::AcqRel) {
            tracing::debug!(
                unsent = self.unsent.load(Ordering::Acquire),
                limit = self.bounds.close_at,
                "closing a connection whose unsent messages passed their limit"
            );
        }
        self.kill.notify_one();
        self.changed.notify_waiters();
    }

    /// Waits until an answer may be produced: fewer than `pause_reading_at` bytes unsent. False
    /// when the connection broke, or stalled past `stall_timeout` (then it is overflowed).
    async fn room_to_answer(&self) -> bool {
        loop {
            if self.broken() {
                return false;
            }
            let unsent = self.unsent.load(Ordering::Acquire);
            if unsent < self.bounds.pause_reading_at {
                return true;
            }
            let progress = self.until(|f| f.broken() || f.unsent.load(Ordering::Acquire) < unsent);
            match self.bounds.stall_timeout {
                None => progress.await,
                Some(t) => {
                    if tokio::time::timeout(t, progress).await.is_err() {
                        self.overflow();
                        return false;
                    }
                }
            }
        }
    }

    fn written(&self, len: usize) {
        self.unsent.fetch_sub(len, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    fn handled(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
        self.changed.notify_waiters();
    }
}

/// How long queued requests of a connection whose reading side ended may still be answered.
const DRAIN_ON_CLOSE: Duration = Duration::from_secs(30);
/// How long, and how many bytes, the rest of a refused overlong line is read before closing.
const DRAIN_OVERLONG: Duration = Duration::from_secs(2);
const DRAIN_OVERLONG_BYTES: usize = 2 * MAX_LINE_BYTES;

/// How much of a line is written before its progress is counted.
const WRITE_CHUNK: usize = 64 * 1024;

type Pending = HashMap<u64, oneshot::Sender<Result<Value, ProtoError>>>;

/// One end of a connection; cheap to share behind an `Arc`.
pub struct Peer {
    id: u64,
    out: mpsc::UnboundedSender<Out>,
    next_call: AtomicU64,
    pending: Mutex<Pending>,
    closed: watch::Sender<bool>,
    flow: Arc<Flow>,
}

static NEXT_PEER: AtomicU64 = AtomicU64::new(1);

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("id", &self.id).finish()
    }
}

impl Peer {
    /// A process-unique connection number (for logs and as a map key).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves when the connection has closed.
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        // An error means the sender is gone, which also means closed.
        let _ = rx.wait_for(|c| *c).await;
    }

    fn send_value(&self, value: &Value) -> Result<(), CallError> {
        let mut line = serde_json::to_vec(value).map_err(|_| CallError::Closed)?;
        line.push(b'\n');
        let len = line.len();
        if !self.flow.admit(len) {
            return Err(CallError::Closed);
        }
        self.out.send(Out::Line(line)).map_err(|_| {
            self.flow.written(len);
            CallError::Closed
        })
    }

    /// Sends a notification (no answer expected).
    pub fn notify(&self, method: &str, params: Value) -> Result<(), CallError> {
        if self.is_closed() {
            return Err(CallError::Closed);
        }
        self.send_value(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
    }

    /// Calls a method on the other side and waits for its answer.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id, tx);
        // Checked after inserting, so a close racing with us still fails this call.
        if self.is_closed() {
            self.lock_pending().remove(&id);
            return Err(CallError::Closed);
        }
        let sent = self
            .send_value(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        if let Err(e) = sent {
            self.lock_pending().remove(&id);
            return Err(e);
        }
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CallError::Remote(e)),
            Err(_) => Err(CallError::Closed),
        }
    }

    /// [`Peer::call`] with a deadline; on timeout the late answer is ignored.
    pub async fn call_timeout(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        match tokio::time::timeout(timeout, self.call(method, params)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }

    /// Bytes sent but not yet written to the socket: grows when the other side does not read.
    pub fn backlog_bytes(&self) -> usize {
        self.flow.unsent.load(Ordering::Acquire)
    }

    /// Waits until at most `bytes` are unsent (true), or gives up after `patience` or when the
    /// connection closes (false). A producer of many messages (a replay) uses it to go no
    /// faster than the other side reads.
    pub async fn drained_to(&self, bytes: usize, patience: Duration) -> bool {
        let drained = async {
            tokio::select! {
                _ = self.flow.until(|f| f.broken() || f.unsent.load(Ordering::Acquire) <= bytes) => {}
                _ = self.closed() => {}
            }
        };
        tokio::time::timeout(patience, drained).await.is_ok()
            && !self.is_closed()
            && !self.flow.broken()
    }

    /// Whether the connection was closed because the other side did not read: its unsent
    /// messages passed [`Bounds::close_at`], or did not drain within [`Bounds::stall_timeout`].
    pub fn overflowed(&self) -> bool {
        self.flow.overflowed()
    }

    /// Closes the connection (pending calls fail with [`CallError::Closed`]).
    pub fn close(&self) {
        let _ = self.out.send(Out::Close);
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A poisoned map is still a valid map: the panicking thread held no invariant over it.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn respond(&self, id: Value, result: Result<Value, ProtoError>) {
        let msg = match result {
            Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
            Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e}),
        };
        let _ = self.send_value(&msg);
    }

    fn route_response(&self, id: &Value, result: Result<Value, ProtoError>) {
        // An error with a null id is about the connection itself (e.g. a limit refused it):
        // every call in flight gets it, instead of a bare "connection closed" later.
        if id.is_null() {
            if let Err(e) = &result {
                for (_, tx) in self.lock_pending().drain() {
                    let _ = tx.send(Err(e.clone()));
                }
            }
            return;
        }
        // Ids we send are numbers; anything else was never ours and is ignored.
        let Some(n) = id.as_u64() else { return };
        if let Some(tx) = self.lock_pending().remove(&n) {
            let _ = tx.send(result);
        }
    }

    fn mark_closed(&self) {
        self.closed.send_replace(true);
        self.lock_pending().clear();
    }
}

/// Starts serving a connection: returns the peer (to make calls) and the task that ends when
/// the connection closes.
pub fn serve<R, W, S>(reader: R, writer: W, service: Arc<S>) -> (Arc<Peer>, JoinHandle<()>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    S: Service + ?Sized,
{
    serve_with_max_line(reader, writer, service, MAX_LINE_BYTES)
}

/// [`serve`] accepting incoming lines up to `max_line` bytes. The daemon holds clients to the
/// protocol's 1 MiB; a client may accept longer answers (a job with many files).
pub fn serve_with_max_line<R, W, S>(
    reader: R,
    writer: W,
    service: Arc<S>,
    max_line: usize,
) -> (Arc<Peer>, JoinHandle<()>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    S: Service + ?Sized,
{
    serve_bounded(
        reader,
        writer,
        service,
        Bounds {
            max_line,
            ..Bounds::default()
        },
    )
}

/// [`serve`] within `bounds`: what a peer that sends without reading may cost is bounded.
pub fn serve_bounded<R, W, S>(
    reader: R,
    writer: W,
    service: Arc<S>,
    bounds: Bounds,
) -> (Arc<Peer>, JoinHandle<()>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    S: Service + ?Sized,
{
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (closed, _) = watch::channel(false);
    let peer = Arc::new(Peer {
        id: NEXT_PEER.fetch_add(1, Ordering::Relaxed),
        out: out_tx,
        next_call: AtomicU64::new(1),
        pending: Mutex::new(HashMap::new()),
        closed,
        flow: Arc::new(Flow::new(bounds)),
    });
    let writer_task = tokio::spawn(write_loop(writer, out_rx, peer.flow.clone()));
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let worker = tokio::spawn(work_loop(peer.clone(), service.clone(), req_rx));
    let p = peer.clone();
    let task = tokio::spawn(async move {
        let overlong = read_loop(reader, &p, &service, req_tx).await;
        // No answers to our own calls can arrive any more: fail them now. Requests the other
        // side sent before it stopped sending are still answered (a half-closed client reads
        // them), within a bound so a stuck handler cannot hold the connection forever; a
        // connection that overflowed reads nothing more and gets no more answers.
        p.mark_closed();
        let mut worker = worker;
        let patience = if p.flow.overflowed() {
            Duration::ZERO
        } else {
            DRAIN_ON_CLOSE
        };
        if tokio::time::timeout(patience, &mut worker).await.is_err() {
            worker.abort();
        }
        p.close();
        let _ = writer_task.await;
        if let Some(rest) = overlong {
            drain(rest).await;
        }
        service.closed(p);
    });
    (peer, task)
}

async fn write_loop<W: AsyncWrite + Unpin>(
    writer: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    flow: Arc<Flow>,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, writer);
    // Every wait races the kill switch: an overflowed connection is dropped, not flushed.
    let done = loop {
        let msg = tokio::select! {
            biased;
            _ = flow.kill.notified() => break false,
            m = rx.recv() => m,
        };
        let Some(Out::Line(line)) = msg else {
            break true;
        };
        if !write_line(&mut w, &line, &flow).await {
            break false;
        }
        // Batch whatever else is already queued into the same flush.
        let mut close = false;
        while let Ok(more) = rx.try_recv() {
            match more {
                Out::Line(l) => {
                    if !write_line(&mut w, &l, &flow).await {
                        return stopped(&flow);
                    }
                }
                Out::Close => {
                    close = true;
                    break;
                }
            }
        }
        let flushed = tokio::select! {
            biased;
            _ = flow.kill.notified() => false,
            r = w.flush() => r.is_ok(),
        };
        if !flushed {
            break false;
        }
        if close {
            break true;
        }
    };
    if !done {
        return stopped(&flow);
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
    flow.changed.notify_waiters();
}

/// Writes one line unless told to stop, counting each chunk as sent once it is written (so a
/// long answer read slowly still shows progress).
async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &[u8], flow: &Flow) -> bool {
    let mut left = line.len();
    for chunk in line.chunks(WRITE_CHUNK) {
        flow.writing.store(left, Ordering::Release);
        let ok = tokio::select! {
            biased;
            _ = flow.kill.notified() => false,
            r = w.write_all(chunk) => r.is_ok(),
        };
        if !ok {
            flow.writing.store(0, Ordering::Release);
            return false;
        }
        left -= chunk.len();
        flow.written(chunk.len());
    }
    flow.writing.store(0, Ordering::Release);
    true
}

/// The writer gave up (killed or a write failed): the reader must not wait on it any more.
fn stopped(flow: &Flow) {
    flow.stopped.store(true, Ordering::Release);
    flow.changed.notify_waiters();
}

/// Reads and drops what the other side still sends after an overlong line was refused, bounded
/// in time and bytes. Closing with its bytes unread would reset the connection: the other side's
/// writes would fail and its reads could miss the answer, instead of the answer and a clean end
/// of stream (our write side is already shut down).
async fn drain<R: AsyncRead + Unpin>(mut rest: R) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(DRAIN_OVERLONG, async {
        let mut drained = 0usize;
        while drained < DRAIN_OVERLONG_BYTES {
            match rest.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// An incoming request and the length of its line (counted until it is handled).
type Request = (Value, String, Option<Value>, usize);

async fn work_loop<S: Service + ?Sized>(
    peer: Arc<Peer>,
    service: Arc<S>,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let mut deferred = tokio::task::JoinSet::new();
    while let Some((id, method, params, len)) = rx.recv().await {
        // Answers wait for the other side to read the earlier ones.
        if !peer.flow.room_to_answer().await {
            break;
        }
        let handled = service.request(peer.clone(), method, params).await;
        peer.flow.handled(len);
        match handled {
            Handled::Reply(r) => peer.respond(id, r),
            Handled::Deferred(fut) => {
                let p = peer.clone();
                deferred.spawn(async move {
                    let r = fut.await;
                    p.respond(id, r);
                });
            }
        }
        // Reap finished answers so the set does not grow on a long-lived connection.
        while deferred.try_join_next().is_some() {}
    }
    // The other side stopped sending: every request it did send still gets its answer.
    while deferred.join_next().await.is_some() {}
}

/// Reads lines until the other side stops sending. Returns the reader when it stopped because
/// of an overlong line: the rest of that line is still coming, and is drained after the answer.
async fn read_loop<R: AsyncRead + Unpin, S: Service + ?Sized>(
    reader: R,
    peer: &Arc<Peer>,
    service: &Arc<S>,
    requests: mpsc::UnboundedSender<Request>,
) -> Option<BufReader<R>> {
    let flow = peer.flow.clone();
    let max_line = flow.bounds.max_line;
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line: Vec<u8> = Vec::new();
    loop {
        if line.is_empty() && !flow.may_read() {
            // Backpressure: the other side sends faster than it reads, or than we handle.
            flow.until(|f| f.broken() || f.may_read()).await;
        }
        if flow.broken() {
            return None;
        }
        let buf = tokio::select! {
            r = reader.fill_buf() => match r {
                Ok(b) => b,
                Err(_) => return None,
            },
            _ = flow.until(Flow::broken) => return None,
        };
        if buf.is_empty() {
            return None;
        }
        let (chunk, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(pos) => (&buf[..pos], Some(pos + 1)),
            None => (buf, None),
        };
        line.extend_from_slice(chunk);
        let used = complete.unwrap_or(buf.len());
        reader.consume(used);
        if line.len() > max_line {
            peer.respond(
                Value::Null,
                Err(ProtoError::new(
                    ErrorCode::INVALID_REQUEST,
                    format!("line longer than {max_line} bytes; closing the connection"),
                )),
            );
            return Some(reader);
        }
        if complete.is_none() {
            continue;
        }
        let text = std::mem::take(&mut line);
        let trimmed = text.strip_suffix(b"\r").unwrap_or(&text);
        if trimmed.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match decode_line(trimmed) {
            Ok(Incoming::Request { id, method, params }) => {
                let len = text.len();
                flow.queued.fetch_add(len, Ordering::AcqRel);
                if requests.send((id, method, params, len)).is_err() {
                    return None;
                }
            }
            Ok(Incoming::Notification { method, params }) => {
                service.notification(peer.clone(), method, params);
            }
            Ok(Incoming::Response { id, result }) => peer.route_response(&id, result),
            Err(e) => peer.respond(e.id, Err(e.error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, duplex};

    struct Echo;
    impl Service for Echo {
        fn request(
            &self,
            peer: Arc<Peer>,
            method: String,
            params: Option<Value>,
        ) -> BoxFuture<'static, Handled> {
            Box::pin(async move {
                match method.as_str() {
                    "echo" => Handled::Reply(Ok(params.unwrap_or(Value::Null))),
                    // Calls back into the caller while handling its request.
                    "ask_back" => Handled::Deferred(Box::pin(async move {
                        peer.call("question", json!({}))
                            .await
                            .map_err(|e| ProtoError::new(ErrorCode::INTERNAL, e.to_string()))
                    })),
                    _ => Handled::Reply(Err(ProtoError::new(
                        ErrorCode::METHOD_NOT_FOUND,
                        "unknown method",
                    ))),
                }
            })
        }
    }

    struct Answers;
    impl Service for Answers {
        fn request(
            &self,
            _: Arc<Peer>,
            _: String,
            _: Option<Value>,
        ) -> BoxFuture<'static, Handled> {
            Box::pin(async { Handled::Reply(Ok(json!(42))) })
        }
    }

    #[tokio::test]
    async fn call_and_callback_on_one_connection() {
        let (a, b) = duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let (_server, _t1) = serve(ar, aw, Arc::new(Echo));
        let (client, _t2) = serve(br, bw, Arc::new(Answers));
        assert_eq!(
            client.call("echo", json!({"x": 1})).await.unwrap(),
            json!({"x": 1})
        );
        assert_eq!(client.call("ask_back", json!({})).await.unwrap(), json!(42));
        match client.call("nope", json!({})).await {
            Err(CallError::Remote(e)) => assert_eq!(e.code, -32601),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn pending_calls_fail_when_the_peer_goes_away() {
        let (a, b) = duplex(1 << 16);
        let (br, bw) = tokio::io::split(b);
        let (client, task) = serve(br, bw, Arc::new(Answers));
        let call = tokio::spawn({
            let c = client.clone();
            async move { c.call("never_answered", json!({})).await }
        });
        drop(a);
        task.await.unwrap();
        assert!(matches!(call.await.unwrap(), Err(CallError::Closed)));
        assert!(client.is_closed());
    }

    #[tokio::test]
    async fn overlong_line_is_answered_then_closed() {
        let (a, mut b) = duplex(1 << 20);
        let (ar, aw) = tokio::io::split(a);
        let (_server, task) = serve(ar, aw, Arc::new(Echo));
        let writer = tokio::spawn(async move {
            let big = vec![b'x'; MAX_LINE_BYTES + 10];
            let _ = b.write_all(&big).await;
            let mut out = String::new();
            let _ = b.read_to_string(&mut out).await;
            out
        });
        task.await.unwrap();
        let out = writer.await.unwrap();
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["error"]["code"], -32600);
        assert_eq!(v["id"], Value::Null);
    }

    #[tokio::test]
    async fn garbage_keeps_the_connection_open() {
        let (a, b) = duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (_server, _t) = serve(ar, aw, Arc::new(Echo));
        let (br, mut bw) = tokio::io::split(b);
        bw.write_all(
            b"not json\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"echo\",\"params\":[1]}\n",
        )
        .await
        .unwrap();
        let mut lines = BufReader::new(br).lines();
        let first: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(first["error"]["code"], -32700);
        let second: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(second["result"], json!([1]));
    }

    #[tokio::test]
    async fn requests_sent_before_a_half_close_are_all_answered() {
        let (a, b) = duplex(1 << 20);
        let (ar, aw) = tokio::io::split(a);
        let (_server, _t) = serve(ar, aw, Arc::new(Echo));
        let (br, mut bw) = tokio::io::split(b);
        for i in 0..100 {
            let line = format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"echo\",\"params\":[{i}]}}\n"
            );
            bw.write_all(line.as_bytes()).await.unwrap();
        }
        bw.shutdown().await.unwrap();
        let mut lines = BufReader::new(br).lines();
        let mut n = 0;
        while let Some(l) = lines.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&l).unwrap();
            assert_eq!(v["result"], json!([v["id"]]));
            n += 1;
        }
        assert_eq!(n, 100);
    }

    /// Answers `big` with `size` bytes, counting the requests it handled.
    struct Big {
        size: usize,
        handled: AtomicUsize,
    }
    impl Service for Big {
        fn request(
            &self,
            _: Arc<Peer>,
            _: String,
            _: Option<Value>,
        ) -> BoxFuture<'static, Handled> {
            self.handled.fetch_add(1, Ordering::SeqCst);
            let body = "x".repeat(self.size);
            Box::pin(async move { Handled::Reply(Ok(json!(body))) })
        }
    }

    fn big(size: usize) -> Arc<Big> {
        Arc::new(Big {
            size,
            handled: AtomicUsize::new(0),
        })
    }

    type Ends = (
        Arc<Peer>,
        JoinHandle<()>,
        tokio::io::ReadHalf<tokio::io::DuplexStream>,
        tokio::io::WriteHalf<tokio::io::DuplexStream>,
    );

    /// A server within `bounds` on small pipes (what it does not read stays with the client),
    /// and the client's ends.
    fn bounded(service: Arc<Big>, bounds: Bounds) -> Ends {
        let (a, b) = duplex(1024);
        let (ar, aw) = tokio::io::split(a);
        let (server, task) = serve_bounded(ar, aw, service, bounds);
        let (br, bw) = tokio::io::split(b);
        (server, task, br, bw)
    }

    /// `n` requests, each padded to about `pad` bytes.
    fn requests(n: usize, pad: usize) -> Vec<u8> {
        let pad = "p".repeat(pad);
        (0..n)
            .flat_map(|i| {
                format!(
                    "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"big\",\"params\":[\"{pad}\"]}}\n"
                )
                .into_bytes()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_its_answers_is_not_read_either() {
        let service = big(100_000);
        let bounds = Bounds {
            pause_reading_at: 64 * 1024,
            ..Bounds::default()
        };
        let (server, _t, br, mut bw) = bounded(service.clone(), bounds);
        let sending = tokio::spawn(async move {
            bw.write_all(&requests(200, 10_000)).await.unwrap();
            bw
        });
        tokio::pin!(sending);
        assert!(
            tokio::time::timeout(Duration::from_secs(2), &mut sending)
                .await
                .is_err(),
            "the server read every request although no answer was read"
        );
        // At most the 64 KiB of requests read before the pause are handled (and answered).
        let handled = service.handled.load(Ordering::SeqCst);
        assert!(handled <= 8, "{handled} requests handled while paused");
        assert!(
            server.backlog_bytes() <= 8 * 100_100,
            "{}",
            server.backlog_bytes()
        );
        // Reading the answers lets the rest through: every request is answered, in order.
        let mut lines = BufReader::new(br).lines();
        for i in 0..200 {
            let v: Value =
                serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            assert_eq!(v["id"], json!(i));
        }
        let _ = sending.await.unwrap();
        assert!(server.drained_to(0, Duration::from_secs(5)).await);
        assert!(!server.overflowed());
    }

    #[tokio::test]
    async fn past_close_at_the_connection_is_dropped_with_what_it_queued() {
        let bounds = Bounds {
            pause_reading_at: 64 * 1024,
            close_at: 150_000,
            ..Bounds::default()
        };
        let (server, task, _br, _bw) = bounded(big(0), bounds);
        // Notifications to a peer that reads nothing: the third would queue 200 000 bytes
        // behind the one being written.
        let body = json!("n".repeat(100_000));
        let mut sent = 0;
        while server.notify("n", body.clone()).is_ok() {
            sent += 1;
            assert!(sent < 10, "never closed");
            // Let the writer take the first one.
            tokio::task::yield_now().await;
        }
        assert!(sent <= 2, "{sent} sent");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the connection was closed past close_at")
            .unwrap();
        assert!(server.overflowed());
        assert!(server.is_closed());
        assert!(matches!(
            server.notify("late", json!({})),
            Err(CallError::Closed)
        ));
    }

    #[tokio::test]
    async fn one_answer_larger_than_close_at_is_still_sent_whole() {
        let bounds = Bounds {
            pause_reading_at: 1000,
            close_at: 1000,
            ..Bounds::default()
        };
        let (server, _t, br, mut bw) = bounded(big(100_000), bounds);
        let mut lines = BufReader::new(br).lines();
        for i in 0..3 {
            bw.write_all(&requests(1, 0)).await.unwrap();
            let v: Value =
                serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            assert_eq!(v["id"], json!(0), "answer {i}");
            assert_eq!(v["result"].as_str().unwrap().len(), 100_000);
        }
        assert!(!server.overflowed());
    }

    #[tokio::test]
    async fn a_peer_that_stalls_past_stall_timeout_is_closed_and_not_answered_on() {
        let service = big(100_000);
        let bounds = Bounds {
            pause_reading_at: 64 * 1024,
            stall_timeout: Some(Duration::from_millis(500)),
            ..Bounds::default()
        };
        let (server, task, _br, mut bw) = bounded(service.clone(), bounds);
        bw.write_all(&requests(5, 0)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the stalled connection was closed")
            .unwrap();
        assert!(server.overflowed());
        // The writer's 64 KiB buffer takes part of the first answer; no more is made while the
        // rest of it and the second stay unread.
        let handled = service.handled.load(Ordering::SeqCst);
        assert!(handled <= 2, "{handled} of 5 answered while unread");
    }
}
