//! Checking a `FileSpec` before it joins a job: path shape, URL scheme, ranges (BITS
//! `AddFileWithRanges` rules), destination directory and whether the job's owner may write there.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ferry_core::range::{self, RangesError};
use ferry_proto::{ErrorKind, FileRange, FileSpec, ProtoError};
use ferry_store::FileRow;

use crate::config::Limits;
use crate::daemon::Caller;

/// Validates one file spec (index `i` in the request) and turns it into a new file row.
pub fn check(
    spec: &FileSpec,
    i: usize,
    index: u64,
    owner: &Caller,
    limits: &Limits,
) -> Result<FileRow, ProtoError> {
    let field = |f: &str| format!("files[{i}].{f}");
    let url = url::Url::parse(&spec.remote_url).map_err(|e| {
        ProtoError::invalid_params(
            &field("remote_url"),
            format!("remote_url {:?} is not a valid URL: {e}", spec.remote_url),
        )
    })?;
    match url.scheme() {
        "http" | "https" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(ProtoError::invalid_params(
                    &field("remote_url"),
                    format!("remote_url {:?} has no host", spec.remote_url),
                ));
            }
        }
        "file" => {}
        other => {
            return Err(ProtoError::kind(
                ErrorKind::Unsupported,
                format!(
                    "the URL scheme {other:?} of {:?} is not supported; use http, https or file",
                    spec.remote_url
                ),
            )
            .with("field", field("remote_url")));
        }
    }
    let local = Path::new(&spec.local_path);
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
        check_ranges(&url, ranges, owner).map_err(|e| ranges_error(&field("ranges"), &e))?;
    }
    if local.is_dir() {
        return Err(ProtoError::invalid_params(
            &field("local_path"),
            format!("local_path {:?} is an existing directory", spec.local_path),
        ));
    }
    let dir = local.parent().unwrap_or(Path::new("/"));
    check_dir(dir, owner)?;
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

/// BITS `AddFileWithRanges` rules, plus the end of a `file://` source, whose size is known
/// now (checked only when the owner may read the file: the answer must not reveal the size of
/// a file they cannot read).
fn check_ranges(url: &url::Url, ranges: &[FileRange], owner: &Caller) -> Result<(), RangesError> {
    range::check_ranges(ranges)?;
    if url.scheme() == "file"
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

/// The destination directory must exist and be writable by the job's owner.
pub fn check_dir(dir: &Path, owner: &Caller) -> Result<(), ProtoError> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        ProtoError::kind(
            ErrorKind::LocalIo,
            format!(
                "the destination directory {} cannot be used: {e}",
                dir.display()
            ),
        )
        .with("path", dir.to_string_lossy().into_owned())
        .with("os_error", e.raw_os_error().unwrap_or(0))
    })?;
    if !meta.is_dir() {
        return Err(ProtoError::kind(
            ErrorKind::LocalIo,
            format!("{} is not a directory", dir.display()),
        )
        .with("path", dir.to_string_lossy().into_owned())
        .with("os_error", 20));
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
