//! `ferry complete JOB`: hands the transferred files over; prints the new state.
//!
//! Completing drops every file that is not transferred, so the CLI refuses that unless
//! `--partial` says it is meant.

use anyhow::Context as _;
use ferry_client::proto::File;

use super::Ctx;
use crate::cli::CompleteArgs;
use crate::resolve::resolve_job;
use crate::usage::UsageError;

/// Completes the job and prints the new state, noting when files were dropped.
pub async fn run(ctx: &Ctx, a: CompleteArgs) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let id = resolve_job(&client, &a.job).await?;
    if !a.partial {
        let files = client
            .files(&id)
            .await
            .with_context(|| format!("cannot read the files of job {id}"))?;
        if let Some(why) = untransferred(&id, &files) {
            return Err(UsageError::new(why).into());
        }
    }
    let r = client
        .complete(&id)
        .await
        .with_context(|| format!("job {id}"))?;
    super::print_state(ctx, &id, r.state, Some(r.partial))
}

/// Why completing now would lose files (`None`: every file is transferred or handed over).
pub fn untransferred(id: &str, files: &[File]) -> Option<String> {
    let missing: Vec<&File> = files
        .iter()
        .filter(|f| !f.transferred && !f.completed)
        .collect();
    let first = missing.first()?;
    let more = match missing.len() {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    };
    Some(format!(
        "job {id} has {} of {} files not transferred ({}{more}); completing it now would drop them: \
         wait for them (`ferry wait {id} --complete`), or pass --partial to keep only the transferred ones",
        missing.len(),
        files.len(),
        first.local_path
    ))
}
