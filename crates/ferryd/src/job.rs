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
//! Nothing here decides anything: the rules are in `ferry-core`, the shells in the owners.

use ferry_store::JobRow;

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
}
