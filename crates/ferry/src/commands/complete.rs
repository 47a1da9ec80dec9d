//! `ferry complete JOB`: hands the transferred files over; prints the new state.

use anyhow::Context as _;

use super::Ctx;
use crate::cli::JobArg;
use crate::resolve::resolve_job;

/// Completes the job and prints the new state, noting when files were dropped.
pub async fn run(ctx: &Ctx, a: JobArg) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let id = resolve_job(&client, &a.job).await?;
    let r = client
        .complete(&id)
        .await
        .with_context(|| format!("job {id}"))?;
    super::print_state(ctx, &id, r.state, Some(r.partial))
}
