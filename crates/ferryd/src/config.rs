//! Daemon settings and where the socket and state live (per-user or system mode).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::DaemonError;

/// Per-user or system-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One daemon per user, started on demand.
    User,
    /// One daemon serving every local user (`--system`).
    System,
}

impl Mode {
    /// `user` or `system`, as `ferry.hello` reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::User => "user",
            Mode::System => "system",
        }
    }
}

pub use crate::limits::{LimitSettings, Limits};

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// User or system mode.
    pub mode: Mode,
    /// The listening socket.
    pub socket: PathBuf,
    /// The state directory (store, lock).
    pub state_dir: PathBuf,
    /// Retry delays below this are raised to it (seconds).
    pub retry_delay_floor_s: u64,
    /// Background jobs transferring at once.
    pub max_active_jobs: usize,
    /// Round-robin time slice for background jobs.
    pub time_slice: Duration,
    /// How long final jobs stay readable.
    pub history_retention: Duration,
    /// Quotas and bounds: `run` resolves them from `limit_flags` over the configuration
    /// file's `[limits]` over the defaults.
    pub limits: Limits,
    /// The limits set on the command line.
    pub limit_flags: LimitSettings,
    /// The daemon-wide settings set on the command line: `run` applies them over the
    /// configuration file's `[daemon]` over the values above.
    pub daemon_flags: crate::daemon_wide::DaemonSettings,
    /// A callback not answered within this has failed.
    pub callback_timeout: Duration,
    /// A notify command line still running after this is killed.
    pub command_timeout: Duration,
    /// The global limit for background jobs, bytes per second (foreground jobs are exempt).
    pub bandwidth_limit_bps: Option<u64>,
    /// At most this many transfers talk to one host (host:port) at once, across all jobs.
    pub max_connections_per_host: usize,
    /// How long after the last activity cold jobs leave memory (`resident`).
    pub resident_grace: Duration,
    /// The configuration file (TOML; the peer cache's settings).
    pub config_file: Option<PathBuf>,
    /// Whether `config_file` must exist (given with `--config`) or may be absent (the default).
    pub config_required: bool,
    /// The system bus address given on the command line (`none`: no bus), over the file's.
    pub system_bus: Option<String>,
    /// Network and power policy: `run` fills it in from the configuration file.
    pub policy: crate::conditions::PolicySettings,
    /// The log file, when the log goes to one instead of stderr (`ferry.hello` reports it).
    pub log_file: Option<PathBuf>,
}

impl DaemonOptions {
    /// Resolves the socket and state paths from the mode and overrides.
    pub fn resolve(
        system: bool,
        socket: Option<PathBuf>,
        state_dir: Option<PathBuf>,
    ) -> Result<DaemonOptions, DaemonError> {
        let mode = if system { Mode::System } else { Mode::User };
        let socket = match socket {
            Some(s) => s,
            None if system => PathBuf::from("/run/ferry/ferryd.sock"),
            None => user_socket()?,
        };
        let state_dir = match state_dir {
            Some(s) => s,
            None if system => PathBuf::from("/var/lib/ferry"),
            None => user_state_dir()?,
        };
        Ok(DaemonOptions {
            mode,
            socket,
            state_dir,
            retry_delay_floor_s: 5,
            max_active_jobs: 4,
            time_slice: Duration::from_secs(300),
            history_retention: Duration::from_secs(7 * 24 * 3600),
            limits: Limits::default(),
            limit_flags: LimitSettings::default(),
            daemon_flags: crate::daemon_wide::DaemonSettings::default(),
            callback_timeout: Duration::from_secs(60),
            command_timeout: Duration::from_secs(600),
            bandwidth_limit_bps: None,
            max_connections_per_host: 16,
            resident_grace: Duration::from_secs(1),
            config_file: crate::peer_cache::config::default_path(system),
            config_required: false,
            system_bus: None,
            policy: crate::conditions::PolicySettings::default(),
            log_file: None,
        })
    }
}

fn non_empty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `$XDG_RUNTIME_DIR/ferry/ferryd.sock`.
pub fn user_socket() -> Result<PathBuf, DaemonError> {
    match non_empty_env("XDG_RUNTIME_DIR") {
        Some(dir) => Ok(dir.join("ferry").join("ferryd.sock")),
        None => Err(DaemonError::Config(
            "XDG_RUNTIME_DIR is not set, so there is no per-user socket location; \
             set it (a login session normally does), or pass --socket PATH / FERRY_SOCKET"
                .into(),
        )),
    }
}

/// `$XDG_STATE_HOME/ferry`, else `~/.local/state/ferry`.
pub fn user_state_dir() -> Result<PathBuf, DaemonError> {
    if let Some(dir) = non_empty_env("XDG_STATE_HOME") {
        return Ok(dir.join("ferry"));
    }
    match non_empty_env("HOME") {
        Some(home) => Ok(home.join(".local").join("state").join("ferry")),
        None => Err(DaemonError::Config(
            "neither XDG_STATE_HOME nor HOME is set, so there is no per-user state directory; \
             pass --state-dir DIR or set FERRY_STATE_DIR"
                .into(),
        )),
    }
}
