//! Delivering notifications (docs/protocol.md "Callbacks", "Delivery rules", "Handler
//! activation", "Notify command line").
//!
//! Owed notifications live in the durable outbox ([`NotifyRuntime`] mirrors it). Each job that
//! owes something gets a *courier* task while there is something it can deliver: it asks
//! `ferry_core::delivery::plan` what goes next and to which targets, tries them in order (live
//! callback, handler started on demand, command line), records every attempt in the event log,
//! and either settles the notification or schedules a retry after the job's retry delay. Kicks (a new
//! notification, a target appearing, a flag change) wake or start the courier; a courier with
//! nothing deliverable ends, so an idle daemon has no tasks and no timers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use ferry_core::delivery::{self, DeliveryFacts, Next, Pending};
use ferry_core::notify::{Available, Kind, Target};
use ferry_proto::{EventKind, Job, JobState};
use ferry_rpc::{CallError, Peer};
use ferry_store::OutboxRow;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

use crate::clock;
use crate::daemon::{Daemon, DaemonState, Kick};
use crate::handlers::Activation;
use crate::identity;

/// What the notifier keeps in memory for one job: the owed notifications (a mirror of the
/// durable outbox), the courier delivering them, the retry timer, the live callback connection
/// and `job_modification` coalescing. Changed only through these methods.
#[derive(Debug, Default)]
pub struct NotifyRuntime {
    /// The live callback connection (`job.set_notify_interface`), while it is open.
    peer: Option<Weak<Peer>>,
    /// Notifications owed (mirror of the durable outbox), in creation order.
    outbox: Vec<OutboxRow>,
    /// Wakes the job's courier task, while one runs.
    courier: Option<Arc<Notify>>,
    /// When all targets failed: the next delivery attempt (monotonic ms).
    retry_at: Option<u64>,
    /// Something changed that a `job_modification` callback should report.
    modified_pending: bool,
    /// When the last `job_modification` went out (coalescing).
    last_modification_ms: Option<u64>,
}

impl NotifyRuntime {
    /// The notifications the job owes, in creation order.
    pub fn outbox(&self) -> &[OutboxRow] {
        &self.outbox
    }

    /// Adds owed notifications (already written to the durable outbox, or about to be in the
    /// same transaction).
    pub fn owe(&mut self, rows: impl IntoIterator<Item = OutboxRow>) {
        self.outbox.extend(rows);
    }

    /// Forgets owed notifications that lapsed (their rows are deleted in the same
    /// transaction).
    pub fn lapse(&mut self, ids: &[u64]) {
        self.outbox.retain(|o| !ids.contains(&o.id));
    }

    /// Notes a change a `job_modification` callback should report.
    pub fn mark_modified(&mut self) {
        self.modified_pending = true;
    }

    /// Whether the live callback connection is open.
    pub fn interface_live(&self) -> bool {
        live(&self.peer)
    }

    /// Sets or drops the live callback connection.
    pub fn set_interface(&mut self, peer: Option<Weak<Peer>>) {
        self.peer = peer;
    }

    /// The connection `peer_id` closed: drops the callback if it was that one (or is gone).
    pub fn connection_closed(&mut self, peer_id: u64) {
        if self
            .peer
            .as_ref()
            .and_then(Weak::upgrade)
            .is_none_or(|p| p.id() == peer_id)
        {
            self.peer = None;
        }
    }

    /// Whether anything here keeps the job in memory: an owed notification, a courier, a
    /// delivery retry, a live callback, or a `job_modification` the job's flags ask for
    /// (`flags` and `state` are the job's).
    pub fn keeps_hot(&self, flags: u32, state: JobState) -> bool {
        !self.outbox.is_empty()
            || self.courier.is_some()
            || self.retry_at.is_some()
            || (self.modified_pending
                && ferry_core::notify::verdict(flags, Kind::JobModification, state)
                    != ferry_core::notify::Verdict::Drop)
            || self.interface_live()
    }
}

/// Receives kicks and starts or wakes couriers; runs until the daemon stops.
pub async fn run(daemon: Arc<Daemon>, mut rx: mpsc::UnboundedReceiver<Kick>) {
    loop {
        let kick = tokio::select! {
            k = rx.recv() => match k { Some(k) => k, None => return },
            _ = daemon.shutdown().cancelled() => return,
        };
        crate::supervise::test_fault("notifier");
        let mut inner = daemon.lock();
        // Only a resident job can owe anything: a cold one has nothing to deliver.
        let Some(e) = inner.jobs_mut().get_resident_mut(&kick.job_id) else {
            continue;
        };
        let n = e.notification_mut();
        if kick.urgent {
            n.retry_at = None;
        }
        match &n.courier {
            Some(wake) => wake.notify_one(),
            None => {
                let wake = Arc::new(Notify::new());
                n.courier = Some(wake.clone());
                tokio::spawn(courier(daemon.clone(), kick.job_id, wake));
            }
        }
    }
}

/// One delivery the courier is about to make.
struct Delivery {
    owner: u32,
    /// The durable notification, or `None` for a (non-durable) `job_modification`.
    row: Option<OutboxRow>,
    kind: Kind,
    targets: Vec<Target>,
    job: Job,
    interface: Option<Weak<Peer>>,
    handler: Option<String>,
    cmdline: Option<Vec<String>>,
    retry_delay_ms: u64,
}

enum Step {
    Exit,
    Sleep(u64),
    Deliver(Box<Delivery>),
}

async fn courier(d: Arc<Daemon>, job_id: String, wake: Arc<Notify>) {
    loop {
        let step = {
            let mut inner = d.lock();
            plan(&d, &mut inner, &job_id)
        };
        match step {
            Step::Exit => return,
            Step::Sleep(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(d.mono().instant(at).into()) => {}
                    _ = wake.notified() => {}
                    _ = d.shutdown().cancelled() => return,
                }
            }
            Step::Deliver(dl) => {
                tokio::select! {
                    _ = deliver(&d, &job_id, *dl) => {}
                    _ = d.shutdown().cancelled() => return,
                }
            }
        }
    }
}

fn live(w: &Option<Weak<Peer>>) -> bool {
    w.as_ref()
        .and_then(Weak::upgrade)
        .is_some_and(|p| !p.is_closed())
}

/// Gathers what the courier knows about a job, asks [`delivery::plan`] for its next step and
/// executes the plan's bookkeeping; clears `courier` when it returns `Exit` (under the same
/// lock, so a kick is never lost between the decision and the exit).
fn plan(d: &Daemon, inner: &mut DaemonState, job_id: &str) -> Step {
    let now = d.mono().now();
    let (jobs, handlers) = inner.jobs_and_handlers();
    let Some(e) = jobs.get_resident_mut(job_id) else {
        return Step::Exit;
    };
    let lowest_untransferred = e.transfer().untransferred().first().copied();
    let (row, n) = e.row_and_notification();
    let owner = row.owner_uid;
    let outbox: Vec<Pending> = n
        .outbox
        .iter()
        .map(|o| Pending {
            id: o.id,
            kind: Kind::parse(&o.kind),
            file_index: o.file_index,
        })
        .collect();
    let handler_name = row.settings.notify_handler.as_deref();
    let facts = DeliveryFacts {
        now_ms: now,
        flags: row.settings.notify_flags,
        state: row.state,
        outbox: &outbox,
        available: Available {
            interface: n.interface_live(),
            handler: handler_name.is_some_and(|n| handlers.available(owner, n)),
            cmdline: row.settings.notify_cmdline.is_some(),
        },
        handler_attached: handler_name.is_some_and(|n| handlers.attached(owner, n).is_some()),
        retry_at_ms: n.retry_at,
        lowest_untransferred,
        modified_pending: n.modified_pending,
        last_modification_ms: n.last_modification_ms,
        min_notification_interval_ms: row.settings.minimum_notification_interval_ms,
    };
    let plan = delivery::plan(&facts);
    if !plan.lapse.is_empty() {
        n.lapse(&plan.lapse);
        let lapsed = plan.lapse;
        let _ = d.store().submit(move |tx| tx.delete_outbox(&lapsed));
    }
    if plan.clear_modified {
        n.modified_pending = false;
    }
    match plan.next {
        Next::Exit => {
            n.courier = None;
            Step::Exit
        }
        Next::SleepUntil(at) => Step::Sleep(at),
        Next::Deliver {
            outbox_id,
            kind,
            targets,
        } => {
            let outbox_row = match outbox_id {
                Some(id) => match n.outbox.iter().find(|o| o.id == id) {
                    Some(row) => Some(row.clone()),
                    // Not reachable: the plan names a row of this outbox. The next kick
                    // plans again.
                    None => {
                        n.courier = None;
                        return Step::Exit;
                    }
                },
                None => {
                    n.last_modification_ms = Some(now);
                    None
                }
            };
            let retry_delay_ms = row
                .settings
                .minimum_retry_delay_s
                .max(d.opts().retry_delay_floor_s)
                .saturating_mul(1000);
            let interface = n.peer.clone();
            let handler = row.settings.notify_handler.clone();
            let cmdline = row.settings.notify_cmdline.clone();
            Step::Deliver(Box::new(Delivery {
                owner,
                row: outbox_row,
                kind,
                targets,
                job: e.view(),
                interface,
                handler,
                cmdline,
                retry_delay_ms,
            }))
        }
    }
}

/// How one attempt at one target went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Unreachable,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unreachable => "unreachable",
        }
    }
}

async fn deliver(d: &Arc<Daemon>, job_id: &str, dl: Delivery) {
    let slots = d.callback_slots(dl.owner);
    let Ok(_permit) = slots.acquire_owned().await else {
        return;
    };
    // A notification is stored before it is delivered, and what it reports is durable.
    if d.durable().wait().await.is_err() {
        settle(d, job_id, &dl, false);
        return;
    }
    let params = match build_params(d, job_id, &dl).await {
        Some(p) => p,
        None => {
            // The file vanished (job changed under us): settle, the courier re-plans.
            settle(d, job_id, &dl, true);
            return;
        }
    };
    let attempt = dl.row.as_ref().map_or(1, |r| r.attempts + 1);
    let mut delivered = false;
    for target in &dl.targets {
        let (outcome, detail) = match target {
            Target::Interface => {
                let peer = dl.interface.as_ref().and_then(Weak::upgrade);
                call(d, peer, dl.kind, params.clone()).await
            }
            Target::Handler => {
                match handler_peer(d, dl.owner, dl.handler.as_deref().unwrap_or("")).await {
                    Ok(peer) => call(d, Some(peer), dl.kind, params.clone()).await,
                    Err(why) => (Outcome::Unreachable, Some(why)),
                }
            }
            Target::Cmdline => run_cmdline(d, job_id, &dl).await,
        };
        record(
            d, job_id, dl.owner, dl.kind, *target, outcome, attempt, detail,
        );
        if outcome == Outcome::Ok {
            delivered = true;
            break;
        }
    }
    settle(d, job_id, &dl, delivered);
}

/// Settles a durable notification after an attempt: delivered ones leave the outbox; failed
/// ones are retried after the job's retry delay.
fn settle(d: &Daemon, job_id: &str, dl: &Delivery, delivered: bool) {
    let Some(row) = &dl.row else { return };
    let now = d.mono().now();
    let mut inner = d.lock();
    let Some(e) = inner.jobs_mut().get_resident_mut(job_id) else {
        return;
    };
    let n = e.notification_mut();
    if delivered {
        n.outbox.retain(|o| o.id != row.id);
        n.retry_at = None;
        let id = row.id;
        let _ = d.store().submit(move |tx| tx.delete_outbox(&[id]));
    } else if let Some(o) = n.outbox.iter_mut().find(|o| o.id == row.id) {
        o.attempts = row.attempts + 1;
        let o = o.clone();
        n.retry_at = Some(now.saturating_add(dl.retry_delay_ms));
        let _ = d.store().submit(move |tx| tx.put_outbox(&o));
    }
}

async fn build_params(d: &Daemon, job_id: &str, dl: &Delivery) -> Option<Value> {
    let delivery_id = dl.row.as_ref().map_or_else(
        || uuid::Uuid::new_v4().to_string(),
        |r| r.delivery_id.clone(),
    );
    let mut params = json!({"delivery_id": delivery_id, "job": dl.job});
    if dl.kind.is_file_level() {
        let index = dl.row.as_ref()?.file_index?;
        let file = d
            .read_files(job_id, index, 1)
            .await
            .ok()?
            .into_iter()
            .next()?;
        params["file"] = serde_json::to_value(crate::api::file_view(file)).ok()?;
        if dl.kind == Kind::FileRangesTransferred {
            params["ranges"] = params["file"]["ranges"].clone();
        }
    }
    if dl.kind == Kind::JobError {
        params["error"] = serde_json::to_value(&dl.job.error).ok()?;
    }
    Some(params)
}

async fn call(
    d: &Daemon,
    peer: Option<Arc<Peer>>,
    kind: Kind,
    params: Value,
) -> (Outcome, Option<String>) {
    let Some(peer) = peer.filter(|p| !p.is_closed()) else {
        return (
            Outcome::Unreachable,
            Some("the callback connection is closed".into()),
        );
    };
    match peer
        .call_timeout(kind.method(), params, d.opts().callback_timeout)
        .await
    {
        Ok(_) => (Outcome::Ok, None),
        Err(CallError::Remote(e)) => (
            Outcome::Failed,
            Some(format!("the callback answered an error: {}", e.message)),
        ),
        Err(CallError::Closed) => (
            Outcome::Unreachable,
            Some("the callback connection closed before answering".into()),
        ),
        Err(CallError::Timeout(t)) => (
            Outcome::Failed,
            Some(format!(
                "the callback did not answer within {} s",
                t.as_secs()
            )),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    d: &Daemon,
    job_id: &str,
    owner: u32,
    kind: Kind,
    target: Target,
    outcome: Outcome,
    attempt: u64,
    detail: Option<String>,
) {
    if outcome != Outcome::Ok {
        tracing::info!(
            job = job_id,
            callback = kind.name(),
            target = target.name(),
            outcome = outcome.name(),
            detail = detail.as_deref().unwrap_or(""),
            "notification not delivered"
        );
    }
    let ev = EventKind::Notification {
        callback: kind.name().into(),
        target: target.name().into(),
        outcome: outcome.name().into(),
        attempt,
        detail,
    };
    let (id, time) = (job_id.to_owned(), clock::now_rfc3339());
    let _ = d
        .store()
        .submit(move |tx| tx.append_event(&id, owner, &time, ev).map(drop));
}

/// The connection serving (uid, name): the attached one, or one started on demand. At most one
/// activation runs per (uid, name); concurrent callers wait for the same one.
async fn handler_peer(d: &Arc<Daemon>, uid: u32, name: &str) -> Result<Arc<Peer>, String> {
    // Two rounds: an activation that ends with a connection attached answers on the second.
    for _ in 0..2 {
        let mut rx = {
            let mut inner = d.lock();
            if let Some(p) = inner.handlers_mut().attached(uid, name) {
                return Ok(p);
            }
            let slot = inner.handlers_mut().slot(uid, name);
            let Some(reg) = slot.registered.clone() else {
                return Err(format!(
                    "no connection is attached as handler {name:?} and no program is registered for it"
                ));
            };
            match &slot.activation {
                Some((_, tx)) => tx.subscribe(),
                None => {
                    let token = uuid::Uuid::new_v4().simple().to_string();
                    let (tx, rx) = watch::channel(Activation::Pending);
                    let extra = [
                        (
                            "FERRY_SOCKET",
                            d.opts().socket.to_string_lossy().into_owned(),
                        ),
                        ("FERRY_HANDLER", name.to_owned()),
                        ("FERRY_ACTIVATION", token.clone()),
                    ];
                    let child = identity::command_as(d.opts().mode, uid, &reg.argv, &extra)
                        .and_then(|mut c| c.spawn().map_err(|e| e.to_string()));
                    let child = match child {
                        Ok(c) => c,
                        Err(e) => {
                            let prog = reg.argv.first().cloned().unwrap_or_default();
                            return Err(format!("cannot start handler {name:?} ({prog}): {e}"));
                        }
                    };
                    slot.activation = Some((token, tx.clone()));
                    let timeout = Duration::from_secs(reg.activation_timeout_s);
                    tokio::spawn(watch_activation(
                        d.clone(),
                        uid,
                        name.to_owned(),
                        child,
                        tx,
                        timeout,
                    ));
                    rx
                }
            }
        };
        let state = rx
            .wait_for(|s| *s != Activation::Pending)
            .await
            .map(|s| s.clone())
            .unwrap_or(Activation::Failed("the activation was abandoned".into()));
        if let Activation::Failed(why) = state {
            return Err(why);
        }
    }
    let inner = d.lock();
    inner
        .handlers()
        .attached(uid, name)
        .ok_or_else(|| format!("handler {name:?} attached and went away again"))
}

/// Ends an activation that does not attach in time or whose program exits first; reaps the
/// program afterwards.
async fn watch_activation(
    d: Arc<Daemon>,
    uid: u32,
    name: String,
    mut child: tokio::process::Child,
    tx: watch::Sender<Activation>,
    timeout: Duration,
) {
    let mut attached = tx.subscribe();
    let failure = tokio::select! {
        r = child.wait() => Some(match r {
            Ok(st) => format!("handler {name:?} exited ({st}) before attaching"),
            Err(e) => format!("handler {name:?} could not be waited for: {e}"),
        }),
        _ = tokio::time::sleep(timeout) => {
            let _ = child.start_kill();
            Some(format!("handler {name:?} did not attach within {} s; it was stopped", timeout.as_secs()))
        }
        _ = attached.wait_for(|s| *s == Activation::Attached) => None,
    };
    if let Some(why) = failure {
        let mut inner = d.lock();
        let slot = inner.handlers_mut().slot(uid, &name);
        if slot
            .activation
            .as_ref()
            .is_some_and(|(_, t)| t.same_channel(&tx))
        {
            slot.activation = None;
        }
        drop(inner);
        tx.send_replace(Activation::Failed(why));
    }
    // Reap the program whenever it ends.
    let _ = child.wait().await;
}

/// Runs the job's command line as its owner and waits for it.
async fn run_cmdline(d: &Daemon, job_id: &str, dl: &Delivery) -> (Outcome, Option<String>) {
    let Some(argv) = &dl.cmdline else {
        return (
            Outcome::Unreachable,
            Some("the job has no command line".into()),
        );
    };
    let event = if dl.kind == Kind::JobError {
        "error"
    } else {
        "transferred"
    };
    let extra = [
        (
            "FERRY_SOCKET",
            d.opts().socket.to_string_lossy().into_owned(),
        ),
        ("FERRY_JOB_ID", job_id.to_owned()),
        ("FERRY_EVENT", event.to_owned()),
    ];
    let prog = argv.first().cloned().unwrap_or_default();
    let mut child = match identity::command_as(d.opts().mode, dl.owner, argv, &extra)
        .and_then(|mut c| c.spawn().map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            return (
                Outcome::Unreachable,
                Some(format!("cannot start {prog}: {e}")),
            );
        }
    };
    let status = match tokio::time::timeout(d.opts().command_timeout, child.wait()).await {
        Ok(Ok(st)) => st,
        Ok(Err(e)) => {
            return (
                Outcome::Failed,
                Some(format!("cannot wait for {prog}: {e}")),
            );
        }
        Err(_) => {
            let _ = child.kill().await;
            return (
                Outcome::Failed,
                Some(format!(
                    "{prog} still ran after {} s and was killed",
                    d.opts().command_timeout.as_secs()
                )),
            );
        }
    };
    if status.success() {
        return (Outcome::Ok, None);
    }
    // BITS: a non-zero exit counts only if the program did not complete or cancel the job.
    let handled = {
        let inner = d.lock();
        inner.jobs().peek(job_id).is_none_or(|e| {
            e.row.state.is_final()
                || (dl.kind == Kind::JobTransferred && e.row.state != JobState::Transferred)
                || (dl.kind == Kind::JobError && e.row.state != JobState::Error)
        })
    };
    if handled {
        (
            Outcome::Ok,
            Some(format!("{prog} exited with {status}, but the job moved on")),
        )
    } else {
        (
            Outcome::Failed,
            Some(format!("{prog} exited with {status}")),
        )
    }
}
