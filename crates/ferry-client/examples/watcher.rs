//! `watcher JOB_ID`: print a job's live callbacks and its events until it is final or Ctrl-C.
//!
//! The watcher becomes the job's live callback (`job.set_notify_interface`), so while it runs
//! it receives the notifications the job's `notify_flags` select (and acknowledges them: a
//! `job_transferred` it answers is not also sent to the job's handler or command line). On the
//! same connection it follows the job's event log.

use std::error::Error;
use std::sync::Arc;

use ferry_client::proto::params::EventsFollowParams;
use ferry_client::proto::{ErrorInfo, EventKind, File, FileRange, Job};
use ferry_client::{Callback, CallbackContext, CallbackFuture, Client, callback::acknowledge};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let Some(job_id) = std::env::args().nth(1) else {
        return Err("usage: watcher JOB_ID".into());
    };
    let client = Client::connect().await?;
    client
        .follow_events(EventsFollowParams {
            after: None,
            job_id: Some(job_id.clone()),
        })
        .await?;
    // Read after following, so a change in between still arrives as an event.
    let job = client.get(&job_id).await?;
    println!("job {job_id}: {}", summary(&job));
    if job.state.is_final() {
        return Ok(());
    }
    client
        .set_notify_interface(&job_id, Arc::new(Printer))
        .await?;
    loop {
        tokio::select! {
            event = client.next_event() => {
                let Some(event) = event else { break };
                println!("event {} {}: {:?}", event.seq, event.kind.name(), event.kind);
                if matches!(event.kind, EventKind::State { to, .. } if to.is_final()) {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // A final job cannot be changed any more, so clearing may be refused; that is fine.
    let _ = client.clear_notify_interface(&job_id).await;
    Ok(())
}

/// State and progress of a job in a few words.
fn summary(job: &Job) -> String {
    let p = &job.progress;
    let total = p
        .bytes_total
        .map_or_else(|| "?".to_owned(), |t| t.to_string());
    format!(
        "{}, {}/{total} bytes, {}/{} files",
        job.state, p.bytes_transferred, p.files_transferred, p.files_total
    )
}

/// Prints every callback and acknowledges it.
struct Printer;

impl Printer {
    fn print(kind: &str, ctx: &CallbackContext, job: &Job, extra: String) -> CallbackFuture {
        println!(
            "callback {kind} [{}]: {}{extra}",
            ctx.delivery_id,
            summary(job)
        );
        acknowledge()
    }
}

impl Callback for Printer {
    fn job_transferred(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
        Printer::print("job_transferred", &ctx, &job, String::new())
    }

    fn job_error(&self, ctx: CallbackContext, job: Job, error: ErrorInfo) -> CallbackFuture {
        Printer::print(
            "job_error",
            &ctx,
            &job,
            format!("; {}: {}", error.code, error.description),
        )
    }

    fn job_modification(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
        Printer::print("job_modification", &ctx, &job, String::new())
    }

    fn file_transferred(&self, ctx: CallbackContext, job: Job, file: File) -> CallbackFuture {
        Printer::print(
            "file_transferred",
            &ctx,
            &job,
            format!("; file {} {}", file.file_index, file.local_path),
        )
    }

    fn file_ranges_transferred(
        &self,
        ctx: CallbackContext,
        job: Job,
        file: File,
        ranges: Vec<FileRange>,
    ) -> CallbackFuture {
        Printer::print(
            "file_ranges_transferred",
            &ctx,
            &job,
            format!("; file {}: {} ranges", file.file_index, ranges.len()),
        )
    }
}
