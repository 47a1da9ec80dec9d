//! The BITS job state machine (docs/protocol.md, job states) and which owner calls are legal in
//! which state.
//!
//! [`next`] is the only way a job's state changes: the daemon feeds it what happened (an owner
//! call, a scheduler decision, a transfer outcome, a timer) and stores the answer. [`check`]
//! answers "may the owner do this now?" for calls that do not change the state by themselves.

use ferry_proto::{JobState, JobType};

/// Something that happened to a job and may move it to another state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// Owner calls resume. `files_total`: files in the job; `files_pending`: files not yet transferred.
    Resume {
        /// Files in the job.
        files_total: u64,
        /// Files not transferred yet (added after the job reached `transferred`, or reset by a
        /// validation failure).
        files_pending: u64,
    },
    /// Owner calls suspend (also used for a daemon-initiated park, e.g. on-demand ranges served).
    Suspend,
    /// Owner calls cancel (also used for a service-initiated cancel, e.g. inactivity).
    Cancel,
    /// Owner calls complete.
    Complete {
        /// The job's type: uploads may only be completed once transferred.
        job_type: JobType,
    },
    /// Scheduler picks a queued job.
    Start,
    /// Connection to the server established / first response.
    Connected,
    /// Round-robin time slice over, or preempted by a higher-priority job.
    Preempt,
    /// A transient (retryable) error during connecting/transferring, or while queued (network lost).
    TransientError,
    /// A fatal error; also the owner's validation failure, so it is legal in every non-final state.
    FatalError,
    /// The last byte of the last file is durable.
    AllTransferred,
    /// The retry delay of a transient error elapsed (or the condition it waited for cleared).
    RetryDue,
    /// No progress for no_progress_timeout while in transient error (or the retry delay exceeds the timeout).
    NoProgressTimeout,
    /// Active time exceeded max_download_time.
    MaxDownloadTime,
}

/// Why [`next`] or [`check`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The operation is not allowed in the job's current state (`BG_E_INVALID_STATE`).
    #[error("the job is {0}; that is not allowed in this state")]
    InvalidState(JobState),
    /// Resume of a job without files (`BG_E_EMPTY`).
    #[error("the job has no files")]
    Empty,
}

/// The state a job in `state` moves to on `trigger`.
///
/// Rules (every one refuses with [`Refusal::InvalidState`] where not listed, and nothing ever
/// leaves `acknowledged` or `cancelled`):
/// - `Resume`: suspended/error/transient_error → queued, or [`Refusal::Empty`] with no files;
///   queued/connecting/transferring stay (no-op); transferred → queued when files are pending
///   (added after the transfer), else stays transferred.
/// - `Suspend`: any non-final → suspended. `Cancel`: any non-final → cancelled.
/// - `Complete`: download: any non-final → acknowledged; upload/upload-reply: transferred only.
/// - `Start`: queued → connecting. `Connected`: connecting/transferring → transferring.
/// - `Preempt`: connecting/transferring → queued.
/// - `TransientError`: queued/connecting/transferring → transient_error.
/// - `FatalError`: any non-final → error (error stays error with the new error info).
/// - `AllTransferred`: queued/connecting/transferring → transferred.
/// - `RetryDue`: transient_error → queued.
/// - `NoProgressTimeout`: transient_error/connecting/transferring → error.
/// - `MaxDownloadTime`: queued/connecting/transferring/transient_error → error.
pub fn next(state: JobState, trigger: Trigger) -> Result<JobState, Refusal> {
    use JobState as S;
    if state.is_final() {
        return Err(Refusal::InvalidState(state));
    }
    let refuse = Err(Refusal::InvalidState(state));
    match trigger {
        Trigger::Resume {
            files_total,
            files_pending,
        } => match state {
            S::Suspended | S::Error | S::TransientError => {
                if files_total == 0 {
                    Err(Refusal::Empty)
                } else {
                    Ok(S::Queued)
                }
            }
            S::Queued | S::Connecting | S::Transferring => Ok(state),
            // Files added after the transfer finished need fetching; otherwise nothing to do.
            S::Transferred if files_pending > 0 => Ok(S::Queued),
            S::Transferred => Ok(S::Transferred),
            S::Acknowledged | S::Cancelled => refuse,
        },
        Trigger::Suspend => Ok(S::Suspended),
        Trigger::Cancel => Ok(S::Cancelled),
        Trigger::Complete { job_type } => match (job_type, state) {
            (JobType::Download, _) | (_, S::Transferred) => Ok(S::Acknowledged),
            _ => refuse,
        },
        Trigger::Start => match state {
            S::Queued => Ok(S::Connecting),
            _ => refuse,
        },
        Trigger::Connected => match state {
            S::Connecting | S::Transferring => Ok(S::Transferring),
            _ => refuse,
        },
        Trigger::Preempt => match state {
            S::Connecting | S::Transferring => Ok(S::Queued),
            _ => refuse,
        },
        Trigger::TransientError => match state {
            S::Queued | S::Connecting | S::Transferring => Ok(S::TransientError),
            _ => refuse,
        },
        // The owner may reject a file's content (validation) in any non-final state, so a fatal
        // error is accepted everywhere; in `error` it just replaces the error info.
        Trigger::FatalError => Ok(S::Error),
        // From queued: a resumed job whose files were all transferred already.
        Trigger::AllTransferred => match state {
            S::Queued | S::Connecting | S::Transferring => Ok(S::Transferred),
            _ => refuse,
        },
        Trigger::RetryDue => match state {
            S::TransientError => Ok(S::Queued),
            _ => refuse,
        },
        // From connecting/transferring: a stalled transfer.
        Trigger::NoProgressTimeout => match state {
            S::TransientError | S::Connecting | S::Transferring => Ok(S::Error),
            _ => refuse,
        },
        Trigger::MaxDownloadTime => match state {
            S::Queued | S::Connecting | S::Transferring | S::TransientError => Ok(S::Error),
            _ => refuse,
        },
    }
}

/// Owner operations, for the table of which calls are legal in which state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `job.add_files`.
    AddFiles,
    /// `job.resume`.
    Resume,
    /// `job.suspend`.
    Suspend,
    /// `job.cancel`.
    Cancel,
    /// `job.complete`.
    Complete {
        /// The job's type: uploads may only be completed once transferred.
        job_type: JobType,
    },
    /// `job.set_property` (and the other property setters).
    SetProperty,
    /// `job.set_notify*`.
    SetNotify,
    /// `job.set_credentials`.
    SetCredentials,
    /// `job.take_ownership`.
    TakeOwnership,
    /// `file.set_validation_state`.
    SetValidation,
}

/// Whether the owner may perform `op` on a job in `state`.
///
/// Everything is refused with [`Refusal::InvalidState`] in `acknowledged`/`cancelled`;
/// `Complete` of an upload or upload-reply job is refused everywhere but `transferred`; all else
/// is allowed. Only the state is checked: `Resume` of an empty job passes here and is refused by
/// [`next`] with [`Refusal::Empty`]; whether a file may be validated yet is checked elsewhere.
pub fn check(state: JobState, op: Operation) -> Result<(), Refusal> {
    if state.is_final() {
        return Err(Refusal::InvalidState(state));
    }
    match op {
        Operation::Complete {
            job_type: JobType::Upload | JobType::UploadReply,
        } if state != JobState::Transferred => Err(Refusal::InvalidState(state)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{any_job_type, any_state, any_trigger};
    use JobState as S;
    use proptest::prelude::*;

    const NON_FINAL: [JobState; 7] = [
        S::Queued,
        S::Connecting,
        S::Transferring,
        S::Suspended,
        S::Error,
        S::TransientError,
        S::Transferred,
    ];
    const FINAL: [JobState; 2] = [S::Acknowledged, S::Cancelled];
    const WITH_FILES: Trigger = Trigger::Resume {
        files_total: 2,
        files_pending: 1,
    };
    const ALL_OPS: [Operation; 12] = [
        Operation::AddFiles,
        Operation::Resume,
        Operation::Suspend,
        Operation::Cancel,
        Operation::Complete {
            job_type: JobType::Download,
        },
        Operation::Complete {
            job_type: JobType::Upload,
        },
        Operation::Complete {
            job_type: JobType::UploadReply,
        },
        Operation::SetProperty,
        Operation::SetNotify,
        Operation::SetCredentials,
        Operation::TakeOwnership,
        Operation::SetValidation,
    ];

    fn invalid(state: JobState) -> Result<JobState, Refusal> {
        Err(Refusal::InvalidState(state))
    }

    // ---- state transitions, one test per row ----

    #[test]
    fn suspended_resume_with_files_goes_queued() {
        assert_eq!(next(S::Suspended, WITH_FILES), Ok(S::Queued));
    }

    #[test]
    fn suspended_resume_without_files_is_empty() {
        let t = Trigger::Resume {
            files_total: 0,
            files_pending: 0,
        };
        assert_eq!(next(S::Suspended, t), Err(Refusal::Empty));
    }

    #[test]
    fn queued_scheduler_picks_goes_connecting() {
        assert_eq!(next(S::Queued, Trigger::Start), Ok(S::Connecting));
        for s in JobState::ALL.into_iter().filter(|s| *s != S::Queued) {
            assert_eq!(next(s, Trigger::Start), invalid(s), "{s}");
        }
    }

    #[test]
    fn connecting_connected_goes_transferring() {
        assert_eq!(next(S::Connecting, Trigger::Connected), Ok(S::Transferring));
        assert_eq!(
            next(S::Transferring, Trigger::Connected),
            Ok(S::Transferring)
        );
        for s in [
            S::Queued,
            S::Suspended,
            S::Error,
            S::TransientError,
            S::Transferred,
        ] {
            assert_eq!(next(s, Trigger::Connected), invalid(s), "{s}");
        }
    }

    #[test]
    fn connecting_connect_failure_goes_transient_error() {
        assert_eq!(
            next(S::Connecting, Trigger::TransientError),
            Ok(S::TransientError)
        );
    }

    #[test]
    fn transferring_time_slice_expires_goes_queued() {
        assert_eq!(next(S::Transferring, Trigger::Preempt), Ok(S::Queued));
        assert_eq!(next(S::Connecting, Trigger::Preempt), Ok(S::Queued));
        for s in [
            S::Queued,
            S::Suspended,
            S::Error,
            S::TransientError,
            S::Transferred,
        ] {
            assert_eq!(next(s, Trigger::Preempt), invalid(s), "{s}");
        }
    }

    #[test]
    fn transferring_owner_logs_off_goes_queued() {
        // Ferry has no logon sessions; the daemon would use the same Preempt edge.
        assert_eq!(next(S::Transferring, Trigger::Preempt), Ok(S::Queued));
    }

    #[test]
    fn queued_or_transferring_network_lost_goes_transient_error() {
        for s in [S::Queued, S::Transferring] {
            assert_eq!(next(s, Trigger::TransientError), Ok(S::TransientError));
        }
        for s in [S::Suspended, S::Error, S::TransientError, S::Transferred] {
            assert_eq!(next(s, Trigger::TransientError), invalid(s), "{s}");
        }
    }

    #[test]
    fn transient_error_network_comes_back_goes_queued() {
        assert_eq!(next(S::TransientError, Trigger::RetryDue), Ok(S::Queued));
    }

    #[test]
    fn transient_error_retry_delay_elapsed_goes_queued() {
        assert_eq!(next(S::TransientError, Trigger::RetryDue), Ok(S::Queued));
        for s in NON_FINAL.into_iter().filter(|s| *s != S::TransientError) {
            assert_eq!(next(s, Trigger::RetryDue), invalid(s), "{s}");
        }
    }

    #[test]
    fn transient_error_no_progress_timeout_goes_error() {
        assert_eq!(
            next(S::TransientError, Trigger::NoProgressTimeout),
            Ok(S::Error)
        );
        // A stalled transfer times out the same way.
        assert_eq!(
            next(S::Connecting, Trigger::NoProgressTimeout),
            Ok(S::Error)
        );
        assert_eq!(
            next(S::Transferring, Trigger::NoProgressTimeout),
            Ok(S::Error)
        );
        for s in [S::Queued, S::Suspended, S::Error, S::Transferred] {
            assert_eq!(next(s, Trigger::NoProgressTimeout), invalid(s), "{s}");
        }
    }

    #[test]
    fn transient_error_retry_delay_over_timeout_goes_error() {
        // retry::on_transient decides; the state machine sees a no-progress timeout.
        assert_eq!(
            next(S::TransientError, Trigger::NoProgressTimeout),
            Ok(S::Error)
        );
    }

    #[test]
    fn any_transfer_fatal_error_goes_error() {
        for s in [S::Queued, S::Connecting, S::Transferring, S::TransientError] {
            assert_eq!(next(s, Trigger::FatalError), Ok(S::Error), "{s}");
        }
    }

    #[test]
    fn validation_failure_goes_error_from_any_non_final() {
        for s in NON_FINAL {
            assert_eq!(next(s, Trigger::FatalError), Ok(S::Error), "{s}");
        }
        for s in FINAL {
            assert_eq!(next(s, Trigger::FatalError), invalid(s), "{s}");
        }
    }

    #[test]
    fn active_max_download_time_goes_error() {
        for s in [S::Queued, S::Connecting, S::Transferring, S::TransientError] {
            assert_eq!(next(s, Trigger::MaxDownloadTime), Ok(S::Error), "{s}");
        }
        for s in [S::Suspended, S::Error, S::Transferred] {
            assert_eq!(next(s, Trigger::MaxDownloadTime), invalid(s), "{s}");
        }
    }

    #[test]
    fn transferring_last_byte_goes_transferred() {
        assert_eq!(
            next(S::Transferring, Trigger::AllTransferred),
            Ok(S::Transferred)
        );
        assert_eq!(
            next(S::Connecting, Trigger::AllTransferred),
            Ok(S::Transferred)
        );
        // A resumed job whose files were all durable already.
        assert_eq!(next(S::Queued, Trigger::AllTransferred), Ok(S::Transferred));
        for s in [S::Suspended, S::Error, S::TransientError, S::Transferred] {
            assert_eq!(next(s, Trigger::AllTransferred), invalid(s), "{s}");
        }
    }

    #[test]
    fn on_demand_ranges_satisfied_goes_suspended() {
        // No on-demand jobs in Ferry; a daemon-initiated park is a Suspend.
        assert_eq!(next(S::Transferring, Trigger::Suspend), Ok(S::Suspended));
    }

    #[test]
    fn error_or_transient_error_resume_goes_queued() {
        for s in [S::Error, S::TransientError] {
            assert_eq!(next(s, WITH_FILES), Ok(S::Queued), "{s}");
            let empty = Trigger::Resume {
                files_total: 0,
                files_pending: 0,
            };
            assert_eq!(next(s, empty), Err(Refusal::Empty), "{s}");
        }
    }

    #[test]
    fn action_states_resume_is_noop() {
        for s in [S::Queued, S::Connecting, S::Transferring] {
            assert_eq!(next(s, WITH_FILES), Ok(s), "{s}");
        }
    }

    #[test]
    fn transferred_resume_with_pending_files_goes_queued() {
        assert_eq!(next(S::Transferred, WITH_FILES), Ok(S::Queued));
        let none_pending = Trigger::Resume {
            files_total: 2,
            files_pending: 0,
        };
        assert_eq!(next(S::Transferred, none_pending), Ok(S::Transferred));
    }

    #[test]
    fn final_states_resume_is_invalid() {
        for s in FINAL {
            assert_eq!(next(s, WITH_FILES), invalid(s), "{s}");
        }
    }

    #[test]
    fn any_non_final_suspend_goes_suspended() {
        for s in NON_FINAL {
            assert_eq!(next(s, Trigger::Suspend), Ok(S::Suspended), "{s}");
        }
        for s in FINAL {
            assert_eq!(next(s, Trigger::Suspend), invalid(s), "{s}");
        }
    }

    #[test]
    fn any_non_final_cancel_goes_cancelled() {
        for s in NON_FINAL {
            assert_eq!(next(s, Trigger::Cancel), Ok(S::Cancelled), "{s}");
        }
        for s in FINAL {
            assert_eq!(next(s, Trigger::Cancel), invalid(s), "{s}");
        }
    }

    #[test]
    fn download_any_non_final_complete_goes_acknowledged() {
        let t = Trigger::Complete {
            job_type: JobType::Download,
        };
        for s in NON_FINAL {
            assert_eq!(next(s, t), Ok(S::Acknowledged), "{s}");
        }
        for s in FINAL {
            assert_eq!(next(s, t), invalid(s), "{s}");
        }
    }

    #[test]
    fn upload_complete_only_from_transferred() {
        for job_type in [JobType::Upload, JobType::UploadReply] {
            let t = Trigger::Complete { job_type };
            assert_eq!(next(S::Transferred, t), Ok(S::Acknowledged));
            for s in JobState::ALL.into_iter().filter(|s| *s != S::Transferred) {
                assert_eq!(next(s, t), invalid(s), "{s}");
            }
        }
    }

    #[test]
    fn inactivity_timeout_cancels() {
        // Service-initiated cancel uses the owner's Cancel edge.
        assert_eq!(next(S::Suspended, Trigger::Cancel), Ok(S::Cancelled));
    }

    #[test]
    fn bandwidth_policy_zero_goes_transient_error_then_queued() {
        assert_eq!(
            next(S::Transferring, Trigger::TransientError),
            Ok(S::TransientError)
        );
        assert_eq!(next(S::TransientError, Trigger::RetryDue), Ok(S::Queued));
    }

    #[test]
    fn helper_token_lost_goes_error() {
        assert_eq!(next(S::Transferring, Trigger::FatalError), Ok(S::Error));
    }

    #[test]
    fn refusal_messages() {
        assert_eq!(
            Refusal::InvalidState(S::Cancelled).to_string(),
            "the job is cancelled; that is not allowed in this state"
        );
        assert_eq!(Refusal::Empty.to_string(), "the job has no files");
    }

    // ---- legal calls per state, one test per row ----

    #[test]
    fn add_files_allowed_in_non_final_incl_transferred() {
        for s in NON_FINAL {
            assert_eq!(check(s, Operation::AddFiles), Ok(()), "{s}");
        }
        for s in FINAL {
            assert_eq!(check(s, Operation::AddFiles), Err(Refusal::InvalidState(s)));
        }
    }

    #[test]
    fn resume_allowed_in_non_final_refused_in_final() {
        for s in NON_FINAL {
            assert_eq!(check(s, Operation::Resume), Ok(()), "{s}");
        }
        for s in FINAL {
            assert_eq!(check(s, Operation::Resume), Err(Refusal::InvalidState(s)));
        }
    }

    #[test]
    fn suspend_and_cancel_allowed_in_non_final() {
        for op in [Operation::Suspend, Operation::Cancel] {
            for s in NON_FINAL {
                assert_eq!(check(s, op), Ok(()), "{s} {op:?}");
            }
            for s in FINAL {
                assert_eq!(check(s, op), Err(Refusal::InvalidState(s)));
            }
        }
    }

    #[test]
    fn download_complete_allowed_in_non_final() {
        let op = Operation::Complete {
            job_type: JobType::Download,
        };
        for s in NON_FINAL {
            assert_eq!(check(s, op), Ok(()), "{s}");
        }
        for s in FINAL {
            assert_eq!(check(s, op), Err(Refusal::InvalidState(s)));
        }
    }

    #[test]
    fn upload_complete_allowed_only_in_transferred() {
        for job_type in [JobType::Upload, JobType::UploadReply] {
            let op = Operation::Complete { job_type };
            assert_eq!(check(S::Transferred, op), Ok(()));
            for s in JobState::ALL.into_iter().filter(|s| *s != S::Transferred) {
                assert_eq!(check(s, op), Err(Refusal::InvalidState(s)), "{s}");
            }
        }
    }

    #[test]
    fn set_credentials_allowed_in_non_final() {
        for s in NON_FINAL {
            assert_eq!(check(s, Operation::SetCredentials), Ok(()), "{s}");
        }
        for s in FINAL {
            assert_eq!(
                check(s, Operation::SetCredentials),
                Err(Refusal::InvalidState(s))
            );
        }
    }

    #[test]
    fn set_notify_allowed_in_non_final() {
        for s in NON_FINAL {
            assert_eq!(check(s, Operation::SetNotify), Ok(()), "{s}");
        }
        for s in FINAL {
            assert_eq!(
                check(s, Operation::SetNotify),
                Err(Refusal::InvalidState(s))
            );
        }
    }

    #[test]
    fn other_mutators_allowed_in_non_final() {
        for op in [
            Operation::SetProperty,
            Operation::TakeOwnership,
            Operation::SetValidation,
        ] {
            for s in NON_FINAL {
                assert_eq!(check(s, op), Ok(()), "{s} {op:?}");
            }
        }
    }

    #[test]
    fn acknowledged_refuses_every_operation() {
        for op in ALL_OPS {
            assert_eq!(
                check(S::Acknowledged, op),
                Err(Refusal::InvalidState(S::Acknowledged)),
                "{op:?}"
            );
        }
    }

    #[test]
    fn cancelled_refuses_every_operation() {
        for op in ALL_OPS {
            assert_eq!(
                check(S::Cancelled, op),
                Err(Refusal::InvalidState(S::Cancelled)),
                "{op:?}"
            );
        }
    }

    // ---- properties ----

    /// Every (from, to) edge the state machine allows, self-loops excluded; written out by hand.
    const EDGES: &[(JobState, JobState)] = &[
        (S::Suspended, S::Queued),
        (S::Queued, S::Connecting),
        (S::Connecting, S::Transferring),
        (S::Connecting, S::TransientError),
        (S::Transferring, S::Queued),
        (S::Connecting, S::Queued),
        (S::Queued, S::TransientError),
        (S::Transferring, S::TransientError),
        (S::TransientError, S::Queued),
        (S::TransientError, S::Error),
        (S::Queued, S::Error),
        (S::Connecting, S::Error),
        (S::Transferring, S::Error),
        (S::Suspended, S::Error),
        (S::Transferred, S::Error),
        (S::Queued, S::Transferred),
        (S::Connecting, S::Transferred),
        (S::Transferring, S::Transferred),
        (S::Error, S::Queued),
        (S::Transferred, S::Queued),
        (S::Queued, S::Suspended),
        (S::Connecting, S::Suspended),
        (S::Transferring, S::Suspended),
        (S::Error, S::Suspended),
        (S::TransientError, S::Suspended),
        (S::Transferred, S::Suspended),
        (S::Queued, S::Cancelled),
        (S::Connecting, S::Cancelled),
        (S::Transferring, S::Cancelled),
        (S::Suspended, S::Cancelled),
        (S::Error, S::Cancelled),
        (S::TransientError, S::Cancelled),
        (S::Transferred, S::Cancelled),
        (S::Queued, S::Acknowledged),
        (S::Connecting, S::Acknowledged),
        (S::Transferring, S::Acknowledged),
        (S::Suspended, S::Acknowledged),
        (S::Error, S::Acknowledged),
        (S::TransientError, S::Acknowledged),
        (S::Transferred, S::Acknowledged),
    ];

    /// An independent reference model of [`next`]: (state, trigger) → Some(new state) or None
    /// for a refusal (either kind).
    fn model(s: JobState, t: Trigger) -> Option<JobState> {
        use Trigger as T;
        Some(match (s, t) {
            (S::Acknowledged | S::Cancelled, _) => return None,
            (_, T::Cancel) => S::Cancelled,
            (_, T::Suspend) => S::Suspended,
            (_, T::FatalError) => S::Error,
            (
                _,
                T::Complete {
                    job_type: JobType::Download,
                },
            ) => S::Acknowledged,
            (S::Transferred, T::Complete { .. }) => S::Acknowledged,
            (_, T::Complete { .. }) => return None,
            (S::Suspended | S::Error | S::TransientError, T::Resume { files_total: 0, .. }) => {
                return None;
            }
            (S::Suspended | S::Error | S::TransientError, T::Resume { .. }) => S::Queued,
            (
                S::Transferred,
                T::Resume {
                    files_pending: 0, ..
                },
            ) => S::Transferred,
            (S::Transferred, T::Resume { .. }) => S::Queued,
            (_, T::Resume { .. }) => s,
            (S::Queued, T::Start) => S::Connecting,
            (S::Connecting | S::Transferring, T::Connected) => S::Transferring,
            (S::Connecting | S::Transferring, T::Preempt) => S::Queued,
            (S::Queued | S::Connecting | S::Transferring, T::TransientError) => S::TransientError,
            (S::Queued | S::Connecting | S::Transferring, T::AllTransferred) => S::Transferred,
            (S::TransientError, T::RetryDue) => S::Queued,
            (S::TransientError | S::Connecting | S::Transferring, T::NoProgressTimeout) => S::Error,
            (
                S::Queued | S::Connecting | S::Transferring | S::TransientError,
                T::MaxDownloadTime,
            ) => S::Error,
            _ => return None,
        })
    }

    proptest! {
        #[test]
        fn final_states_never_change_and_edges_are_in_the_table(
            s in any_state(),
            t in any_trigger(),
        ) {
            match next(s, t) {
                Ok(to) => {
                    prop_assert!(!s.is_final());
                    prop_assert!(to == s || EDGES.contains(&(s, to)), "{s} -> {to} on {t:?}");
                }
                Err(Refusal::InvalidState(r)) => prop_assert_eq!(r, s),
                Err(Refusal::Empty) => {
                    prop_assert!(matches!(t, Trigger::Resume { files_total: 0, .. }), "{:?}", t);
                }
            }
            if s.is_final() {
                prop_assert_eq!(next(s, t), Err(Refusal::InvalidState(s)));
            }
        }

        #[test]
        fn random_sequences_agree_with_model(
            start in any_state(),
            triggers in prop::collection::vec(any_trigger(), 0..40),
        ) {
            let mut s = start;
            for t in triggers {
                let got = next(s, t);
                prop_assert_eq!(got.ok(), model(s, t), "{} on {:?}", s, t);
                // A refusal leaves the job where it was.
                s = got.unwrap_or(s);
            }
        }

        #[test]
        fn check_agrees_with_next_on_state_changing_operations(
            s in any_state(),
            job_type in any_job_type(),
        ) {
            let pairs = [
                (Operation::Resume, WITH_FILES),
                (Operation::Suspend, Trigger::Suspend),
                (Operation::Cancel, Trigger::Cancel),
                (Operation::Complete { job_type }, Trigger::Complete { job_type }),
            ];
            for (op, t) in pairs {
                prop_assert_eq!(check(s, op).is_ok(), next(s, t).is_ok(), "{} {:?}", s, op);
            }
        }
    }
}
