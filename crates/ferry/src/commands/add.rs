//! `ferry add JOB URL PATH` and `ferry add JOB --from-file LIST`.

use anyhow::Context as _;
use serde_json::json;

use super::Ctx;
use crate::cli::AddArgs;
use crate::exit_code;
use crate::resolve::resolve_job;
use crate::targets;
use crate::usage::UsageError;

/// Adds the files and prints how many were added and at which index.
pub async fn run(ctx: &Ctx, a: AddArgs) -> anyhow::Result<u8> {
    // Local mistakes are reported before anything talks to the daemon.
    let cwd = super::cwd()?;
    let specs = match (&a.from_file, &a.url, &a.path) {
        (Some(list), _, _) => super::load_list(list, &cwd)?,
        (None, Some(url), Some(path)) => {
            let url = targets::parse_source(url, &cwd, |p| p.exists())?;
            let path = targets::target_for(&url, path, &cwd, |p| p.is_dir())?;
            vec![targets::spec(&url, &path, a.sha256.clone())?]
        }
        _ => return Err(UsageError::new("give URL and PATH, or --from-file LIST").into()),
    };
    targets::check_distinct(&specs)?;
    targets::check_parents(&specs, |p| p.is_dir())?;
    let client = ctx.client().await?;
    let id = resolve_job(&client, &a.job).await?;
    let r = client
        .add_files(&id, specs)
        .await
        .with_context(|| format!("cannot add files to job {id}"))?;
    if ctx.json {
        crate::output::json(
            &json!({"job_id": id, "first_index": r.first_index, "count": r.count}),
        )?;
    } else {
        let s = if r.count == 1 { "" } else { "s" };
        outln!(
            "added {} file{s} to job {id} (from index {})",
            r.count,
            r.first_index
        )?;
    }
    Ok(exit_code::OK)
}
