//! The event log: `events.read` (a page after a cursor) and `events.follow` (replay, then live
//! notifications on the connection).

use std::sync::Arc;

use ferry_proto::params::{
    EventNotification, EventsFollowParams, EventsReadParams, EventsReadResult,
};
use ferry_proto::{ErrorKind, ProtoError, method};
use ferry_rpc::Peer;
use ferry_store::EventRow;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Answer, ApiResult};
use crate::daemon::{Caller, Daemon, store_failed};
use crate::limits;

const DEFAULT_LIMIT: u64 = 1000;
const MAX_LIMIT: u64 = 10_000;

/// Who may read which events.
#[derive(Clone)]
struct Filter {
    uid: Option<u32>,
    job_id: Option<String>,
}

impl Filter {
    fn new(daemon: &Daemon, caller: &Caller, job_id: Option<String>) -> Result<Filter, ProtoError> {
        if let Some(id) = &job_id {
            let mut inner = daemon.lock();
            Daemon::owned(&mut inner, caller, id)?;
        }
        Ok(Filter {
            uid: (!caller.is_root()).then_some(caller.uid),
            job_id,
        })
    }

    fn matches(&self, e: &EventRow) -> bool {
        self.uid.is_none_or(|u| u == e.owner_uid)
            && self.job_id.as_ref().is_none_or(|j| *j == e.job_id)
    }
}

async fn page(
    daemon: &Daemon,
    f: &Filter,
    after: u64,
    limit: u64,
) -> Result<Vec<EventRow>, ProtoError> {
    daemon.store().flush().await.map_err(store_failed)?;
    let reader = daemon.reader().clone();
    let f = f.clone();
    tokio::task::spawn_blocking(move || reader.events(after, f.uid, f.job_id.as_deref(), limit))
        .await
        .map_err(|e| ProtoError::kind(ErrorKind::Internal, format!("reading events failed: {e}")))?
        .map_err(store_failed)
}

/// `events.read`
pub async fn read(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    params: EventsReadParams,
) -> ApiResult<ferry_proto::method::EventsRead> {
    if let Some(id) = &params.job_id {
        daemon.load(id).await?;
    }
    let filter = Filter::new(daemon, caller, params.job_id)?;
    let after = params.after.unwrap_or(0);
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let rows = page(daemon, &filter, after, limit).await?;
    let next = rows.last().map_or(after, |r| r.seq);
    Answer::now(EventsReadResult {
        events: rows.iter().map(EventRow::to_event).collect(),
        next,
    })
}

/// `events.follow`: answers `{}`, then streams until unfollowed or the connection closes.
pub fn follow(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    peer: Arc<Peer>,
    params: EventsFollowParams,
    token: CancellationToken,
) -> ApiResult<ferry_proto::method::EventsFollow> {
    let filter = Filter::new(daemon, caller, params.job_id)?;
    // Subscribe before replaying so nothing committed in between is missed.
    let mut live = daemon.store().subscribe();
    let start = params.after;
    let daemon = daemon.clone();
    let max_backlog = limits::as_usize(daemon.opts().limits.follow_backlog_bytes);
    tokio::spawn(async move {
        let send = Sender {
            peer: &peer,
            token: &token,
            max_backlog,
        };
        // Replay (or, without `after`, start from what is committed now).
        let mut last = match start {
            Some(a) => a,
            None => daemon.reader().last_event_seq().unwrap_or(0),
        };
        if start.is_some() && !catch_up(&daemon, &filter, &mut last, &send).await {
            return;
        }
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = peer.closed() => return,
                r = live.recv() => match r {
                    Ok(e) => {
                        if e.seq <= last {
                            continue;
                        }
                        if e.seq > last + 1 && !catch_up(&daemon, &filter, &mut last, &send).await {
                            return;
                        }
                        if e.seq <= last {
                            continue;
                        }
                        last = e.seq;
                        if filter.matches(&e) && !send.send(&e).await {
                            return;
                        }
                    }
                    // Fell behind the broadcast: read what was missed from the store.
                    Err(RecvError::Lagged(_)) => {
                        if !catch_up(&daemon, &filter, &mut last, &send).await {
                            return;
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    });
    Answer::now(ferry_proto::params::Ack {})
}

/// Sends followed events no faster than the connection reads them.
struct Sender<'a> {
    peer: &'a Peer,
    token: &'a CancellationToken,
    max_backlog: usize,
}

impl Sender<'_> {
    /// Sends one event; false when the stream stopped (unfollowed, the connection gone, or
    /// closed for not reading).
    async fn send(&self, e: &EventRow) -> bool {
        let peer = self.peer;
        // A follower that stops reading must not make the daemon buffer without bound: wait
        // for it to catch up, and close its connection if it does not.
        if peer.backlog_bytes() > self.max_backlog {
            let drained = tokio::select! {
                daemon = peer.drained_to(self.max_backlog / 2, limits::STALL_PATIENCE) => daemon,
                _ = self.token.cancelled() => return false,
            };
            if drained {
                return !self.token.is_cancelled() && self.notify(e);
            }
            if !peer.is_closed() {
                tracing::warn!(
                    peer = peer.id(),
                    limit = self.max_backlog,
                    "closing a connection that does not read its followed events \
                     (more than [limits] follow_backlog_bytes unread)"
                );
                peer.close();
            }
            return false;
        }
        self.notify(e)
    }

    fn notify(&self, e: &EventRow) -> bool {
        let n = EventNotification {
            event: e.to_event(),
        };
        match serde_json::to_value(n) {
            Ok(v) => self.peer.notify(method::EVENTS_EVENT, v).is_ok(),
            Err(_) => true,
        }
    }
}

/// Sends every stored event after `last`; false when the connection is gone.
async fn catch_up(daemon: &Daemon, f: &Filter, last: &mut u64, send: &Sender<'_>) -> bool {
    loop {
        // Read unfiltered by uid/job so `last` advances over other users' events too.
        let unfiltered = Filter {
            uid: None,
            job_id: None,
        };
        let rows = match page(daemon, &unfiltered, *last, MAX_LIMIT).await {
            Ok(r) => r,
            Err(_) => return false,
        };
        if rows.is_empty() {
            return true;
        }
        for e in &rows {
            *last = e.seq;
            if f.matches(e) && !send.send(e).await {
                return false;
            }
        }
    }
}
