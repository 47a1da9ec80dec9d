//! `ferry info JOB`: the job's properties (`--json`: the daemon's job object as it is).

use super::Ctx;
use crate::cli::JobArg;
use crate::exit_code;
use crate::resolve::resolve_job;

/// Prints the job.
pub async fn run(ctx: &Ctx, a: JobArg) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let id = resolve_job(&client, &a.job).await?;
    let (raw, job) = super::get_job_raw(&client, &id).await?;
    super::show_job(ctx, &raw, &job)?;
    Ok(exit_code::OK)
}
