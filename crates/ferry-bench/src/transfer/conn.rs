//! The benchmark's own connection to `ferryd` (raw ferry-rpc): calls, pipelined calls, followed
//! events, and reading the event log to see where a `ferry transfer` spent its time.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ferry_proto::{ErrorCode, ProtoError, method};
use ferry_rpc::{Handled, Peer, Service};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Answers every request with `method_not_found` (the benchmark registers no callbacks) and
/// passes followed events on.
struct Inbound {
    events: mpsc::UnboundedSender<Value>,
}

impl Service for Inbound {
    fn request(
        &self,
        _peer: Arc<Peer>,
        method: String,
        _params: Option<Value>,
    ) -> Pin<Box<dyn Future<Output = Handled> + Send + 'static>> {
        let reply = Err(ProtoError::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("ferry-bench does not serve {method}"),
        ));
        Box::pin(std::future::ready(Handled::Reply(reply)))
    }

    fn notification(&self, _peer: Arc<Peer>, method: String, params: Option<Value>) {
        if method == method::EVENTS_EVENT
            && let Some(mut p) = params
        {
            let _ = self.events.send(p["event"].take());
        }
    }
}

/// One connection to the daemon.
pub struct Conn {
    /// The peer, shared with pipelined calls.
    pub peer: Arc<Peer>,
    /// Followed events (after `events.follow`).
    pub events: mpsc::UnboundedReceiver<Value>,
}

impl Conn {
    /// Connects to `socket` and says hello.
    pub async fn open(socket: &Path) -> Result<Conn> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("cannot connect to {}", socket.display()))?;
        let (r, w) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let (peer, _task) = ferry_rpc::serve(r, w, Arc::new(Inbound { events: tx }));
        let conn = Conn { peer, events: rx };
        conn.call(method::HELLO, json!({"client": "ferry-bench"}))
            .await?;
        Ok(conn)
    }

    /// Calls `method`; a failure names the method.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.peer
            .call(method, params)
            .await
            .with_context(|| format!("{method} failed"))
    }

    /// `n` calls with up to `window` of them in flight at once on this one connection;
    /// `make(i)` builds call `i`, `done(i, result)` sees each answer as it comes.
    pub async fn pipelined(
        &self,
        n: usize,
        window: usize,
        mut make: impl FnMut(usize) -> (&'static str, Value),
        mut done: impl FnMut(usize, Value) -> Result<()>,
    ) -> Result<()> {
        let mut set = JoinSet::new();
        let (mut next, mut finished) = (0, 0);
        while finished < n {
            while next < n && set.len() < window.max(1) {
                let (m, params) = make(next);
                let peer = self.peer.clone();
                let i = next;
                set.spawn(async move { (i, m, peer.call(m, params).await) });
                next += 1;
            }
            match set.join_next().await {
                Some(Ok((i, _, Ok(v)))) => {
                    done(i, v)?;
                    finished += 1;
                }
                Some(Ok((i, m, Err(e)))) => bail!("{m} (call {i} of {n}) failed: {e}"),
                Some(Err(e)) => bail!("a pipelined call's task failed: {e}"),
                None => bail!("pipelined calls: {finished} of {n} answered, none pending"),
            }
        }
        Ok(())
    }

    /// The next followed event.
    pub async fn next_event(&mut self) -> Result<Value> {
        self.events
            .recv()
            .await
            .context("the daemon closed the connection while events were awaited")
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.peer.close();
    }
}

/// A position in the daemon's event log, to read what happened since.
#[derive(Debug, Default)]
pub struct Cursor {
    after: Option<u64>,
}

impl Cursor {
    /// A cursor at the end of the log as it is now.
    pub async fn at_end(conn: &Conn) -> Result<Cursor> {
        let mut c = Cursor::default();
        c.read(conn).await?;
        Ok(c)
    }

    /// Every event after the cursor; moves the cursor past them.
    pub async fn read(&mut self, conn: &Conn) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            // Small pages: an answer must stay under the 1 MiB line limit.
            let mut params = json!({"limit": 1000});
            if let Some(a) = self.after {
                params["after"] = json!(a);
            }
            let mut page = conn.call(method::EVENTS_READ, params).await?;
            let Some(next) = page["next"].as_u64() else {
                bail!("events.read answered without next: {page}");
            };
            let Value::Array(events) = page["events"].take() else {
                bail!("events.read answered without events");
            };
            let empty = events.is_empty();
            out.extend(events);
            if empty || self.after == Some(next) {
                return Ok(out);
            }
            self.after = Some(next);
        }
    }
}
