//! `file.set_remote_url`, and checking a `FileSpec` before it joins a job: path shape, URL scheme, ranges (BITS
//! `AddFileWithRanges` rules), destination directory and whether the job's owner may write there.
//!
//! [`check`] looks at the request alone. [`check_on_disk`] looks at the file system, and only
//! as the job's owner (off the runtime threads, `ferry_fetch::safe_open::blocking`): what it
//! answers about a path is what the owner could learn by looking themselves. A destination
//! directory the owner cannot reach gets one answer whether it is missing, is not a directory
//! or lies behind a directory the owner may not search; a ranged `file://` source is measured
//! only when the owner can reach and read it, so its size is never revealed otherwise.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use ferry_core::range::{self, RangesError};
use ferry_core::state::{self, Operation, Trigger};
use ferry_proto::params::SetRemoteUrlParams;
use ferry_proto::{ErrorKind, FileRange, FileSpec, JobState, ProtoError};
use ferry_store::FileRow;

use super::{Answer, ApiResult};
use crate::config::Limits;
use crate::daemon::{Caller, Daemon, refusal, refused};
use ferry_proto::method;

/// Validates one file spec (index `i` in the request) and turns it into a new file row.
pub fn check(
    spec: &FileSpec,
    i: usize,
    index: u64,
    limits: &Limits,
) -> Result<FileRow, ProtoError> {
    let field = |f: &str| format!("files[{i}].{f}");
    check_url(&spec.remote_url, &field("remote_url"))?;
    let local = Path::new(&spec.local_path);
    if spec.local_path.contains('\0') {
        return Err(ProtoError::invalid_params(
            &field("local_path"),
            format!(
                "local_path {:?} contains a NUL byte, which no path may hold",
                spec.local_path
            ),
        ));
    }
    if !local.is_absolute() {
        return Err(ProtoError::invalid_params(
            &field("local_path"),
            format!("local_path {:?} must be an absolute path", spec.local_path),
        ));
    }
    if spec.local_path.ends_with('/') || local.file_name().is_none() {
        return Err(ProtoError::invalid_params(
            &field("local_path"),
            format!(
                "local_path {:?} names a directory, not a file",
                spec.local_path
            ),
        ));
    }
    let sha256 = match &spec.sha256 {
        None => None,
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(h.to_ascii_lowercase())
        }
        Some(h) => {
            return Err(ProtoError::invalid_params(
                &field("sha256"),
                format!("sha256 {h:?} is not 64 hexadecimal digits"),
            ));
        }
    };
    if let Some(ranges) = &spec.ranges {
        if ranges.len() as u64 > limits.ranges_per_file {
            return Err(crate::limits::exceeded(
                "ranges_per_file",
                limits.ranges_per_file,
                format!("{} has {} ranges", field("ranges"), ranges.len()),
            ));
        }
        range::check_ranges(ranges).map_err(|e| ranges_error(&field("ranges"), &e))?;
    }
    Ok(FileRow {
        file_index: index,
        remote_url: spec.remote_url.clone(),
        local_path: spec.local_path.clone(),
        sha256,
        ranges: spec.ranges.clone(),
        // Fully bounded ranges: the file's size (the concatenation) is known now; an
        // open-ended range waits for the server's size.
        bytes_total: spec.ranges.as_deref().and_then(range::output_len),
        ..FileRow::default()
    })
}

/// Checks a file's URL (`field` names it in the error): it parses, its scheme is http, https
/// (with a host) or file (naming a local path).
pub fn check_url(remote_url: &str, field: &str) -> Result<(), ProtoError> {
    let url = url::Url::parse(remote_url).map_err(|e| {
        ProtoError::invalid_params(
            field,
            format!("remote_url {remote_url:?} is not a valid URL: {e}"),
        )
    })?;
    match url.scheme() {
        "http" | "https" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(ProtoError::invalid_params(
                    field,
                    format!("remote_url {remote_url:?} has no host"),
                ));
            }
        }
        "file" => {
            // A NUL byte (`%00`), or a host other than this one, names no local file.
            if let Err(e) = ferry_fetch::file_url_path(&url) {
                return Err(ProtoError::invalid_params(
                    field,
                    format!("remote_url: {}", e.description),
                ));
            }
        }
        other => {
            return Err(ProtoError::kind(
                ErrorKind::Unsupported,
                format!(
                    "the URL scheme {other:?} of {remote_url:?} is not supported; use http, https or file"
                ),
            )
            .with("field", field.to_owned()));
        }
    }
    Ok(())
}

/// `file.set_remote_url` (BITS `SetRemoteName`): the file's URL is replaced, its bytes and
/// validator kept. The next fetch asks the new URL for the rest with `If-Range`, so the bytes
/// survive only when it serves the same content; otherwise the fetch starts from zero. A
/// running transfer is stopped first (it checkpoints) and the job requeued, so no task keeps
/// fetching from the old URL.
pub async fn set_remote_url(
    d: &Arc<Daemon>,
    c: &Caller,
    p: SetRemoteUrlParams,
) -> ApiResult<method::FileSetRemoteUrl> {
    check_url(&p.remote_url, "remote_url")?;
    let what = "replace the URL of a file";
    d.load_existing(&p.job_id).await?;
    {
        let mut inner = d.lock();
        let e = Daemon::owned(&mut inner, c, &p.job_id)?;
        state::check(e.row.state, Operation::SetProperty).map_err(|r| refusal(what, r))?;
    }
    // Refused before anything stops, then checked again once the transfer has stopped (the
    // file may have finished meanwhile).
    not_transferred(&one_file(d, &p.job_id, p.file_index).await?)?;
    let _hold = d.hold(&p.job_id);
    d.stop_transfer(&p.job_id).await;
    let mut file = one_file(d, &p.job_id, p.file_index).await?;
    not_transferred(&file)?;
    file.remote_url = p.remote_url;
    let mut inner = d.lock();
    let e = Daemon::owned(&mut inner, c, &p.job_id)?;
    let state = e.row.state;
    state::check(state, Operation::SetProperty).map_err(|r| refusal(what, r))?;
    let id = p.job_id.clone();
    let f = file.clone();
    let mut commit = d.store().submit(move |tx| tx.put_files(&id, &[f]));
    if matches!(state, JobState::Connecting | JobState::Transferring) {
        // The stopped transfer goes back to the queue and restarts with the new URL.
        let (_, c) = d
            .transition(&mut inner, &p.job_id, Trigger::Preempt, |_| {})
            .map_err(|e| refused(what, &p.job_id, e))?;
        commit = c;
    }
    drop(inner);
    d.wake().notify_one();
    Answer::after(super::jobs::file_view(file), commit)
}

/// The job's file `index`, or `-32602` naming `file_index`.
async fn one_file(d: &Arc<Daemon>, job_id: &str, index: u64) -> Result<FileRow, ProtoError> {
    d.read_files(job_id, index, 1)
        .await?
        .into_iter()
        .find(|f| f.file_index == index)
        .ok_or_else(|| {
            ProtoError::invalid_params("file_index", format!("the job has no file {index}"))
        })
}

/// A transferred file keeps its URL (BITS refuses `SetRemoteName` then too).
fn not_transferred(file: &FileRow) -> Result<(), ProtoError> {
    if file.transferred {
        return Err(ProtoError::kind(
            ErrorKind::InvalidState,
            format!(
                "file {} is already transferred, so its URL can no longer be replaced",
                file.file_index
            ),
        )
        .with("file_index", file.file_index)
        .with("bits", "BG_E_INVALID_STATE"));
    }
    Ok(())
}

/// The file-system checks of new file rows (`rows[i]` is `files[i]` of the request): the
/// destination is not a directory, its directory exists and the owner may write there, and a
/// ranged `file://` source holds its ranges. Run it as the owner (see the module doc).
pub fn check_on_disk(rows: &[FileRow], owner: &Caller) -> Result<(), ProtoError> {
    let mut usable = std::collections::HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let field = |f: &str| format!("files[{i}].{f}");
        if let Some(ranges) = &row.ranges {
            check_source_size(&row.remote_url, ranges, owner)
                .map_err(|e| ranges_error(&field("ranges"), &e))?;
        }
        let local = Path::new(&row.local_path);
        if std::fs::metadata(local).is_ok_and(|m| m.is_dir()) {
            return Err(ProtoError::invalid_params(
                &field("local_path"),
                format!("local_path {:?} is an existing directory", row.local_path),
            ));
        }
        let dir = local.parent().unwrap_or(Path::new("/"));
        if !usable.contains(dir) {
            check_dir(dir, owner)?;
            usable.insert(dir);
        }
    }
    Ok(())
}

/// The end of a `file://` source, whose size is known now (checked only when the owner may
/// read the file: the answer must not reveal the size of a file they cannot read).
fn check_source_size(url: &str, ranges: &[FileRange], owner: &Caller) -> Result<(), RangesError> {
    if let Ok(url) = url::Url::parse(url)
        && url.scheme() == "file"
        && let Ok(path) = url.to_file_path()
        && let Ok(meta) = std::fs::metadata(&path)
        && meta.is_file()
        && may_read(&meta, owner)
    {
        range::check_within(ranges, meta.len())?;
    }
    Ok(())
}

/// `-32602` naming `files[i].ranges`, with the BITS error name where there is one.
fn ranges_error(field: &str, e: &RangesError) -> ProtoError {
    let err = ProtoError::invalid_params(field, format!("{field}: {e}"));
    match e {
        RangesError::Overlapping { .. } => err.with("bits", "BG_E_OVERLAPPING_RANGES"),
        RangesError::BeyondEnd { .. } => err.with("bits", "BG_E_INVALID_RANGE"),
        RangesError::Empty | RangesError::ZeroLength { .. } | RangesError::Overflow { .. } => err,
    }
}

/// The destination directory must exist and be writable by the job's owner. Whether it is
/// missing, not a directory or out of the owner's reach, the answer is the same: telling them
/// apart would reveal what lies in directories the owner may not search.
pub fn check_dir(dir: &Path, owner: &Caller) -> Result<(), ProtoError> {
    let unusable = || {
        ProtoError::kind(
            ErrorKind::LocalIo,
            format!(
                "the destination directory {} does not exist or user {} cannot reach it; \
                 choose an existing directory you can write to",
                dir.display(),
                owner.uid
            ),
        )
        .with("path", dir.to_string_lossy().into_owned())
    };
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_symlink()) {
        // `job.complete` hands files over through the directory itself, never a symlink.
        return Err(ProtoError::kind(
            ErrorKind::AccessDenied,
            format!(
                "the destination directory {} is a symlink; name the directory it points to",
                dir.display()
            ),
        )
        .with("path", dir.to_string_lossy().into_owned()));
    }
    let meta = std::fs::metadata(dir).map_err(|_| unusable())?;
    if !meta.is_dir() {
        return Err(unusable());
    }
    if !may_write(&meta, owner) {
        return Err(ProtoError::kind(
            ErrorKind::AccessDenied,
            format!(
                "user {} may not write to the directory {}; choose a directory you can write to",
                owner.uid,
                dir.display()
            ),
        )
        .with("path", dir.to_string_lossy().into_owned()));
    }
    Ok(())
}

/// Mode-bit check of read permission for `owner` (the kernel's rule without ACLs).
fn may_read(meta: &std::fs::Metadata, owner: &Caller) -> bool {
    if owner.uid == 0 {
        return true;
    }
    let mode = meta.mode();
    if meta.uid() == owner.uid {
        return mode & 0o400 != 0;
    }
    if meta.gid() == owner.gid || in_group(owner.uid, meta.gid()) {
        return mode & 0o040 != 0;
    }
    mode & 0o004 != 0
}

/// Mode-bit check of write+search permission for `owner` (the kernel's rule without ACLs).
fn may_write(meta: &std::fs::Metadata, owner: &Caller) -> bool {
    if owner.uid == 0 {
        return true;
    }
    let mode = meta.mode();
    if meta.uid() == owner.uid {
        return mode & 0o300 == 0o300;
    }
    if meta.gid() == owner.gid || in_group(owner.uid, meta.gid()) {
        return mode & 0o030 == 0o030;
    }
    mode & 0o003 == 0o003
}

fn in_group(uid: u32, gid: u32) -> bool {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .map(|gs| gs.iter().any(|g| g.as_raw() == gid))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, path: &str) -> FileSpec {
        FileSpec {
            remote_url: url.into(),
            local_path: path.into(),
            sha256: None,
            ranges: None,
        }
    }

    /// `spec` is refused as invalid params naming `field`, for its NUL byte.
    fn refused_for_nul(spec: &FileSpec, field: &str) {
        let e = check(spec, 0, 0, &Limits::default()).unwrap_err();
        let named = e.data.as_ref().and_then(|d| d.get("field")?.as_str());
        assert_eq!(named, Some(field), "{e:?}");
        assert!(e.message.contains("NUL"), "{e:?}");
    }

    #[test]
    fn nul_bytes_are_invalid_params_naming_the_field() {
        refused_for_nul(&spec("http://h/x", "/tmp/a\0b"), "files[0].local_path");
        refused_for_nul(
            &spec("file:///tmp/a%00b", "/tmp/out"),
            "files[0].remote_url",
        );
        let limits = Limits::default();
        // An http URL's %00 is the server's business.
        assert!(check(&spec("http://h/a%00b", "/tmp/out"), 0, 0, &limits).is_ok());
    }
}
