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
    errln!("ferry: {err:#}");
    if err
        .chain()
        .any(|e| e.downcast_ref::<usage::UsageError>().is_some())
    {
        exit_code::USAGE
    } else {
        exit_code::FAILURE
    }
}
