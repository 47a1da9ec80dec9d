//! `ferry validate JOB FILE_INDEX --valid|--invalid`: the application's verdict on a
//! transferred file (`file.set_validation_state`, BITS `SetValidationState`).

use anyhow::Context as _;
use ferry_client::proto::params::ValidationParams;
use ferry_client::proto::{File, method};
use serde_json::Value;

use super::Ctx;
use crate::cli::ValidateArgs;
use crate::exit_code;
use crate::resolve::resolve_job;

/// Sets the verdict and prints the file's validation state (`--json`: the daemon's file).
pub async fn run(ctx: &Ctx, a: ValidateArgs) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let id = resolve_job(&client, &a.job).await?;
    let raw: Value = client
        .call_json::<method::FileSetValidationState>(ValidationParams {
            job_id: id.clone(),
            file_index: a.file_index,
            valid: a.valid,
        })
        .await
        .with_context(|| format!("cannot validate file {} of job {id}", a.file_index))?;
    if ctx.json {
        crate::output::json(&raw)?;
    } else {
        let file: File =
            serde_json::from_value(raw).context("unexpected file object from ferryd")?;
        outln!("file {}: {}", file.file_index, file.validation.as_str())?;
    }
    if a.invalid {
        errln!(
            "ferry: a rejected file from the origin server fails job {id} (VALIDATION_FAILED); `ferry resume {id}` fetches it again"
        );
    }
    Ok(exit_code::OK)
}
