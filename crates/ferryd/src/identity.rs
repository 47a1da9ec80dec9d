//! Running a program as a job's owner: handler programs and notify command lines. In per-user
//! mode the daemon already is the owner; in system mode (root) the child drops to the owner's
//! uid and gid (std clears root's supplementary groups when it does). The environment is clean:
//! a fixed allowlist plus what the protocol promises (`FERRY_*`). Every program is isolated from
//! the daemon's terminal and descriptors: its own session without a controlling terminal,
//! stdin, stdout and stderr on `/dev/null`, and no descriptor beyond those three.

use std::process::Stdio;

use crate::config::Mode;

/// Builds a command for `argv` that runs as `owner`, with only `extra` and a minimal
/// environment. Fails with a sentence when the owner is unknown or argv is empty.
pub fn command_as(
    mode: Mode,
    owner: u32,
    argv: &[String],
    extra: &[(&str, String)],
) -> Result<tokio::process::Command, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "the command line is empty".to_string())?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(false);
    let me = nix::unistd::geteuid().as_raw();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner))
        .ok()
        .flatten();
    cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    match &user {
        Some(u) => {
            cmd.env("HOME", &u.dir)
                .env("USER", &u.name)
                .env("LOGNAME", &u.name);
        }
        None if mode == Mode::System && owner != me => {
            return Err(format!(
                "uid {owner} has no passwd entry; cannot run a program as it"
            ));
        }
        None => {}
    }
    if mode == Mode::User || owner == me {
        // The owner's own session: keep what locates its runtime and language.
        for key in ["HOME", "LANG", "XDG_RUNTIME_DIR", "XDG_STATE_HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
    } else if let Some(u) = &user {
        cmd.uid(owner).gid(u.gid.as_raw()).current_dir("/");
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    isolate(&mut cmd);
    Ok(cmd)
}

/// Makes the child leave the daemon's session (so it has no controlling terminal: a daemon
/// started from a terminal must not hand that terminal to a job owner's program, which could
/// read it or push input into it) and close every descriptor above stderr at `exec` (a
/// descriptor the daemon inherited without close-on-exec, such as a socket-activated listener
/// or a terminal's master side, must not reach the program).
#[allow(unsafe_code)]
fn isolate(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before `exec`, where only async-signal-safe
    // calls are allowed; it makes only raw system calls (setsid, close_range, getrlimit, fcntl)
    // and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            cloexec_from(3)
        });
    }
}

/// Marks every descriptor from `first` up close-on-exec. `close_range` (Linux 5.11) does it in
/// one call; older kernels get one `fcntl` per possible descriptor. Close-on-exec rather than
/// closing keeps the pipe through which the parent learns whether `exec` failed.
#[allow(unsafe_code)]
fn cloexec_from(first: libc::c_int) -> std::io::Result<()> {
    // SAFETY: plain system calls on integers; no memory is shared or handed over.
    unsafe {
        let flags = libc::CLOSE_RANGE_CLOEXEC as libc::c_uint;
        if libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            flags,
        ) == 0
        {
            return Ok(());
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let last = libc::c_int::try_from(limit.rlim_cur).unwrap_or(libc::c_int::MAX);
        for fd in first..last {
            let old = libc::fcntl(fd, libc::F_GETFD);
            if old >= 0 {
                libc::fcntl(fd, libc::F_SETFD, old | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// [`fs_identity`] with the passwd lookup on the blocking pool: a name service (LDAP, NIS)
/// may take long, and the runtime threads must keep serving meanwhile.
pub async fn fs_identity_off_runtime(
    mode: Mode,
    owner: u32,
) -> Option<ferry_fetch::identity::FsIdentity> {
    if mode != Mode::System || owner == nix::unistd::geteuid().as_raw() {
        return None;
    }
    tokio::task::spawn_blocking(move || fs_identity(mode, owner))
        .await
        // The lookup itself panicked: the uid alone, as for an owner without a passwd entry.
        .unwrap_or(Some(ferry_fetch::identity::FsIdentity {
            uid: owner,
            gid: owner,
        }))
}

/// The file-system identity a job's file operations run as: the owner's in system mode when
/// the daemon is someone else (root), `None` when the daemon already is the owner.
pub fn fs_identity(mode: Mode, owner: u32) -> Option<ferry_fetch::identity::FsIdentity> {
    if mode != Mode::System || owner == nix::unistd::geteuid().as_raw() {
        return None;
    }
    // An owner without a passwd entry still gets its uid; its gid then equals the uid, which
    // grants nothing beyond what the uid itself may do.
    let gid = primary_gid(owner).unwrap_or(owner);
    Some(ferry_fetch::identity::FsIdentity { uid: owner, gid })
}

/// The primary group of user `uid` from its passwd entry; `None` without one. A name-service
/// lookup: call it off the runtime threads.
pub fn primary_gid(uid: u32) -> Option<u32> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.gid.as_raw())
}
