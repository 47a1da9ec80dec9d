//! `ferryd`: the Ferry daemon binary. Parses flags, sets up logging, and runs [`ferryd::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Ferry's background transfer daemon.
#[derive(Debug, Parser)]
#[command(name = "ferryd", version, about)]
struct Args {
    /// Serve every local user (socket /run/ferry/ferryd.sock, state /var/lib/ferry).
    #[arg(long)]
    system: bool,
    /// Listen on this socket instead of the default.
    #[arg(long, env = "FERRY_SOCKET")]
    socket: Option<PathBuf>,
    /// Keep state in this directory instead of the default.
    #[arg(long, env = "FERRY_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Smallest retry delay a job may ask for, in seconds (default 5; overrides `[daemon]
    /// retry_delay_floor_s` in ferryd.toml).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=ferryd::MAX_RETRY_DELAY_FLOOR_S))]
    retry_delay_floor: Option<u64>,
    /// How many background jobs transfer at once.
    #[arg(long, default_value_t = 4)]
    max_active_jobs: usize,
    /// Most files one job may hold (overrides `[limits] files_per_job` in ferryd.toml).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_files_per_job: Option<u64>,
    /// Most unfinished jobs one user may have (overrides `[limits] jobs_per_user`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_jobs_per_user: Option<u64>,
    /// Most unfinished jobs in the daemon (overrides `[limits] jobs_per_daemon`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_jobs: Option<u64>,
    /// Most ranges one file may have (overrides `[limits] ranges_per_file`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_ranges_per_file: Option<u64>,
    /// Most connections one user may hold open at once; beyond it a connection is answered
    /// with a `limit_exceeded` error and closed (overrides `[limits] connections_per_user`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections_per_user: Option<u64>,
    /// Seconds a callback may take to answer before it counts as failed.
    #[arg(long, default_value_t = 60)]
    callback_timeout: u64,
    /// Seconds a notify command line may run before it is killed.
    #[arg(long, default_value_t = 600)]
    command_timeout: u64,
    /// Global limit for background jobs, in bytes per second or with a unit: 500K, 1M
    /// (foreground jobs are exempt; overrides `[daemon] bandwidth_limit` in ferryd.toml).
    #[arg(long, value_name = "RATE", value_parser = ferry_core::units::parse_rate)]
    bandwidth_limit: Option<u64>,
    /// Most transfers talking to one host at once, across all jobs (default 16; overrides
    /// `[daemon] connections_per_host` in ferryd.toml).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=ferryd::MAX_CONNECTIONS_PER_HOST))]
    max_connections_per_host: Option<u64>,
    /// Milliseconds after the last activity before jobs nothing depends on (suspended, in
    /// error, transferred, final) leave memory; they are read back from the store when needed.
    #[arg(long, default_value_t = 1000, hide = true)]
    resident_grace_ms: u64,
    /// Bytes of followed events a connection may leave unread before it is closed (overrides
    /// `[limits] follow_backlog_bytes`).
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    max_follow_backlog: Option<u64>,
    /// Read settings ([daemon], [limits], [peer_cache], [network], [power]; see
    /// dist/ferryd.toml.example) from this TOML file instead of the default
    /// (/etc/ferry/ferryd.toml with --system, else ~/.config/ferry/ferryd.toml).
    #[arg(long, env = "FERRY_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// The D-Bus system bus to read NetworkManager, UPower and logind from (a D-Bus address
    /// such as unix:path=/run/dbus/system_bus_socket; `none` turns network and power policy
    /// off). Default: `[network] system_bus` in ferryd.toml, else $DBUS_SYSTEM_BUS_ADDRESS,
    /// else the standard system bus.
    #[arg(long, env = "FERRY_SYSTEM_BUS", value_name = "ADDRESS")]
    system_bus: Option<String>,
    /// Log to ferryd.log in the state directory (rotated at 1 MiB, two old files kept) instead
    /// of stderr; `ferry` starts its background daemon with it. Ignored under systemd, whose
    /// journal takes stderr. The level is FERRY_LOG (default `info`: each job's start, end and
    /// failure).
    #[arg(long)]
    log_to_state_dir: bool,
}

/// Raises the soft limit on open files towards the hard limit. Every client connection is a
/// file descriptor, and the usual soft limit (1024) is below what several users' connections
/// (`[limits] connections_per_user` each) can add up to. Capped at 65 536 because the programs ferryd starts (handlers, command
/// lines) inherit it. On failure the limit stays as it was (accept then backs off on EMFILE).
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let want = hard.min(65_536);
    if soft < want
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, want, hard)
    {
        tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit");
    }
}

/// Logs at `FERRY_LOG` (default `info`) to `file`, else to stderr.
fn init_logging(file: Option<PathBuf>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => builder
            .with_writer(ferryd::logfile::RotatingLog::new(path))
            .with_ansi(false)
            .init(),
        None => builder
            .with_writer(std::io::stderr)
            // Colour codes only on a terminal: journald and log files get plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn main() -> ExitCode {
    ferryd::arenas::limit();
    let args = Args::parse();
    let mut opts = match ferryd::DaemonOptions::resolve(args.system, args.socket, args.state_dir) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ferryd: {e}");
            return ExitCode::from(ferryd::EXIT_CONFIG);
        }
    };
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    if args.log_to_state_dir && !under_systemd {
        opts.log_file = Some(opts.state_dir.join(ferryd::logfile::LOG_FILE));
    }
    init_logging(opts.log_file.clone());
    opts.max_active_jobs = args.max_active_jobs.max(1);
    opts.callback_timeout = std::time::Duration::from_secs(args.callback_timeout.max(1));
    opts.command_timeout = std::time::Duration::from_secs(args.command_timeout.max(1));
    opts.daemon_flags = ferryd::DaemonSettings {
        bandwidth_limit_bps: args.bandwidth_limit,
        connections_per_host: args.max_connections_per_host,
        retry_delay_floor_s: args.retry_delay_floor,
    };
    opts.resident_grace = std::time::Duration::from_millis(args.resident_grace_ms);
    if let Some(config) = args.config {
        opts.config_file = Some(config);
        opts.config_required = true;
    }
    opts.system_bus = args.system_bus;
    opts.limit_flags = ferryd::LimitSettings {
        files_per_job: args.max_files_per_job,
        jobs_per_user: args.max_jobs_per_user,
        jobs_per_daemon: args.max_jobs,
        ranges_per_file: args.max_ranges_per_file,
        connections_per_user: args.max_connections_per_user,
        follow_backlog_bytes: args.max_follow_backlog,
        ..ferryd::LimitSettings::default()
    };
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // File I/O runs on blocking threads; a bounded pool keeps thousands of small files from
        // spreading memory over hundreds of threads (and their malloc arenas).
        .max_blocking_threads(32)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferryd: cannot start the async runtime: {e}");
            return ExitCode::from(ferryd::EXIT_FAILURE);
        }
    };
    match runtime.block_on(ferryd::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferryd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
