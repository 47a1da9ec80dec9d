//! Running a program as a job's owner: handler programs and notify command lines. In per-user
//! mode the daemon already is the owner; in system mode (root) the child drops to the owner's
//! uid and gid (std clears root's supplementary groups when it does). The environment is clean:
//! a fixed allowlist plus what the protocol promises (`FERRY_*`).

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
    Ok(cmd)
}

/// The file-system identity a job's file operations run as: the owner's in system mode when
/// the daemon is someone else (root), `None` when the daemon already is the owner.
pub fn fs_identity(mode: Mode, owner: u32) -> Option<ferry_fetch::identity::FsIdentity> {
    if mode != Mode::System || owner == nix::unistd::geteuid().as_raw() {
        return None;
    }
    // An owner without a passwd entry still gets its uid; its gid then equals the uid, which
    // grants nothing beyond what the uid itself may do.
    let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner))
        .ok()
        .flatten()
        .map_or(owner, |u| u.gid.as_raw());
    Some(ferry_fetch::identity::FsIdentity { uid: owner, gid })
}
