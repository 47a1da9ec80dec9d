//! The scheduler task: retries transient errors when due, decides which queued jobs run
//! (`ferry_core::schedule`), starts and preempts transfers, and records why the others wait.
//! It sleeps until something changes (a notify) or the next deadline; it never polls.

use std::sync::Arc;

use ferry_core::policy::{self as netpolicy, JobPolicy, Wait};
use ferry_core::schedule::{self, Candidate, Policy};
use ferry_core::state::Trigger;
use ferry_proto::{JobState, Waiting};

use crate::daemon::{Daemon, DaemonState};
use crate::transfer;

/// What the scheduler keeps in memory for one job: its place in the queue, when it last ran,
/// when a transient error is retried and why it waits. Changed only through these methods.
#[derive(Debug, Default)]
pub struct Scheduling {
    /// FIFO key among queued jobs of one priority.
    queued_seq: u64,
    /// When the job last started running (round-robin key).
    last_started: Option<u64>,
    /// When a transient error is retried (monotonic ms).
    retry_at: Option<u64>,
    /// Start of the current run of transient errors (monotonic ms).
    first_transient_at: Option<u64>,
    /// Why a queued job waits.
    waiting: Option<Waiting>,
}

impl Scheduling {
    /// The scheduling state of a job read from the store: queued in creation order.
    pub fn queued_at(seq: u64) -> Scheduling {
        Scheduling {
            queued_seq: seq,
            ..Scheduling::default()
        }
    }

    /// The job's FIFO key among queued jobs of its priority.
    pub fn queued_seq(&self) -> u64 {
        self.queued_seq
    }

    /// Puts the job at the end of its priority's queue.
    pub fn enqueue(&mut self, seq: u64) {
        self.queued_seq = seq;
    }

    /// When the job last started running.
    pub fn last_started(&self) -> Option<u64> {
        self.last_started
    }

    /// Records that the job's transfer started at `now` (round-robin key).
    pub fn started(&mut self, now: u64) {
        self.last_started = Some(now);
    }

    /// When the job's transient error is retried (monotonic ms).
    pub fn retry_at(&self) -> Option<u64> {
        self.retry_at
    }

    /// Arms the retry timer (also after a restart, from the stored retry time).
    pub fn retry_when(&mut self, at: Option<u64>) {
        self.retry_at = at;
    }

    /// Start of the current run of transient errors.
    pub fn first_transient_at(&self) -> Option<u64> {
        self.first_transient_at
    }

    /// The job reached bytes it never had: a new run of transient errors starts from scratch.
    pub fn progressed(&mut self) {
        self.first_transient_at = None;
    }

    /// A transient error at `now`, retried at `at`, the job waiting meanwhile for `waiting`.
    pub fn retry(&mut self, now: u64, at: u64, waiting: Waiting) {
        self.first_transient_at.get_or_insert(now);
        self.retry_at = Some(at);
        self.waiting = Some(waiting);
    }

    /// Why the queued job waits, if the scheduler said.
    pub fn waiting(&self) -> Option<&Waiting> {
        self.waiting.as_ref()
    }

    /// Records why the job waits (`None`: it does not).
    pub fn wait(&mut self, waiting: Option<Waiting>) {
        self.waiting = waiting;
    }
}

/// Runs until shutdown.
pub async fn run(daemon: Arc<Daemon>) {
    loop {
        let next = {
            let mut inner = daemon.lock();
            tick(&daemon, &mut inner)
        };
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(daemon.mono().instant(at).into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = daemon.wake().notified() => {}
            _ = sleep => {}
            _ = daemon.shutdown().cancelled() => return,
        }
    }
}

/// One scheduling pass; returns when it next needs to run (monotonic ms).
fn tick(d: &Arc<Daemon>, inner: &mut DaemonState) -> Option<u64> {
    let now = d.mono().now();
    let mut next: Option<u64> = None;
    let mut earliest = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));

    let due: Vec<String> = inner
        .jobs()
        .resident()
        .filter(|(_, e)| e.row.state == JobState::TransientError)
        .filter_map(|(id, e)| match e.scheduling().retry_at() {
            Some(at) if at > now => {
                earliest(at);
                None
            }
            _ => Some(id.clone()),
        })
        .collect();
    for id in due {
        let _ = d.transition(inner, &id, Trigger::RetryDue, |_| {});
    }
    if inner.is_stopping() {
        return next;
    }

    let mut candidates = Vec::new();
    let mut blocked: Vec<(String, Wait)> = Vec::new();
    let seen = *d.conditions().borrow();
    let defaults = &d.opts().policy.defaults;
    // Queued and running jobs are hot, so resident.
    for (id, e) in inner.jobs().resident() {
        let running = e.transfer().is_running();
        let queued = e.row.state == JobState::Queued;
        // A held job is being stopped or changed by its owner: it must not start meanwhile.
        if !(running || queued && !d.is_held(id)) {
            continue;
        }
        let job = JobPolicy {
            priority: e.row.settings.priority,
            cost: e.row.settings.cost_policy,
            power: e.row.settings.power_policy,
        };
        if let Some(wait) = netpolicy::decide(&seen.now, &job, defaults) {
            blocked.push((id.clone(), wait));
            continue;
        }
        let held_for = e.scheduling().waiting().map(|w| w.reason.as_str());
        if let Some(at) = netpolicy::release_at(now, seen.since, held_for) {
            // Keeps its reason until the network has settled.
            earliest(at);
            continue;
        }
        candidates.push(Candidate {
            id: id.clone(),
            priority: e.row.settings.priority,
            running,
            last_started: e.scheduling().last_started(),
            queued_seq: e.scheduling().queued_seq(),
        });
    }
    let policy = Policy {
        max_background: d.opts().max_active_jobs,
        time_slice_ms: u64::try_from(d.opts().time_slice.as_millis()).unwrap_or(u64::MAX),
    };
    // The network or power says these must wait: a running one stops (its transfer checkpoints)
    // and goes back to the queue, with the reason.
    for (id, wait) in &blocked {
        stop(d, inner, id, now);
        if let Some(e) = inner.jobs_mut().get_resident_mut(id) {
            e.scheduling_mut().wait(Some(Waiting {
                reason: wait.as_str().into(),
                until: None,
                ahead: None,
            }));
        }
    }
    let plan = schedule::plan(now, &candidates, &policy);
    for id in &plan.preempt {
        stop(d, inner, id, now);
    }
    if !plan.start.is_empty() {
        crate::supervise::test_fault("scheduler");
    }
    for id in &plan.start {
        let still_finishing = inner
            .jobs()
            .peek(id)
            .is_some_and(|e| e.transfer().is_finishing());
        if still_finishing {
            // Its previous task is still checkpointing; its end wakes us again.
            continue;
        }
        if let Some(e) = inner.jobs_mut().get_resident_mut(id) {
            e.transfer_mut().forget_finished();
            e.scheduling_mut().wait(None);
        }
        transfer::start(d, inner, id);
    }
    for (id, ahead) in &plan.waiting {
        if let Some(e) = inner.jobs_mut().get_resident_mut(id) {
            e.scheduling_mut().wait(Some(Waiting {
                reason: "slots_busy".into(),
                until: None,
                ahead: Some(*ahead),
            }));
        }
    }
    if let Some(t) = plan.next_slice_end {
        earliest(t);
    }
    next
}

/// Stops a running job's transfer (it checkpoints and ends by itself) and sends the job back
/// to the queue; nothing for a job that is not running.
fn stop(d: &Arc<Daemon>, inner: &mut DaemonState, id: &str, now: u64) {
    let Some(e) = inner.jobs_mut().get_resident_mut(id) else {
        return;
    };
    let Some(started_ms) = e.transfer_mut().preempt() else {
        return;
    };
    e.add_active_ms(now.saturating_sub(started_ms));
    let _ = d.transition(inner, id, Trigger::Preempt, |_| {});
}

/// Before the host sleeps: stops every running transfer (each checkpoints: data synced, offsets
/// committed) and returns what resolves when they have ended. The conditions already say
/// `sleeping`, so the scheduler starts none of them again until the host resumes.
pub fn stop_all_for_sleep(daemon: &Arc<Daemon>) -> Vec<tokio::sync::watch::Receiver<bool>> {
    let now = daemon.mono().now();
    let mut inner = daemon.lock();
    let running = inner.jobs().running();
    for id in &running {
        stop(daemon, &mut inner, id, now);
        if let Some(e) = inner.jobs_mut().get_resident_mut(id) {
            e.scheduling_mut().wait(Some(Waiting {
                reason: Wait::SystemSleep.as_str().into(),
                until: None,
                ahead: None,
            }));
        }
    }
    inner
        .jobs()
        .resident()
        .filter_map(|(_, e)| e.transfer().finishing())
        .collect()
}
