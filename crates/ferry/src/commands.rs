//! One module per verb, and the helpers they share.

pub mod add;
pub mod cache;
pub mod cancel;
pub mod clean;
pub mod complete;
pub mod create;
mod credentials;
pub mod daemon;
pub mod docs;
pub mod events;
pub mod files;
pub mod handler;
pub mod info;
pub mod list;
pub mod monitor;
pub mod peers;
pub mod resume;
pub mod set;
pub mod set_url;
pub mod suspend;
pub mod transfer;
pub mod validate;
pub mod wait;

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use ferry_client::Client;
use ferry_client::proto::params::{EventsFollowParams, JobIdParams};
use ferry_client::proto::{FileSpec, Job, method};
use serde_json::{Value, json};

use crate::cli::{Cli, Command};
use crate::connect::Target;
use crate::exit_code;
use crate::targets;

/// What every verb gets from the global options.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// How to reach the daemon.
    pub target: Target,
    /// `--json`: machine-readable output on stdout.
    pub json: bool,
}

impl Ctx {
    /// Connects to the daemon (starting one if allowed).
    pub async fn client(&self) -> anyhow::Result<Client> {
        crate::connect::connect(&self.target).await
    }
}

/// Runs the verb the command line names and returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let ctx = Ctx {
        target: Target {
            socket: cli.socket,
            no_autostart: cli.no_autostart,
        },
        json: cli.json,
    };
    match cli.command {
        Command::Transfer(a) => transfer::run(&ctx, a).await,
        Command::Create(a) => create::run(&ctx, a).await,
        Command::Add(a) => add::run(&ctx, a).await,
        Command::Resume(a) => resume::run(&ctx, a).await,
        Command::Suspend(a) => suspend::run(&ctx, a).await,
        Command::Cancel(a) => cancel::run(&ctx, a).await,
        Command::Clean => clean::run(&ctx).await,
        Command::Complete(a) => complete::run(&ctx, a).await,
        Command::Info(a) => info::run(&ctx, a).await,
        Command::Files(a) => files::run(&ctx, a).await,
        Command::List(a) => list::run(&ctx, a).await,
        Command::Set(a) => set::run(&ctx, a).await,
        Command::Wait(a) => wait::run(&ctx, a).await,
        Command::Monitor(a) => monitor::run(&ctx, a).await,
        Command::Events(a) => events::run(&ctx, a).await,
        Command::Validate(a) => validate::run(&ctx, a).await,
        Command::SetUrl(a) => set_url::run(&ctx, a).await,
        Command::Handler(a) => handler::run(&ctx, a).await,
        Command::Cache(a) => cache::run(&ctx, a).await,
        Command::Peers(a) => peers::run(&ctx, a).await,
        Command::Daemon(a) => daemon::run(&ctx, a).await,
        Command::Completions(a) => docs::completions(&a),
        Command::Man(a) => docs::man(&a),
    }
}

/// `job.get` keeping the daemon's exact answer (for `--json`) beside the typed job.
pub async fn get_job_raw(client: &Client, job_id: &str) -> anyhow::Result<(Value, Job)> {
    let raw: Value = client
        .call_json::<method::JobGet>(JobIdParams {
            job_id: job_id.to_owned(),
        })
        .await?;
    let job = decode_job(&raw)?;
    Ok((raw, job))
}

/// Decodes a job the daemon sent.
pub fn decode_job(raw: &Value) -> anyhow::Result<Job> {
    serde_json::from_value(raw.clone()).context("unexpected job object from ferryd")
}

/// Prints a job: the daemon's object with `--json`, else `key: value` lines.
pub fn show_job(ctx: &Ctx, raw: &Value, job: &Job) -> anyhow::Result<()> {
    if ctx.json {
        crate::output::json(raw)
    } else {
        crate::output::print_job(job)
    }
}

/// Starts following one job's events, so that waiting never polls.
pub async fn follow_job(client: &Client, job_id: &str) -> anyhow::Result<()> {
    client
        .follow_events(EventsFollowParams {
            after: None,
            job_id: Some(job_id.to_owned()),
        })
        .await
        .with_context(|| format!("cannot follow the events of job {job_id}"))
}

/// Reads a list file (`-` for stdin) into `FileSpec`s, naming the file and line on errors.
pub fn load_list(list: &Path, cwd: &Path) -> anyhow::Result<Vec<FileSpec>> {
    let origin = list.display().to_string();
    let text = if list == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the file list from stdin")?;
        s
    } else {
        std::fs::read_to_string(list).with_context(|| format!("cannot read list file {origin}"))?
    };
    let entries = targets::parse_list(&text, &origin)?;
    Ok(targets::list_specs(
        &entries,
        &origin,
        cwd,
        |p| p.exists(),
        |p| p.is_dir(),
    )?)
}

/// The current directory, which relative paths on the command line are taken against.
pub fn cwd() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

/// Reports a job that ended in `error`: the description and what the user can do next.
/// Returns [`exit_code::JOB_ERROR`].
pub async fn report_job_error(ctx: &Ctx, client: &Client, job: &Job) -> anyhow::Result<u8> {
    let id = &job.job_id;
    // `job.get_error` is the authoritative answer; the job's own copy is the fallback.
    let error = match client.get_error(id).await {
        Ok(Some(e)) => Some(e),
        _ => job.error.clone(),
    };
    let text = error.as_ref().map_or_else(
        || "the job failed and ferryd gave no error details".to_owned(),
        |e| format!("{} ({})", e.description, e.code),
    );
    if ctx.json {
        crate::output::json(&json!({"job_id": id, "state": job.state, "error": error}))?;
    }
    errln!("ferry: job {id} failed: {text}");
    errln!(
        "ferry: the job is kept: inspect it with `ferry info {id}`, retry with `ferry resume {id}`, or remove it with `ferry cancel {id}`"
    );
    // Which files failed, and how to keep the ones that arrived.
    if let Ok(files) = client.files(id).await {
        for line in partial_failure_notes(id, error.as_ref(), &files) {
            errln!("{line}");
        }
    }
    Ok(exit_code::JOB_ERROR)
}

/// Sleeps until `at`, or forever when there is no `at` (a `select!` branch that never fires).
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How long a verb lets the daemon complete a transferred `auto_complete` job before completing
/// it itself (the daemon's attempt failed if it takes longer; its log says why).
pub const AUTO_COMPLETE_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// The lines that explain a failed job's files: the file that failed, how many arrived and how
/// to keep those (`ferry complete --partial`), and where a local I/O failure's space went.
pub fn partial_failure_notes(
    id: &str,
    error: Option<&ferry_client::proto::ErrorInfo>,
    files: &[ferry_client::proto::File],
) -> Vec<String> {
    let short = crate::output::short_id(id);
    let mut notes = Vec::new();
    if let Some(f) = error
        .and_then(|e| e.file_index)
        .and_then(|i| files.iter().find(|f| f.file_index == i))
    {
        notes.push(format!(
            "ferry: failed: {} ({})",
            f.local_path, f.remote_url
        ));
    }
    let arrived = files
        .iter()
        .filter(|f| f.transferred && !f.completed)
        .count();
    if arrived > 0 && arrived < files.len() {
        notes.push(format!(
            "ferry: {arrived} of {} files were transferred: `ferry complete {short} --partial` saves them and drops the rest",
            files.len()
        ));
    }
    if error.is_some_and(|e| e.code == "LOCAL_IO") {
        let held: u64 = files
            .iter()
            .filter(|f| !f.completed)
            .map(|f| f.bytes_transferred)
            .sum();
        notes.push(format!(
            "ferry: its partial files hold {held} bytes of disk space until `ferry cancel {short}` (or `ferry clean`) deletes them"
        ));
    }
    notes
}

/// Completes a transferred job: `(state, partial)`. The daemon may complete it at the same
/// time (`auto_complete`); whichever call comes second fails, and finding the job acknowledged
/// then is success.
pub async fn complete_transferred(
    client: &Client,
    id: &str,
) -> anyhow::Result<(ferry_client::proto::JobState, bool)> {
    match client.complete(id).await {
        Ok(r) => Ok((r.state, r.partial)),
        Err(e) => match client.get(id).await {
            Ok(j) if j.state == ferry_client::proto::JobState::Acknowledged => Ok((j.state, false)),
            _ => Err(anyhow::Error::new(e)
                .context(format!("job {id} is transferred but completing it failed"))),
        },
    }
}

/// Prints a job's new state (`{"job_id","state"[,"partial"]}` with `--json`); exit code
/// [`exit_code::PARTIAL`] when files were dropped.
pub fn print_state(
    ctx: &Ctx,
    id: &str,
    state: ferry_client::proto::JobState,
    partial: Option<bool>,
) -> anyhow::Result<u8> {
    if ctx.json {
        let mut v = json!({"job_id": id, "state": state});
        if let (Some(p), Some(obj)) = (partial, v.as_object_mut()) {
            obj.insert("partial".into(), Value::Bool(p));
        }
        crate::output::json(&v)?;
    } else if partial == Some(true) {
        outln!("{state} (partial: files that were not transferred were dropped)")?;
    } else {
        outln!("{state}")?;
    }
    Ok(if partial == Some(true) {
        exit_code::PARTIAL
    } else {
        exit_code::OK
    })
}
