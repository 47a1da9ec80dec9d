//! `ferry resume JOB`: prints the job's new state.

use anyhow::Context as _;

use super::Ctx;
use crate::cli::JobArg;
use crate::resolve::resolve_job;

/// Resumes the job (it runs again) and prints the new state.
pub async fn run(ctx: &Ctx, a: JobArg) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let id = resolve_job(&client, &a.job).await?;
    let r = client
        .resume(&id)
        .await
        .with_context(|| format!("job {id}"))?;
    super::print_state(ctx, &id, r.state, None)
}
