//! The `ferry transfer` progress bar: bytes, rate and ETA from `job.progress`, on stderr.

use std::io::IsTerminal;
use std::time::Duration;

use ferry_proto::{Job, JobState};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::waiting_text;

/// With a known total: a bar with bytes, rate and ETA.
const SIZED: &str = "{spinner} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {wide_msg}";
/// While some file's size is unknown: no bar and no ETA, which would be made up.
const UNSIZED: &str = "{spinner} {binary_bytes} {binary_bytes_per_sec} {wide_msg}";

/// A progress bar for one job, hidden when stderr is not a terminal.
pub struct TransferBar {
    bar: ProgressBar,
    sized: Option<bool>,
}

impl TransferBar {
    /// A bar on stderr, or a hidden one when stderr is not a terminal (logs and pipes get no
    /// control sequences).
    pub fn new() -> TransferBar {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
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
            self.sized = Some(sized);
        }
        match p.bytes_total {
            Some(total) => self.bar.set_length(total),
            None => self.bar.unset_length(),
        }
        self.bar.set_position(p.bytes_transferred);
        self.bar.set_message(status_message(job));
    }

    /// Removes the bar from the terminal.
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// The bar's message: the state, with the reason when the job is waiting.
pub fn status_message(job: &Job) -> String {
    let files = format!(
        "{}/{} files",
        job.progress.files_transferred, job.progress.files_total
    );
    match (job.state, &job.waiting, &job.error) {
        (JobState::TransientError, Some(w), _) => format!("retrying: {}", waiting_text(w)),
        (JobState::TransientError, None, Some(e)) => format!("retrying: {}", e.code),
        (JobState::Queued, Some(w), _) => format!("queued: {}", waiting_text(w)),
        (JobState::Transferring, _, _) => files,
        (state, _, _) => state.as_str().replace('_', " "),
    }
}
