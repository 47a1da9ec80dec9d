//! `ferry clean`: cancels the caller's failed jobs, which otherwise keep their partial files
//! (and the disk space they hold) for as long as they are kept.

use anyhow::Context as _;
use ferry_client::proto::JobState;
use ferry_client::proto::params::ListParams;
use serde_json::json;

use super::Ctx;
use crate::exit_code;
use crate::output::short_id;
use crate::resolve::list_all;

/// Cancels every job in `error` and prints what it removed.
pub async fn run(ctx: &Ctx) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let failed = list_all(
        &client,
        ListParams {
            states: Some(vec![JobState::Error]),
            ..ListParams::default()
        },
    )
    .await?;
    let mut cancelled = Vec::new();
    for job in &failed {
        client
            .cancel(&job.job_id)
            .await
            .with_context(|| format!("cannot cancel failed job {}", job.job_id))?;
        cancelled.push(job.job_id.clone());
    }
    if ctx.json {
        crate::output::json(&json!({ "cancelled": cancelled }))?;
    } else if cancelled.is_empty() {
        outln!("no failed jobs")?;
    } else {
        for job in &failed {
            outln!(
                "cancelled {} ({})",
                short_id(&job.job_id),
                job.settings.display_name
            )?;
        }
    }
    Ok(exit_code::OK)
}
