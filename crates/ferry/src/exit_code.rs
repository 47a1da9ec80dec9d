//! The process exit codes of `ferry`, one documented constant each.

/// The command did what was asked.
pub const OK: u8 = 0;
/// The command failed: the daemon refused, could not be reached, or a local step failed.
pub const FAILURE: u8 = 1;
/// The command line was wrong (clap uses the same code for its own parse errors).
pub const USAGE: u8 = 2;
/// The job being waited for ended in the `error` state.
pub const JOB_ERROR: u8 = 3;
/// Ctrl-C (SIGINT) interrupted the command (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;
