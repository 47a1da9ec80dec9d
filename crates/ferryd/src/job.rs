//! A job as the daemon holds it in memory: its durable row and the runtime state its three
//! owners keep for it. Each part of the runtime is a type of its owner module, with private
//! fields changed only through that module's methods:
//!
//! - [`Scheduling`] (`scheduler`): FIFO key, round-robin stamp, retry timer, the transient
//!   window, why a queued job waits;
//! - [`TransferRuntime`] (`transfer`): the running task, the one still checkpointing, live
//!   bytes, the progress window, untransferred files, the job's bandwidth bucket;
//! - [`NotifyRuntime`] (`notifier`): the outbox mirror, the courier, the delivery retry timer,
//!   the live callback connection, `job_modification` coalescing.
//!
//! The row's progress counters (bytes and files transferred, sizes, active time) change here
//! too, through the accounting methods at the end, so that a transfer, a rejected file and new
//! files keep them in step one way. The row's state and what a transition does to it change in
//! `Daemon::transition`; the settings in the `job.set` path.
//!
//! Nothing here decides anything: the rules are in `ferry-core`, the shells in the owners.

use ferry_store::{FileRow, JobRow};

use crate::notifier::NotifyRuntime;
use crate::scheduler::Scheduling;
use crate::transfer::TransferRuntime;

/// A job in memory: its stored row and its runtime, by owner. A cold job read back from the
/// store has a default runtime (nothing in it matters while a job is cold).
#[derive(Debug)]
pub struct JobEntry {
    /// The stored row, as memory has it (the store follows through queued writes).
    pub row: JobRow,
    scheduling: Scheduling,
    transfer: TransferRuntime,
    notification: NotifyRuntime,
    /// When it was last accessed (a stamp of [`crate::resident::Jobs`]).
    touched: u64,
}

impl JobEntry {
    /// A job read back from the store, or just created: the runtime a cold job has.
    pub fn from_store(row: JobRow) -> JobEntry {
        JobEntry {
            scheduling: Scheduling::queued_at(row.seq),
            transfer: TransferRuntime::default(),
            notification: NotifyRuntime::default(),
            row,
            touched: 0,
        }
    }

    /// The scheduler's part of the runtime, for reading.
    pub fn scheduling(&self) -> &Scheduling {
        &self.scheduling
    }

    /// The scheduler's part of the runtime, for its methods that change it.
    pub fn scheduling_mut(&mut self) -> &mut Scheduling {
        &mut self.scheduling
    }

    /// The transfer's part of the runtime, for reading.
    pub fn transfer(&self) -> &TransferRuntime {
        &self.transfer
    }

    /// The transfer's part of the runtime, for its methods that change it.
    pub fn transfer_mut(&mut self) -> &mut TransferRuntime {
        &mut self.transfer
    }

    /// The notifier's part of the runtime, for reading.
    pub fn notification(&self) -> &NotifyRuntime {
        &self.notification
    }

    /// The notifier's part of the runtime, for its methods that change it.
    pub fn notification_mut(&mut self) -> &mut NotifyRuntime {
        &mut self.notification
    }

    /// The row and the notifier's part at once (a delivery plan reads one and changes the
    /// other).
    pub fn row_and_notification(&mut self) -> (&JobRow, &mut NotifyRuntime) {
        (&self.row, &mut self.notification)
    }

    /// The access stamp [`crate::resident::Jobs`] gave the job last.
    pub fn touched(&self) -> u64 {
        self.touched
    }

    /// Records an access (only [`crate::resident::Jobs`] stamps).
    pub fn touch(&mut self, stamp: u64) {
        self.touched = stamp;
    }

    /// Adds the time a transfer run was active (max download time accounting).
    pub fn add_active_ms(&mut self, ms: u64) {
        self.row.active_ms += ms;
    }

    /// A file lost `bytes` it had (its staging file is gone or starts over).
    pub fn bytes_lost(&mut self, bytes: u64) {
        self.row.bytes_transferred = self.row.bytes_transferred.saturating_sub(bytes);
    }

    /// The server said how big `file` is (`None`: unknown): the job's size counters follow.
    pub fn file_size_seen(&mut self, file: &mut FileRow, total: Option<u64>) {
        set_total(&mut self.row, file, total);
    }

    /// `file` has `offset` bytes durable now, of `total`.
    pub fn checkpointed(&mut self, file: &mut FileRow, offset: u64, total: Option<u64>) {
        let row = &mut self.row;
        row.bytes_transferred =
            row.bytes_transferred.saturating_sub(file.bytes_transferred) + offset;
        file.bytes_transferred = offset;
        set_total(row, file, total);
        row.modified = crate::clock::now_rfc3339();
    }

    /// `file` is transferred, `bytes` long.
    pub fn file_finished(&mut self, file: &mut FileRow, bytes: u64) {
        let row = &mut self.row;
        set_total(row, file, Some(bytes));
        row.bytes_transferred =
            row.bytes_transferred.saturating_sub(file.bytes_transferred) + bytes;
        file.bytes_transferred = bytes;
        row.files_transferred += 1;
        row.modified = crate::clock::now_rfc3339();
    }

    /// The owner rejected a transferred file's content: its bytes and the file no longer
    /// count as transferred.
    pub fn file_rejected(&mut self, file: &FileRow) {
        let row = &mut self.row;
        row.bytes_transferred = row.bytes_transferred.saturating_sub(file.bytes_transferred);
        row.files_transferred = row.files_transferred.saturating_sub(1);
    }

    /// `count` files were added, `known_bytes` of known size and `unknown_files` of unknown.
    pub fn files_added(&mut self, count: u64, known_bytes: u64, unknown_files: u64) {
        let row = &mut self.row;
        row.files_total += count;
        row.size_known_bytes = row.size_known_bytes.saturating_add(known_bytes);
        row.size_unknown_files += unknown_files;
        row.refresh_total();
        row.modified = crate::clock::now_rfc3339();
    }
}

/// Keeps the job's size counters in step when a file's size becomes known or changes.
fn set_total(row: &mut JobRow, file: &mut FileRow, total: Option<u64>) {
    if total == file.bytes_total {
        return;
    }
    match file.bytes_total {
        Some(old) => row.size_known_bytes = row.size_known_bytes.saturating_sub(old),
        None => row.size_unknown_files = row.size_unknown_files.saturating_sub(1),
    }
    match total {
        Some(new) => row.size_known_bytes += new,
        None => row.size_unknown_files += 1,
    }
    file.bytes_total = total;
    row.refresh_total();
}
