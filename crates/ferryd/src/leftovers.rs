//! Staging files a crash left behind, found and deleted when the daemon starts. Two windows
//! leave them, both on purpose, because closing them would cost every file or every cancel a
//! wait for the store:
//!
//! - a cancel records the job as cancelled before it deletes the staging files, so a crash in
//!   between leaves their paths recorded on a final job ([`discard_final_staging`]);
//! - a transfer creates a staging file before the store has committed its path, so a crash in
//!   between leaves a file no row names ([`discard_unrecorded_staging`]; staging names carry
//!   their job's id, which is how they are told from anyone else's).
//!
//! Not here: the staging files of live jobs, which their transfers reuse.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use ferry_fetch::staging;
use ferry_proto::JobState;

use crate::config::DaemonOptions;
use crate::error::DaemonError;
use crate::identity;

/// Deletes the staging files that final jobs still record, and forgets their paths.
pub async fn discard_final_staging(
    opts: &DaemonOptions,
    writer: &ferry_store::Writer,
    reader: &ferry_store::Reader,
    final_states: &[JobState],
) -> Result<(), DaemonError> {
    let mut by_job: HashMap<String, Vec<ferry_store::FileRow>> = HashMap::new();
    for (job_id, owner, mut file) in reader.staging_files_of(final_states)? {
        if let Some(temp) = file.temp_path.take() {
            discard(opts, owner, Path::new(&temp));
        }
        by_job.entry(job_id).or_default().push(file);
    }
    if by_job.is_empty() {
        return Ok(());
    }
    tracing::info!(
        jobs = by_job.len(),
        "deleted the staging files a crash left to final jobs"
    );
    drop(writer.submit(move |tx| {
        by_job
            .iter()
            .try_for_each(|(id, files)| tx.put_files(id, files))
    }));
    writer.flush().await?;
    Ok(())
}

/// After a crash: in the directories of `jobs` (id, owner: the jobs that may have been
/// transferring), deletes each job's staging files that none of its rows names.
pub fn discard_unrecorded_staging(
    opts: &DaemonOptions,
    reader: &ferry_store::Reader,
    jobs: &[(String, u32)],
) -> Result<(), DaemonError> {
    // Per job tag: its owner and the staging paths its rows name; and where its files go.
    let mut known: HashMap<String, (u32, HashSet<PathBuf>)> = HashMap::new();
    let mut dirs: BTreeSet<(u32, PathBuf)> = BTreeSet::new();
    for (job_id, owner) in jobs {
        let mut recorded = HashSet::new();
        for f in reader.files(job_id, 0, u64::MAX)? {
            if let Some(t) = f.temp_path {
                recorded.insert(PathBuf::from(t));
            }
            if let (false, Some(dir)) = (f.completed, Path::new(&f.local_path).parent()) {
                dirs.insert((*owner, dir.to_path_buf()));
            }
        }
        known.insert(staging::tag_for(job_id), (*owner, recorded));
    }
    let mut deleted = 0usize;
    for (lister, dir) in &dirs {
        // Listed as the owner of the job that wrote there: the path is theirs. A directory
        // that is gone or unreadable holds nothing to delete.
        let fs_id = identity::fs_identity(opts.mode, *lister);
        let Ok(entries) = ferry_fetch::identity::as_owner(fs_id, || {
            std::fs::read_dir(dir).map(|r| r.flatten().collect::<Vec<_>>())
        }) else {
            continue;
        };
        for entry in entries {
            let name = entry.file_name();
            let Some(tag) = name.to_str().and_then(staging::tag_of) else {
                continue;
            };
            let path = entry.path();
            if let Some((owner, recorded)) = known.get(tag)
                && !recorded.contains(&path)
            {
                discard(opts, *owner, &path);
                deleted += 1;
            }
        }
    }
    if deleted > 0 {
        tracing::info!(
            files = deleted,
            "deleted staging files a crash left before their paths were recorded"
        );
    }
    Ok(())
}

/// Deletes one leftover as its job's owner (a failure is logged, not fatal to the start).
fn discard(opts: &DaemonOptions, owner: u32, path: &Path) {
    crate::api::discard(path, identity::fs_identity(opts.mode, owner));
}
