//! Notification routing (docs/protocol.md, delivery rules): which owed
//! notification of a job goes next, whether the notify flags let it go at all, and which targets
//! to try in which order. The daemon's notifier does the delivering; this module only decides.

use ferry_proto::{JobState, NotifyFlags};

/// A kind of callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `callback.file_transferred`
    FileTransferred,
    /// `callback.file_ranges_transferred`
    FileRangesTransferred,
    /// `callback.job_transferred`
    JobTransferred,
    /// `callback.job_error`
    JobError,
    /// `callback.job_modification`
    JobModification,
}

impl Kind {
    /// The notify flag that selects this kind.
    pub fn flag(self) -> u32 {
        match self {
            Kind::FileTransferred => NotifyFlags::FILE_TRANSFERRED,
            Kind::FileRangesTransferred => NotifyFlags::FILE_RANGES_TRANSFERRED,
            Kind::JobTransferred => NotifyFlags::JOB_TRANSFERRED,
            Kind::JobError => NotifyFlags::JOB_ERROR,
            Kind::JobModification => NotifyFlags::JOB_MODIFICATION,
        }
    }

    /// File-level kinds go only to a live callback or a handler and precede job-level ones.
    pub fn is_file_level(self) -> bool {
        matches!(self, Kind::FileTransferred | Kind::FileRangesTransferred)
    }

    /// Only `job_transferred` and `job_error` may fall back to the command line.
    pub fn allows_cmdline(self) -> bool {
        matches!(self, Kind::JobTransferred | Kind::JobError)
    }

    /// The JSON-RPC method name.
    pub fn method(self) -> &'static str {
        match self {
            Kind::FileTransferred => ferry_proto::method::CALLBACK_FILE_TRANSFERRED,
            Kind::FileRangesTransferred => ferry_proto::method::CALLBACK_FILE_RANGES_TRANSFERRED,
            Kind::JobTransferred => ferry_proto::method::CALLBACK_JOB_TRANSFERRED,
            Kind::JobError => ferry_proto::method::CALLBACK_JOB_ERROR,
            Kind::JobModification => ferry_proto::method::CALLBACK_JOB_MODIFICATION,
        }
    }

    /// The short name used in the event log (`job_transferred`, …).
    pub fn name(self) -> &'static str {
        match self {
            Kind::FileTransferred => "file_transferred",
            Kind::FileRangesTransferred => "file_ranges_transferred",
            Kind::JobTransferred => "job_transferred",
            Kind::JobError => "job_error",
            Kind::JobModification => "job_modification",
        }
    }

    /// Parses [`Kind::name`].
    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::FileTransferred,
            Kind::FileRangesTransferred,
            Kind::JobTransferred,
            Kind::JobError,
            Kind::JobModification,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
}

/// Where a notification can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The job's live callback connection.
    Interface,
    /// The job's handler (attached, or started on demand).
    Handler,
    /// The job's notify command line.
    Cmdline,
}

impl Target {
    /// The name used in the event log.
    pub fn name(self) -> &'static str {
        match self {
            Target::Interface => "interface",
            Target::Handler => "handler",
            Target::Cmdline => "cmdline",
        }
    }
}

/// Which targets exist for a job right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Available {
    /// A live callback connection is registered.
    pub interface: bool,
    /// The job names a handler that is attached or can be started.
    pub handler: bool,
    /// The job has a notify command line.
    pub cmdline: bool,
}

/// What to do with an owed notification under the current flags and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it.
    Deliver,
    /// Keep it owed but do not deliver (flag 4 is set).
    Hold,
    /// Forget it: its flag is not set, or the job has left the state it announces.
    Drop,
}

/// Flags are evaluated at delivery time; `job_transferred`/`job_error` are owed only while the
/// job is still in that state, and nothing is owed once the job is final.
pub fn verdict(flags: u32, kind: Kind, state: JobState) -> Verdict {
    if state.is_final() {
        return Verdict::Drop;
    }
    match kind {
        Kind::JobTransferred if state != JobState::Transferred => return Verdict::Drop,
        Kind::JobError if state != JobState::Error => return Verdict::Drop,
        _ => {}
    }
    if flags & NotifyFlags::DISABLE != 0 {
        return Verdict::Hold;
    }
    if flags & kind.flag() == 0 {
        return Verdict::Drop;
    }
    Verdict::Deliver
}

/// The targets to try for a notification, in order (live callback, handler, command line).
pub fn targets(kind: Kind, avail: Available) -> Vec<Target> {
    let mut t = Vec::with_capacity(3);
    if avail.interface {
        t.push(Target::Interface);
    }
    if avail.handler {
        t.push(Target::Handler);
    }
    if avail.cmdline && kind.allows_cmdline() {
        t.push(Target::Cmdline);
    }
    t
}

/// An owed notification, as far as ordering is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owed {
    /// Its kind.
    pub kind: Kind,
    /// The file, for file-level kinds.
    pub file_index: Option<u64>,
}

/// Picks the index (into `owed`, which is in the order the notifications arose) of the one to
/// deliver next, or `None` when none can go now.
///
/// File-level notifications go first, lowest file first, and only to a live callback or handler;
/// a file's notification also waits until every lower file has transferred
/// (`lowest_untransferred`). Job-level ones follow; without a callback or handler they may go to
/// the command line, and file-level ones then wait without holding them back.
pub fn pick(owed: &[Owed], avail: Available, lowest_untransferred: Option<u64>) -> Option<usize> {
    let callback_target = avail.interface || avail.handler;
    if callback_target {
        let file = owed
            .iter()
            .enumerate()
            .filter(|(_, o)| o.kind.is_file_level())
            .min_by_key(|(i, o)| (o.file_index.unwrap_or(0), *i));
        if let Some((i, o)) = file {
            let blocked = match (o.file_index, lowest_untransferred) {
                (Some(f), Some(low)) => f > low,
                _ => false,
            };
            if !blocked {
                return Some(i);
            }
            // A blocked file notification holds back only file-level ones.
        } else if let Some(i) = owed.iter().position(|o| !o.kind.is_file_level()) {
            return Some(i);
        }
        if file.is_some() {
            // Job-level notifications may still go if no file notification can go now.
            return owed
                .iter()
                .position(|o| !o.kind.is_file_level() && o.kind != Kind::JobTransferred);
        }
        return None;
    }
    if avail.cmdline {
        return owed.iter().position(|o| o.kind.allows_cmdline());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ALL_TARGETS;
    use proptest::prelude::*;

    const ALL: Available = ALL_TARGETS;

    fn file(i: u64) -> Owed {
        Owed {
            kind: Kind::FileTransferred,
            file_index: Some(i),
        }
    }
    fn job(kind: Kind) -> Owed {
        Owed {
            kind,
            file_index: None,
        }
    }

    #[test]
    fn default_flags_select_transferred_and_error_only() {
        assert_eq!(
            verdict(3, Kind::JobTransferred, JobState::Transferred),
            Verdict::Deliver
        );
        assert_eq!(
            verdict(3, Kind::JobError, JobState::Error),
            Verdict::Deliver
        );
        assert_eq!(
            verdict(3, Kind::FileTransferred, JobState::Transferring),
            Verdict::Drop
        );
        assert_eq!(
            verdict(3, Kind::JobModification, JobState::Queued),
            Verdict::Drop
        );
    }

    #[test]
    fn disable_holds_everything() {
        for k in [
            Kind::JobTransferred,
            Kind::FileTransferred,
            Kind::JobModification,
        ] {
            assert_eq!(verdict(0x3f, k, JobState::Transferred), Verdict::Hold);
        }
    }

    #[test]
    fn owed_job_notifications_lapse_when_the_job_moves_on() {
        assert_eq!(
            verdict(3, Kind::JobTransferred, JobState::Queued),
            Verdict::Drop
        );
        assert_eq!(verdict(3, Kind::JobError, JobState::Queued), Verdict::Drop);
        assert_eq!(
            verdict(0x3f & !4, Kind::FileTransferred, JobState::Cancelled),
            Verdict::Drop
        );
    }

    #[test]
    fn target_order_and_cmdline_only_for_job_level() {
        assert_eq!(
            targets(Kind::JobTransferred, ALL),
            vec![Target::Interface, Target::Handler, Target::Cmdline]
        );
        assert_eq!(
            targets(Kind::FileTransferred, ALL),
            vec![Target::Interface, Target::Handler]
        );
        let cmd_only = Available {
            cmdline: true,
            ..Available::default()
        };
        assert!(targets(Kind::JobModification, cmd_only).is_empty());
    }

    #[test]
    fn files_first_in_index_order_then_job_level() {
        let owed = [job(Kind::JobTransferred), file(2), file(1)];
        assert_eq!(pick(&owed, ALL, None), Some(2));
        assert_eq!(pick(&owed[..2], ALL, None), Some(1));
        assert_eq!(pick(&owed[..1], ALL, None), Some(0));
    }

    #[test]
    fn without_callback_target_files_wait_and_job_level_goes_to_cmdline() {
        let avail = Available {
            cmdline: true,
            ..Available::default()
        };
        let owed = [file(0), job(Kind::JobTransferred)];
        assert_eq!(pick(&owed, avail, None), Some(1));
        assert_eq!(pick(&owed[..1], avail, None), None);
        assert_eq!(pick(&owed, Available::default(), None), None);
    }

    #[test]
    fn a_file_waits_for_lower_files_to_transfer() {
        let owed = [file(3), job(Kind::JobError)];
        assert_eq!(pick(&owed[..1], ALL, Some(1)), None);
        // The job error is not held back by a blocked file notification.
        assert_eq!(pick(&owed, ALL, Some(1)), Some(1));
        assert_eq!(pick(&owed, ALL, Some(4)), Some(0));
    }

    proptest! {
        #[test]
        fn job_level_never_precedes_a_deliverable_file(
            files in proptest::collection::vec(0u64..20, 0..6),
            with_job in any::<bool>(),
        ) {
            let mut owed: Vec<Owed> = files.iter().map(|&f| file(f)).collect();
            if with_job {
                owed.push(job(Kind::JobTransferred));
            }
            if let Some(i) = pick(&owed, ALL, None) {
                if !files.is_empty() {
                    prop_assert!(owed[i].kind.is_file_level());
                    prop_assert_eq!(owed[i].file_index, files.iter().min().copied());
                }
            } else {
                prop_assert!(owed.is_empty());
            }
        }

        #[test]
        fn cmdline_never_gets_file_level_or_modification(interface in any::<bool>(), handler in any::<bool>(), cmdline in any::<bool>()) {
            let avail = Available { interface, handler, cmdline };
            for k in [Kind::FileTransferred, Kind::FileRangesTransferred, Kind::JobModification] {
                prop_assert!(!targets(k, avail).contains(&Target::Cmdline));
            }
        }
    }
}
