//! `ferry transfer URL… DEST` and `ferry transfer --from-file LIST`: the synchronous download
//! (bitsadmin `/transfer`): create a job with the files, resume it, show progress until it is
//! transferred, complete it, and print where the files are.
//!
//! The job is created with its files in one `job.create`, so a refused file leaves no job
//! behind. Waiting follows the job's events and re-reads the job on each one; it never polls.
//! Ctrl-C suspends the job (it can be resumed later); a fatal error leaves the job in `error` so
//! the user can inspect, resume or cancel it.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail};
use ferry_client::Client;
use ferry_client::proto::params::{CreateParams, SetParams};
use ferry_client::proto::{EventKind, File, FileSpec, Job, JobState};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use super::Ctx;
use crate::cli::TransferArgs;
use crate::exit_code;
use crate::output::short_id;
use crate::progress::TransferBar;
use crate::resolve;
use crate::targets;
use crate::usage::UsageError;

/// The longest default display name (the daemon allows 256 characters).
const MAX_NAME_CHARS: usize = 200;

/// The files the command line asks for.
fn file_specs(a: &TransferArgs, cwd: &Path) -> anyhow::Result<Vec<FileSpec>> {
    if let Some(list) = &a.from_file {
        return super::load_list(list, cwd);
    }
    let (sources, dest) = targets::split_transfer_args(&a.args, a.output.as_deref())?;
    if a.sha256.is_some() && sources.len() != 1 {
        return Err(
            UsageError::new("--sha256 names one file's content: give exactly one URL").into(),
        );
    }
    let urls = sources
        .iter()
        .map(|s| targets::parse_source(s, cwd, |p| p.exists()))
        .collect::<Result<Vec<_>, _>>()?;
    let paths = targets::resolve_dest(&urls, dest, cwd, |p| p.is_dir())?;
    Ok(urls
        .iter()
        .zip(&paths)
        .map(|(u, p)| targets::spec(u, p, a.sha256.clone()))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The `job.set` that gives the job the command line's options.
pub fn settings(a: &TransferArgs, job_id: &str) -> SetParams {
    SetParams {
        job_id: job_id.to_owned(),
        custom_headers: (!a.headers.is_empty()).then(|| a.headers.clone()),
        bandwidth_limit_bps: a.limit_rate.map(Some),
        // The daemon hands the files over itself: a closed terminal or a killed CLI must not
        // leave the bytes in a hidden staging file.
        auto_complete: Some(true),
        // Someone is watching: retry soon, and give up rather than wait for days.
        minimum_retry_delay_s: Some(a.retry_delay),
        no_progress_timeout_s: Some(a.no_progress_timeout),
        max_download_time_s: a.max_time.map(Some),
        ..SetParams::default()
    }
}

/// The note `ferry transfer` prints before it starts: where the files will be, and that they
/// get there even if this command is interrupted by a closed terminal.
pub fn where_note(id: &str, specs: &[FileSpec]) -> String {
    let place = match specs {
        [one] => one.local_path.clone(),
        [first, rest @ ..] => format!("{} and {} more", first.local_path, rest.len()),
        [] => String::new(),
    };
    format!(
        "ferry: saving to {place} (job {}; ferryd completes it even if this terminal closes)",
        short_id(id)
    )
}

/// `ferry transfer <first file name>` (`+N more` when there are several).
pub fn default_name(specs: &[FileSpec]) -> String {
    let first = specs
        .first()
        .and_then(|s| Path::new(&s.local_path).file_name())
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut name = format!("ferry transfer {first}");
    if specs.len() > 1 {
        name.push_str(&format!(" (+{} more)", specs.len() - 1));
    }
    name.chars().take(MAX_NAME_CHARS).collect()
}

/// Whether an event can change what the bar shows or where the job stands.
fn matters(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::State { .. }
            | EventKind::Progress { .. }
            | EventKind::FileTransferred { .. }
            | EventKind::Error { .. }
    )
}

/// The same transfer: every file's URL and destination, in any order.
pub fn same_files(specs: &[FileSpec], files: &[File]) -> bool {
    let mut want: Vec<(&str, &str)> = specs
        .iter()
        .map(|s| (s.remote_url.as_str(), s.local_path.as_str()))
        .collect();
    let mut have: Vec<(&str, &str)> = files
        .iter()
        .map(|f| (f.remote_url.as_str(), f.local_path.as_str()))
        .collect();
    want.sort_unstable();
    have.sort_unstable();
    want == have
}

/// The caller's unfinished job with exactly these files, if there is one: re-running the same
/// `ferry transfer` continues it instead of starting a second download from byte 0.
async fn find_same(
    client: &Client,
    jobs: &[Job],
    specs: &[FileSpec],
) -> anyhow::Result<Option<Job>> {
    for job in jobs
        .iter()
        .filter(|j| j.progress.files_total == specs.len() as u64)
    {
        let files = client
            .files(&job.job_id)
            .await
            .with_context(|| format!("cannot read the files of job {}", job.job_id))?;
        if same_files(specs, &files) {
            return Ok(Some(job.clone()));
        }
    }
    Ok(None)
}

/// Runs the transfer and returns the exit code.
pub async fn run(ctx: &Ctx, a: TransferArgs) -> anyhow::Result<u8> {
    let cwd = super::cwd()?;
    let specs = file_specs(&a, &cwd)?;
    targets::check_distinct(&specs)?;
    targets::check_parents(&specs, |p| p.is_dir())?;
    if !a.overwrite {
        // A dangling symlink is a name in use too: `symlink_metadata`, not `exists`.
        targets::check_not_clobbering(&specs, |p| p.symlink_metadata().is_ok())?;
    }
    let client = ctx.client().await?;
    let unfinished = resolve::unfinished_jobs(&client).await?;
    let started = Instant::now();
    let mut attached = None;
    if let Some(old) = find_same(&client, &unfinished, &specs).await? {
        let short = short_id(&old.job_id);
        if a.restart {
            client
                .cancel(&old.job_id)
                .await
                .with_context(|| format!("cannot cancel job {} (--restart)", old.job_id))?;
            if !a.quiet && !ctx.json {
                errln!("ferry: cancelled job {short}, which had the same files (--restart)");
            }
        } else {
            if !a.quiet && !ctx.json {
                errln!(
                    "ferry: continuing job {short}, which has the same files ({}; --restart starts over)",
                    old.state
                );
            }
            attached = Some(old);
        }
    }
    let id = match &attached {
        Some(old) => old.job_id.clone(),
        None => create(&client, &a, &specs, &resolve::candidates(&unfinished)).await?,
    };
    if let Err(e) = client.set(settings(&a, &id)).await {
        if attached.is_none() {
            // The job is not what the command line asked for: drop it rather than leave it.
            let _ = client.cancel(&id).await;
        }
        return Err(anyhow::Error::new(e).context("cannot apply the transfer's options"));
    }
    // Installed as soon as the job exists: from here on Ctrl-C must suspend the job rather
    // than kill us and leave it running unattended.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
    super::follow_job(&client, &id).await?;
    let resumable = attached.as_ref().is_none_or(|j| {
        matches!(
            j.state,
            JobState::Suspended | JobState::Error | JobState::TransientError
        )
    });
    if resumable {
        client
            .resume(&id)
            .await
            .with_context(|| format!("cannot start job {id}"))?;
    }
    // Said once the job runs: from here on a closed terminal no longer loses the files.
    if !a.quiet && !ctx.json {
        errln!("{}", where_note(&id, &specs));
    }
    let mut bar = TransferBar::new(!a.quiet);
    let mut grace: Option<tokio::time::Instant> = None;
    let mut redraw = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        let job = client
            .get(&id)
            .await
            .with_context(|| format!("cannot read job {id}"))?;
        bar.update(&job);
        let now = tokio::time::Instant::now();
        match job.state {
            JobState::Transferred
                if job.settings.auto_complete && grace.is_none_or(|g| now < g) =>
            {
                // The daemon is handing the files over; wait for it rather than race it.
                grace.get_or_insert(now + super::AUTO_COMPLETE_GRACE);
            }
            JobState::Transferred => {
                bar.clear();
                let (state, partial) = super::complete_transferred(&client, &id).await?;
                return print_saved(ctx, &a, &client, &id, state, partial, started).await;
            }
            JobState::Acknowledged => {
                // Completed by the daemon (auto_complete) or by someone else.
                bar.clear();
                return print_saved(ctx, &a, &client, &id, job.state, false, started).await;
            }
            JobState::Error => {
                bar.clear();
                return super::report_job_error(ctx, &client, &job).await;
            }
            JobState::Cancelled => {
                bar.clear();
                bail!("job {id} was cancelled");
            }
            _ => {}
        }
        loop {
            let grace_over = super::sleep_until(grace);
            tokio::select! {
                ev = client.next_event() => match ev {
                    None => {
                        bar.clear();
                        bail!("the connection to ferryd closed during the transfer; job {id} may still be running (see `ferry info {id}`)");
                    }
                    Some(ev) if matters(&ev.kind) => break,
                    Some(_) => {}
                },
                () = grace_over => break,
                _ = redraw.tick() => bar.refresh(),
                _ = sigint.recv() => {
                    bar.clear();
                    return interrupted(&client, &id).await;
                }
            }
        }
    }
}

/// Creates the job with its files (suspended); its name is checked or made unique first.
async fn create(
    client: &Client,
    a: &TransferArgs,
    specs: &[FileSpec],
    unfinished: &[resolve::Candidate],
) -> anyhow::Result<String> {
    let display_name = match &a.display_name {
        Some(name) if !a.allow_duplicate_name => {
            resolve::check_name_free(name, unfinished)?;
            name.clone()
        }
        Some(name) => name.clone(),
        None => resolve::unique_name(&default_name(specs), unfinished),
    };
    client
        .create(CreateParams {
            display_name,
            job_type: None,
            priority: Some(a.priority),
            description: a.description.clone(),
            files: Some(specs.to_vec()),
            ..CreateParams::default()
        })
        .await
        .context("cannot create the transfer job")
}

/// Ctrl-C: suspends the job and says how to pick it up again.
async fn interrupted(client: &Client, id: &str) -> anyhow::Result<u8> {
    let short = short_id(id);
    match client.suspend(id).await {
        Ok(_) => errln!("{}", suspended_note(id)),
        Err(e) => errln!(
            "ferry: interrupted, but suspending job {short} failed: {e}; see `ferry info {short}`"
        ),
    }
    Ok(exit_code::INTERRUPTED)
}

/// The one line Ctrl-C leaves: what was done to the job and how to continue it.
pub fn suspended_note(id: &str) -> String {
    let short = short_id(id);
    format!("ferry: suspended job {short}; `ferry resume {short}` continues it")
}

/// Prints where the files went: `saved <path>` lines, or the JSON summary.
async fn print_saved(
    ctx: &Ctx,
    a: &TransferArgs,
    client: &Client,
    id: &str,
    state: JobState,
    partial: bool,
    started: Instant,
) -> anyhow::Result<u8> {
    let files = client
        .files(id)
        .await
        .with_context(|| format!("cannot read the files of job {id}"))?;
    let seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    if ctx.json {
        let list: Vec<_> = files
            .iter()
            .filter(|f| f.completed || f.transferred)
            .map(|f| {
                json!({"remote_url": f.remote_url, "local_path": f.local_path, "bytes": f.bytes_transferred})
            })
            .collect();
        let bytes: u64 = files.iter().map(|f| f.bytes_transferred).sum();
        crate::output::json(&json!({
            "job_id": id, "state": state, "files": list, "bytes": bytes, "seconds": seconds
        }))?;
    } else if !a.quiet {
        for f in files.iter().filter(|f| f.completed || f.transferred) {
            outln!("saved {}", f.local_path)?;
        }
    }
    if partial {
        errln!("ferry: some files of job {id} were not transferred and were dropped");
        return Ok(exit_code::PARTIAL);
    }
    Ok(exit_code::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str) -> FileSpec {
        FileSpec {
            remote_url: "https://h/x".into(),
            local_path: path.into(),
            sha256: None,
            ranges: None,
        }
    }

    #[test]
    fn suspended_notes() {
        assert_eq!(
            suspended_note("0a1b2c3d-0000-4000-8000-000000000001"),
            "ferry: suspended job 0a1b2c3d; `ferry resume 0a1b2c3d` continues it"
        );
    }

    #[test]
    fn where_notes() {
        let id = "0a1b2c3d-0000-4000-8000-000000000001";
        assert_eq!(
            where_note(id, &[spec("/d/a")]),
            "ferry: saving to /d/a (job 0a1b2c3d; ferryd completes it even if this terminal closes)"
        );
        assert!(where_note(id, &[spec("/d/a"), spec("/d/b")]).contains("/d/a and 1 more"));
    }

    #[test]
    fn default_names() {
        assert_eq!(default_name(&[spec("/d/a.iso")]), "ferry transfer a.iso");
        assert_eq!(
            default_name(&[spec("/d/a"), spec("/d/b"), spec("/d/c")]),
            "ferry transfer a (+2 more)"
        );
        let long = format!("/d/{}", "x".repeat(500));
        assert_eq!(default_name(&[spec(&long)]).chars().count(), MAX_NAME_CHARS);
    }
}
