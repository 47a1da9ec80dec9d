//! The process exit codes of `ferry`, one documented constant each, and the rule that picks
//! one for an error. `ferry --help` ([`crate::cli::AFTER_HELP`]) and the README list them.

use ferry_client::ClientError;
use ferry_client::proto::ErrorKind;

use crate::usage::UsageError;

/// The command did what was asked.
pub const OK: u8 = 0;
/// The command failed: the daemon refused, or a local step failed.
pub const FAILURE: u8 = 1;
/// The command line was wrong (clap uses the same code for its own parse errors).
pub const USAGE: u8 = 2;
/// The job ended in the `error` state.
pub const JOB_ERROR: u8 = 3;
/// The job was completed with only some of its files: the others were dropped or failed.
pub const PARTIAL: u8 = 4;
/// No job (or handler) has the name or id given.
pub const NOT_FOUND: u8 = 5;
/// No daemon could be reached (or started).
pub const UNREACHABLE: u8 = 6;
/// A time limit the user gave (`--timeout`) ran out.
pub const TIMEOUT: u8 = 7;
/// Ctrl-C (SIGINT) interrupted the command (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// A failure that carries its own exit code: [`NOT_FOUND`] for something the user named that
/// does not exist, [`TIMEOUT`] for a wait that gave up at the user's deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coded {
    /// The exit code.
    pub code: u8,
    /// What happened, for the user.
    pub message: String,
}

impl Coded {
    /// Nothing has that name or id.
    pub fn not_found(message: impl Into<String>) -> Coded {
        Coded {
            code: NOT_FOUND,
            message: message.into(),
        }
    }

    /// The user's time limit ran out.
    pub fn timed_out(message: impl Into<String>) -> Coded {
        Coded {
            code: TIMEOUT,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// The exit code for an error: the first cause in the chain that says what kind of failure it
/// is decides, else [`FAILURE`].
pub fn for_error(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return USAGE;
        }
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.code;
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return for_client_error(c);
        }
    }
    FAILURE
}

/// The exit code for a client error.
fn for_client_error(e: &ClientError) -> u8 {
    match e {
        ClientError::Connect { .. }
        | ClientError::UnsafeSocket { .. }
        | ClientError::NoSocket(_)
        | ClientError::Autostart(_)
        | ClientError::Disconnected => UNREACHABLE,
        ClientError::Timeout { .. } => TIMEOUT,
        ClientError::Daemon(p) if p.is(ErrorKind::NotFound) => NOT_FOUND,
        // The daemon found a parameter wrong; every parameter came from the command line.
        ClientError::Daemon(p) if p.code == ferry_client::proto::ErrorCode::INVALID_PARAMS.0 => {
            USAGE
        }
        _ => FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;
    use ferry_client::proto::{ErrorCode, ProtoError};

    #[test]
    fn codes_follow_the_cause() {
        let usage = anyhow::Error::new(UsageError::new("bad")).context("while reading");
        assert_eq!(for_error(&usage), USAGE);
        assert_eq!(for_error(&anyhow::anyhow!("daemon said no")), FAILURE);
        assert_eq!(for_error(&Coded::not_found("x").into()), NOT_FOUND);
        assert_eq!(for_error(&Coded::timed_out("x").into()), TIMEOUT);
        let gone: anyhow::Error = ClientError::Disconnected.into();
        assert_eq!(for_error(&gone.context("cannot list")), UNREACHABLE);
        let nf = ClientError::Daemon(ProtoError::kind(ErrorKind::NotFound, "no job"));
        assert_eq!(for_error(&anyhow::Error::new(nf)), NOT_FOUND);
        let bad = ClientError::Daemon(ProtoError::new(ErrorCode::INVALID_PARAMS, "bad path"));
        assert_eq!(for_error(&anyhow::Error::new(bad)), USAGE);
        let st = ClientError::Daemon(ProtoError::kind(ErrorKind::InvalidState, "no"));
        let err = Err::<(), _>(st).context("job x").unwrap_err();
        assert_eq!(for_error(&err), FAILURE);
    }

    #[test]
    fn the_help_table_lists_every_code() {
        for code in [
            OK,
            FAILURE,
            USAGE,
            JOB_ERROR,
            PARTIAL,
            NOT_FOUND,
            UNREACHABLE,
            TIMEOUT,
            INTERRUPTED,
        ] {
            assert!(
                crate::cli::AFTER_HELP.contains(&format!("\n  {code} ")),
                "{code} missing from the help table"
            );
        }
    }
}
