//! The notifier's next step for one job (docs/protocol.md, "Delivery rules"):
//! which owed notifications to forget, and whether to deliver one now (which, to which targets),
//! to wait until a time, or to stop.
//!
//! [`plan`] composes the rules of [`crate::notify`] over everything the daemon's courier knows
//! about a job; the courier executes the [`Plan`] (outbox deletes, the delivery, its timer).

use ferry_proto::JobState;

use crate::notify::{self, Available, Kind, Owed, Target, Verdict};

/// One owed notification in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The outbox row's id.
    pub id: u64,
    /// Its kind; `None` for a kind this version does not know (it lapses).
    pub kind: Option<Kind>,
    /// The file, for file-level kinds.
    pub file_index: Option<u64>,
}

/// What the courier knows about a job when it plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryFacts<'a> {
    /// Now, on the daemon's monotonic clock (ms).
    pub now_ms: u64,
    /// The job's notify flags, read now (flags are evaluated at delivery time).
    pub flags: u32,
    /// The job's state now.
    pub state: JobState,
    /// The durable outbox, in the order the notifications arose.
    pub outbox: &'a [Pending],
    /// Which targets exist: a live callback, a handler that is attached or can be started, a
    /// command line.
    pub available: Available,
    /// The job's handler is attached right now (a `job_modification` is never worth starting
    /// one for).
    pub handler_attached: bool,
    /// After every target failed: when the next attempt is due.
    pub retry_at_ms: Option<u64>,
    /// The lowest file not transferred yet (file notifications wait for lower files).
    pub lowest_untransferred: Option<u64>,
    /// A change a `job_modification` should report is pending.
    pub modified_pending: bool,
    /// When the last `job_modification` went out.
    pub last_modification_ms: Option<u64>,
    /// The job's `minimum_notification_interval` between modifications (ms).
    pub min_notification_interval_ms: u64,
}

/// The courier's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing can be delivered now: the courier ends (a kick starts a new one).
    Exit,
    /// Wait until this time (monotonic ms), or until kicked.
    SleepUntil(u64),
    /// Deliver one notification, trying `targets` in order.
    Deliver {
        /// The outbox row, or `None` for a (non-durable) `job_modification`.
        outbox_id: Option<u64>,
        /// What it is.
        kind: Kind,
        /// Where to try it, in order.
        targets: Vec<Target>,
    },
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Outbox rows to forget first: their flag is not set, the job left the state they
    /// announce, or their kind is unknown.
    pub lapse: Vec<u64>,
    /// Clear the pending `job_modification` (it is delivered now, or dropped).
    pub clear_modified: bool,
    /// The step to take.
    pub next: Next,
}

impl Plan {
    fn new(lapse: Vec<u64>, clear_modified: bool, next: Next) -> Plan {
        Plan {
            lapse,
            clear_modified,
            next,
        }
    }
}

/// The next step for a job's notifications.
///
/// Rules, in order: lapsed notifications are forgotten; if durable ones are deliverable, the
/// retry delay after a failed attempt is waited out, then [`notify::pick`] chooses one and
/// [`notify::targets`] its targets. Otherwise a pending `job_modification` goes (best effort,
/// to a live callback or an attached handler only, no closer together than the minimum
/// interval), is held while flag 4 is set, or is dropped. With nothing left the courier exits.
pub fn plan(f: &DeliveryFacts<'_>) -> Plan {
    let verdict =
        |k: Option<Kind>| k.map_or(Verdict::Drop, |k| notify::verdict(f.flags, k, f.state));
    let lapse: Vec<u64> = f
        .outbox
        .iter()
        .filter(|p| verdict(p.kind) == Verdict::Drop)
        .map(|p| p.id)
        .collect();
    let owed: Vec<(u64, Owed)> = f
        .outbox
        .iter()
        .filter_map(|p| {
            let kind = p.kind?;
            (verdict(Some(kind)) == Verdict::Deliver).then_some((
                p.id,
                Owed {
                    kind,
                    file_index: p.file_index,
                },
            ))
        })
        .collect();
    if !owed.is_empty() {
        if let Some(at) = f.retry_at_ms.filter(|at| *at > f.now_ms) {
            return Plan::new(lapse, false, Next::SleepUntil(at));
        }
        let kinds: Vec<Owed> = owed.iter().map(|(_, o)| *o).collect();
        if let Some(i) = notify::pick(&kinds, f.available, f.lowest_untransferred) {
            let (id, o) = owed[i];
            let next = Next::Deliver {
                outbox_id: Some(id),
                kind: o.kind,
                targets: notify::targets(o.kind, f.available),
            };
            return Plan::new(lapse, false, next);
        }
    }
    if f.modified_pending {
        match notify::verdict(f.flags, Kind::JobModification, f.state) {
            Verdict::Hold => {}
            Verdict::Drop => return Plan::new(lapse, true, Next::Exit),
            Verdict::Deliver => {
                let live = Available {
                    interface: f.available.interface,
                    handler: f.handler_attached,
                    cmdline: false,
                };
                if !live.interface && !live.handler {
                    return Plan::new(lapse, true, Next::Exit);
                }
                let due = f
                    .last_modification_ms
                    .map_or(0, |t| t.saturating_add(f.min_notification_interval_ms));
                if due > f.now_ms {
                    return Plan::new(lapse, false, Next::SleepUntil(due));
                }
                let next = Next::Deliver {
                    outbox_id: None,
                    kind: Kind::JobModification,
                    targets: notify::targets(Kind::JobModification, live),
                };
                return Plan::new(lapse, true, next);
            }
        }
    }
    Plan::new(lapse, false, Next::Exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ALL_TARGETS, any_kind};
    use ferry_proto::NotifyFlags;
    use proptest::prelude::*;

    fn pending(id: u64, kind: Kind, file_index: Option<u64>) -> Pending {
        Pending {
            id,
            kind: Some(kind),
            file_index,
        }
    }

    fn facts(state: JobState, flags: u32, outbox: &[Pending]) -> DeliveryFacts<'_> {
        DeliveryFacts {
            now_ms: 1_000,
            flags,
            state,
            outbox,
            available: ALL_TARGETS,
            handler_attached: true,
            retry_at_ms: None,
            lowest_untransferred: None,
            modified_pending: false,
            last_modification_ms: None,
            min_notification_interval_ms: 0,
        }
    }

    fn deliver(id: Option<u64>, kind: Kind, targets: Vec<Target>) -> Next {
        Next::Deliver {
            outbox_id: id,
            kind,
            targets,
        }
    }

    #[test]
    fn an_owed_job_transferred_goes_to_every_target_in_order() {
        let outbox = [pending(5, Kind::JobTransferred, None)];
        let p = plan(&facts(JobState::Transferred, 3, &outbox));
        assert!(p.lapse.is_empty());
        let targets = vec![Target::Interface, Target::Handler, Target::Cmdline];
        assert_eq!(p.next, deliver(Some(5), Kind::JobTransferred, targets));
    }

    #[test]
    fn lapsed_and_unknown_notifications_are_forgotten_first() {
        let outbox = [
            pending(1, Kind::JobTransferred, None),
            pending(2, Kind::FileTransferred, Some(0)),
            Pending {
                id: 3,
                kind: None,
                file_index: None,
            },
            pending(4, Kind::JobError, None),
        ];
        // Queued: job_transferred and job_error lapse; the file flag is off by default.
        let p = plan(&facts(JobState::Queued, 3, &outbox));
        assert_eq!(p.lapse, vec![1, 2, 3, 4]);
        assert_eq!(p.next, Next::Exit);
    }

    #[test]
    fn disable_holds_owed_notifications_without_forgetting_them() {
        let outbox = [pending(1, Kind::JobTransferred, None)];
        let flags = 3 | NotifyFlags::DISABLE;
        let p = plan(&facts(JobState::Transferred, flags, &outbox));
        assert!(p.lapse.is_empty());
        assert_eq!(p.next, Next::Exit);
    }

    #[test]
    fn after_a_failed_attempt_the_retry_delay_is_waited_out() {
        let outbox = [pending(1, Kind::JobError, None)];
        let mut f = facts(JobState::Error, 3, &outbox);
        f.retry_at_ms = Some(5_000);
        assert_eq!(plan(&f).next, Next::SleepUntil(5_000));
        f.retry_at_ms = Some(1_000);
        assert!(matches!(plan(&f).next, Next::Deliver { .. }));
    }

    #[test]
    fn file_notifications_go_first_and_never_to_the_command_line() {
        let outbox = [
            pending(1, Kind::JobTransferred, None),
            pending(2, Kind::FileTransferred, Some(1)),
        ];
        let p = plan(&facts(JobState::Transferred, 0x3f & !4, &outbox));
        let targets = vec![Target::Interface, Target::Handler];
        assert_eq!(p.next, deliver(Some(2), Kind::FileTransferred, targets));
        let mut f = facts(JobState::Transferred, 0x3f & !4, &outbox);
        f.available = Available {
            cmdline: true,
            ..Available::default()
        };
        let p = plan(&f);
        assert_eq!(
            p.next,
            deliver(Some(1), Kind::JobTransferred, vec![Target::Cmdline])
        );
    }

    #[test]
    fn a_modification_goes_only_to_live_connections() {
        let mut f = facts(JobState::Queued, NotifyFlags::JOB_MODIFICATION, &[]);
        f.modified_pending = true;
        f.handler_attached = false;
        let p = plan(&f);
        assert!(p.clear_modified);
        assert_eq!(
            p.next,
            deliver(None, Kind::JobModification, vec![Target::Interface])
        );
        // No live callback and no attached handler: dropped (a handler is not started for it).
        f.available.interface = false;
        let p = plan(&f);
        assert_eq!((p.clear_modified, p.next), (true, Next::Exit));
    }

    #[test]
    fn modifications_keep_the_minimum_interval() {
        let mut f = facts(JobState::Queued, NotifyFlags::JOB_MODIFICATION, &[]);
        f.modified_pending = true;
        f.last_modification_ms = Some(800);
        f.min_notification_interval_ms = 500;
        let p = plan(&f);
        assert_eq!((p.clear_modified, p.next), (false, Next::SleepUntil(1_300)));
        f.min_notification_interval_ms = 200;
        assert!(plan(&f).clear_modified);
    }

    #[test]
    fn a_modification_without_its_flag_is_dropped_and_with_disable_held() {
        let mut f = facts(JobState::Queued, 3, &[]);
        f.modified_pending = true;
        let p = plan(&f);
        assert_eq!((p.clear_modified, p.next), (true, Next::Exit));
        f.flags = NotifyFlags::JOB_MODIFICATION | NotifyFlags::DISABLE;
        let p = plan(&f);
        assert_eq!((p.clear_modified, p.next), (false, Next::Exit));
    }

    proptest! {
        /// Whatever the facts: what is delivered was owed, deliverable under the flags and not
        /// lapsed; the command line gets only job_transferred / job_error; a modification goes
        /// only to live connections; lapsed rows are exactly those the flags or state drop.
        #[test]
        fn plans_follow_the_delivery_rules(
            rows in prop::collection::vec((any_kind(), prop::option::of(0u64..5)), 0..6),
            flags in 0u32..0x40,
            state in prop::sample::select(JobState::ALL.to_vec()),
            avail in (any::<bool>(), any::<bool>(), any::<bool>()),
            handler_attached in any::<bool>(),
            retry_at in prop::option::of(0u64..2_000),
            lowest in prop::option::of(0u64..5),
            modified_pending in any::<bool>(),
            last_mod in prop::option::of(0u64..2_000),
            interval in 0u64..1_000,
        ) {
            let outbox: Vec<Pending> = rows
                .iter()
                .enumerate()
                .map(|(i, &(kind, file_index))| Pending { id: i as u64, kind, file_index })
                .collect();
            let f = DeliveryFacts {
                now_ms: 1_000,
                flags,
                state,
                outbox: &outbox,
                available: Available { interface: avail.0, handler: avail.1, cmdline: avail.2 },
                handler_attached,
                retry_at_ms: retry_at,
                lowest_untransferred: lowest,
                modified_pending,
                last_modification_ms: last_mod,
                min_notification_interval_ms: interval,
            };
            let p = plan(&f);
            for o in &outbox {
                let dropped = o.kind.is_none_or(|k| notify::verdict(flags, k, state) == Verdict::Drop);
                prop_assert_eq!(p.lapse.contains(&o.id), dropped);
            }
            if p.clear_modified {
                prop_assert!(modified_pending);
            }
            match &p.next {
                Next::Exit => {}
                Next::SleepUntil(at) => prop_assert!(*at > f.now_ms),
                Next::Deliver { outbox_id: Some(id), kind, targets } => {
                    let row = outbox.iter().find(|o| o.id == *id);
                    prop_assert!(row.is_some_and(|o| o.kind == Some(*kind)));
                    prop_assert!(!p.lapse.contains(id));
                    prop_assert_eq!(notify::verdict(flags, *kind, state), Verdict::Deliver);
                    prop_assert!(!targets.is_empty());
                    if targets.contains(&Target::Cmdline) {
                        prop_assert!(kind.allows_cmdline());
                    }
                    prop_assert!(retry_at.is_none_or(|at| at <= f.now_ms));
                    prop_assert!(!p.clear_modified);
                }
                Next::Deliver { outbox_id: None, kind, targets } => {
                    prop_assert_eq!(*kind, Kind::JobModification);
                    prop_assert!(p.clear_modified);
                    prop_assert!(!targets.is_empty());
                    prop_assert!(!targets.contains(&Target::Cmdline));
                    if targets.contains(&Target::Handler) {
                        prop_assert!(handler_attached);
                    }
                    if targets.contains(&Target::Interface) {
                        prop_assert!(avail.0);
                    }
                    prop_assert!(last_mod.is_none_or(|t| t + interval <= f.now_ms));
                }
            }
        }
    }
}
