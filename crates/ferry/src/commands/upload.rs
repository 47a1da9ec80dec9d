//! `ferry upload FILE URL`: the synchronous upload (bitsadmin `/transfer … /upload`): create an
//! upload job for the file, resume it, show progress until the server has the whole file,
//! complete it, and say where it went. The same interactive rules as `ferry transfer`: Ctrl-C
//! suspends the job, a closed terminal leaves it running (the daemon completes it), a fatal
//! error leaves it in `error` for inspection.

use std::time::Instant;

use anyhow::Context as _;
use ferry_client::Client;
use ferry_client::proto::params::{CreateParams, SetParams};
use ferry_client::proto::{FileSpec, JobState, JobType};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use super::Ctx;
use super::transfer::{Watched, watch};
use crate::cli::UploadArgs;
use crate::exit_code;
use crate::output::short_id;
use crate::usage::UsageError;

/// Runs the upload and returns the exit code.
pub async fn run(ctx: &Ctx, a: UploadArgs) -> anyhow::Result<u8> {
    let cwd = super::cwd()?;
    let path = std::path::absolute(cwd.join(&a.file))
        .with_context(|| format!("cannot resolve {}", a.file.display()))?;
    if !path.is_file() {
        return Err(UsageError::new(format!(
            "{} is not a file; ferry upload sends one regular file",
            path.display()
        ))
        .into());
    }
    let local_path = path.to_string_lossy().into_owned();
    let client = ctx.client().await?;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let id = client
        .create(CreateParams {
            display_name: a
                .display_name
                .clone()
                .unwrap_or_else(|| format!("ferry upload {name}")),
            job_type: Some(JobType::Upload),
            priority: Some(a.priority),
            description: a.description.clone(),
            upload_protocol: Some(a.protocol),
            files: Some(vec![FileSpec {
                remote_url: a.url.clone(),
                local_path: local_path.clone(),
                sha256: None,
                ranges: None,
            }]),
            ..CreateParams::default()
        })
        .await
        .context("cannot create the upload job")?;
    let settings = SetParams {
        job_id: id.clone(),
        custom_headers: (!a.headers.is_empty()).then(|| a.headers.clone()),
        bandwidth_limit_bps: a.limit_rate.map(Some),
        // A closed terminal or a killed CLI must not leave the upload unfinished.
        auto_complete: Some(true),
        minimum_retry_delay_s: Some(a.retry_delay),
        no_progress_timeout_s: Some(a.no_progress_timeout),
        ..SetParams::default()
    };
    if let Err(e) = client.set(settings).await {
        let _ = client.cancel(&id).await;
        return Err(anyhow::Error::new(e).context("cannot apply the upload's options"));
    }
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
    super::follow_job(&client, &id).await?;
    let started = Instant::now();
    client
        .resume(&id)
        .await
        .with_context(|| format!("cannot start job {id}"))?;
    if !a.quiet && !ctx.json {
        errln!(
            "ferry: uploading {local_path} to {} (job {}; ferryd finishes it even if this terminal closes)",
            a.url,
            short_id(&id)
        );
    }
    match watch(&client, &id, a.quiet, &mut sigint).await? {
        Watched::Transferred => {
            let (state, _) = super::complete_transferred(&client, &id).await?;
            print_uploaded(ctx, &a, &client, &id, state, started).await
        }
        Watched::Acknowledged => {
            print_uploaded(ctx, &a, &client, &id, JobState::Acknowledged, started).await
        }
        Watched::Failed(job) => super::report_job_error(ctx, &client, &job).await,
        Watched::Interrupted(code) => Ok(code),
    }
}

/// Says where the file went: `uploaded FILE to URL`, or the JSON summary.
async fn print_uploaded(
    ctx: &Ctx,
    a: &UploadArgs,
    client: &Client,
    id: &str,
    state: JobState,
    started: Instant,
) -> anyhow::Result<u8> {
    let files = client
        .files(id)
        .await
        .with_context(|| format!("cannot read the file of job {id}"))?;
    let Some(f) = files.first() else {
        anyhow::bail!("job {id} has no file");
    };
    let seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    if ctx.json {
        crate::output::json(&json!({
            "job_id": id, "state": state, "local_path": f.local_path,
            "remote_url": f.remote_url, "bytes": f.bytes_transferred, "seconds": seconds
        }))?;
    } else if !a.quiet {
        outln!("uploaded {} to {}", f.local_path, f.remote_url)?;
    }
    Ok(exit_code::OK)
}
