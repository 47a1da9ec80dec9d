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
mod units;
mod usage;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

fn main() -> ExitCode {
    output::init_local_offset();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_failure(&e),
    };
    let json = cli.json;
    let code = match run(cli) {
        Ok(code) => code,
        Err(err) => report(&err, json),
    };
    ExitCode::from(code)
}

/// clap's own errors: help and version print and exit 0; a wrong command line exits 2, as JSON
/// on stderr when `--json` was given (a script asked for JSON, so it gets JSON even here).
fn parse_failure(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if e.kind() == ErrorKind::DisplayVersion {
        return print_versions();
    }
    if e.kind() == ErrorKind::DisplayHelp || !std::env::args_os().any(|a| a == "--json") {
        e.exit();
    }
    // The rendered text's first line, minus clap's `error: ` prefix (the usage hint follows).
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    json_error(first.trim_start_matches("error: "), exit_code::USAGE);
    ExitCode::from(exit_code::USAGE)
}

/// `ferry --version`: this ferry's version and the running daemon's (which may differ after an
/// upgrade, until the daemon is restarted).
fn print_versions() -> ExitCode {
    let socket = socket_from_args(std::env::args_os().skip(1))
        .or_else(|| std::env::var_os("FERRY_SOCKET").map(std::path::PathBuf::from));
    let daemon = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_or_else(
            |e| format!("ferryd: unknown (cannot start the async runtime: {e})"),
            |rt| rt.block_on(commands::daemon::version_line(socket)),
        );
    let printed =
        outln!("{}", commands::daemon::client_version()).and_then(|()| outln!("{daemon}"));
    ExitCode::from(if printed.is_ok() {
        exit_code::OK
    } else {
        exit_code::FAILURE
    })
}

/// The `--socket PATH` / `--socket=PATH` on a command line clap did not finish parsing.
fn socket_from_args(
    mut args: impl Iterator<Item = std::ffi::OsString>,
) -> Option<std::path::PathBuf> {
    while let Some(a) = args.next() {
        if a == "--socket" {
            return args.next().map(Into::into);
        }
        if let Some(rest) = a.to_str().and_then(|s| s.strip_prefix("--socket=")) {
            return Some(rest.into());
        }
    }
    None
}

/// Prints `{"error": {"message", "exit_code"}}` on stderr.
fn json_error(message: &str, code: u8) {
    let v = serde_json::json!({"error": {"message": message, "exit_code": code}});
    errln!("{v}");
}

/// Runs the command on a single-threaded runtime: the CLI makes one connection at a time.
fn run(cli: cli::Cli) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(commands::run(cli))
}

/// Prints an error as `ferry: <message>` with its context chain (with `--json`: as JSON) and
/// picks the exit code.
fn report(err: &anyhow::Error, json: bool) -> u8 {
    let broken_pipe = err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        // The reader of our output went away (`ferry monitor | head`): nothing to report.
        return exit_code::OK;
    }
    let code = exit_code::for_error(err);
    if json {
        json_error(&chain_text(err), code);
    } else {
        errln!("ferry: {}", chain_text(err));
    }
    code
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
    fn version_finds_the_socket_flag() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(
            socket_from_args(args(&["--socket", "/s", "--version"]).into_iter()),
            Some("/s".into())
        );
        assert_eq!(
            socket_from_args(args(&["--socket=/t", "-V"]).into_iter()),
            Some("/t".into())
        );
        assert_eq!(socket_from_args(args(&["--version"]).into_iter()), None);
    }

    #[test]
    fn usage_errors_exit_2() {
        let err = anyhow::Error::new(usage::UsageError::new("bad")).context("while reading");
        assert_eq!(report(&err, false), exit_code::USAGE);
        assert_eq!(
            report(&anyhow::anyhow!("daemon said no"), true),
            exit_code::FAILURE
        );
    }
}
