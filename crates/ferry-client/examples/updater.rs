//! `updater URL DEST_DIR`: download in the background, then let ferryd wake us up to finish.
//!
//! The first run registers this program as the handler `ferry-example-updater`, creates a job
//! that names it, prints the job id and exits. When the file has arrived (or the job failed),
//! ferryd starts the program again with `FERRY_ACTIVATION` set; it then validates each file,
//! completes the job (or cancels it on error) and exits once idle. A handler runs without a
//! terminal, so what it does is also appended to `DEST_DIR/ferry-example-updater.log`.

use std::error::Error;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use ferry_client::proto::params::{CreateParams, SetParams};
use ferry_client::proto::{ErrorInfo, File, FileSpec, Job, NotifyFlags};
use ferry_client::{Callback, CallbackContext, CallbackError, CallbackFuture, Client, handler};

const HANDLER: &str = "ferry-example-updater";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if handler::activated() {
        // Started by ferryd: serve the notifications that are due, then exit.
        handler::serve(Arc::new(Updater)).await?;
        return Ok(());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, dest_dir] = args.as_slice() else {
        return Err("usage: updater URL DEST_DIR".into());
    };
    // ferryd wants absolute paths: for the handler program and for the destination.
    let dest_dir = std::fs::canonicalize(dest_dir)?;
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("download");
    let exe = std::env::current_exe()?.to_string_lossy().into_owned();

    let client = Client::connect().await?;
    client.register_handler(HANDLER, vec![exe], None).await?;
    let job_id = client
        .create(CreateParams {
            display_name: format!("{HANDLER}: {name}"),
            ..CreateParams::default()
        })
        .await?;
    client
        .set(SetParams {
            job_id: job_id.clone(),
            notify_handler: Some(Some(HANDLER.into())),
            notify_flags: Some(
                NotifyFlags::JOB_TRANSFERRED
                    | NotifyFlags::JOB_ERROR
                    | NotifyFlags::FILE_TRANSFERRED,
            ),
            ..SetParams::default()
        })
        .await?;
    let local_path = dest_dir.join(name).to_string_lossy().into_owned();
    let file = FileSpec {
        remote_url: url.clone(),
        local_path,
        sha256: None,
        ranges: None,
    };
    client.add_files(&job_id, vec![file]).await?;
    client.resume(&job_id).await?;
    println!("{job_id}");
    Ok(())
}

/// What the handler does with each notification.
struct Updater;

impl Callback for Updater {
    fn file_transferred(&self, ctx: CallbackContext, job: Job, file: File) -> CallbackFuture {
        Box::pin(async move {
            // ferryd already checked `sha256` when the job had one; this is the application's
            // own check of the staged content (here: it is not empty).
            let staged = file.temporary_path.as_deref().unwrap_or(&file.local_path);
            let valid = tokio::fs::metadata(staged).await.is_ok_and(|m| m.len() > 0);
            ctx.client
                .set_validation(&job.job_id, file.file_index, valid)
                .await?;
            log(
                &file.local_path,
                &format!(
                    "job {}: file {} valid: {valid}",
                    job.job_id, file.file_index
                ),
            );
            Ok(())
        })
    }

    fn job_transferred(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
        Box::pin(async move {
            ctx.client.complete(&job.job_id).await?;
            for f in ctx.client.files(&job.job_id).await? {
                log(
                    &f.local_path,
                    &format!("job {}: delivered {}", job.job_id, f.local_path),
                );
            }
            Ok(())
        })
    }

    fn job_error(&self, ctx: CallbackContext, job: Job, error: ErrorInfo) -> CallbackFuture {
        Box::pin(async move {
            let files = ctx.client.files(&job.job_id).await?;
            let first = files
                .first()
                .ok_or_else(|| CallbackError::new("the job has no files"))?;
            let text = format!(
                "job {} failed: {} ({}); cancelling",
                job.job_id, error.description, error.code
            );
            log(&first.local_path, &text);
            ctx.client.cancel(&job.job_id).await?;
            Ok(())
        })
    }
}

/// Writes a line to stderr and appends it to the log next to `path`.
fn log(path: &str, line: &str) {
    eprintln!("{line}");
    let Some(dir) = Path::new(path).parent() else {
        return;
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{HANDLER}.log")));
    if let Ok(mut f) = file {
        let _ = writeln!(f, "{line}");
    }
}
