//! Ferry's durable store: jobs, files, handlers, the event log and the notification outbox, in
//! one SQLite file (WAL, `synchronous=FULL`).
//!
//! Writes go through one writer thread ([`Writer`]) that runs every queued operation of a batch
//! in one transaction and acknowledges each only after the commit: "committed before it is
//! acknowledged" without paying one fsync per request when many arrive at once. Events appended
//! by an operation get their `seq` inside the transaction and are published to followers only
//! after it commits. Reads use their own connection ([`Reader`]); WAL keeps them off the writer's
//! way. This crate stores rows; it does not decide anything about them (that is `ferry-core` and
//! `ferryd`), and it never stores payload bytes.

mod error;
mod reader;
mod rows;
mod schema;
mod writer;

pub use error::StoreError;
pub use reader::Reader;
pub use rows::{CacheRow, EventRow, FileRow, HandlerRow, JobRow, OutboxRow};
pub use writer::{Commit, Tx, Writer};

use std::path::{Path, PathBuf};

/// The file name of the store inside the state directory.
pub const DB_FILE: &str = "ferry.db";

/// Opens (creating or migrating) the store in `state_dir`, returning the writer and a reader.
pub fn open(state_dir: &Path) -> Result<(Writer, Reader), StoreError> {
    let path: PathBuf = state_dir.join(DB_FILE);
    let conn = schema::open_and_migrate(&path)?;
    let reader = Reader::open(&path)?;
    let writer = Writer::start(conn, &path)?;
    Ok((writer, reader))
}
