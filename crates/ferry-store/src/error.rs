//! The store's error type: what failed, on which file, and why.

use std::path::PathBuf;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("the job store {path} failed while {action}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What the store was doing.
        action: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not a Ferry store, or is damaged.
    #[error(
        "{path} is not a usable Ferry job store: {reason}. Ferry will not delete or recreate it; \
         move it aside (or point --state-dir elsewhere) and start ferryd again"
    )]
    Unusable {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A row could not be decoded (a bug or a damaged store).
    #[error("the job store has a malformed {what}: {detail}")]
    Decode {
        /// Which row or column.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The writer thread is gone (the daemon is shutting down).
    #[error("the job store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn sql(
        path: &std::path::Path,
        action: &'static str,
    ) -> impl FnOnce(rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Sqlite {
            path,
            action,
            source,
        }
    }
}
