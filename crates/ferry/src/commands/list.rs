//! `ferry list`: the caller's jobs (or everyone's, for root) as a table or `{"jobs": [...]}`.

use ferry_client::proto::params::ListParams;
use serde_json::json;

use super::Ctx;
use crate::cli::ListArgs;
use crate::exit_code;
use crate::output;
use crate::resolve::list_all_raw;

/// Prints every matching job, following pagination to the end.
pub async fn run(ctx: &Ctx, a: ListArgs) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let params = ListParams {
        all_users: a.all_users.then_some(true),
        states: (!a.states.is_empty()).then_some(a.states),
        include_final: a.all.then_some(true),
        after: None,
        limit: None,
    };
    let raw = list_all_raw(&client, params).await?;
    if ctx.json {
        output::json(&json!({ "jobs": raw }))?;
        return Ok(exit_code::OK);
    }
    let rows = raw
        .iter()
        .map(|v| super::decode_job(v).map(|j| output::job_row(&j)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    outln!(
        "{}",
        output::table(
            &["ID", "STATE", "PRIORITY", "BYTES", "FILES", "NAME"],
            &rows
        )
    )?;
    Ok(exit_code::OK)
}
