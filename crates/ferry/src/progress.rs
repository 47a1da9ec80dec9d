//! The `ferry transfer` progress bar: bytes, rate and ETA from `job.progress`, on stderr.

use std::io::IsTerminal;
use std::time::Duration;

use ferry_proto::{Job, JobState};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// With a known total: a bar with bytes, rate and ETA.
const SIZED: &str = "{spinner} [{bar:25}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {wide_msg}";
/// While some file's size is unknown: no bar and no ETA, which would be made up.
const UNSIZED: &str = "{spinner} {binary_bytes} {binary_bytes_per_sec} {wide_msg}";

/// A progress bar for one job, hidden when stderr is not a terminal.
pub struct TransferBar {
    bar: ProgressBar,
    sized: Option<bool>,
}

impl TransferBar {
    /// A bar on stderr, or a hidden one when stderr is not a terminal (logs and pipes get no
    /// control sequences) or `show` is false (`-q`).
    pub fn new(show: bool) -> TransferBar {
        let bar = if show && std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        TransferBar { bar, sized: None }
    }

    /// Shows the job's current progress and state.
    pub fn update(&mut self, job: &Job) {
        let p = &job.progress;
        let sized = p.bytes_total.is_some();
        if self.sized != Some(sized) {
            let template = if sized { SIZED } else { UNSIZED };
            // The templates are constants, so this only fails if they are edited wrongly; a
            // plain default bar is then still better than none.
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            self.bar.set_style(style);
        }
        // Style, then message, then numbers: each setter may draw a frame, and a frame with a
        // default style or an empty message would flash up.
        self.bar.set_message(status_message(job));
        match p.bytes_total {
            Some(total) => self.bar.set_length(total),
            None => self.bar.unset_length(),
        }
        self.bar.set_position(p.bytes_transferred);
        if self.sized.is_none() {
            // Ticking (which draws) only starts once style, numbers and message are set, so a
            // default or half-filled bar never flashes up.
            self.bar.enable_steady_tick(Duration::from_millis(120));
        }
        self.sized = Some(sized);
    }

    /// Removes the bar from the terminal.
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// The bar's message: the state, with the reason when the job is waiting.
pub fn status_message(job: &Job) -> String {
    let waiting = job.waiting.as_ref().map(|w| {
        let mut s = w.reason.replace('_', " ");
        if let Some(until) = &w.until {
            s.push_str(&format!(" until {}", clock_time(until)));
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
                Some(w) => format!("{code}; retrying: {w}"),
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

/// The `HH:MM:SS` of an RFC 3339 time (the bar has no room for the date), else the text as is.
fn clock_time(rfc3339: &str) -> &str {
    match rfc3339.get(10..19) {
        Some(t) if t.starts_with('T') => rfc3339.get(11..19).unwrap_or(rfc3339),
        _ => rfc3339,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_times() {
        assert_eq!(clock_time("2026-11-24T02:55:37.98Z"), "02:55:37");
        assert_eq!(clock_time("soon"), "soon");
    }
}
