//! One end of a JSON-RPC connection: outgoing calls with id correlation, incoming requests
//! dispatched in order to a [`Service`], and clean failure of everything pending when the other
//! side goes away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_proto::{ErrorCode, MAX_LINE_BYTES, ProtoError};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot, watch};
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

/// How long queued requests of a connection whose reading side ended may still be answered.
const DRAIN_ON_CLOSE: Duration = Duration::from_secs(30);
/// How long, and how many bytes, the rest of a refused overlong line is read before closing.
const DRAIN_OVERLONG: Duration = Duration::from_secs(2);
const DRAIN_OVERLONG_BYTES: usize = 2 * MAX_LINE_BYTES;

type Pending = HashMap<u64, oneshot::Sender<Result<Value, ProtoError>>>;

/// One end of a connection; cheap to share behind an `Arc`.
pub struct Peer {
    id: u64,
    out: mpsc::UnboundedSender<Out>,
    next_call: AtomicU64,
    pending: Mutex<Pending>,
    closed: watch::Sender<bool>,
    /// Bytes queued for the writer and not yet written (what a slow reader costs us).
    backlog: Arc<AtomicUsize>,
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
        self.backlog.fetch_add(line.len(), Ordering::Relaxed);
        self.out
            .send(Out::Line(line))
            .map_err(|_| CallError::Closed)
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
        self.backlog.load(Ordering::Relaxed)
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
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (closed, _) = watch::channel(false);
    let peer = Arc::new(Peer {
        id: NEXT_PEER.fetch_add(1, Ordering::Relaxed),
        out: out_tx,
        next_call: AtomicU64::new(1),
        pending: Mutex::new(HashMap::new()),
        closed,
        backlog: Arc::new(AtomicUsize::new(0)),
    });
    let writer_task = tokio::spawn(write_loop(writer, out_rx, peer.backlog.clone()));
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let worker = tokio::spawn(work_loop(peer.clone(), service.clone(), req_rx));
    let p = peer.clone();
    let task = tokio::spawn(async move {
        let overlong = read_loop(reader, &p, &service, req_tx, max_line).await;
        // No answers to our own calls can arrive any more: fail them now. Requests the other
        // side sent before it stopped sending are still answered (a half-closed client reads
        // them), within a bound so a stuck handler cannot hold the connection forever.
        p.mark_closed();
        let mut worker = worker;
        if tokio::time::timeout(DRAIN_ON_CLOSE, &mut worker)
            .await
            .is_err()
        {
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
    backlog: Arc<AtomicUsize>,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(msg) = rx.recv().await {
        let line = match msg {
            Out::Line(l) => l,
            Out::Close => break,
        };
        if w.write_all(&line).await.is_err() {
            return;
        }
        backlog.fetch_sub(line.len(), Ordering::Relaxed);
        // Batch whatever else is already queued into the same flush.
        let mut close = false;
        while let Ok(more) = rx.try_recv() {
            match more {
                Out::Line(l) => {
                    if w.write_all(&l).await.is_err() {
                        return;
                    }
                    backlog.fetch_sub(l.len(), Ordering::Relaxed);
                }
                Out::Close => {
                    close = true;
                    break;
                }
            }
        }
        if w.flush().await.is_err() || close {
            break;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
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

type Request = (Value, String, Option<Value>);

async fn work_loop<S: Service + ?Sized>(
    peer: Arc<Peer>,
    service: Arc<S>,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let mut deferred = tokio::task::JoinSet::new();
    while let Some((id, method, params)) = rx.recv().await {
        match service.request(peer.clone(), method, params).await {
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
    max_line: usize,
) -> Option<BufReader<R>> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok(b) => b,
            Err(_) => return None,
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
                if requests.send((id, method, params)).is_err() {
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
}
