//! Acting on the file system as a job's owner (system mode). The daemon runs as root there, but
//! every path it opens, creates, renames or removes for a job must be checked by the kernel as
//! the job's owner, so that a symlink or directory swapped in between the daemon's checks can
//! never make it read or write where the owner could not. Linux's per-thread file-system ids
//! (setfsuid(2)/setfsgid(2)) do exactly that: while switched, the thread's permission checks and
//! the owner of files it creates are the job owner's, and the file-system capabilities of root
//! (CAP_DAC_OVERRIDE and friends) are dropped.
//!
//! Not covered: supplementary groups stay the daemon's (setgroups is process-wide in glibc).

use nix::unistd::{Gid, Uid, setfsgid, setfsuid};

/// The uid/gid file-system operations of a job run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsIdentity {
    /// The owner's uid.
    pub uid: u32,
    /// The owner's primary gid.
    pub gid: u32,
}

/// Restores the thread's file-system ids, also when `f` panics.
struct Restore {
    uid: Uid,
    gid: Gid,
}

impl Drop for Restore {
    fn drop(&mut self) {
        setfsuid(self.uid);
        setfsgid(self.gid);
    }
}

/// Runs `f` on this thread as `id` (or as the daemon itself for `None`). Call it only on a
/// blocking thread and never await inside: the ids belong to the OS thread.
pub fn as_owner<T>(id: Option<FsIdentity>, f: impl FnOnce() -> T) -> T {
    let Some(id) = id else { return f() };
    // The gid first: changing it needs privileges the thread still has before the uid changes.
    let gid = setfsgid(Gid::from_raw(id.gid));
    let uid = setfsuid(Uid::from_raw(id.uid));
    let _restore = Restore { uid, gid };
    f()
}
