//! `ferry daemon [run] [ferryd args…]`: replaces this process with `ferryd` in the foreground;
//! `ferry daemon status|stop|logs`: inspects, stops or reads the log of the running daemon.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use ferry_client::autostart::daemon_binary;
use ferry_client::proto::params::{HelloResult, ListParams};
use ferry_client::{Client, ClientError};
use serde_json::json;

use super::Ctx;
use crate::cli::{DaemonArgs, DaemonCommand, DaemonLogsArgs};
use crate::exit_code::{self, Coded};

/// The log file's name in the state directory (as ferryd writes it).
const LOG_FILE: &str = "ferryd.log";

/// How long `ferry daemon stop` waits for the daemon to stop listening.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Runs `ferry daemon …`.
pub async fn run(ctx: &Ctx, a: DaemonArgs) -> anyhow::Result<u8> {
    match a.command {
        None => exec(ctx.target.socket.as_deref(), &a.run.args),
        Some(DaemonCommand::Run(r)) => exec(ctx.target.socket.as_deref(), &r.args),
        Some(DaemonCommand::Status) => status(ctx).await,
        Some(DaemonCommand::Stop) => stop(ctx).await,
        Some(DaemonCommand::Logs(l)) => logs(ctx, &l).await,
    }
}

/// Whether the user already passed ferryd a socket.
fn has_socket_flag(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == "--socket" || a.starts_with("--socket=")
    })
}

/// Whether ferryd is asked to run as the system daemon (its own default socket then applies).
fn has_system_flag(args: &[OsString]) -> bool {
    args.iter().any(|a| a == "--system")
}

/// The socket `ferry daemon` hands ferryd: the one given to `ferry`, else, for a per-user
/// daemon, the per-user socket the other verbs' autostart uses (`$XDG_RUNTIME_DIR/ferry/…`, or
/// the private fallback under the temp dir when no session set `XDG_RUNTIME_DIR`), so that both
/// ways of starting a daemon serve the same path. `None`: ferryd's own choice stands.
pub fn socket_for_ferryd(
    given: Option<&Path>,
    args: &[OsString],
    per_user: Option<PathBuf>,
) -> Option<PathBuf> {
    if has_socket_flag(args) {
        return None;
    }
    match given.filter(|s| !s.as_os_str().is_empty()) {
        Some(s) => Some(s.to_path_buf()),
        None if has_system_flag(args) => None,
        None => per_user,
    }
}

/// Execs ferryd with `args` (plus the `--socket` [`socket_for_ferryd`] picks); returns only if
/// the exec failed.
pub fn exec(socket: Option<&Path>, args: &[OsString]) -> anyhow::Result<u8> {
    let bin = daemon_binary();
    let mut cmd = std::process::Command::new(&bin);
    let explicit = socket.is_some_and(|s| !s.as_os_str().is_empty());
    if let Some(s) = socket_for_ferryd(socket, args, ferry_client::connect::user_socket()) {
        if !explicit {
            // The fallback directory is created and vetted exactly as before an autostart.
            ferry_client::connect::prepare_fallback_dir(&s)?;
        }
        cmd.arg("--socket").arg(s);
    }
    cmd.args(args);
    let err = cmd.exec();
    anyhow::bail!(
        "cannot run {}: {err}; install ferryd next to ferry, or set FERRY_DAEMON to its path",
        bin.display()
    )
}

/// The socket the verbs would use: `--socket`/`FERRY_SOCKET`, else the discovered one.
fn socket_of(ctx: &Ctx) -> anyhow::Result<PathBuf> {
    match ctx
        .target
        .socket
        .as_ref()
        .filter(|s| !s.as_os_str().is_empty())
    {
        Some(s) => Ok(s.clone()),
        None => Ok(ferry_client::connect::find_socket()?),
    }
}

/// Connects without ever starting a daemon: `Ok(None)` when nothing listens on `socket`.
async fn connect_running(socket: &Path) -> anyhow::Result<Option<Client>> {
    match Client::connect_to(socket).await {
        Ok(c) => Ok(Some(c)),
        Err(ClientError::Connect { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// `1h 2m 3s`, `4m 5s`, `6s`.
pub fn format_uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

/// `ferry daemon status`.
async fn status(ctx: &Ctx) -> anyhow::Result<u8> {
    let socket = socket_of(ctx)?;
    let Some(client) = connect_running(&socket).await? else {
        if ctx.json {
            crate::output::json(&json!({"running": false, "socket": socket}))?;
        } else {
            outln!(
                "not running: no daemon answers on {} (any verb starts one; `ferry daemon` runs one in the foreground)",
                socket.display()
            )?;
        }
        return Ok(exit_code::UNREACHABLE);
    };
    let hello = client
        .hello()
        .await
        .context("the daemon did not answer ferry.hello")?;
    let params = ListParams {
        include_final: Some(true),
        ..ListParams::default()
    };
    let jobs = crate::resolve::list_all_raw(&client, params)
        .await
        .context("cannot list your jobs")?;
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    for j in &jobs {
        let state = j.get("state").and_then(|s| s.as_str()).unwrap_or("unknown");
        *by_state.entry(state.to_owned()).or_default() += 1;
    }
    if ctx.json {
        crate::output::json(&json!({
            "running": true,
            "pid": hello.pid,
            "server": hello.server,
            "client": client_version(),
            "protocol": hello.protocol,
            "mode": hello.mode,
            "socket": hello.socket.clone().unwrap_or_else(|| socket.display().to_string()),
            "state_dir": hello.state_dir,
            "log": hello.log,
            "uptime_s": hello.uptime_s,
            "jobs_by_state": by_state,
        }))?;
        return Ok(exit_code::OK);
    }
    let unknown = || "unknown (older ferryd)".to_owned();
    let jobs_line = if by_state.is_empty() {
        "none".to_owned()
    } else {
        by_state
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    outln!("running:   yes ({} mode)", hello.mode)?;
    outln!(
        "pid:       {}",
        hello.pid.map_or_else(unknown, |p| p.to_string())
    )?;
    outln!(
        "version:   {} (this ferry: {})",
        hello.server,
        client_version()
    )?;
    outln!(
        "socket:    {}",
        hello
            .socket
            .clone()
            .unwrap_or_else(|| socket.display().to_string())
    )?;
    outln!(
        "state dir: {}",
        hello.state_dir.clone().unwrap_or_else(unknown)
    )?;
    outln!("log:       {}", hello.log.clone().unwrap_or_else(unknown))?;
    outln!(
        "uptime:    {}",
        hello.uptime_s.map_or_else(unknown, format_uptime)
    )?;
    outln!("your jobs: {jobs_line}")?;
    Ok(exit_code::OK)
}

/// The daemon's half of `ferry --version`: `ferryd X (socket S)`, or why there is none. Never
/// starts a daemon; a daemon that does not answer within 5 s counts as not answering.
pub async fn version_line(socket: Option<PathBuf>) -> String {
    let socket = match socket.filter(|s| !s.as_os_str().is_empty()) {
        Some(s) => s,
        None => match ferry_client::connect::find_socket() {
            Ok(s) => s,
            Err(e) => return format!("ferryd: unknown ({e})"),
        },
    };
    let asked = async {
        let client = connect_running(&socket).await?;
        match client {
            Some(c) => Ok::<_, anyhow::Error>(Some(c.hello().await?)),
            None => Ok(None),
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), asked).await {
        Ok(Ok(Some(h))) => format!("{} (socket {})", h.server, socket.display()),
        Ok(Ok(None)) => format!(
            "ferryd: not running (no daemon answers on {})",
            socket.display()
        ),
        Ok(Err(e)) => format!("ferryd: unknown ({e:#})"),
        Err(_) => format!(
            "ferryd: unknown (no answer on {} within 5 s)",
            socket.display()
        ),
    }
}

/// `ferry X.Y.Z`, as `ferry.hello`'s `server` is `ferryd X.Y.Z`.
pub fn client_version() -> String {
    format!("ferry {}", env!("CARGO_PKG_VERSION"))
}

/// The pid to signal, refusing values `kill(2)` treats as groups (0, negative) and init: a
/// daemon's answer must never make `ferry daemon stop` signal anything but one process.
pub fn stoppable_pid(pid: Option<u32>) -> Result<i32, String> {
    match pid.and_then(|p| i32::try_from(p).ok()) {
        Some(p) if p > 1 => Ok(p),
        Some(p) => Err(format!("the daemon reported pid {p}, which is not a daemon's")),
        None => Err("the daemon did not report its pid (an older ferryd): stop it with `kill` or `systemctl`".into()),
    }
}

/// Whether a process whose `/proc/PID/stat` reads `stat` (`None`: no such process) has exited:
/// a zombie (state `Z`) has, though no parent has reaped it yet.
pub fn exited(stat: Option<&str>) -> bool {
    let Some(stat) = stat else {
        return true;
    };
    // The state follows the command name, which is in parentheses and may contain anything.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

/// `ferry daemon stop`: SIGTERM to the pid `ferry.hello` reports, then waits until that
/// process has exited.
async fn stop(ctx: &Ctx) -> anyhow::Result<u8> {
    use nix::sys::signal::{Signal, kill};
    let socket = socket_of(ctx)?;
    let Some(client) = connect_running(&socket).await? else {
        if ctx.json {
            crate::output::json(&json!({"stopped": false, "running": false, "socket": socket}))?;
        } else {
            outln!("not running: no daemon answers on {}", socket.display())?;
        }
        return Ok(exit_code::OK);
    };
    let hello = client
        .hello()
        .await
        .context("the daemon did not answer ferry.hello")?;
    drop(client);
    let pid =
        stoppable_pid(hello.pid).map_err(|why| anyhow::anyhow!("cannot stop ferryd: {why}"))?;
    match kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM) {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) => {
            let hint = if hello.mode == "system" {
                "it is the system daemon: stop it as root (`systemctl stop ferryd`)"
            } else {
                "it belongs to another user"
            };
            anyhow::bail!("cannot stop ferryd (pid {pid}): permission denied; {hint}");
        }
        Err(e) => anyhow::bail!("cannot signal ferryd (pid {pid}): {e}"),
    }
    // No event tells a non-parent that a process exited, so poll with a deadline: done once the
    // process is gone (it has released its state-dir lock and checkpointed by then).
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        if exited(stat.as_deref()) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Coded::timed_out(format!(
                "ferryd (pid {pid}, socket {}) is still running {} s after SIGTERM; see `ferry daemon logs`",
                socket.display(),
                STOP_WAIT.as_secs()
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if ctx.json {
        crate::output::json(&json!({"stopped": true, "pid": pid, "socket": socket}))?;
    } else {
        outln!("stopped ferryd (pid {pid})")?;
    }
    Ok(exit_code::OK)
}

/// The state directory a per-user ferryd uses by default: `FERRY_STATE_DIR`, else
/// `$XDG_STATE_HOME/ferry`, else `~/.local/state/ferry` (ferryd's own rule).
pub fn default_state_dir(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    get("FERRY_STATE_DIR")
        .or_else(|| get("XDG_STATE_HOME").map(|d| d.join("ferry")))
        .or_else(|| get("HOME").map(|h| h.join(".local/state/ferry")))
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// `ferry daemon logs`: the running daemon says where it logs; without one, the default
/// per-user state dir's log is read.
async fn logs(ctx: &Ctx, a: &DaemonLogsArgs) -> anyhow::Result<u8> {
    let socket = socket_of(ctx)?;
    let hello: Option<HelloResult> = match connect_running(&socket).await {
        Ok(Some(c)) => c.hello().await.ok(),
        _ => None,
    };
    let path = match hello.as_ref().and_then(|h| h.log.clone()) {
        Some(l) if l == "stderr" => {
            let unit = if hello.as_ref().is_some_and(|h| h.mode == "system") {
                "journalctl -u ferryd"
            } else {
                "journalctl --user -u ferryd"
            };
            anyhow::bail!(
                "the daemon on {} logs to its stderr, not a file: it runs in a terminal or under systemd (`{unit}`)",
                socket.display()
            );
        }
        Some(l) => PathBuf::from(l),
        None => default_state_dir(|k| std::env::var_os(k))
            .map(|d| d.join(LOG_FILE))
            .context("no daemon answers and neither FERRY_STATE_DIR, XDG_STATE_HOME nor HOME is set, so there is no log to read")?,
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the daemon's log {} (a daemon started by `ferry` writes it; one run with `ferry daemon` logs to the terminal)",
            path.display()
        )
    })?;
    for line in tail(&text, a.lines) {
        outln!("{line}")?;
    }
    Ok(exit_code::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_flag_detection() {
        assert!(has_socket_flag(&["--socket".into(), "/s".into()]));
        assert!(has_socket_flag(&["--socket=/s".into()]));
        assert!(!has_socket_flag(&["--state-dir".into(), "/d".into()]));
    }

    #[test]
    fn ferry_daemon_serves_the_socket_the_autostart_would() {
        let user = Some(PathBuf::from("/tmp/ferry-1000/ferryd.sock"));
        let none: [OsString; 0] = [];
        assert_eq!(socket_for_ferryd(None, &none, user.clone()), user);
        assert_eq!(
            socket_for_ferryd(Some(Path::new("/s")), &none, user.clone()),
            Some(PathBuf::from("/s"))
        );
        assert_eq!(
            socket_for_ferryd(None, &["--socket=/x".into()], user.clone()),
            None
        );
        assert_eq!(socket_for_ferryd(None, &["--system".into()], user), None);
    }

    #[test]
    fn exit_is_read_from_proc_stat() {
        assert!(exited(None));
        assert!(!exited(Some("42 (ferryd) S 1 42 42 0")));
        assert!(exited(Some("42 (ferryd) Z 1 42 42 0")));
        assert!(
            !exited(Some("42 (a) Z (b) R 1 42")),
            "the name may hold `) Z`"
        );
    }

    #[test]
    fn uptimes() {
        assert_eq!(format_uptime(5), "5s");
        assert_eq!(format_uptime(65), "1m 5s");
        assert_eq!(format_uptime(3_725), "1h 2m 5s");
        assert_eq!(format_uptime(90_061), "1d 1h 1m");
    }

    #[test]
    fn only_a_single_real_process_is_signalled() {
        assert_eq!(stoppable_pid(Some(4242)), Ok(4242));
        for bad in [Some(0), Some(1), Some(u32::MAX), None] {
            assert!(stoppable_pid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn state_dir_defaults_follow_ferryd() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            default_state_dir(env(&[("FERRY_STATE_DIR", "/s"), ("HOME", "/h")])),
            Some(PathBuf::from("/s"))
        );
        assert_eq!(
            default_state_dir(env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/ferry"))
        );
        assert_eq!(
            default_state_dir(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/state/ferry"))
        );
        assert_eq!(default_state_dir(env(&[])), None);
        assert_eq!(tail("a\nb\nc\n", 2), ["b", "c"]);
        assert!(tail("", 5).is_empty());
    }
}
