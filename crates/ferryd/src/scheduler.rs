//! The scheduler task: retries transient errors when due, decides which queued jobs run
//! (`ferry_core::schedule`), starts and preempts transfers, and records why the others wait.
//! It sleeps until something changes (a notify) or the next deadline; it never polls.

use std::sync::Arc;

use ferry_core::policy::{self as netpolicy, JobPolicy, Wait};
use ferry_core::schedule::{self, Candidate, Policy};
use ferry_core::state::Trigger;
use ferry_proto::{JobState, Waiting};

use crate::daemon::{Daemon, Inner};
use crate::transfer;

/// Runs until shutdown.
pub async fn run(d: Arc<Daemon>) {
    loop {
        let next = {
            let mut inner = d.lock();
            tick(&d, &mut inner)
        };
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(d.mono.instant(at).into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = d.wake.notified() => {}
            _ = sleep => {}
            _ = d.shutdown.cancelled() => return,
        }
    }
}

/// One scheduling pass; returns when it next needs to run (monotonic ms).
fn tick(d: &Arc<Daemon>, inner: &mut Inner) -> Option<u64> {
    let now = d.mono.now();
    let mut next: Option<u64> = None;
    let mut earliest = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));

    let due: Vec<String> = inner
        .jobs
        .resident()
        .filter(|(_, e)| e.row.state == JobState::TransientError)
        .filter_map(|(id, e)| match e.rt.retry_at {
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
    if inner.stopping {
        return next;
    }

    let mut candidates = Vec::new();
    let mut blocked: Vec<(String, Wait)> = Vec::new();
    let seen = *d.conditions.borrow();
    let defaults = &d.opts.policy.defaults;
    // Queued and running jobs are hot, so resident.
    for (id, e) in inner.jobs.resident() {
        let running = e.rt.running.is_some();
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
        let held_for = e.rt.waiting.as_ref().map(|w| w.reason.as_str());
        if let Some(at) = netpolicy::release_at(now, seen.since, held_for) {
            // Keeps its reason until the network has settled.
            earliest(at);
            continue;
        }
        candidates.push(Candidate {
            id: id.clone(),
            priority: e.row.settings.priority,
            running,
            last_started: e.rt.last_started,
            queued_seq: e.rt.queued_seq,
        });
    }
    let policy = Policy {
        max_background: d.opts.max_active_jobs,
        time_slice_ms: u64::try_from(d.opts.time_slice.as_millis()).unwrap_or(u64::MAX),
    };
    // The network or power says these must wait: a running one stops (its transfer checkpoints)
    // and goes back to the queue, with the reason.
    for (id, wait) in &blocked {
        stop(d, inner, id, now);
        if let Some(e) = inner.jobs.get_mut(id) {
            e.rt.waiting = Some(Waiting {
                reason: wait.as_str().into(),
                until: None,
                ahead: None,
            });
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
            .jobs
            .get(id)
            .and_then(|e| e.rt.finishing.as_ref())
            .is_some_and(|done| !*done.borrow());
        if still_finishing {
            // Its previous task is still checkpointing; its end wakes us again.
            continue;
        }
        if let Some(e) = inner.jobs.get_mut(id) {
            e.rt.finishing = None;
            e.rt.waiting = None;
        }
        transfer::start(d, inner, id);
    }
    for (id, ahead) in &plan.waiting {
        if let Some(e) = inner.jobs.get_mut(id) {
            e.rt.waiting = Some(Waiting {
                reason: "slots_busy".into(),
                until: None,
                ahead: Some(*ahead),
            });
        }
    }
    if let Some(t) = plan.next_slice_end {
        earliest(t);
    }
    next
}

/// Stops a running job's transfer (it checkpoints and ends by itself) and sends the job back
/// to the queue; nothing for a job that is not running.
fn stop(d: &Arc<Daemon>, inner: &mut Inner, id: &str, now: u64) {
    let Some(e) = inner.jobs.get_mut(id) else {
        return;
    };
    let Some(r) = e.rt.running.take() else {
        return;
    };
    r.token.cancel();
    e.row.active_ms += now.saturating_sub(r.started_ms);
    e.rt.live_bytes = 0;
    e.rt.finishing = Some(r.done);
    let _ = d.transition(inner, id, Trigger::Preempt, |_| {});
}

/// Before the host sleeps: stops every running transfer (each checkpoints: data synced, offsets
/// committed) and returns what resolves when they have ended. The conditions already say
/// `sleeping`, so the scheduler starts none of them again until the host resumes.
pub fn stop_all_for_sleep(d: &Arc<Daemon>) -> Vec<tokio::sync::watch::Receiver<bool>> {
    let now = d.mono.now();
    let mut inner = d.lock();
    let running: Vec<String> = inner
        .jobs
        .resident()
        .filter(|(_, e)| e.rt.running.is_some())
        .map(|(id, _)| id.clone())
        .collect();
    for id in &running {
        stop(d, &mut inner, id, now);
        if let Some(e) = inner.jobs.get_mut(id) {
            e.rt.waiting = Some(Waiting {
                reason: Wait::SystemSleep.as_str().into(),
                until: None,
                ahead: None,
            });
        }
    }
    inner
        .jobs
        .resident()
        .filter_map(|(_, e)| e.rt.finishing.clone())
        .collect()
}
