//! `ferry set-url JOB FILE_INDEX URL`: replaces the URL of a file not transferred yet
//! (`file.set_remote_url`, BITS `SetRemoteName`), e.g. a presigned URL that expired mid-job.

use anyhow::Context as _;
use ferry_client::proto::params::SetRemoteUrlParams;
use ferry_client::proto::{File, method};
use serde_json::Value;

use super::Ctx;
use crate::cli::SetUrlArgs;
use crate::exit_code;
use crate::resolve::resolve_job;

/// Replaces the URL and prints the file's index and kept bytes (`--json`: the daemon's file).
pub async fn run(ctx: &Ctx, a: SetUrlArgs) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let id = resolve_job(&client, &a.job).await?;
    let raw: Value = client
        .call_json::<method::FileSetRemoteUrl>(SetRemoteUrlParams {
            job_id: id.clone(),
            file_index: a.file_index,
            remote_url: a.url,
        })
        .await
        .with_context(|| {
            format!(
                "cannot replace the URL of file {} of job {id}",
                a.file_index
            )
        })?;
    if ctx.json {
        crate::output::json(&raw)?;
    } else {
        let file: File =
            serde_json::from_value(raw).context("unexpected file object from ferryd")?;
        outln!(
            "file {}: {} ({} bytes kept if it serves the same content)",
            file.file_index,
            file.remote_url,
            file.bytes_transferred
        )?;
    }
    Ok(exit_code::OK)
}
