//! Test inputs shared by the modules' tests: proptest strategies over the domain types.

use ferry_proto::{JobState, JobType};
use proptest::prelude::*;

use crate::notify::{Available, Kind};
use crate::state::Trigger;

/// Every target available.
pub const ALL_TARGETS: Available = Available {
    interface: true,
    handler: true,
    cmdline: true,
};

/// Any job state.
pub fn any_state() -> impl Strategy<Value = JobState> {
    prop::sample::select(JobState::ALL.to_vec())
}

/// Any job type.
pub fn any_job_type() -> impl Strategy<Value = JobType> {
    prop::sample::select(vec![
        JobType::Download,
        JobType::Upload,
        JobType::UploadReply,
    ])
}

/// Any trigger, with small file counts (pending never above total).
pub fn any_trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        (0u64..3, 0u64..3).prop_map(|(files_total, p)| Trigger::Resume {
            files_total,
            files_pending: p.min(files_total),
        }),
        Just(Trigger::Suspend),
        Just(Trigger::Cancel),
        any_job_type().prop_map(|job_type| Trigger::Complete { job_type }),
        Just(Trigger::Start),
        Just(Trigger::Connected),
        Just(Trigger::Preempt),
        Just(Trigger::TransientError),
        Just(Trigger::FatalError),
        Just(Trigger::AllTransferred),
        Just(Trigger::RetryDue),
        Just(Trigger::NoProgressTimeout),
        Just(Trigger::MaxDownloadTime),
    ]
}

/// Any notification kind, or `None` for one this version does not know.
pub fn any_kind() -> impl Strategy<Value = Option<Kind>> {
    prop::option::of(prop::sample::select(vec![
        Kind::FileTransferred,
        Kind::FileRangesTransferred,
        Kind::JobTransferred,
        Kind::JobError,
        Kind::JobModification,
    ]))
}
