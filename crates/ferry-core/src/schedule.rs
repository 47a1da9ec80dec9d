//! Who runs next (docs/ARCHITECTURE.md).
//!
//! Foreground jobs always run. Background jobs (high > normal > low) share a bounded number of
//! slots in priority order and take turns in time slices within a priority. [`plan`] turns the
//! current candidates into what to start, what to preempt and when to look again; the daemon
//! applies it and calls [`plan`] again on any change or at [`Plan::next_slice_end`].

use std::cmp::Reverse;

use ferry_proto::Priority;

/// Milliseconds since an arbitrary monotonic epoch; all of `ferry-core`'s times use it.
pub type Millis = u64;

/// A job that wants to run or is running.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidate<Id> {
    /// The job.
    pub id: Id,
    /// Its priority.
    pub priority: Priority,
    /// Whether it is running now (connecting or transferring) rather than queued.
    pub running: bool,
    /// When it last started running (round-robin key; None = never ran).
    pub last_started: Option<Millis>,
    /// Sequence number of when it became queued; FIFO tie-break.
    pub queued_seq: u64,
}

/// What to change so the right jobs run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Plan<Id> {
    /// Queued jobs to start now (the caller records `last_started = now` for each).
    pub start: Vec<Id>,
    /// Running jobs to send back to the queue.
    pub preempt: Vec<Id>,
    /// Background jobs that must wait (queued ones and the preempted), with how many background
    /// jobs are ahead of each (running ones included), in queue order.
    pub waiting: Vec<(Id, u64)>,
    /// When the next time slice expires and the plan must be recomputed (None: nothing to wait for).
    pub next_slice_end: Option<Millis>,
}

/// The scheduling limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    /// How many background jobs may run at once (BITS: 1).
    pub max_background: usize,
    /// Length of a round-robin time slice; 0 turns time slicing off.
    pub time_slice_ms: u64,
}

/// Where a background candidate stands within its priority, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Turn {
    /// Running inside its slice: keeps its slot against same-priority waiters.
    InSlice,
    /// Queued: waits its turn.
    Queued,
    /// Running past its slice: yields to any same-priority waiter.
    SliceOver,
}

/// Decides which candidates run.
///
/// - Every foreground candidate runs (started if not running) and uses no slot.
/// - Background candidates are ordered by priority, then: running jobs inside their slice, then
///   queued jobs (least recently run first, never-run first of all, then lower `queued_seq`),
///   then running jobs whose slice is over (most recently started first, so the longest runner
///   yields first). The first `max_background` run; running jobs beyond them are preempted. So a
///   higher-priority waiter preempts a lower-priority runner at once, and a same-priority waiter
///   only once the runner's slice is over.
/// - A running job with no `last_started` counts as started `now`.
/// - `next_slice_end` is the earliest slice end among the background jobs that run after this plan
///   (started ones end at `now + time_slice_ms`) while a job of the same priority waits: only then
///   can a slice's end change the plan. An idle daemon, or one whose waiters are all of lower
///   priority, is never woken.
pub fn plan<Id: Clone + Eq>(
    now: Millis,
    candidates: &[Candidate<Id>],
    policy: &Policy,
) -> Plan<Id> {
    let slicing = policy.time_slice_ms > 0;
    let started_at = |c: &Candidate<Id>| c.last_started.unwrap_or(now);
    let slice_end = |c: &Candidate<Id>| -> Millis {
        if c.running {
            started_at(c).saturating_add(policy.time_slice_ms)
        } else {
            now.saturating_add(policy.time_slice_ms)
        }
    };
    let turn = |c: &Candidate<Id>| {
        if !c.running {
            Turn::Queued
        } else if slicing && now.saturating_sub(started_at(c)) >= policy.time_slice_ms {
            Turn::SliceOver
        } else {
            Turn::InSlice
        }
    };

    let mut start = Vec::new();
    let mut preempt = Vec::new();
    let mut background = Vec::new();
    for c in candidates {
        if c.priority == Priority::Foreground {
            if !c.running {
                start.push(c.id.clone());
            }
        } else {
            background.push((turn(c), c));
        }
    }

    background.sort_by(|(ta, a), (tb, b)| {
        a.priority.cmp(&b.priority).then(ta.cmp(tb)).then_with(|| {
            let by_start = match ta {
                Turn::InSlice => started_at(a).cmp(&started_at(b)),
                // `None` (never ran) sorts first.
                Turn::Queued => a.last_started.cmp(&b.last_started),
                Turn::SliceOver => Reverse(started_at(a)).cmp(&Reverse(started_at(b))),
            };
            by_start.then(a.queued_seq.cmp(&b.queued_seq))
        })
    });

    let mut waiting = Vec::new();
    let mut runners: Vec<&Candidate<Id>> = Vec::new();
    for (rank, (_, c)) in background.iter().enumerate() {
        if rank < policy.max_background {
            if !c.running {
                start.push(c.id.clone());
            }
            runners.push(c);
        } else {
            if c.running {
                preempt.push(c.id.clone());
            }
            waiting.push((c.id.clone(), u64::try_from(rank).unwrap_or(u64::MAX)));
        }
    }

    let waiting_priorities: Vec<Priority> = background
        .iter()
        .skip(policy.max_background)
        .map(|(_, c)| c.priority)
        .collect();
    let next_slice_end = if slicing {
        runners
            .iter()
            .filter(|r| waiting_priorities.contains(&r.priority))
            .map(|r| slice_end(r))
            // A runner already past its slice has no end left to wait for.
            .filter(|end| *end > now)
            .min()
    } else {
        None
    };

    Plan {
        start,
        preempt,
        waiting,
        next_slice_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: Policy = Policy {
        max_background: 1,
        time_slice_ms: 1_000,
    };

    fn queued(id: u32, priority: Priority, seq: u64) -> Candidate<u32> {
        Candidate {
            id,
            priority,
            running: false,
            last_started: None,
            queued_seq: seq,
        }
    }

    fn running(id: u32, priority: Priority, started: Millis) -> Candidate<u32> {
        Candidate {
            id,
            priority,
            running: true,
            last_started: Some(started),
            queued_seq: 0,
        }
    }

    #[test]
    fn foreground_always_starts() {
        let c = [
            queued(1, Priority::Foreground, 0),
            queued(2, Priority::Foreground, 1),
            running(3, Priority::High, 0),
            running(4, Priority::Foreground, 0),
        ];
        let p = plan(10, &c, &POLICY);
        assert_eq!(p.start, vec![1, 2]);
        assert!(p.preempt.is_empty());
        assert!(p.waiting.is_empty());
        // Even with no background slots at all.
        let none = Policy {
            max_background: 0,
            ..POLICY
        };
        let p = plan(10, &c, &none);
        assert_eq!(p.start, vec![1, 2]);
        assert_eq!(p.preempt, vec![3]);
    }

    #[test]
    fn priority_order_decides_who_starts() {
        let c = [
            queued(1, Priority::Low, 0),
            queued(2, Priority::Normal, 1),
            queued(3, Priority::High, 2),
        ];
        let p = plan(0, &c, &POLICY);
        assert_eq!(p.start, vec![3]);
        assert_eq!(p.waiting, vec![(2, 1), (1, 2)]);
        let two = Policy {
            max_background: 2,
            ..POLICY
        };
        let p = plan(0, &c, &two);
        assert_eq!(p.start, vec![3, 2]);
        assert_eq!(p.waiting, vec![(1, 2)]);
    }

    #[test]
    fn fifo_within_priority() {
        let c = [
            queued(1, Priority::Normal, 7),
            queued(2, Priority::Normal, 3),
            queued(3, Priority::Normal, 5),
        ];
        let p = plan(0, &c, &POLICY);
        assert_eq!(p.start, vec![2]);
        assert_eq!(p.waiting, vec![(3, 1), (1, 2)]);
    }

    #[test]
    fn never_ran_goes_before_ran_least_recently() {
        let mut ran = queued(1, Priority::Normal, 0);
        ran.last_started = Some(5);
        let c = [ran, queued(2, Priority::Normal, 9)];
        let p = plan(100, &c, &POLICY);
        assert_eq!(p.start, vec![2]);
    }

    #[test]
    fn runner_keeps_its_slot_inside_its_slice() {
        let c = [
            running(1, Priority::Normal, 500),
            queued(2, Priority::Normal, 0),
        ];
        let p = plan(1_499, &c, &POLICY);
        assert!(p.start.is_empty());
        assert!(p.preempt.is_empty());
        assert_eq!(p.waiting, vec![(2, 1)]);
        assert_eq!(p.next_slice_end, Some(1_500));
    }

    #[test]
    fn slice_expiry_rotates() {
        let c = [
            running(1, Priority::Normal, 500),
            queued(2, Priority::Normal, 0),
        ];
        let p = plan(1_500, &c, &POLICY);
        assert_eq!(p.start, vec![2]);
        assert_eq!(p.preempt, vec![1]);
        assert_eq!(p.waiting, vec![(1, 1)]);
        // The newly started job's slice is the next thing to wait for.
        assert_eq!(p.next_slice_end, Some(2_500));
    }

    #[test]
    fn expired_runner_keeps_running_without_same_priority_waiters() {
        let c = [running(1, Priority::Normal, 0), queued(2, Priority::Low, 0)];
        let p = plan(5_000, &c, &POLICY);
        assert!(p.start.is_empty());
        assert!(p.preempt.is_empty());
        assert_eq!(p.waiting, vec![(2, 1)]);
        // Lower-priority waiters gain nothing from a slice end: no wakeup.
        assert_eq!(p.next_slice_end, None);
    }

    #[test]
    fn longest_expired_runner_yields_first() {
        let two = Policy {
            max_background: 2,
            ..POLICY
        };
        let c = [
            running(1, Priority::Normal, 0),
            running(2, Priority::Normal, 200),
            queued(3, Priority::Normal, 0),
        ];
        let p = plan(5_000, &c, &two);
        assert_eq!(p.start, vec![3]);
        assert_eq!(p.preempt, vec![1]);
    }

    #[test]
    fn higher_priority_preempts_immediately() {
        let c = [running(1, Priority::Low, 990), queued(2, Priority::High, 0)];
        let p = plan(1_000, &c, &POLICY);
        assert_eq!(p.start, vec![2]);
        assert_eq!(p.preempt, vec![1]);
        assert_eq!(p.waiting, vec![(1, 1)]);
        assert_eq!(p.next_slice_end, None);
    }

    #[test]
    fn lower_priority_never_preempts() {
        let c = [
            running(1, Priority::High, 0),
            queued(2, Priority::Normal, 0),
        ];
        let p = plan(100_000, &c, &POLICY);
        assert!(p.start.is_empty());
        assert!(p.preempt.is_empty());
    }

    #[test]
    fn waiting_counts_ahead() {
        let two = Policy {
            max_background: 2,
            ..POLICY
        };
        let c = [
            running(1, Priority::Normal, 900),
            queued(2, Priority::Normal, 1),
            queued(3, Priority::Low, 2),
            queued(4, Priority::Normal, 3),
            queued(5, Priority::Foreground, 4),
            queued(6, Priority::High, 5),
        ];
        let p = plan(1_000, &c, &two);
        assert_eq!(p.start, vec![5, 6]);
        assert_eq!(p.waiting, vec![(2, 2), (4, 3), (3, 4)]);
    }

    #[test]
    fn no_wakeup_when_nothing_waits() {
        let c = [
            running(1, Priority::Normal, 0),
            queued(2, Priority::Foreground, 0),
        ];
        assert_eq!(plan(10, &c, &POLICY).next_slice_end, None);
        assert_eq!(plan::<u32>(10, &[], &POLICY).next_slice_end, None);
        let c = [queued(1, Priority::Normal, 0)];
        let p = plan(10, &c, &POLICY);
        assert_eq!(p.start, vec![1]);
        assert_eq!(p.next_slice_end, None);
    }

    #[test]
    fn zero_time_slice_disables_rotation() {
        let no_slicing = Policy {
            max_background: 1,
            time_slice_ms: 0,
        };
        let c = [
            running(1, Priority::Normal, 0),
            queued(2, Priority::Normal, 0),
        ];
        let p = plan(1_000_000, &c, &no_slicing);
        assert!(p.start.is_empty());
        assert!(p.preempt.is_empty());
        assert_eq!(p.next_slice_end, None);
    }

    #[test]
    fn running_without_start_time_counts_as_started_now() {
        let mut r = running(1, Priority::Normal, 0);
        r.last_started = None;
        let c = [r, queued(2, Priority::Normal, 0)];
        let p = plan(50, &c, &POLICY);
        assert!(p.preempt.is_empty());
        assert_eq!(p.next_slice_end, Some(1_050));
    }

    fn any_priority() -> impl Strategy<Value = Priority> {
        prop::sample::select(vec![
            Priority::Foreground,
            Priority::High,
            Priority::Normal,
            Priority::Low,
        ])
    }

    fn any_candidates() -> impl Strategy<Value = Vec<Candidate<usize>>> {
        prop::collection::vec(
            (
                any_priority(),
                any::<bool>(),
                proptest::option::of(0u64..5_000),
                0u64..50,
            ),
            0..12,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(
                    |(id, (priority, running, last_started, queued_seq))| Candidate {
                        id,
                        priority,
                        running,
                        last_started,
                        queued_seq,
                    },
                )
                .collect()
        })
    }

    proptest! {
        #[test]
        fn plan_invariants(
            now in 0u64..6_000,
            candidates in any_candidates(),
            max_background in 0usize..4,
            time_slice_ms in 0u64..2_000,
        ) {
            let policy = Policy { max_background, time_slice_ms };
            let p = plan(now, &candidates, &policy);
            let after: Vec<&Candidate<usize>> = candidates
                .iter()
                .filter(|c| (c.running && !p.preempt.contains(&c.id)) || p.start.contains(&c.id))
                .collect();
            let background = after.iter().filter(|c| c.priority != Priority::Foreground).count();
            prop_assert!(background <= max_background);
            for c in &candidates {
                if c.priority == Priority::Foreground {
                    prop_assert!(after.iter().any(|a| a.id == c.id));
                    prop_assert!(!p.preempt.contains(&c.id));
                }
                prop_assert!(!(p.start.contains(&c.id) && p.preempt.contains(&c.id)));
                if p.start.contains(&c.id) {
                    prop_assert!(!c.running);
                }
                if p.preempt.contains(&c.id) {
                    prop_assert!(c.running);
                }
                // Every candidate either runs after the plan or waits, never both.
                let waits = p.waiting.iter().any(|(id, _)| *id == c.id);
                prop_assert_ne!(waits, after.iter().any(|a| a.id == c.id));
            }
            // Slots are used whenever anyone waits.
            if !p.waiting.is_empty() {
                prop_assert_eq!(background, max_background);
            }
            if let Some(end) = p.next_slice_end {
                prop_assert!(end > now);
                prop_assert!(!p.waiting.is_empty());
            }
        }
    }
}
