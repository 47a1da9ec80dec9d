//! Read-only queries on their own connection.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_proto::{EventKind, JobState};
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

/// `'queued', 'error', …` for an `IN (…)` clause: the names are our own constants, never input.
fn state_list(states: &[JobState]) -> String {
    if states.is_empty() {
        return "NULL".into();
    }
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
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

    /// Another read connection on the same file, for callers that must not queue behind this
    /// one's long reads (the daemon's point lookups under its lock).
    pub fn another(&self) -> Result<Reader, StoreError> {
        Reader::open(&self.path)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    /// Runs a query and maps each row with `map`.
    fn rows<T>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
        action: &'static str,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached(sql)
                .map_err(StoreError::sql(&self.path, action))?;
            let rows = stmt
                .query_map(args, map)
                .map_err(StoreError::sql(&self.path, action))?;
            rows.map(|r| r.map_err(StoreError::sql(&self.path, action)))
                .collect()
        })
    }

    /// Runs a query whose rows are one JSON `body` column and decodes each into `T`.
    fn bodies<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
        action: &'static str,
        what: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        self.rows(sql, args, action, |r| r.get::<_, String>(0))?
            .iter()
            .map(|body| decode(what, body))
            .collect()
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

    /// One job, when it exists.
    pub fn job(&self, job_id: &str) -> Result<Option<JobRow>, StoreError> {
        let mut rows = self.bodies(
            "SELECT body FROM jobs WHERE id = ?1",
            params![job_id],
            "reading a job",
            "job row",
        )?;
        Ok(rows.pop())
    }

    /// The jobs in `states` or owing a notification, in `seq` order: what a start must hold in
    /// memory.
    pub fn jobs_needing_memory(&self, states: &[JobState]) -> Result<Vec<JobRow>, StoreError> {
        let sql = format!(
            "SELECT body FROM jobs WHERE state IN ({}) OR id IN (SELECT job_id FROM outbox) ORDER BY seq",
            state_list(states)
        );
        self.bodies(&sql, [], "loading jobs", "job row")
    }

    /// Jobs in `states` per owner, counted from the index.
    pub fn count_jobs_by_owner(&self, states: &[JobState]) -> Result<Vec<(u32, u64)>, StoreError> {
        let sql = format!(
            "SELECT owner_uid, count(*) FROM jobs WHERE state IN ({}) GROUP BY owner_uid",
            state_list(states)
        );
        let counts = self.rows(&sql, [], "counting jobs", |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?))
        })?;
        Ok(counts.into_iter().map(|(uid, n)| (uid, n as u64)).collect())
    }

    /// Files of the jobs in `states`, per owner (the per-user file quota starts from these).
    pub fn count_files_by_owner(&self, states: &[JobState]) -> Result<Vec<(u32, u64)>, StoreError> {
        let sql = format!(
            "SELECT owner_uid, COALESCE(SUM(json_extract(body, '$.files_total')), 0) FROM jobs \
             WHERE state IN ({}) GROUP BY owner_uid",
            state_list(states)
        );
        let counts = self.rows(&sql, [], "counting files", |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?))
        })?;
        Ok(counts
            .into_iter()
            .map(|(uid, n)| (uid, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    /// The highest job `seq` ever stored (0 when empty).
    pub fn last_job_seq(&self) -> Result<u64, StoreError> {
        self.max_seq("SELECT COALESCE(MAX(seq), 0) FROM jobs", "reading jobs")
    }

    /// The one integer a `MAX(seq)` query returns.
    fn max_seq(&self, sql: &str, action: &'static str) -> Result<u64, StoreError> {
        let max = self.rows(sql, [], action, |r| r.get::<_, i64>(0))?;
        Ok(max.first().map_or(0, |s| *s as u64))
    }

    /// `(id, final_at)` of every job in `states` (history retention reads only these two).
    pub fn final_times(
        &self,
        states: &[JobState],
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let sql = format!(
            "SELECT id, json_extract(body, '$.final_at') FROM jobs WHERE state IN ({})",
            state_list(states)
        );
        self.rows(&sql, [], "reading final jobs", |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }

    /// Up to `limit` jobs from `seq` on, in `seq` order, of `owner` (`None`: everyone's) and in
    /// one of `states`: one page of `job.list`.
    pub fn job_page(
        &self,
        from_seq: u64,
        owner: Option<u32>,
        states: &[JobState],
        limit: u64,
    ) -> Result<Vec<JobRow>, StoreError> {
        let sql = format!(
            "SELECT body FROM jobs WHERE seq >= ?1 AND (?2 IS NULL OR owner_uid = ?2) \
             AND state IN ({}) ORDER BY seq LIMIT ?3",
            state_list(states)
        );
        self.bodies(
            &sql,
            params![
                from_seq.min(i64::MAX as u64) as i64,
                owner,
                limit.min(i64::MAX as u64) as i64
            ],
            "listing jobs",
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

    /// The files of jobs in `states` that still record a staging file, with the job's owner,
    /// from the staging index: what a crash between a cancel and its deletions left behind.
    pub fn staging_files_of(
        &self,
        states: &[JobState],
    ) -> Result<Vec<(String, u32, FileRow)>, StoreError> {
        self.indexed_files("files_staging", "staging", states, "reading staging files")
    }

    /// The files of jobs in `states` that still record a server-side upload session, with
    /// the job's owner, from the session index: what a crash between a cancel and the
    /// server-side cancel left behind.
    pub fn upload_sessions_of(
        &self,
        states: &[JobState],
    ) -> Result<Vec<(String, u32, FileRow)>, StoreError> {
        self.indexed_files(
            "files_upload_session",
            "upload_session",
            states,
            "reading upload sessions",
        )
    }

    /// The files whose `column` is set, of jobs in `states`, through the partial `index` on
    /// it, with the job's owner.
    fn indexed_files(
        &self,
        index: &str,
        column: &str,
        states: &[JobState],
        action: &'static str,
    ) -> Result<Vec<(String, u32, FileRow)>, StoreError> {
        let sql = format!(
            // Forced order: walk the small partial index, not every final job (there may be
            // a hundred thousand of those, and the planner has no statistics to know it).
            "SELECT f.job_id, j.owner_uid, f.body FROM files f INDEXED BY {index} \
             CROSS JOIN jobs j ON j.id = f.job_id \
             WHERE f.{column} IS NOT NULL AND j.state IN ({})",
            state_list(states)
        );
        let rows = self.rows(&sql, [], action, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.into_iter()
            .map(|(id, owner, body)| Ok((id, owner, decode("file row", &body)?)))
            .collect()
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
        self.max_seq("SELECT COALESCE(MAX(seq), 0) FROM events", "reading events")
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
