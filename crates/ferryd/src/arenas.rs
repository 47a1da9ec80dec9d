//! Keeping glibc's malloc from spreading the daemon's memory over many arenas.
//!
//! glibc gives a thread that meets contention its own heap arena, up to eight per CPU, and an
//! arena keeps its high-water mark long after the memory is freed. ferryd's transfers allocate
//! on the runtime's workers and on the blocking pool, so the arenas multiply the footprint:
//! during 10 000 small files the peak RSS was 66 MiB with glibc's default and 52 MiB with two
//! arenas, at the same speed (docs/BENCHMARKS.md). `MALLOC_ARENA_MAX` is only read when the
//! process starts, so [`limit`] re-executes the daemon once with it set. Programs the daemon
//! starts never see it: their environment is built from scratch (`identity.rs`).

use std::os::unix::process::CommandExt;

const VAR: &str = "MALLOC_ARENA_MAX";

/// Re-executes this process with `MALLOC_ARENA_MAX=2` unless it is already set (by an earlier
/// pass, or by an administrator who chose another value). Call it first thing in `main`, before
/// any thread starts. Returns only when nothing was done or the exec failed (then glibc's
/// default stays, which is slower to give memory back but otherwise fine).
pub fn limit() {
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "ferryd".into());
    // The pid stays the same across exec, so socket activation (LISTEN_PID) is unaffected.
    // The binary's own path, not /proc/self/exe: the kernel names the process after the file
    // executed, and ps, top and pgrep should show `ferryd`, not `exe`. /proc/self/exe only
    // when the file is gone (replaced by an upgrade while running).
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| "/proc/self/exe".into());
    let err = std::process::Command::new(exe)
        .arg0(argv0)
        .args(args)
        .env(VAR, "2")
        .exec();
    eprintln!("ferryd: cannot restart itself with {VAR}=2 ({err}); going on without");
}
