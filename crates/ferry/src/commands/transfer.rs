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
use ferry_client::proto::params::CreateParams;
use ferry_client::proto::{EventKind, FileSpec, JobState};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use super::Ctx;
use crate::cli::TransferArgs;
use crate::exit_code;
use crate::progress::TransferBar;
use crate::targets;
use crate::usage::UsageError;

/// The longest default display name (the daemon allows 256 characters).
const MAX_NAME_CHARS: usize = 200;

/// The files the command line asks for.
fn file_specs(a: &TransferArgs, cwd: &Path) -> anyhow::Result<Vec<FileSpec>> {
    if let Some(list) = &a.from_file {
        return super::load_list(list, cwd);
    }
    let Some((dest, sources)) = a.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(UsageError::new("give one or more URLs and a destination").into());
    };
    let urls = sources
        .iter()
        .map(|s| targets::parse_source(s, cwd, |p| p.exists()))
        .collect::<Result<Vec<_>, _>>()?;
    let paths = targets::resolve_dest(&urls, dest, cwd, |p| p.is_dir())?;
    Ok(urls
        .iter()
        .zip(&paths)
        .map(|(u, p)| targets::spec(u, p, None))
        .collect::<Result<Vec<_>, _>>()?)
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

/// Runs the transfer and returns the exit code.
pub async fn run(ctx: &Ctx, a: TransferArgs) -> anyhow::Result<u8> {
    let cwd = super::cwd()?;
    let specs = file_specs(&a, &cwd)?;
    targets::check_distinct(&specs)?;
    let display_name = a
        .display_name
        .clone()
        .unwrap_or_else(|| default_name(&specs));
    let client = ctx.client().await?;
    let started = Instant::now();
    let id = client
        .create(CreateParams {
            display_name,
            job_type: None,
            priority: Some(a.priority),
            description: a.description.clone(),
            files: Some(specs),
            ..CreateParams::default()
        })
        .await
        .context("cannot create the transfer job")?;
    // Installed as soon as the job exists: from here on Ctrl-C must suspend the job rather
    // than kill us and leave it running unattended.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
    super::follow_job(&client, &id).await?;
    client
        .resume(&id)
        .await
        .with_context(|| format!("cannot start job {id}"))?;
    let mut bar = TransferBar::new();
    loop {
        let job = client
            .get(&id)
            .await
            .with_context(|| format!("cannot read job {id}"))?;
        bar.update(&job);
        match job.state {
            JobState::Transferred => {
                bar.clear();
                let r = client
                    .complete(&id)
                    .await
                    .with_context(|| format!("job {id} is transferred but completing it failed"))?;
                return print_saved(ctx, &client, &id, r.state, r.partial, started).await;
            }
            JobState::Acknowledged => {
                // Someone completed it for us (e.g. `ferry complete` in another terminal).
                bar.clear();
                return print_saved(ctx, &client, &id, job.state, false, started).await;
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
            tokio::select! {
                ev = client.next_event() => match ev {
                    None => {
                        bar.clear();
                        bail!("the connection to ferryd closed during the transfer; job {id} may still be running (see `ferry info {id}`)");
                    }
                    Some(ev) if matters(&ev.kind) => break,
                    Some(_) => {}
                },
                _ = sigint.recv() => {
                    bar.clear();
                    return interrupted(&client, &id).await;
                }
            }
        }
    }
}

/// Ctrl-C: suspends the job and says how to pick it up again.
async fn interrupted(client: &Client, id: &str) -> anyhow::Result<u8> {
    match client.suspend(id).await {
        Ok(_) => {
            errln!("suspended job {id}; resume it with: ferry resume {id}");
            errln!(
                "(then `ferry wait {id} --complete` saves the files, or `ferry cancel {id}` drops them)"
            );
        }
        Err(e) => errln!(
            "ferry: interrupted, but suspending job {id} failed: {e}; see `ferry info {id}`, or drop it with `ferry cancel {id}`"
        ),
    }
    Ok(exit_code::INTERRUPTED)
}

/// Prints where the files went: `saved <path>` lines, or the JSON summary.
async fn print_saved(
    ctx: &Ctx,
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
    } else {
        for f in files.iter().filter(|f| f.completed || f.transferred) {
            outln!("saved {}", f.local_path)?;
        }
    }
    if partial {
        errln!("ferry: some files of job {id} were not transferred and were dropped");
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
