//! Read-only queries on their own connection.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_proto::EventKind;
use rusqlite::{Connection, OpenFlags, params};

use crate::StoreError;
use crate::rows::{CacheRow, EventRow, FileRow, HandlerRow, JobRow, OutboxRow};

/// The reading side of the store. Calls block briefly; call them off the async workers for
/// large reads.
pub struct Reader {
    conn: Mutex<Connection>,
    path: PathBuf,
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Decode {
        what,
        detail: e.to_string(),
    })
}

impl Reader {
    pub(crate) fn open(path: &Path) -> Result<Reader, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::sql(path, "opening a read connection"))?;
        crate::schema::pragmas(&conn, path)?;
        Ok(Reader {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    /// Runs a query whose rows are one JSON `body` column and decodes each into `T`.
    fn bodies<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
        action: &'static str,
        what: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached(sql)
                .map_err(StoreError::sql(&self.path, action))?;
            let rows = stmt
                .query_map(args, |r| r.get::<_, String>(0))
                .map_err(StoreError::sql(&self.path, action))?;
            let mut out = Vec::new();
            for body in rows {
                let body = body.map_err(StoreError::sql(&self.path, action))?;
                out.push(decode(what, &body)?);
            }
            Ok(out)
        })
    }

    /// Every job, in `seq` order.
    pub fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        self.bodies(
            "SELECT body FROM jobs ORDER BY seq",
            [],
            "loading jobs",
            "job row",
        )
    }

    /// The files of a job, in index order; `from` and `limit` select a slice.
    pub fn files(&self, job_id: &str, from: u64, limit: u64) -> Result<Vec<FileRow>, StoreError> {
        self.bodies(
            "SELECT body FROM files WHERE job_id = ?1 AND file_index >= ?2 ORDER BY file_index LIMIT ?3",
            params![job_id, from.min(i64::MAX as u64) as i64, limit.min(i64::MAX as u64) as i64],
            "reading files",
            "file row",
        )
    }

    /// Events after `after`, readable by `uid` (`None`: everyone's), optionally of one job.
    pub fn events(
        &self,
        after: u64,
        uid: Option<u32>,
        job_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, time, job_id, owner_uid, body FROM events
                     WHERE seq > ?1 AND (?2 IS NULL OR owner_uid = ?2) AND (?3 IS NULL OR job_id = ?3)
                     ORDER BY seq LIMIT ?4",
                )
                .map_err(StoreError::sql(&self.path, "reading events"))?;
            let rows = stmt
                .query_map(
                    params![after.min(i64::MAX as u64) as i64, uid, job_id, limit as i64],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, u32>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    },
                )
                .map_err(StoreError::sql(&self.path, "reading events"))?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, time, job_id, owner_uid, body) =
                    row.map_err(StoreError::sql(&self.path, "reading events"))?;
                let kind: EventKind = decode("event", &body)?;
                out.push(EventRow {
                    seq: seq as u64,
                    time,
                    job_id,
                    owner_uid,
                    kind,
                });
            }
            Ok(out)
        })
    }

    /// The highest event seq written so far (0 when empty).
    pub fn last_event_seq(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|s| s as u64)
            .map_err(StoreError::sql(&self.path, "reading events"))
        })
    }

    /// Every registered handler.
    pub fn handlers(&self) -> Result<Vec<HandlerRow>, StoreError> {
        self.bodies(
            "SELECT body FROM handlers",
            [],
            "reading handlers",
            "handler row",
        )
    }

    /// Every owed notification, in creation order.
    pub fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        self.bodies(
            "SELECT body FROM outbox ORDER BY id",
            [],
            "reading the outbox",
            "outbox row",
        )
    }

    /// Every peer-cache entry.
    pub fn cache_entries(&self) -> Result<Vec<CacheRow>, StoreError> {
        self.bodies(
            "SELECT body FROM cache_entries",
            [],
            "reading the cache index",
            "cache entry",
        )
    }

    /// `PRAGMA integrity_check` (used by tests and the crash loop).
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.with(|c| {
            c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
                .map_err(StoreError::sql(&self.path, "checking integrity"))
        })
    }
}
