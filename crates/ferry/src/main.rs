//! `ferry`: the command-line client of the Ferry transfer daemon.
//!
//! bitsadmin-style verbs over the local API (`ferry create`, `add`, `resume`, …) plus
//! `ferry transfer`, which creates a job, shows its progress and completes it. Every verb reaches
//! the daemon through `--socket` / `FERRY_SOCKET`, else the per-user socket, else the system
//! socket, and starts a per-user `ferryd` when none answers (unless `--no-autostart`).

#[macro_use]
mod output;
mod cli;
mod commands;
mod connect;
mod exit_code;
mod progress;
mod resolve;
mod targets;
mod usage;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

fn main() -> ExitCode {
    // clap prints its own usage errors and exits with 2 (help and version with 0).
    let cli = cli::Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(err) => report(&err),
    };
    ExitCode::from(code)
}

/// Runs the command on a single-threaded runtime: the CLI makes one connection at a time.
fn run(cli: cli::Cli) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(commands::run(cli))
}

/// Prints an error as `ferry: <message>` with its context chain and picks the exit code.
fn report(err: &anyhow::Error) -> u8 {
    let broken_pipe = err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        // The reader of our output went away (`ferry monitor | head`): nothing to report.
        return exit_code::OK;
    }
    errln!("ferry: {}", chain_text(err));
    if err
        .chain()
        .any(|e| e.downcast_ref::<usage::UsageError>().is_some())
    {
        exit_code::USAGE
    } else {
        exit_code::FAILURE
    }
}

/// The error and its causes joined by `: `, skipping a cause whose text the previous message
/// already ends with (some errors print their source in their own message too).
fn chain_text(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in err.chain() {
        let text = e.to_string();
        if parts.last().is_some_and(|prev| prev.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_skip_repeated_sources() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = anyhow::Error::new(io)
            .context("cannot connect to /s: gone")
            .context("no daemon answered");
        assert_eq!(
            chain_text(&err),
            "no daemon answered: cannot connect to /s: gone"
        );
    }

    #[test]
    fn usage_errors_exit_2() {
        let err = anyhow::Error::new(usage::UsageError::new("bad")).context("while reading");
        assert_eq!(report(&err), exit_code::USAGE);
        assert_eq!(
            report(&anyhow::anyhow!("daemon said no")),
            exit_code::FAILURE
        );
    }
}
