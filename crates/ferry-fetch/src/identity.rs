//! Acting on the file system as a job's owner (system mode). The daemon runs as root there, but
//! every path it opens, creates, renames or removes for a job must be checked by the kernel as
//! the job's owner, so that a symlink or directory swapped in between the daemon's checks can
//! never make it read or write where the owner could not. Linux's per-thread file-system ids
//! (setfsuid(2)/setfsgid(2)) do exactly that: while switched, the thread's permission checks and
//! the owner of files it creates are the job owner's, and the file-system capabilities of root
//! (CAP_DAC_OVERRIDE and friends) are dropped. The thread's supplementary groups become the
//! owner's too, so a directory the owner may write through one of their groups is writable,
//! and none of the daemon's groups lends the owner anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid, setfsgid, setfsuid};

/// How long an owner's group list is reused before it is looked up again (group changes take
/// effect within this, as they would at a user's next login).
const GROUPS_TTL: Duration = Duration::from_secs(60);

/// The uid/gid file-system operations of a job run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsIdentity {
    /// The owner's uid.
    pub uid: u32,
    /// The owner's primary gid.
    pub gid: u32,
}

/// Restores the thread's file-system ids and groups, also when `f` panics.
struct Restore {
    uid: Uid,
    gid: Gid,
    groups: Option<Vec<libc::gid_t>>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        setfsuid(self.uid);
        setfsgid(self.gid);
        if let Some(g) = &self.groups {
            // Fails only without CAP_SETGID, which setting the owner's groups needed as well.
            let _ = set_thread_groups(g);
        }
    }
}

/// Sets the calling thread's supplementary groups only. glibc's `setgroups` (and nix's) change
/// every thread of the process, which would hand one job's owner's groups to transfers of
/// other owners running at the same moment; the raw system call changes this thread alone.
#[allow(unsafe_code)]
fn set_thread_groups(groups: &[libc::gid_t]) -> std::io::Result<()> {
    // SAFETY: the kernel reads `groups.len()` gids from `groups.as_ptr()`, a live slice; the
    // call has no other memory effects.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The owner's groups (primary included), looked up once a minute per owner.
fn owner_groups(id: FsIdentity) -> Arc<[libc::gid_t]> {
    type Cache = Mutex<HashMap<(u32, u32), (Instant, Arc<[libc::gid_t]>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let key = (id.uid, id.gid);
    if let Some((at, g)) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
        && at.elapsed() < GROUPS_TTL
    {
        return g.clone();
    }
    let looked_up = nix::unistd::User::from_uid(Uid::from_raw(id.uid))
        .ok()
        .flatten()
        .and_then(|u| std::ffi::CString::new(u.name).ok())
        .and_then(|name| nix::unistd::getgrouplist(&name, Gid::from_raw(id.gid)).ok());
    // An owner without a passwd entry has its primary group only.
    let groups: Arc<[libc::gid_t]> = match looked_up {
        Some(g) => g.iter().map(|g| g.as_raw()).collect(),
        None => Arc::from([id.gid]),
    };
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, (Instant::now(), groups.clone()));
    groups
}

/// Runs `f` on this thread as `id` (or as the daemon itself for `None`). `f` must not await
/// (the ids belong to the OS thread, which another task would then borrow); off the blocking
/// pool, keep it to a few metadata calls (creating or opening a fresh staging file).
pub fn as_owner<T>(id: Option<FsIdentity>, f: impl FnOnce() -> T) -> T {
    let Some(id) = id else { return f() };
    // Groups and gid first: changing them needs privileges the thread has before the uid
    // changes. Without them (a daemon not running as root) the groups stay as they are.
    let saved = nix::unistd::getgroups()
        .ok()
        .map(|g| g.iter().map(|g| g.as_raw()).collect::<Vec<_>>());
    let groups = saved
        .as_ref()
        .and_then(|_| set_thread_groups(&owner_groups(id)).ok())
        .and(saved);
    let gid = setfsgid(Gid::from_raw(id.gid));
    let uid = setfsuid(Uid::from_raw(id.uid));
    let _restore = Restore { uid, gid, groups };
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups_now() -> Vec<u32> {
        nix::unistd::getgroups()
            .unwrap()
            .iter()
            .map(|g| g.as_raw())
            .collect()
    }

    #[test]
    fn the_owners_groups_apply_to_this_thread_only_and_are_restored() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: switching groups needs root");
            return;
        }
        let before = groups_now();
        // Another thread, started before the switch, looks while it is in effect.
        let (look, looked) = (std::sync::mpsc::channel::<()>(), std::sync::mpsc::channel());
        let other = std::thread::spawn(move || {
            look.1.recv().unwrap();
            looked.0.send(groups_now()).unwrap();
        });
        let id = FsIdentity {
            uid: 65534,
            gid: 65534,
        };
        let expected = owner_groups(id).to_vec();
        assert!(expected.contains(&65534), "{expected:?}");
        let (inside, elsewhere) = as_owner(Some(id), || {
            look.0.send(()).unwrap();
            (groups_now(), looked.1.recv().unwrap())
        });
        other.join().unwrap();
        assert_eq!(inside, expected);
        assert_eq!(elsewhere, before, "other threads keep the daemon's groups");
        assert_eq!(groups_now(), before, "restored after the call");
    }
}
