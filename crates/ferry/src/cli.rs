//! The command line, declared with clap's derive API.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use ferry_proto::{JobState, JobType, Priority};

/// What `ferry --help` prints after the options: how jobs are named and the exit codes.
pub const AFTER_HELP: &str = "A JOB is a job id, a unique prefix of one, or a display name \
    (unfinished jobs first).\n\n\
    Exit codes:\n  \
    0    ok\n  \
    1    failure (the daemon refused, or a local step failed)\n  \
    2    usage error (wrong command line, ambiguous job name, existing destination)\n  \
    3    the job failed (it is kept in `error`)\n  \
    4    partial result (completed with only some files)\n  \
    5    no such job or handler\n  \
    6    daemon unreachable\n  \
    7    timed out (--timeout)\n  \
    130  interrupted (Ctrl-C)";

/// Ferry: background file transfers that survive logouts, reboots and flaky networks.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// The daemon's socket [default: the per-user socket, else the system socket].
    #[arg(long, global = true, env = "FERRY_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Fail instead of starting a per-user ferryd when no daemon answers.
    #[arg(long, global = true)]
    pub no_autostart: bool,
    /// Print machine-readable JSON on stdout (and an error as one JSON object on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download files now: create a job, wait for it with a progress bar, and complete it.
    #[command(
        override_usage = "ferry transfer [OPTIONS] URL... [DEST]\n       \
                          ferry transfer [OPTIONS] -o NAME URL\n       \
                          ferry transfer [OPTIONS] --from-file LIST",
        after_help = "DEST is a directory (each file is named after its URL's last segment) or, for a \
                      single URL, a file path; without DEST (the last argument is a URL too) the \
                      files go into the current directory. A URL may also be a local path. An \
                      existing file is never replaced without --overwrite.\n\
                      Ctrl-C suspends the job (exit code 130) and prints, in one line, how to \
                      resume it; a closed terminal leaves the job running, and ferryd saves the \
                      files when it is done.\n\n\
                      Example: ferry transfer --limit-rate 1M --sha256 HEX https://example.org/a.iso ~/Downloads"
    )]
    Transfer(TransferArgs),
    /// Create an empty, suspended job and print its id.
    #[command(after_help = "Example: ferry create nightly --priority high")]
    Create(CreateArgs),
    /// Add files to a job.
    #[command(
        override_usage = "ferry add [OPTIONS] JOB URL PATH\n       ferry add [OPTIONS] JOB --from-file LIST",
        after_help = "Example: ferry add nightly https://example.org/pkg.tar /var/tmp/pkg.tar"
    )]
    Add(AddArgs),
    /// Let a job run (again).
    #[command(after_help = "Example: ferry resume nightly")]
    Resume(JobArg),
    /// Pause a job.
    #[command(after_help = "Example: ferry suspend nightly")]
    Suspend(JobArg),
    /// Cancel a job and delete its temporary files.
    #[command(after_help = "Example: ferry cancel nightly")]
    Cancel(JobArg),
    /// Cancel every job of yours that failed (state `error`), deleting their temporary files.
    #[command(after_help = "Example: ferry clean")]
    Clean,
    /// Hand a transferred job's files over to their destinations.
    #[command(after_help = "Example: ferry complete nightly --partial")]
    Complete(CompleteArgs),
    /// Show a job's properties.
    #[command(after_help = "Example: ferry info nightly --json")]
    Info(JobArg),
    /// List a job's files.
    #[command(after_help = "Example: ferry files nightly")]
    Files(JobArg),
    /// List jobs.
    #[command(after_help = "Example: ferry list --state error")]
    List(ListArgs),
    /// Change a job's properties and print the job.
    #[command(after_help = "Example: ferry set nightly --retry-delay 60 --bandwidth-limit 500K")]
    Set(SetArgs),
    /// Wait until a job is transferred (or final), failed or cancelled.
    #[command(
        after_help = "Shows the same progress line as `ferry transfer`. Ctrl-C stops waiting \
                      (exit code 130) and leaves the job as it is.\n\n\
                      Example: ferry wait nightly --complete --timeout 3600"
    )]
    Wait(WaitArgs),
    /// Print job events as they happen.
    #[command(after_help = "Example: ferry monitor nightly")]
    Monitor(MonitorArgs),
    /// Print the event log (`--follow`: then keep printing new events).
    #[command(after_help = "Example: ferry events nightly --follow --after 42")]
    Events(EventsArgs),
    /// Give the application's verdict on a transferred file (BITS SetValidationState).
    #[command(after_help = "Example: ferry validate nightly 0 --valid")]
    Validate(ValidateArgs),
    /// Replace the URL of a file not transferred yet, e.g. an expired presigned URL (BITS
    /// SetRemoteName).
    #[command(
        name = "set-url",
        after_help = "The bytes already transferred are kept when the new URL serves the same \
                      content (same validator and size); otherwise the file starts from zero. A \
                      running transfer continues from the new URL; a job in error or suspended \
                      waits for `ferry resume`.\n\n\
                      Example: ferry set-url nightly 0 'https://example.com/f.iso?sig=new'"
    )]
    SetUrl(SetUrlArgs),
    /// Manage handler programs that ferryd starts to deliver notifications.
    #[command(
        after_help = "Example: ferry handler add my-app -- /usr/local/bin/my-app --from-ferry"
    )]
    Handler(HandlerArgs),
    /// Inspect or empty the peer cache: validated downloads this host serves to its peers.
    Cache(CacheArgs),
    /// Show the peers this host fetches cached content from.
    #[command(after_help = "Example: ferry peers list --json")]
    Peers(PeersArgs),
    /// Run ferryd in the foreground (the remaining arguments go to ferryd), or manage the
    /// running daemon: `status`, `stop`, `logs`.
    #[command(after_help = "Example: ferry daemon --state-dir /var/tmp/ferry\n\
                            Example: ferry daemon status")]
    Daemon(DaemonArgs),
    /// Print a shell completion script on stdout.
    #[command(
        after_help = "Example: ferry completions bash > ~/.local/share/bash-completion/completions/ferry\n\
                            (zsh: into a directory on $fpath as _ferry; fish: ~/.config/fish/completions/ferry.fish)"
    )]
    Completions(CompletionsArgs),
    /// Write the man pages (ferry.1 and one per verb) into a directory.
    #[command(after_help = "Example: ferry man --out ~/.local/share/man/man1")]
    Man(ManArgs),
}

/// `ferry completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells `ferry completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// GNU bash.
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// `ferry man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// A priority parsed from its wire name.
fn priority_parser() -> impl TypedValueParser<Value = Priority> {
    PossibleValuesParser::new(["foreground", "high", "normal", "low"])
        .try_map(|s| Priority::parse(&s).ok_or_else(|| format!("unknown priority {s}")))
}

/// A job state parsed from its wire name.
fn state_parser() -> impl TypedValueParser<Value = JobState> {
    PossibleValuesParser::new(JobState::ALL.map(JobState::as_str))
        .try_map(|s| JobState::parse(&s).ok_or_else(|| format!("unknown state {s}")))
}

/// A job type parsed from its wire name.
fn type_parser() -> impl TypedValueParser<Value = JobType> {
    PossibleValuesParser::new(["download", "upload", "upload_reply"])
        .try_map(|s| JobType::parse(&s).ok_or_else(|| format!("unknown job type {s}")))
}

/// `ferry transfer`.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Source URLs, optionally followed by the destination.
    #[arg(value_name = "URL", required_unless_present = "from_file")]
    pub args: Vec<String>,
    /// Save the (single) URL's content as NAME.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "NAME",
        conflicts_with = "from_file"
    )]
    pub output: Option<String>,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The (single) file's expected SHA-256 (hex); a mismatch fails the job.
    #[arg(long, value_name = "HEX", conflicts_with = "from_file")]
    pub sha256: Option<String>,
    /// Bandwidth limit in bytes per second, with an optional unit: 500K, 1M, 2G.
    #[arg(long, visible_alias = "bandwidth-limit", value_name = "RATE", value_parser = crate::units::parse_rate)]
    pub limit_rate: Option<u64>,
    /// No progress line and no messages but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Read `URL PATH` lines from LIST (`-` for stdin; `#` starts a comment).
    #[arg(long, value_name = "LIST", conflicts_with = "args")]
    pub from_file: Option<PathBuf>,
    /// The job's priority (foreground: an interactive transfer, as Start-BitsTransfer runs).
    #[arg(long, value_name = "P", default_value = "foreground", value_parser = priority_parser())]
    pub priority: Priority,
    /// Seconds to wait before retrying after a transient error (ferryd may enforce a floor).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub retry_delay: u64,
    /// Fail once transient errors have gone this many seconds without progress.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub no_progress_timeout: u64,
    /// Fail once the job has been transferring for this many seconds.
    #[arg(long, value_name = "SECS")]
    pub max_time: Option<u64>,
    /// The job's display name [default: "ferry transfer" and the first file's name].
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// The job's description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Replace destination files that already exist (without it, an existing file is refused).
    #[arg(long)]
    pub overwrite: bool,
    /// Allow --display-name to be a name an unfinished job already has.
    #[arg(long)]
    pub allow_duplicate_name: bool,
    /// Start over: cancel an unfinished job with the same URLs and destinations instead of
    /// continuing it.
    #[arg(long)]
    pub restart: bool,
}

/// `ferry create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The job's display name.
    pub name: String,
    /// The job's priority [default: normal].
    #[arg(long, value_name = "P", value_parser = priority_parser())]
    pub priority: Option<Priority>,
    /// The job's description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// The job's type [default: download].
    #[arg(long = "type", value_name = "TYPE", value_parser = type_parser())]
    pub job_type: Option<JobType>,
    /// Create it even though an unfinished job already has this name (the name is then
    /// ambiguous until one of them is finished).
    #[arg(long)]
    pub allow_duplicate_name: bool,
}

/// `ferry add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The job.
    pub job: String,
    /// The source URL (or a local path).
    #[arg(requires = "path", required_unless_present = "from_file")]
    pub url: Option<String>,
    /// Where the file goes (an existing directory: named after the URL's last segment).
    pub path: Option<String>,
    /// Read `URL PATH` lines from LIST (`-` for stdin; `#` starts a comment).
    #[arg(long, value_name = "LIST", conflicts_with_all = ["url", "path"])]
    pub from_file: Option<PathBuf>,
    /// The content's expected SHA-256 (hex); a mismatch fails the job.
    #[arg(long, value_name = "HEX", requires = "url")]
    pub sha256: Option<String>,
}

/// A verb that takes only a job.
#[derive(Debug, Args)]
pub struct JobArg {
    /// The job: id, unique id prefix or unique display name.
    pub job: String,
}

/// `ferry complete`.
#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// The job: id, unique id prefix or display name.
    pub job: String,
    /// Complete even though some files are not transferred: those are dropped (exit code 4).
    #[arg(long)]
    pub partial: bool,
}

/// `ferry list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Every user's jobs (root only).
    #[arg(long)]
    pub all_users: bool,
    /// Include acknowledged and cancelled jobs.
    #[arg(long)]
    pub all: bool,
    /// Only jobs in this state (repeatable).
    #[arg(long = "state", value_name = "STATE", value_parser = state_parser())]
    pub states: Vec<JobState>,
}

/// `ferry set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The job.
    pub job: String,
    /// New display name.
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// New description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// New priority.
    #[arg(long, value_name = "P", value_parser = priority_parser())]
    pub priority: Option<Priority>,
    /// New notify flags (1 transferred, 2 error, 4 disable, 8 modification, 16 file, 32 ranges).
    #[arg(long, value_name = "N")]
    pub notify_flags: Option<u32>,
    /// Minimum delay before retrying after a transient error.
    #[arg(long, value_name = "SECS")]
    pub retry_delay: Option<u64>,
    /// How long transient errors may go without progress before the job fails.
    #[arg(long, value_name = "SECS")]
    pub no_progress_timeout: Option<u64>,
    /// Limit on the job's active transfer time.
    #[arg(long, value_name = "SECS")]
    pub max_download_time: Option<u64>,
    /// Extra request header `Name: value` (repeatable; replaces the job's list).
    #[arg(long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Remove every custom header.
    #[arg(long, conflicts_with = "headers")]
    pub clear_headers: bool,
    /// Bandwidth limit in bytes per second, with an optional unit: 500K, 1M, 2G.
    #[arg(long, visible_alias = "limit-rate", value_name = "RATE", value_parser = crate::units::parse_rate)]
    pub bandwidth_limit: Option<u64>,
    /// Remove the bandwidth limit.
    #[arg(long, conflicts_with = "bandwidth_limit")]
    pub no_bandwidth_limit: bool,
    /// How many of the job's files may transfer at once.
    #[arg(long, value_name = "N")]
    pub max_parallel_files: Option<u32>,
    /// Run PROGRAM (given after `--`, with its arguments) when the job is transferred or fails.
    #[arg(long, requires = "cmdline")]
    pub notify_cmdline: bool,
    /// Remove the notify command line.
    #[arg(long, conflicts_with = "notify_cmdline")]
    pub no_notify_cmdline: bool,
    /// Send the job's notifications to handler NAME (see `ferry handler`).
    #[arg(long, value_name = "NAME")]
    pub handler: Option<String>,
    /// Stop sending the job's notifications to a handler.
    #[arg(long, conflicts_with = "handler")]
    pub no_handler: bool,
    /// Let ferryd complete the job itself once every file is transferred.
    #[arg(long)]
    pub auto_complete: bool,
    /// Leave completing the job to `ferry complete` (or the application).
    #[arg(long, conflicts_with = "auto_complete")]
    pub no_auto_complete: bool,
    /// Which networks the job may use: any, not_metered, not_roaming, a BITS preset (always,
    /// no_surcharge, standard, unrestricted) or a BITS cost-flags mask such as 0x80000021;
    /// `default` returns to the daemon's default for the job's priority.
    #[arg(long, value_name = "POLICY", value_parser = cost_policy_choice)]
    pub cost_policy: Option<Choice<ferry_proto::CostPolicy>>,
    /// Whether the job waits for mains power: any, not_power_saver, not_on_battery, or
    /// `default` for the daemon's default.
    #[arg(long, value_name = "POLICY", value_parser = power_policy_choice)]
    pub power_policy: Option<Choice<ferry_proto::PowerPolicy>>,
    /// Return the max download time to the default (90 days).
    #[arg(long, conflicts_with = "max_download_time")]
    pub default_max_download_time: bool,
    /// Shortest interval between two modification callbacks, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub notification_interval: Option<u64>,
    /// Send the job's requests through this proxy (an http, https or socks5 URL).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Use the environment's proxy again (remove the job's own).
    #[arg(long, conflicts_with = "proxy")]
    pub no_proxy: bool,
    /// HTTP basic credentials for USER. The password is never taken from the command line:
    /// it is asked on the terminal (not echoed), or read from the first line of stdin when
    /// stdin is not a terminal.
    #[arg(long, value_name = "USER", conflicts_with = "credentials_file")]
    pub user: Option<String>,
    /// Read HTTP basic credentials as `USER:PASSWORD` from the first line of PATH (a regular
    /// file; `-` reads stdin).
    #[arg(long, value_name = "PATH")]
    pub credentials_file: Option<PathBuf>,
    /// Remove the job's credentials.
    #[arg(long, conflicts_with_all = ["user", "credentials_file"])]
    pub no_credentials: bool,
    /// Follow redirects from https to http.
    #[arg(long)]
    pub allow_https_to_http: bool,
    /// Refuse redirects from https to http (the default).
    #[arg(long, conflicts_with = "allow_https_to_http")]
    pub no_https_to_http: bool,
    /// Let the job fetch from peers' caches and publish to them (the default).
    #[arg(long)]
    pub peer_caching: bool,
    /// Fetch from the origin only; never publish the job's files to peers.
    #[arg(long, conflicts_with = "peer_caching")]
    pub no_peer_caching: bool,
    /// The notify command line: PROGRAM and its arguments (a relative PROGRAM is made absolute).
    #[arg(last = true, value_name = "PROGRAM", requires = "notify_cmdline")]
    pub cmdline: Vec<String>,
}

/// A job setting given on the command line: a value, or `default` to clear the job's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice<T> {
    /// `default`: the daemon decides.
    Default,
    /// This value.
    Set(T),
}

impl<T> Choice<T> {
    /// The `job.set` value: `None` (null) clears the job's own setting.
    pub fn into_option(self) -> Option<T> {
        match self {
            Choice::Default => None,
            Choice::Set(v) => Some(v),
        }
    }
}

fn cost_policy_choice(s: &str) -> Result<Choice<ferry_proto::CostPolicy>, String> {
    if s == "default" {
        return Ok(Choice::Default);
    }
    ferry_proto::CostPolicy::parse(s).map(Choice::Set)
}

fn power_policy_choice(s: &str) -> Result<Choice<ferry_proto::PowerPolicy>, String> {
    if s == "default" {
        return Ok(Choice::Default);
    }
    ferry_proto::PowerPolicy::parse(s)
        .map(Choice::Set)
        .ok_or_else(|| {
            format!(
                "unknown power policy {s:?}: use any, not_power_saver, not_on_battery or default"
            )
        })
}

/// What `ferry wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Until {
    /// `transferred` (or already acknowledged); `error` and `cancelled` end the wait too.
    Transferred,
    /// `acknowledged` or `cancelled`.
    Final,
}

/// `ferry wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The job.
    pub job: String,
    /// The state to wait for.
    #[arg(long, value_enum, default_value = "transferred")]
    pub until: Until,
    /// Give up after this many seconds (exit code 7).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Complete the job once it is transferred.
    #[arg(long)]
    pub complete: bool,
}

/// `ferry monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Only this job's events [default: every job of yours].
    pub job: Option<String>,
}

/// `ferry events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this job's events [default: every job of yours].
    pub job: Option<String>,
    /// Keep printing new events until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Only events after this sequence number (with `--follow`: replayed first).
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
}

/// `ferry validate`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("verdict").required(true).args(["valid", "invalid"])))]
pub struct ValidateArgs {
    /// The job.
    pub job: String,
    /// The file's index (see `ferry files`).
    pub file_index: u64,
    /// The content is good.
    #[arg(long)]
    pub valid: bool,
    /// The content is bad: the job fails with VALIDATION_FAILED and a resume fetches it again.
    #[arg(long)]
    pub invalid: bool,
}

/// `ferry set-url`.
#[derive(Debug, Args)]
pub struct SetUrlArgs {
    /// The job.
    pub job: String,
    /// The file's index (see `ferry files`).
    pub file_index: u64,
    /// The file's new URL (http, https or file).
    pub url: String,
}

/// `ferry handler`.
#[derive(Debug, Args)]
pub struct HandlerArgs {
    /// What to do with handlers.
    #[command(subcommand)]
    pub command: HandlerCommand,
}

/// The `ferry handler` verbs.
#[derive(Debug, Subcommand)]
pub enum HandlerCommand {
    /// Register PROGRAM as handler NAME (replacing one of that name).
    #[command(
        after_help = "ferryd starts PROGRAM (no shell, no PATH search) when a job whose handler is \
                      NAME has a notification due and no program is attached, with FERRY_SOCKET, \
                      FERRY_HANDLER and FERRY_ACTIVATION in its environment.\n\n\
                      Example: ferry handler add my-app --activation-timeout 60 -- /usr/local/bin/my-app"
    )]
    Add(HandlerAddArgs),
    /// List your registered handlers.
    #[command(after_help = "Example: ferry handler list --json")]
    List,
    /// Unregister a handler.
    #[command(after_help = "Example: ferry handler remove my-app")]
    Remove(HandlerNameArg),
}

/// `ferry handler add`.
#[derive(Debug, Args)]
pub struct HandlerAddArgs {
    /// The handler's name.
    pub name: String,
    /// Seconds PROGRAM has to attach after ferryd starts it [default: 30].
    #[arg(long, value_name = "SECS")]
    pub activation_timeout: Option<u64>,
    /// PROGRAM and its arguments, after `--` (a relative PROGRAM is made absolute).
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub argv: Vec<String>,
}

/// `ferry handler remove`.
#[derive(Debug, Args)]
pub struct HandlerNameArg {
    /// The handler's name.
    pub name: String,
}

/// `ferry cache`.
#[derive(Debug, Args)]
#[command(
    after_help = "The peer cache is off unless ferryd's config file enables it \
                  ([peer_cache] enabled = true).\n\n\
                  Example: ferry cache info"
)]
pub struct CacheArgs {
    /// What to do with the peer cache.
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// The `ferry cache` verbs.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the cached files (most recently used first).
    #[command(after_help = "Example: ferry cache list --json")]
    List,
    /// Show the cache's settings and use.
    #[command(after_help = "Example: ferry cache info")]
    Info,
    /// Remove one entry (by KEY) or every entry downloaded from a URL.
    #[command(
        override_usage = "ferry cache delete [OPTIONS] KEY\n       \
                                ferry cache delete [OPTIONS] --url URL",
        after_help = "Example: ferry cache delete --url https://example.org/a.iso"
    )]
    Delete(CacheDeleteArgs),
    /// Remove every entry.
    #[command(after_help = "Example: ferry cache clear")]
    Clear,
}

/// `ferry cache delete`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("entry").required(true).args(["key", "url"])))]
pub struct CacheDeleteArgs {
    /// The entry's content key, or a unique prefix of one (as `ferry cache list` shows it).
    pub key: Option<String>,
    /// Remove every entry downloaded from this URL instead.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// `ferry peers`.
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// What to show about peers.
    #[command(subcommand)]
    pub command: PeersCommand,
}

/// The `ferry peers` verbs.
#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// List the known peers, their health and what was fetched from each.
    #[command(after_help = "Example: ferry peers list")]
    List,
}

/// `ferry daemon`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DaemonArgs {
    /// Manage the running daemon instead of running one.
    #[command(subcommand)]
    pub command: Option<DaemonCommand>,
    /// Arguments for ferryd when no verb is given.
    #[command(flatten)]
    pub run: DaemonRunArgs,
}

/// The `ferry daemon` verbs.
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Run ferryd in the foreground (as `ferry daemon` with no verb does).
    #[command(after_help = "Example: ferry daemon run --state-dir /var/tmp/ferry")]
    Run(DaemonRunArgs),
    /// Show whether a daemon answers, and its pid, version, socket, state dir, log, uptime and
    /// your jobs by state (never starts one; exit code 6 when none answers).
    #[command(after_help = "Example: ferry daemon status --json")]
    Status,
    /// Stop the daemon (SIGTERM: it checkpoints, and jobs resume when it starts again).
    #[command(after_help = "Example: ferry daemon stop")]
    Stop,
    /// Print the end of the background daemon's log file (`ferryd.log` in its state dir).
    #[command(
        after_help = "The log level is FERRY_LOG in ferryd's environment (default `info`: \
                            each job's start, end and failure; `debug` for more).\n\n\
                            Example: ferry daemon logs -n 100"
    )]
    Logs(DaemonLogsArgs),
}

/// `ferry daemon run`.
#[derive(Debug, Args)]
pub struct DaemonRunArgs {
    /// Arguments passed to ferryd, e.g. `--state-dir DIR` (`ferry daemon -- --help` shows ferryd's).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "FERRYD_ARGS"
    )]
    pub args: Vec<OsString>,
}

/// `ferry daemon logs`.
#[derive(Debug, Args)]
pub struct DaemonLogsArgs {
    /// How many lines from the end.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 50)]
    pub lines: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every verb and sub-verb, as its path of names (`["handler", "add"]`).
    pub(crate) fn verb_paths() -> Vec<Vec<String>> {
        fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
            for sub in cmd.get_subcommands() {
                let mut path = prefix.to_vec();
                path.push(sub.get_name().to_owned());
                walk(sub, &path, out);
                out.push(path);
            }
        }
        let mut out = Vec::new();
        walk(&Cli::command(), &[], &mut out);
        out
    }

    #[test]
    fn every_verb_has_an_example() {
        let root = Cli::command();
        for path in verb_paths() {
            let cmd = path
                .iter()
                .try_fold(&root, |c, name| c.find_subcommand(name))
                .unwrap();
            let after = cmd.get_after_help().map(|s| s.to_string());
            assert!(
                after
                    .as_deref()
                    .is_some_and(|a| a.contains(&format!("Example: ferry {}", path.join(" ")))),
                "`ferry {} --help` has no example: {after:?}",
                path.join(" ")
            );
        }
    }

    #[test]
    fn transfer_takes_urls_then_dest() {
        let cli = Cli::try_parse_from(["ferry", "transfer", "https://h/a", "https://h/b", "out"])
            .unwrap();
        let Command::Transfer(t) = cli.command else {
            panic!("not transfer")
        };
        assert_eq!(t.args, ["https://h/a", "https://h/b", "out"]);
        // Interactive transfers run at foreground priority.
        assert_eq!(t.priority, Priority::Foreground);
        assert!(Cli::try_parse_from(["ferry", "transfer"]).is_err());
        assert!(Cli::try_parse_from(["ferry", "transfer", "--from-file", "l"]).is_ok());
        assert!(Cli::try_parse_from(["ferry", "transfer", "--from-file", "l", "u", "d"]).is_err());
    }

    #[test]
    fn json_is_global() {
        let cli = Cli::try_parse_from(["ferry", "list", "--json", "--state", "error"]).unwrap();
        assert!(cli.json);
        let Command::List(l) = cli.command else {
            panic!("not list")
        };
        assert_eq!(l.states, [JobState::Error]);
    }

    #[test]
    fn add_forms() {
        assert!(Cli::try_parse_from(["ferry", "add", "j", "u", "p"]).is_ok());
        assert!(Cli::try_parse_from(["ferry", "add", "j", "u"]).is_err());
        assert!(Cli::try_parse_from(["ferry", "add", "j"]).is_err());
        assert!(Cli::try_parse_from(["ferry", "add", "j", "--from-file", "l"]).is_ok());
    }

    #[test]
    fn set_takes_a_notify_command_line_after_double_dash() {
        let cli = Cli::try_parse_from([
            "ferry",
            "set",
            "j",
            "--notify-cmdline",
            "--notify-flags",
            "3",
            "--",
            "./notify",
            "--flag",
            "x",
        ])
        .unwrap();
        let Command::Set(s) = cli.command else {
            panic!("not set")
        };
        assert!(s.notify_cmdline);
        assert_eq!(s.cmdline, ["./notify", "--flag", "x"]);
        assert_eq!(s.notify_flags, Some(3));
        // The flag and the argv need each other; clearing conflicts with setting.
        assert!(Cli::try_parse_from(["ferry", "set", "j", "--notify-cmdline"]).is_err());
        assert!(Cli::try_parse_from(["ferry", "set", "j", "--", "/bin/x"]).is_err());
        assert!(
            Cli::try_parse_from([
                "ferry",
                "set",
                "j",
                "--no-notify-cmdline",
                "--notify-cmdline",
                "--",
                "/x"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["ferry", "set", "j", "--no-notify-cmdline"]).is_ok());
        assert!(
            Cli::try_parse_from(["ferry", "set", "j", "--handler", "h", "--no-handler"]).is_err()
        );
    }

    #[test]
    fn handler_verbs() {
        let cli = Cli::try_parse_from([
            "ferry",
            "handler",
            "add",
            "h",
            "--activation-timeout",
            "9",
            "--",
            "/bin/prog",
            "-v",
        ])
        .unwrap();
        let Command::Handler(HandlerArgs {
            command: HandlerCommand::Add(a),
        }) = cli.command
        else {
            panic!("not handler add")
        };
        assert_eq!((a.name.as_str(), a.activation_timeout), ("h", Some(9)));
        assert_eq!(a.argv, ["/bin/prog", "-v"]);
        assert!(Cli::try_parse_from(["ferry", "handler", "add", "h"]).is_err());
        assert!(Cli::try_parse_from(["ferry", "handler", "list", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["ferry", "handler", "remove", "h"]).is_ok());
    }

    #[test]
    fn validate_needs_exactly_one_verdict() {
        let cli = Cli::try_parse_from(["ferry", "validate", "j", "2", "--invalid"]).unwrap();
        let Command::Validate(v) = cli.command else {
            panic!("not validate")
        };
        assert_eq!((v.file_index, v.valid, v.invalid), (2, false, true));
        assert!(Cli::try_parse_from(["ferry", "validate", "j", "2"]).is_err());
        assert!(
            Cli::try_parse_from(["ferry", "validate", "j", "2", "--valid", "--invalid"]).is_err()
        );
        assert!(Cli::try_parse_from(["ferry", "validate", "j", "x", "--valid"]).is_err());
    }

    #[test]
    fn cache_delete_needs_exactly_one_of_key_and_url() {
        let cli = Cli::try_parse_from(["ferry", "cache", "delete", "abc123"]).unwrap();
        let Command::Cache(CacheArgs {
            command: CacheCommand::Delete(d),
        }) = cli.command
        else {
            panic!("not cache delete")
        };
        assert_eq!((d.key.as_deref(), d.url.as_deref()), (Some("abc123"), None));
        let cli =
            Cli::try_parse_from(["ferry", "cache", "delete", "--url", "https://h/a"]).unwrap();
        let Command::Cache(CacheArgs {
            command: CacheCommand::Delete(d),
        }) = cli.command
        else {
            panic!("not cache delete")
        };
        assert_eq!((d.key, d.url.as_deref()), (None, Some("https://h/a")));
        assert!(Cli::try_parse_from(["ferry", "cache", "delete"]).is_err());
        assert!(
            Cli::try_parse_from(["ferry", "cache", "delete", "k", "--url", "https://h/a"]).is_err()
        );
        for verb in ["list", "info", "clear"] {
            assert!(Cli::try_parse_from(["ferry", "cache", verb, "--json"]).is_ok());
        }
        assert!(Cli::try_parse_from(["ferry", "peers", "list", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["ferry", "peers"]).is_err());
    }

    #[test]
    fn events_forms() {
        let cli =
            Cli::try_parse_from(["ferry", "events", "j", "--follow", "--after", "7"]).unwrap();
        let Command::Events(e) = cli.command else {
            panic!("not events")
        };
        assert_eq!(
            (e.job.as_deref(), e.follow, e.after),
            (Some("j"), true, Some(7))
        );
        assert!(Cli::try_parse_from(["ferry", "events"]).is_ok());
    }

    #[test]
    fn daemon_passes_flags_through() {
        let cli = Cli::try_parse_from([
            "ferry",
            "daemon",
            "--state-dir",
            "/x",
            "--retry-delay-floor",
            "1",
        ])
        .unwrap();
        let Command::Daemon(d) = cli.command else {
            panic!("not daemon")
        };
        assert_eq!(
            d.run.args,
            ["--state-dir", "/x", "--retry-delay-floor", "1"]
        );
        assert!(d.command.is_none());
        let cli = Cli::try_parse_from(["ferry", "daemon"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Daemon(DaemonArgs { command: None, .. })
        ));
    }

    #[test]
    fn daemon_verbs() {
        for (verb, want) in [("status", "Status"), ("stop", "Stop"), ("logs", "Logs")] {
            let cli = Cli::try_parse_from(["ferry", "daemon", verb]).unwrap();
            let Command::Daemon(DaemonArgs {
                command: Some(c), ..
            }) = cli.command
            else {
                panic!("not daemon {verb}")
            };
            assert!(format!("{c:?}").starts_with(want), "{c:?}");
        }
        let cli = Cli::try_parse_from(["ferry", "daemon", "run", "--state-dir", "/x"]).unwrap();
        let Command::Daemon(DaemonArgs {
            command: Some(DaemonCommand::Run(r)),
            ..
        }) = cli.command
        else {
            panic!("not daemon run")
        };
        assert_eq!(r.args, ["--state-dir", "/x"]);
    }
}
