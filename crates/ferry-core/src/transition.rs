//! What a trigger does to a job: its new state ([`crate::state`], the BITS job state machine)
//! and everything that follows from the change, including the notifications it owes
//! (docs/protocol.md, "Delivery rules").
//!
//! [`apply`] takes the facts the daemon holds about a job and a [`Trigger`], and answers with
//! [`Effects`]: the daemon executes them (row fields, counters, outbox rows, event log, wake-ups)
//! and decides nothing itself. No rule here depends on the time, so the daemon stamps times
//! with its own clock when it executes [`Effects`].

use ferry_proto::{JobState, NotifyFlags};

use crate::notify::Kind;
use crate::state::{self, Refusal, Trigger};

/// A notification the job owes, as far as the state rules are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwedRow {
    /// The outbox row's id.
    pub id: u64,
    /// Its kind; `None` for a kind this version does not know (it lapses only when the job
    /// becomes final).
    pub kind: Option<Kind>,
}

/// What the daemon knows about a job when a trigger arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFacts<'a> {
    /// The job's current state.
    pub state: JobState,
    /// The job's notify flags (`job_modification` wakes the notifier on a state change).
    pub notify_flags: u32,
    /// The notifications it owes, in the order they arose.
    pub outbox: &'a [OwedRow],
}

/// Everything a trigger changes, for the daemon to execute in this order: the row edits before
/// the caller's own edit (`clear_error` … `restart_windows`), then the caller's edit, then the
/// rest. Fields are independent facts so each rule can be tested on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effects {
    /// The state before.
    pub from: JobState,
    /// The new state ([`state::next`]).
    pub to: JobState,
    /// Forget the error info: only `error` and `transient_error` carry one.
    pub clear_error: bool,
    /// Add one to the job's error count (an error trigger was accepted).
    pub count_error: bool,
    /// Stamp `transfer_completed`: the job just reached `transferred`.
    pub stamp_transfer_completed: bool,
    /// Forget the retry time: only `transient_error` waits for one.
    pub clear_retry: bool,
    /// A resume that moved the job: reset the max-download-time counter and the no-progress
    /// window (BITS resets both on resume).
    pub restart_windows: bool,
    /// The job just became final: stamp `final_at`, erase its secrets (credentials and custom
    /// headers; the row stays for the history retention and transfers nothing again) and take
    /// it (and its files) out of the live-job counts.
    pub finalize: bool,
    /// Log a `state` event (the state changed).
    pub log_state: bool,
    /// Log the error the row carries after the caller's edit (the job is in an error state).
    pub log_error: bool,
    /// The job entered `queued`: it takes the next FIFO key.
    pub enqueue: bool,
    /// Outbox rows that lapse: job-level notifications whose state the job left, and every one
    /// when the job becomes final.
    pub lapse: Vec<u64>,
    /// A notification the job now owes (`job_transferred` or `job_error` on entering that state).
    pub owe: Option<Kind>,
    /// Mark a `job_modification` as pending: the state changed and no other notification
    /// announces it.
    pub modified: bool,
    /// Wake the notifier: something is owed now, or a modification the owner asked for.
    pub kick_notifier: bool,
    /// Wake the scheduler: the state changed.
    pub wake_scheduler: bool,
}

/// Whether a trigger reports an error (it counts in the job's error count).
pub fn is_error(trigger: Trigger) -> bool {
    matches!(
        trigger,
        Trigger::TransientError
            | Trigger::FatalError
            | Trigger::NoProgressTimeout
            | Trigger::MaxDownloadTime
    )
}

/// Whether an owed notification lapses when the job is in `to`: `job_transferred` and
/// `job_error` are owed only while the job is in that state, and nothing once it is final.
pub fn lapses(kind: Option<Kind>, to: JobState) -> bool {
    to.is_final()
        || (kind == Some(Kind::JobTransferred) && to != JobState::Transferred)
        || (kind == Some(Kind::JobError) && to != JobState::Error)
}

/// The effects of `trigger` on a job described by `facts`, or why the state machine refuses it
/// (the job is then left exactly as it was).
pub fn apply(facts: &JobFacts<'_>, trigger: Trigger) -> Result<Effects, Refusal> {
    let from = facts.state;
    let to = state::next(from, trigger)?;
    let changed = from != to;
    let owe = match to {
        JobState::Transferred if changed => Some(Kind::JobTransferred),
        JobState::Error if changed => Some(Kind::JobError),
        _ => None,
    };
    let in_error = matches!(to, JobState::Error | JobState::TransientError);
    let wants_modification = facts.notify_flags & NotifyFlags::JOB_MODIFICATION != 0;
    Ok(Effects {
        from,
        to,
        clear_error: !in_error,
        count_error: is_error(trigger),
        stamp_transfer_completed: to == JobState::Transferred && changed,
        clear_retry: to != JobState::TransientError,
        restart_windows: matches!(trigger, Trigger::Resume { .. }) && changed,
        finalize: to.is_final() && !from.is_final(),
        log_state: changed,
        log_error: in_error,
        enqueue: to == JobState::Queued && changed,
        lapse: facts
            .outbox
            .iter()
            .filter(|o| lapses(o.kind, to))
            .map(|o| o.id)
            .collect(),
        owe,
        modified: changed && owe.is_none(),
        kick_notifier: owe.is_some() || (changed && wants_modification),
        wake_scheduler: changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{any_kind, any_state, any_trigger};
    use JobState as S;
    use ferry_proto::JobType;
    use proptest::prelude::*;

    const MODIFICATION: u32 = NotifyFlags::JOB_MODIFICATION;

    fn facts(state: JobState, outbox: &[OwedRow]) -> JobFacts<'_> {
        JobFacts {
            state,
            notify_flags: 3,
            outbox,
        }
    }

    fn owed(id: u64, kind: Kind) -> OwedRow {
        OwedRow {
            id,
            kind: Some(kind),
        }
    }

    const RESUME: Trigger = Trigger::Resume {
        files_total: 1,
        files_pending: 1,
    };

    #[test]
    fn a_refused_trigger_has_no_effects() {
        assert_eq!(
            apply(&facts(S::Suspended, &[]), Trigger::Start),
            Err(Refusal::InvalidState(S::Suspended))
        );
        let empty = Trigger::Resume {
            files_total: 0,
            files_pending: 0,
        };
        assert_eq!(apply(&facts(S::Suspended, &[]), empty), Err(Refusal::Empty));
        for s in [S::Acknowledged, S::Cancelled] {
            assert_eq!(
                apply(&facts(s, &[]), Trigger::Cancel),
                Err(Refusal::InvalidState(s))
            );
        }
    }

    #[test]
    fn reaching_transferred_owes_job_transferred_and_stamps_completion() {
        let e = apply(&facts(S::Transferring, &[]), Trigger::AllTransferred).unwrap();
        assert_eq!((e.from, e.to), (S::Transferring, S::Transferred));
        assert_eq!(e.owe, Some(Kind::JobTransferred));
        assert!(e.stamp_transfer_completed && e.kick_notifier && e.wake_scheduler);
        assert!(e.log_state && e.clear_error && e.clear_retry);
        assert!(!e.modified && !e.finalize && !e.count_error && !e.enqueue);
    }

    #[test]
    fn a_resume_that_stays_transferred_changes_nothing() {
        let none_pending = Trigger::Resume {
            files_total: 1,
            files_pending: 0,
        };
        let e = apply(&facts(S::Transferred, &[]), none_pending).unwrap();
        assert_eq!(e.to, S::Transferred);
        assert_eq!(e.owe, None);
        assert!(!e.stamp_transfer_completed && !e.log_state && !e.restart_windows);
        assert!(!e.wake_scheduler && !e.kick_notifier && !e.modified);
    }

    #[test]
    fn entering_error_owes_job_error_and_counts_it() {
        for (s, t) in [
            (S::Transferring, Trigger::FatalError),
            (S::TransientError, Trigger::NoProgressTimeout),
            (S::Queued, Trigger::MaxDownloadTime),
        ] {
            let e = apply(&facts(s, &[]), t).unwrap();
            assert_eq!(e.to, S::Error, "{s} {t:?}");
            assert_eq!(e.owe, Some(Kind::JobError));
            assert!(e.count_error && e.log_error && !e.clear_error);
        }
    }

    #[test]
    fn a_second_error_in_error_counts_but_owes_nothing_new() {
        let outbox = [owed(7, Kind::JobError)];
        let e = apply(&facts(S::Error, &outbox), Trigger::FatalError).unwrap();
        assert_eq!(e.to, S::Error);
        assert!(e.count_error && e.log_error);
        assert_eq!(e.owe, None);
        assert!(
            e.lapse.is_empty(),
            "the job_error owed still announces this state"
        );
        assert!(!e.log_state && !e.wake_scheduler && !e.modified);
    }

    #[test]
    fn transient_error_keeps_its_retry_time_and_owes_nothing() {
        let e = apply(&facts(S::Transferring, &[]), Trigger::TransientError).unwrap();
        assert_eq!(e.to, S::TransientError);
        assert!(e.count_error && e.log_error && !e.clear_error && !e.clear_retry);
        assert_eq!(e.owe, None);
        assert!(
            e.modified,
            "a state change no callback announces is a modification"
        );
    }

    #[test]
    fn resume_restarts_the_windows_and_enqueues() {
        let e = apply(&facts(S::Error, &[]), RESUME).unwrap();
        assert_eq!(e.to, S::Queued);
        assert!(e.restart_windows && e.enqueue && e.clear_error && e.clear_retry);
        // A resume of a job that is queued already changes nothing.
        let e = apply(&facts(S::Queued, &[]), RESUME).unwrap();
        assert!(!e.restart_windows && !e.enqueue && !e.log_state);
    }

    #[test]
    fn job_level_notifications_lapse_when_the_job_leaves_their_state() {
        let outbox = [
            owed(1, Kind::JobTransferred),
            owed(2, Kind::FileTransferred),
            owed(3, Kind::JobModification),
        ];
        let e = apply(&facts(S::Transferred, &outbox), RESUME).unwrap();
        assert_eq!(e.to, S::Queued);
        assert_eq!(e.lapse, vec![1]);
        let outbox = [owed(4, Kind::JobError), owed(5, Kind::FileTransferred)];
        let e = apply(&facts(S::Error, &outbox), Trigger::Suspend).unwrap();
        assert_eq!(e.lapse, vec![4]);
    }

    #[test]
    fn becoming_final_lapses_everything_and_finalizes_once() {
        let outbox = [
            owed(1, Kind::JobTransferred),
            owed(2, Kind::FileTransferred),
            OwedRow { id: 3, kind: None },
        ];
        let complete = Trigger::Complete {
            job_type: JobType::Download,
        };
        let e = apply(&facts(S::Transferred, &outbox), complete).unwrap();
        assert_eq!(e.to, S::Acknowledged);
        assert!(e.finalize && e.modified && e.wake_scheduler);
        assert_eq!(e.lapse, vec![1, 2, 3]);
        let e = apply(&facts(S::Suspended, &[]), Trigger::Cancel).unwrap();
        assert!(e.finalize);
    }

    #[test]
    fn an_unknown_kind_lapses_only_when_final() {
        let outbox = [OwedRow { id: 9, kind: None }];
        let e = apply(&facts(S::Transferred, &outbox), RESUME).unwrap();
        assert!(e.lapse.is_empty());
    }

    #[test]
    fn the_modification_flag_decides_whether_a_plain_change_kicks_the_notifier() {
        let mut f = facts(S::Queued, &[]);
        let e = apply(&f, Trigger::Start).unwrap();
        assert!(e.modified && !e.kick_notifier);
        f.notify_flags = MODIFICATION;
        let e = apply(&f, Trigger::Start).unwrap();
        assert!(e.modified && e.kick_notifier);
        // No change, no kick, whatever the flags.
        f.state = S::Transferring;
        let e = apply(&f, Trigger::Connected).unwrap();
        assert!(!e.modified && !e.kick_notifier);
    }

    /// Every trigger there is, with each variant of its fields that matters.
    fn every_trigger() -> Vec<Trigger> {
        let mut all = vec![
            Trigger::Suspend,
            Trigger::Cancel,
            Trigger::Start,
            Trigger::Connected,
            Trigger::Preempt,
            Trigger::TransientError,
            Trigger::FatalError,
            Trigger::AllTransferred,
            Trigger::RetryDue,
            Trigger::NoProgressTimeout,
            Trigger::MaxDownloadTime,
        ];
        for (files_total, files_pending) in [(0, 0), (2, 0), (2, 1)] {
            all.push(Trigger::Resume {
                files_total,
                files_pending,
            });
        }
        for job_type in [JobType::Download, JobType::Upload, JobType::UploadReply] {
            all.push(Trigger::Complete { job_type });
        }
        all
    }

    #[test]
    fn every_legal_and_illegal_transition_is_the_state_machines() {
        let outbox = [owed(1, Kind::JobTransferred), owed(2, Kind::JobError)];
        for s in JobState::ALL {
            for t in every_trigger() {
                let got = apply(&facts(s, &outbox), t);
                match state::next(s, t) {
                    Ok(to) => {
                        let e = got.clone().unwrap();
                        assert_eq!((e.from, e.to), (s, to), "{s} {t:?}");
                    }
                    Err(r) => assert_eq!(got, Err(r), "{s} {t:?}"),
                }
                if s.is_final() {
                    assert_eq!(got, Err(Refusal::InvalidState(s)), "{s} {t:?}");
                }
            }
        }
    }

    // ---- properties ----

    proptest! {
        /// Every single step: the state is what the state machine says, and each effect follows
        /// its rule.
        #[test]
        fn each_effect_follows_its_rule(
            s in any_state(),
            t in any_trigger(),
            flags in 0u32..0x40,
            kinds in prop::collection::vec(any_kind(), 0..6),
        ) {
            let outbox: Vec<OwedRow> = kinds
                .iter()
                .enumerate()
                .map(|(i, &kind)| OwedRow { id: i as u64, kind })
                .collect();
            let f = JobFacts { state: s, notify_flags: flags, outbox: &outbox };
            let Ok(e) = apply(&f, t) else {
                prop_assert_eq!(apply(&f, t).err(), state::next(s, t).err());
                return Ok(());
            };
            prop_assert_eq!(Ok(e.to), state::next(s, t));
            prop_assert!(!s.is_final(), "a final state never changes");
            let changed = s != e.to;
            prop_assert_eq!(e.log_state, changed);
            prop_assert_eq!(e.wake_scheduler, changed);
            prop_assert_eq!(e.finalize, e.to.is_final());
            prop_assert_eq!(e.count_error, is_error(t));
            prop_assert_eq!(e.clear_error, !e.log_error);
            prop_assert_eq!(e.owe.is_some(), changed && matches!(e.to, S::Transferred | S::Error));
            prop_assert_eq!(e.modified, changed && e.owe.is_none());
            prop_assert_eq!(
                e.kick_notifier,
                e.owe.is_some() || (changed && flags & MODIFICATION != 0)
            );
            // What stays owed is consistent with the new state.
            for o in outbox.iter().filter(|o| !e.lapse.contains(&o.id)) {
                prop_assert!(!e.to.is_final());
                match o.kind {
                    Some(Kind::JobTransferred) => prop_assert_eq!(e.to, S::Transferred),
                    Some(Kind::JobError) => prop_assert_eq!(e.to, S::Error),
                    _ => {}
                }
            }
        }

        /// Any sequence of triggers, executed the way the daemon executes effects: the job stays
        /// in a legal state, leaves the live count at most once, and owes at most one
        /// `job_transferred` / `job_error`, each only while in the state it announces.
        #[test]
        fn sequences_keep_the_outbox_and_counts_consistent(
            start in any_state(),
            triggers in prop::collection::vec(any_trigger(), 0..40),
            flags in 0u32..0x40,
        ) {
            let mut state = start;
            let mut outbox: Vec<OwedRow> = Vec::new();
            let (mut next_id, mut finalized, mut errors) = (0u64, 0u32, 0u64);
            for t in triggers {
                let before = state;
                let f = JobFacts { state, notify_flags: flags, outbox: &outbox };
                let Ok(e) = apply(&f, t) else {
                    continue;
                };
                prop_assert!(JobState::ALL.contains(&e.to));
                prop_assert!(!before.is_final());
                state = e.to;
                outbox.retain(|o| !e.lapse.contains(&o.id));
                if let Some(kind) = e.owe {
                    outbox.push(OwedRow { id: next_id, kind: Some(kind) });
                    next_id += 1;
                }
                finalized += u32::from(e.finalize);
                errors += u64::from(e.count_error);
                let count = |k| outbox.iter().filter(|o| o.kind == Some(k)).count();
                prop_assert!(count(Kind::JobTransferred) <= usize::from(state == S::Transferred));
                prop_assert!(count(Kind::JobError) <= usize::from(state == S::Error));
                if state.is_final() {
                    prop_assert!(outbox.is_empty());
                }
            }
            prop_assert!(finalized <= 1);
            prop_assert_eq!(finalized == 1, state.is_final() && !start.is_final());
            if start.is_final() {
                prop_assert_eq!(errors, 0);
                prop_assert_eq!(state, start);
            }
        }
    }
}
