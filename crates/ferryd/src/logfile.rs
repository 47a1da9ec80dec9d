//! The daemon's log file when it runs in the background (started by `ferry`): `ferryd.log` in
//! the state directory, bounded by rotation so a long-lived daemon cannot fill the disk.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The log file's name in the state directory.
pub const LOG_FILE: &str = "ferryd.log";

/// A file grows to at most this many bytes before it is rotated.
pub const MAX_BYTES: u64 = 1024 * 1024;

/// How many rotated files (`ferryd.log.1` …) are kept beside the current one.
pub const KEEP: u32 = 2;

/// Whether writing `incoming` more bytes to a file of `current` bytes should first rotate it:
/// only a non-empty file is rotated, so one oversized line still gets written.
pub fn needs_rotation(current: u64, incoming: usize, limit: u64) -> bool {
    current > 0 && current.saturating_add(incoming as u64) > limit
}

/// The path of rotated generation `n` (1 is the newest) of `log`.
pub fn generation(log: &Path, n: u32) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// A size-bounded, rotated log file, opened on first write (the state directory may not exist
/// yet when logging starts). When it cannot be opened or written, lines go to stderr instead,
/// so an early failure is never lost.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    file: Mutex<Option<(File, u64)>>,
}

impl RotatingLog {
    /// A log at `path` (not yet opened).
    pub fn new(path: PathBuf) -> RotatingLog {
        RotatingLog {
            path,
            file: Mutex::new(None),
        }
    }

    /// Where the log is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> io::Result<(File, u64)> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)?;
        let len = f.metadata()?.len();
        Ok((f, len))
    }

    /// Shifts `ferryd.log.N` up by one (dropping the oldest) and starts an empty file.
    fn rotate(&self) -> io::Result<(File, u64)> {
        for n in (1..KEEP).rev() {
            let _ = std::fs::rename(generation(&self.path, n), generation(&self.path, n + 1));
        }
        std::fs::rename(&self.path, generation(&self.path, 1))?;
        self.open()
    }

    fn write_line(&self, buf: &[u8]) -> io::Result<()> {
        let mut slot = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(self.open()?);
        }
        if let Some((_, len)) = slot.as_ref()
            && needs_rotation(*len, buf.len(), MAX_BYTES)
        {
            *slot = None;
            *slot = Some(self.rotate()?);
        }
        let Some((file, len)) = slot.as_mut() else {
            return Err(io::Error::other("log file not open"));
        };
        file.write_all(buf)?;
        *len = len.saturating_add(buf.len() as u64);
        Ok(())
    }
}

/// One formatted log record's writer for tracing-subscriber.
#[derive(Debug)]
pub struct LogWriter<'a>(&'a RotatingLog);

impl Write for LogWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.write_line(buf).is_err() {
            let _ = io::stderr().write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingLog {
    type Writer = LogWriter<'a>;

    fn make_writer(&'a self) -> LogWriter<'a> {
        LogWriter(self)
    }
}

/// What the log says when a job changes state: each job's start, end and failure show at the
/// default level (`info`; failures `warn`), the rest only at `debug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobLogLevel {
    /// Only with `FERRY_LOG=debug`.
    Debug,
    /// At the default level.
    Info,
    /// A failure.
    Warn,
}

/// The level and message for a job moving `from` → `to`.
pub fn job_transition(
    from: ferry_proto::JobState,
    to: ferry_proto::JobState,
) -> (JobLogLevel, &'static str) {
    use ferry_proto::JobState as S;
    match (from, to) {
        (S::Queued | S::TransientError, S::Connecting | S::Transferring) => {
            (JobLogLevel::Info, "job started")
        }
        (_, S::Transferred) => (JobLogLevel::Info, "job transferred"),
        (_, S::Acknowledged) => (JobLogLevel::Info, "job completed"),
        (_, S::Cancelled) => (JobLogLevel::Info, "job cancelled"),
        (_, S::Error) => (JobLogLevel::Warn, "job failed"),
        (_, S::TransientError) => (
            JobLogLevel::Info,
            "job hit a transient error; it will retry",
        ),
        _ => (JobLogLevel::Debug, "job changed state"),
    }
}

/// Logs a job's state change at the level [`job_transition`] picks.
pub fn log_job_transition(
    job_id: &str,
    from: ferry_proto::JobState,
    to: ferry_proto::JobState,
    error: Option<&ferry_proto::ErrorInfo>,
) {
    let (level, msg) = job_transition(from, to);
    let code = error.map(|e| e.code.as_str()).unwrap_or_default();
    let why = error.map(|e| e.description.as_str()).unwrap_or_default();
    match level {
        JobLogLevel::Debug => tracing::debug!(job = %job_id, %from, %to, "{msg}"),
        JobLogLevel::Info if to == ferry_proto::JobState::TransientError => {
            tracing::info!(job = %job_id, code, error = why, "{msg}");
        }
        JobLogLevel::Info => tracing::info!(job = %job_id, %from, %to, "{msg}"),
        JobLogLevel::Warn => tracing::warn!(job = %job_id, code, error = why, "{msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_each_file_under_the_limit() {
        assert!(!needs_rotation(0, 10, 5), "an empty file takes any line");
        assert!(!needs_rotation(3, 2, 5));
        assert!(needs_rotation(3, 3, 5));
        assert!(!needs_rotation(u64::MAX - 1, 0, u64::MAX));
        assert_eq!(
            generation(Path::new("/s/ferryd.log"), 2),
            PathBuf::from("/s/ferryd.log.2")
        );
    }

    #[test]
    fn a_full_file_rotates_and_old_generations_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let log = RotatingLog::new(dir.path().join(LOG_FILE));
        let line = vec![b'x'; 400 * 1024];
        for _ in 0..12 {
            LogWriter(&log).write_all(&line).unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(log.path()) <= MAX_BYTES);
        for n in 1..=KEEP {
            assert!(size(&generation(log.path(), n)) <= MAX_BYTES);
            assert!(size(&generation(log.path(), n)) > 0);
        }
        assert!(!generation(log.path(), KEEP + 1).exists());
    }

    #[test]
    fn starts_ends_and_failures_show_at_the_default_level() {
        use ferry_proto::JobState as S;
        let level = |from, to| job_transition(from, to).0;
        assert_eq!(level(S::Queued, S::Connecting), JobLogLevel::Info);
        assert_eq!(level(S::Transferring, S::Transferred), JobLogLevel::Info);
        assert_eq!(level(S::Transferred, S::Acknowledged), JobLogLevel::Info);
        assert_eq!(level(S::Transferring, S::Error), JobLogLevel::Warn);
        assert_eq!(level(S::Suspended, S::Queued), JobLogLevel::Debug);
        assert_eq!(level(S::Connecting, S::Transferring), JobLogLevel::Debug);
    }
}
