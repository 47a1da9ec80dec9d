//! The progress line of `ferry transfer` and `ferry wait`: bytes, rate and ETA from
//! `job.progress`, on stderr; while the job waits (a retry, a busy slot) the line says why and
//! counts down to the next attempt instead of showing an ETA, which would be made up.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use ferry_proto::{Job, JobState};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Transferring with a known total: a bar with bytes, rate and ETA.
const SIZED: &str = "{spinner} [{bar:20}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {wide_msg}";
/// While some file's size is unknown, or the job is waiting: no bar and no ETA.
const UNSIZED: &str = "{spinner} {binary_bytes} {wide_msg}";

/// A progress line for one job, hidden when stderr is not a terminal.
pub struct TransferBar {
    bar: ProgressBar,
    style: Option<&'static str>,
    last: Option<Job>,
}

impl TransferBar {
    /// A line on stderr, or a hidden one when stderr is not a terminal (logs and pipes get no
    /// control sequences) or `show` is false (`-q`).
    pub fn new(show: bool) -> TransferBar {
        let bar = if show && std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        TransferBar {
            bar,
            style: None,
            last: None,
        }
    }

    /// Shows the job's current progress and state.
    pub fn update(&mut self, job: &Job) {
        let p = &job.progress;
        let template = if p.bytes_total.is_some() && job.state == JobState::Transferring {
            SIZED
        } else {
            UNSIZED
        };
        let first = self.style.is_none();
        if self.style != Some(template) {
            // The templates are constants, so this only fails if they are edited wrongly; a
            // plain default bar is then still better than none.
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            self.bar.set_style(style);
            self.style = Some(template);
        }
        // Style, then message, then numbers: each setter may draw a frame, and a frame with a
        // default style or an empty message would flash up.
        self.bar.set_message(status_message(job, SystemTime::now()));
        match p.bytes_total {
            Some(total) => self.bar.set_length(total),
            None => self.bar.unset_length(),
        }
        self.bar.set_position(p.bytes_transferred);
        if first {
            // Ticking (which draws) only starts once style, numbers and message are set, so a
            // default or half-filled bar never flashes up.
            self.bar.enable_steady_tick(Duration::from_millis(120));
        }
        self.last = Some(job.clone());
    }

    /// Redraws the message of the last job seen, so a countdown moves between events.
    pub fn refresh(&self) {
        if let Some(job) = &self.last {
            self.bar.set_message(status_message(job, SystemTime::now()));
        }
    }

    /// Removes the line from the terminal.
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for TransferBar {
    /// Every way out of a verb (an error included) leaves no stale line behind.
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The line's message: the state, with the reason and a countdown when the job is waiting.
pub fn status_message(job: &Job, now: SystemTime) -> String {
    let waiting = job.waiting.as_ref().map(|w| {
        let mut s = w.reason.replace('_', " ");
        if let Some(left) = w.until.as_deref().and_then(|u| seconds_until(u, now)) {
            s.push_str(&format!(", next try in {left}s"));
        }
        if let Some(ahead) = w.ahead {
            s.push_str(&format!(", {ahead} ahead"));
        }
        s
    });
    match (job.state, waiting, &job.error) {
        (JobState::TransientError, w, e) => {
            let code = e.as_ref().map_or("error", |e| e.code.as_str());
            match w {
                Some(w) => format!("{code}; retrying ({w})"),
                None => format!("{code}; retrying"),
            }
        }
        (JobState::Queued, Some(w), _) => format!("queued: {w}"),
        (JobState::Transferring, _, _) => format!(
            "{}/{} files",
            job.progress.files_transferred, job.progress.files_total
        ),
        (state, _, _) => state.as_str().replace('_', " "),
    }
}

/// Whole seconds from `now` until an RFC 3339 time (0 once it has passed); `None` if the text
/// is not a time.
fn seconds_until(rfc3339: &str, now: SystemTime) -> Option<u64> {
    let at = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    let at = SystemTime::from(at);
    Some(
        at.duration_since(now)
            .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::{ErrorContext, ErrorInfo, Waiting};

    fn job(state: JobState) -> Job {
        let mut j: Job = serde_json::from_value(serde_json::json!({
            "job_id": "0a1b2c3d-0000-4000-8000-000000000001", "display_name": "x",
            "description": "", "type": "download", "priority": "foreground", "state": "queued",
            "owner_uid": 0, "progress": {"bytes_total": null, "bytes_transferred": 0,
            "files_total": 1, "files_transferred": 0},
            "times": {"created": "2026-12-04T10:00:00Z", "modified": "2026-12-04T10:00:00Z"},
            "error_count": 0, "notify_flags": 3, "notify_interface": false,
            "minimum_retry_delay_s": 5, "no_progress_timeout_s": 60,
            "max_download_time_s": 100, "minimum_notification_interval_ms": 500,
            "custom_headers": [], "max_parallel_files": 8, "credentials_set": false,
            "allow_https_to_http": false, "peer_caching": true
        }))
        .unwrap();
        j.state = state;
        j
    }

    #[test]
    fn a_retry_counts_down_and_never_shows_an_eta() {
        let now = SystemTime::from(time::macros::datetime!(2026-12-04 10:00:00 UTC));
        let mut j = job(JobState::TransientError);
        j.error = Some(ErrorInfo {
            context: ErrorContext::RemoteFile,
            code: "CONNECT_FAILED".into(),
            http_status: None,
            transient: true,
            description: "refused".into(),
            file_index: Some(0),
            protocol: None,
        });
        j.waiting = Some(Waiting {
            reason: "retry_delay".into(),
            until: Some("2026-12-04T10:00:07.5Z".into()),
            ahead: None,
        });
        assert_eq!(
            status_message(&j, now),
            "CONNECT_FAILED; retrying (retry delay, next try in 8s)"
        );
        let later = now + Duration::from_secs(60);
        assert!(status_message(&j, later).ends_with("next try in 0s)"));
    }

    #[test]
    fn times_that_are_not_times() {
        assert_eq!(seconds_until("soon", SystemTime::now()), None);
    }
}
