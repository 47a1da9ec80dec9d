//! `ferry files JOB`: a table of the job's files (`--json`: the daemon's `{files}` answer).

use anyhow::Context as _;
use ferry_client::proto::params::FilesParams;
use ferry_client::proto::{File, method};
use serde_json::Value;

use super::Ctx;
use crate::cli::JobArg;
use crate::exit_code;
use crate::output;
use crate::resolve::resolve_job;

/// Prints the job's files.
pub async fn run(ctx: &Ctx, a: JobArg) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let id = resolve_job(&client, &a.job).await?;
    let raw: Value = client
        .call_json::<method::JobFiles>(FilesParams {
            job_id: id.clone(),
            ..FilesParams::default()
        })
        .await
        .with_context(|| format!("cannot read the files of job {id}"))?;
    if ctx.json {
        output::json(&raw)?;
        return Ok(exit_code::OK);
    }
    let files: Vec<File> = serde_json::from_value(raw.get("files").cloned().unwrap_or_default())
        .context("unexpected file list from ferryd")?;
    let rows: Vec<Vec<String>> = files.iter().map(output::file_row).collect();
    outln!(
        "{}",
        output::table(&["#", "STATUS", "BYTES", "URL", "PATH"], &rows)
    )?;
    Ok(exit_code::OK)
}
