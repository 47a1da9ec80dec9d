//! Addressing jobs on the command line: an id, a unique id prefix, or a unique display name.

use anyhow::Context as _;
use ferry_client::Client;
use ferry_client::proto::params::ListParams;
use ferry_client::proto::{Job, method};
use serde_json::Value;

use crate::output::short_id;

/// Whether `s` has the shape of a UUID (8-4-4-4-12 hex digits), i.e. is a full job id.
pub fn is_full_id(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Picks the job `arg` names among `jobs` (`(id, display name)` pairs): a unique id prefix
/// first, else a unique exact display name. The error lists the candidates when it is ambiguous.
pub fn match_job(arg: &str, jobs: &[(String, String)]) -> Result<String, Unmatched> {
    if arg.is_empty() {
        return Err(Unmatched::NotFound(
            "an empty job name matches nothing".to_owned(),
        ));
    }
    let lower = arg.to_ascii_lowercase();
    let by_id: Vec<&(String, String)> = jobs
        .iter()
        .filter(|(id, _)| id.starts_with(&lower))
        .collect();
    if let [(id, _)] = by_id.as_slice() {
        return Ok(id.clone());
    }
    let by_name: Vec<&(String, String)> = jobs.iter().filter(|(_, name)| name == arg).collect();
    if let [(id, _)] = by_name.as_slice() {
        return Ok(id.clone());
    }
    let candidates: Vec<String> = by_id
        .iter()
        .chain(&by_name)
        .map(|(id, name)| format!("{} ({name})", short_id(id)))
        .collect();
    if candidates.is_empty() {
        Err(Unmatched::NotFound(format!(
            "no job matches {arg} (see `ferry list --all`)"
        )))
    } else {
        Err(Unmatched::Ambiguous(format!(
            "{arg} is ambiguous: it matches {}; give more of the id",
            candidates.join(", ")
        )))
    }
}

/// Why a job argument named no single job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmatched {
    /// Nothing matches.
    NotFound(String),
    /// Several jobs match.
    Ambiguous(String),
}

impl Unmatched {
    /// The message for the user.
    pub fn message(&self) -> &str {
        match self {
            Unmatched::NotFound(m) | Unmatched::Ambiguous(m) => m,
        }
    }
}

/// Every job `params` selects, as the daemon sent them, following `next` to the last page.
pub async fn list_all_raw(client: &Client, mut params: ListParams) -> anyhow::Result<Vec<Value>> {
    let mut jobs = Vec::new();
    loop {
        let page: Value = client
            .call(method::JOB_LIST, &params)
            .await
            .context("cannot list jobs")?;
        if let Some(list) = page.get("jobs").and_then(Value::as_array) {
            jobs.extend(list.iter().cloned());
        }
        match page.get("next").and_then(Value::as_str) {
            // A cursor that does not move would loop forever; the daemon would be at fault.
            Some(next) if params.after.as_deref() != Some(next) => {
                params.after = Some(next.to_owned());
            }
            _ => return Ok(jobs),
        }
    }
}

/// Every job `params` selects, decoded.
pub async fn list_all(client: &Client, params: ListParams) -> anyhow::Result<Vec<Job>> {
    list_all_raw(client, params)
        .await?
        .into_iter()
        .map(|v| serde_json::from_value(v).context("unexpected job object from ferryd"))
        .collect()
}

/// The id of the job `arg` names: a full id as it is, else a match among the caller's jobs
/// (final ones included, so a finished job can still be inspected).
pub async fn resolve_job(client: &Client, arg: &str) -> anyhow::Result<String> {
    if is_full_id(arg) {
        return Ok(arg.to_ascii_lowercase());
    }
    let params = ListParams {
        include_final: Some(true),
        ..ListParams::default()
    };
    let jobs: Vec<(String, String)> = list_all(client, params)
        .await?
        .into_iter()
        .map(|j| (j.job_id, j.display_name))
        .collect();
    match_job(arg, &jobs).map_err(|e| match e {
        Unmatched::NotFound(_) => {
            anyhow::Error::new(crate::exit_code::NotFound(e.message().to_owned()))
        }
        Unmatched::Ambiguous(_) => anyhow::Error::new(crate::usage::UsageError::new(e.message())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs() -> Vec<(String, String)> {
        [
            ("0a1b2c3d-0000-4000-8000-000000000001", "backup"),
            ("0a1b9999-0000-4000-8000-000000000002", "nightly"),
            ("7f000000-0000-4000-8000-000000000003", "nightly"),
            ("8e000000-0000-4000-8000-000000000004", "7f"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
    }

    #[test]
    fn full_ids() {
        assert!(is_full_id("0a1b2c3d-0000-4000-8000-000000000001"));
        assert!(is_full_id("0A1B2C3D-0000-4000-8000-000000000001"));
        assert!(!is_full_id("0a1b2c3d"));
        assert!(!is_full_id("0a1b2c3d-0000-4000-8000-00000000000g"));
    }

    #[test]
    fn unique_prefix_wins() {
        assert_eq!(
            match_job("0a1b2", &jobs()).unwrap(),
            "0a1b2c3d-0000-4000-8000-000000000001"
        );
        assert_eq!(
            match_job("0A1B9", &jobs()).unwrap(),
            "0a1b9999-0000-4000-8000-000000000002"
        );
        // An id prefix beats a display name that happens to look like one.
        assert_eq!(
            match_job("7f", &jobs()).unwrap(),
            "7f000000-0000-4000-8000-000000000003"
        );
    }

    #[test]
    fn unique_name() {
        assert_eq!(
            match_job("backup", &jobs()).unwrap(),
            "0a1b2c3d-0000-4000-8000-000000000001"
        );
    }

    #[test]
    fn ambiguity_lists_candidates() {
        let e = match_job("0a1b", &jobs()).unwrap_err();
        assert!(matches!(e, Unmatched::Ambiguous(_)));
        let e = e.message();
        assert!(
            e.contains("0a1b2c3d (backup)") && e.contains("0a1b9999 (nightly)"),
            "{e}"
        );
        let e = match_job("nightly", &jobs()).unwrap_err();
        let e = e.message();
        assert!(e.contains("ambiguous"), "{e}");
    }

    #[test]
    fn nothing_matches() {
        let e = match_job("zzz", &jobs()).unwrap_err();
        assert!(matches!(e, Unmatched::NotFound(_)));
        assert!(e.message().starts_with("no job matches zzz"));
        assert!(match_job("", &jobs()).is_err());
    }
}
