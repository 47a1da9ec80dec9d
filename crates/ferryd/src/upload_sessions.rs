//! Server-side uploads that outlive their job: a cancelled upload job's BITS session or tus
//! upload is cancelled on the server (Cancel-Session, DELETE) after the cancel is durable, and
//! forgotten once the server confirmed; one a crash or an unreachable server left recorded is
//! tried again at the next start. Nothing lands, and no session waits for the server's expiry.

use std::sync::Arc;

use ferry_fetch::FetchErrorKind;
use ferry_send::{ServerState, Target};
use ferry_store::{FileRow, JobRow};

use crate::daemon::Daemon;

/// The server-side uploads of a cancelled job: what `abandon` needs for each.
pub struct Abandon {
    /// The job.
    pub job_id: String,
    /// The file rows whose sessions to cancel.
    pub files: Vec<FileRow>,
    /// The job's headers and credentials as they were before the cancel erased them.
    pub headers: Vec<(String, String)>,
    /// Basic-auth user and password.
    pub basic_auth: Option<(String, String)>,
}

impl Abandon {
    /// What to abandon of the job `row` (read before the cancel erased its secrets): the
    /// files are filled in once they are read.
    pub fn of(row: &JobRow) -> Abandon {
        Abandon {
            job_id: row.id.clone(),
            files: Vec::new(),
            headers: row
                .settings
                .custom_headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            basic_auth: row
                .settings
                .credentials
                .as_ref()
                .map(|c| (c.user.clone(), c.password.clone())),
        }
    }
}

/// Cancels the server-side uploads of a cancelled job (BITS Cancel-Session, tus DELETE) in
/// the background, then forgets them in the store. One that fails stays recorded; the next
/// start tries again.
pub fn spawn_abandon(d: &Arc<Daemon>, a: Abandon) {
    let d = d.clone();
    tokio::spawn(async move {
        let mut done = Vec::new();
        for mut f in a.files {
            let Some(state) = f
                .upload_session
                .clone()
                .and_then(|v| serde_json::from_value::<ServerState>(v).ok())
            else {
                continue;
            };
            let target = Target {
                url: f.remote_url.clone(),
                headers: a.headers.clone(),
                basic_auth: a.basic_auth.clone(),
            };
            match d.sender().abandon(&target, &state).await {
                Ok(()) => {
                    f.upload_session = None;
                    done.push(f);
                }
                Err(e) if e.kind == FetchErrorKind::InvalidRequest => {
                    // A state that can never be cancelled (a bad URL) is forgotten too.
                    f.upload_session = None;
                    done.push(f);
                }
                Err(e) => tracing::warn!(job = %a.job_id, error = %e,
                    "could not cancel the upload on the server; the next start tries again"),
            }
        }
        if !done.is_empty() {
            let id = a.job_id.clone();
            if let Err(e) = d
                .store()
                .submit(move |tx| tx.put_files(&id, &done))
                .wait()
                .await
            {
                tracing::warn!(job = %a.job_id, error = %e, "could not record the cancelled upload");
            }
        }
    });
}

/// At start: the server-side uploads that cancelled jobs still record (a crash came between
/// the cancel and the server-side cancel) are cancelled now. Their credentials are gone with
/// the cancel, so a server that wants them keeps the upload until it expires it.
pub fn abandon_leftovers(d: &Arc<Daemon>) {
    let rows = match d
        .reader()
        .upload_sessions_of(&[ferry_proto::JobState::Cancelled])
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the upload sessions of cancelled jobs");
            return;
        }
    };
    let mut by_job: std::collections::BTreeMap<String, Vec<FileRow>> = Default::default();
    for (job_id, _, f) in rows {
        by_job.entry(job_id).or_default().push(f);
    }
    for (job_id, files) in by_job {
        spawn_abandon(
            d,
            Abandon {
                job_id,
                files,
                headers: Vec::new(),
                basic_auth: None,
            },
        );
    }
}
