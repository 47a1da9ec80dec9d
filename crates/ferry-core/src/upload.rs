//! Which protocol an upload uses ([`protocol_to_use`]), and which files an upload job may hold: BITS's rule of one file per upload or upload-reply job
//! (a second one is `BG_E_TOO_MANY_FILES`), sent to an `http` or `https` URL, whole (no ranges),
//! and without an expected SHA-256 (that checks what a download received; an upload sends the
//! local file as it is).

use ferry_proto::{JobType, UploadProtocol};

/// The most files an upload or upload-reply job holds.
pub const MAX_UPLOAD_FILES: u64 = 1;

/// Why a file may not join an upload job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UploadFileRefusal {
    /// The job would hold more than one file.
    #[error(
        "an upload job holds exactly one file (BITS BG_E_TOO_MANY_FILES); create one job per file"
    )]
    TooManyFiles,
    /// The destination is not `http` or `https`.
    #[error("an upload goes to an http or https URL")]
    NotHttp,
    /// The file names ranges.
    #[error("an upload sends the whole file; ranges are for downloads")]
    Ranges,
    /// The file names an expected SHA-256.
    #[error("sha256 checks downloaded content; an upload sends the local file as it is")]
    Sha256,
}

/// What is known about a file joining a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewFile<'a> {
    /// The scheme of its `remote_url`.
    pub scheme: &'a str,
    /// It names ranges.
    pub ranges: bool,
    /// It names an expected SHA-256.
    pub sha256: bool,
}

/// Whether `adding` files may join a job of `job_type` that holds `have` files: downloads take
/// any (their own limits apply elsewhere); uploads take one, with the rules above.
pub fn check_files(
    job_type: JobType,
    have: u64,
    adding: &[NewFile<'_>],
) -> Result<(), UploadFileRefusal> {
    if job_type == JobType::Download {
        return Ok(());
    }
    if have.saturating_add(adding.len() as u64) > MAX_UPLOAD_FILES {
        return Err(UploadFileRefusal::TooManyFiles);
    }
    for f in adding {
        if !matches!(f.scheme, "http" | "https") {
            return Err(UploadFileRefusal::NotHttp);
        }
        if f.ranges {
            return Err(UploadFileRefusal::Ranges);
        }
        if f.sha256 {
            return Err(UploadFileRefusal::Sha256);
        }
    }
    Ok(())
}

/// The protocol an upload uses: the one the job names, else (`auto`) the one a probe found
/// earlier; `None` means probe now (once: its answer is recorded and then found here).
pub fn protocol_to_use(
    setting: UploadProtocol,
    recorded: Option<UploadProtocol>,
) -> Option<UploadProtocol> {
    match (setting, recorded) {
        (UploadProtocol::Auto, Some(UploadProtocol::Auto) | None) => None,
        (UploadProtocol::Auto, found) => found,
        (named, _) => Some(named),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HTTP: NewFile<'static> = NewFile {
        scheme: "https",
        ranges: false,
        sha256: false,
    };

    #[test]
    fn upload_jobs_take_one_whole_http_file() {
        for t in [JobType::Upload, JobType::UploadReply] {
            assert_eq!(check_files(t, 0, &[HTTP]), Ok(()));
            assert_eq!(check_files(t, 0, &[]), Ok(()));
            assert_eq!(
                check_files(t, 1, &[HTTP]),
                Err(UploadFileRefusal::TooManyFiles)
            );
            assert_eq!(
                check_files(t, 0, &[HTTP, HTTP]),
                Err(UploadFileRefusal::TooManyFiles)
            );
            let file = NewFile {
                scheme: "file",
                ..HTTP
            };
            assert_eq!(check_files(t, 0, &[file]), Err(UploadFileRefusal::NotHttp));
            let ranged = NewFile {
                ranges: true,
                ..HTTP
            };
            assert_eq!(check_files(t, 0, &[ranged]), Err(UploadFileRefusal::Ranges));
            let hashed = NewFile {
                sha256: true,
                ..HTTP
            };
            assert_eq!(check_files(t, 0, &[hashed]), Err(UploadFileRefusal::Sha256));
        }
    }

    #[test]
    fn auto_probes_once_and_a_named_protocol_wins() {
        use UploadProtocol::{Auto, Bits, Tus};
        assert_eq!(protocol_to_use(Auto, None), None);
        assert_eq!(protocol_to_use(Auto, Some(Tus)), Some(Tus));
        assert_eq!(protocol_to_use(Bits, Some(Tus)), Some(Bits));
        assert_eq!(protocol_to_use(Tus, None), Some(Tus));
        assert_eq!(protocol_to_use(Auto, Some(Auto)), None);
    }

    proptest! {
        /// Downloads are never refused here; an upload job never ends up with two files.
        #[test]
        fn uploads_never_hold_two_files(have in 0u64..5, n in 0usize..5) {
            let adding = vec![HTTP; n];
            prop_assert!(check_files(JobType::Download, have, &adding).is_ok());
            let ok = check_files(JobType::Upload, have, &adding).is_ok();
            prop_assert_eq!(ok, have + n as u64 <= MAX_UPLOAD_FILES);
        }
    }
}
