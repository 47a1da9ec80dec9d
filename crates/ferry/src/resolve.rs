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

/// One job `match_job` chooses among.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The job's id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Whether it is final (acknowledged or cancelled).
    pub finished: bool,
}

/// Picks the job `arg` names among `jobs`: a unique id prefix first, else the one unfinished
/// job with that exact display name, else the one finished job with it. Finished jobs are kept
/// for days, and a name reused since (`ferry create nightly` every night) must still address
/// tonight's job. The error lists the candidates when it is ambiguous.
pub fn match_job(arg: &str, jobs: &[Candidate]) -> Result<String, Unmatched> {
    if arg.is_empty() {
        return Err(Unmatched::NotFound(
            "an empty job name matches nothing".to_owned(),
        ));
    }
    let lower = arg.to_ascii_lowercase();
    let by_id: Vec<&Candidate> = jobs.iter().filter(|c| c.id.starts_with(&lower)).collect();
    if let [c] = by_id.as_slice() {
        return Ok(c.id.clone());
    }
    let named = |finished: bool| -> Vec<&Candidate> {
        jobs.iter()
            .filter(|c| c.name == arg && c.finished == finished)
            .collect()
    };
    let mut by_name = named(false);
    if by_name.is_empty() {
        by_name = named(true);
    }
    if let [c] = by_name.as_slice() {
        return Ok(c.id.clone());
    }
    let candidates: Vec<String> = by_id
        .iter()
        .chain(&by_name)
        .map(|c| format!("{} ({})", short_id(&c.id), c.name))
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

/// The unfinished job among `jobs` that already has `name`, if any.
pub fn name_in_use<'a>(name: &str, jobs: &'a [Candidate]) -> Option<&'a Candidate> {
    jobs.iter().find(|c| !c.finished && c.name == name)
}

/// `base`, or `base (2)`, `base (3)`, … : the first that no unfinished job has.
pub fn unique_name(base: &str, jobs: &[Candidate]) -> String {
    (1..)
        .map(|n| {
            if n == 1 {
                base.to_owned()
            } else {
                format!("{base} ({n})")
            }
        })
        .find(|name| name_in_use(name, jobs).is_none())
        .unwrap_or_else(|| base.to_owned())
}

/// The caller's unfinished jobs.
pub async fn unfinished_jobs(client: &Client) -> anyhow::Result<Vec<Job>> {
    let mut jobs = list_all(client, ListParams::default()).await?;
    jobs.retain(|j| !j.state.is_final());
    Ok(jobs)
}

/// Jobs as name-check candidates.
pub fn candidates(jobs: &[Job]) -> Vec<Candidate> {
    jobs.iter()
        .map(|j| Candidate {
            id: j.job_id.clone(),
            name: j.settings.display_name.clone(),
            finished: j.state.is_final(),
        })
        .collect()
}

/// The caller's unfinished jobs, for the name checks.
pub async fn unfinished(client: &Client) -> anyhow::Result<Vec<Candidate>> {
    Ok(candidates(&unfinished_jobs(client).await?))
}

/// Refuses to create an unfinished job whose name another unfinished job has (unless the user
/// allows it): a second one would make the name ambiguous.
pub fn check_name_free(name: &str, jobs: &[Candidate]) -> Result<(), crate::usage::UsageError> {
    match name_in_use(name, jobs) {
        None => Ok(()),
        Some(c) => Err(crate::usage::UsageError::new(format!(
            "job {} is already named {name} and not finished; address it by that name, \
             pick another name, or pass --allow-duplicate-name",
            short_id(&c.id)
        ))),
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
            .call_json::<method::JobList>(params.clone())
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
    let jobs = candidates(&list_all(client, params).await?);
    match_job(arg, &jobs).map_err(|e| match e {
        Unmatched::NotFound(_) => {
            anyhow::Error::new(crate::exit_code::Coded::not_found(e.message()))
        }
        Unmatched::Ambiguous(_) => anyhow::Error::new(crate::usage::UsageError::new(e.message())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs() -> Vec<Candidate> {
        [
            ("0a1b2c3d-0000-4000-8000-000000000001", "backup"),
            ("0a1b9999-0000-4000-8000-000000000002", "nightly"),
            ("7f000000-0000-4000-8000-000000000003", "nightly"),
            ("8e000000-0000-4000-8000-000000000004", "7f"),
        ]
        .into_iter()
        .map(|(a, b)| Candidate {
            id: a.to_owned(),
            name: b.to_owned(),
            finished: false,
        })
        .collect()
    }

    #[test]
    fn unfinished_jobs_win_a_name() {
        let mut list = jobs();
        // Last night's `nightly` is finished; tonight's is the one meant.
        list[1].finished = true;
        assert_eq!(
            match_job("nightly", &list).unwrap(),
            "7f000000-0000-4000-8000-000000000003"
        );
        // Only finished ones: the single one is found, several are ambiguous.
        list[2].finished = true;
        assert!(matches!(
            match_job("nightly", &list),
            Err(Unmatched::Ambiguous(_))
        ));
        list.remove(1);
        assert_eq!(
            match_job("nightly", &list).unwrap(),
            "7f000000-0000-4000-8000-000000000003"
        );
    }

    #[test]
    fn names_in_use() {
        let mut list = jobs();
        assert_eq!(
            name_in_use("nightly", &list).map(|c| c.id.as_str()),
            Some("0a1b9999-0000-4000-8000-000000000002")
        );
        list[1].finished = true;
        list[2].finished = true;
        assert_eq!(name_in_use("nightly", &list), None);
        assert_eq!(super::unique_name("backup", &list), "backup (2)");
        list.push(Candidate {
            id: "9".into(),
            name: "backup (2)".into(),
            finished: false,
        });
        assert_eq!(super::unique_name("backup", &list), "backup (3)");
        assert_eq!(super::unique_name("fresh", &list), "fresh");
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
