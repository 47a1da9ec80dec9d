//! `ferry create NAME`: a new, empty, suspended job; prints its id.

use anyhow::Context as _;
use ferry_client::proto::params::CreateParams;
use serde_json::json;

use super::Ctx;
use crate::cli::CreateArgs;
use crate::exit_code;

/// Creates the job and prints its id (`{"job_id"}` with `--json`).
pub async fn run(ctx: &Ctx, a: CreateArgs) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    if !a.allow_duplicate_name {
        crate::resolve::check_name_free(&a.name, &crate::resolve::unfinished(&client).await?)?;
    }
    let id = client
        .create(CreateParams {
            display_name: a.name,
            job_type: a.job_type,
            priority: a.priority,
            description: a.description,
            files: None,
            ..CreateParams::default()
        })
        .await
        .context("cannot create the job")?;
    if ctx.json {
        crate::output::json(&json!({ "job_id": id }))?;
    } else {
        outln!("{id}")?;
    }
    Ok(exit_code::OK)
}
