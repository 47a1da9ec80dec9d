//! `ferry-bench`: Ferry's benchmark harness.
//!
//! One binary, one subcommand per benchmark, one module per subcommand. Every benchmark drives
//! a real `ferryd` process (see [`daemon`]) over the public protocol, so the numbers are what an
//! application would see, and records its results in its own section of `docs/BENCHMARKS.md`
//! (see [`report`]), replacing only that section.

mod daemon;
mod notify_latency;
mod peer_cache;
mod report;
mod transfer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Ferry's benchmarks; results go to docs/BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "ferry-bench", version, about)]
struct Cli {
    /// The `ferryd` binary to benchmark [default: `ferryd` next to this binary, i.e.
    /// target/<profile>/ferryd].
    #[arg(long, global = true, value_name = "PATH")]
    ferryd: Option<PathBuf>,
    /// The Markdown file to record results in [default: docs/BENCHMARKS.md of this workspace].
    #[arg(long, global = true, value_name = "PATH")]
    report: Option<PathBuf>,
    /// Print the results only; leave the report file alone.
    #[arg(long, global = true)]
    no_report: bool,
    /// The benchmark to run.
    #[command(subcommand)]
    command: Command,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
enum Command {
    /// Latency from a file being recorded transferred to the client's callback running.
    NotifyLatency(notify_latency::Args),
    /// A fleet of ferryd hosts on 127.0.0.x fetching the same file with the peer cache off and
    /// on: bytes the origin served, wall time, where each host's bytes came from.
    PeerCache(peer_cache::Args),
    /// ferry against curl, wget and aria2c on a local nginx, and the daemon's own figures
    /// (many jobs, job creation rate, restart with 100 000 jobs, idleness).
    Transfer(transfer::Args),
}

/// What every benchmark needs besides its own arguments.
#[derive(Debug, Clone)]
pub struct Env {
    /// The `ferryd` binary to start.
    pub ferryd: PathBuf,
    /// Where to record results, or `None` to only print them.
    pub report: Option<PathBuf>,
}

/// The workspace root this binary was built from (`crates/ferry-bench/../..`).
pub fn workspace_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest)
}

/// Parses the command line and runs the benchmark on a multi-threaded runtime.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves what every benchmark shares, then runs the chosen one.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = Env {
        ferryd: daemon::locate(cli.ferryd.as_deref())?,
        report: if cli.no_report {
            None
        } else {
            Some(
                cli.report
                    .unwrap_or_else(|| workspace_root().join("docs").join("BENCHMARKS.md")),
            )
        },
    };
    match cli.command {
        Command::NotifyLatency(args) => notify_latency::run(&env, &args).await,
        Command::PeerCache(args) => peer_cache::run(&env, &args).await,
        Command::Transfer(args) => transfer::run(&env, &args).await,
    }
}
