//! Opening the database file: pragmas, the identity check, and migrations by `user_version`.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::StoreError;

/// `PRAGMA application_id` of a Ferry store ("FERY"): tells our file from any other SQLite file.
const APPLICATION_ID: i64 = 0x4645_5259;

/// Migrations, applied in order; `user_version` is the number applied so far. 2: the peer
/// cache's index. 3: jobs by state, so a start loads only the jobs that need memory
/// and counts the rest without reading their bodies. 4: each job's progress events,
/// so a new one can replace the last at once. 5: the staging path as a column with an index of
/// the files that have one, so a start finds the staging files a crash left to final jobs
/// without reading every file row. 6: the server-side upload session of upload files as a
/// column with an index of the files that have one, so a start finds the sessions a crash left
/// to cancelled jobs (to cancel them on the server) without reading every file row.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    owner_uid INTEGER NOT NULL,
    state TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX jobs_owner ON jobs(owner_uid, seq);
CREATE TABLE files (
    job_id TEXT NOT NULL,
    file_index INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (job_id, file_index)
) WITHOUT ROWID;
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    job_id TEXT NOT NULL,
    owner_uid INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX events_job ON events(job_id, seq);
CREATE TABLE handlers (
    uid INTEGER NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (uid, name)
) WITHOUT ROWID;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX outbox_job ON outbox(job_id, id);
"#,
    r#"
CREATE TABLE cache_entries (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
"#,
    r#"
CREATE INDEX jobs_state ON jobs(state, owner_uid);
"#,
    r#"
CREATE INDEX events_progress ON events(job_id, seq) WHERE kind = 'progress';
"#,
    r#"
ALTER TABLE files ADD COLUMN staging TEXT;
UPDATE files SET staging = json_extract(body, '$.temp_path')
    WHERE json_extract(body, '$.temp_path') IS NOT NULL;
CREATE INDEX files_staging ON files(job_id) WHERE staging IS NOT NULL;
"#,
    r#"
ALTER TABLE files ADD COLUMN upload_session TEXT;
UPDATE files SET upload_session = json_extract(body, '$.upload_session')
    WHERE json_extract(body, '$.upload_session') IS NOT NULL;
CREATE INDEX files_upload_session ON files(job_id) WHERE upload_session IS NOT NULL;
"#,
];

pub(crate) fn pragmas(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(StoreError::sql(path, "setting the busy timeout"))?;
    // secure_delete: erased credentials and headers are overwritten in the file, not merely
    // unlinked from the b-tree where a reader of the file would still find them.
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;",
    )
    .map_err(StoreError::sql(path, "setting pragmas"))
}

pub(crate) fn open_and_migrate(path: &Path) -> Result<Connection, StoreError> {
    let existed = path.exists();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| unusable(path, format!("it cannot be opened ({e})")))?;
    restrict_mode(path);
    // A damaged or foreign file must fail here, before anything is written to it.
    let check: Result<String, _> = conn.query_row("PRAGMA quick_check", [], |r| r.get(0));
    match check {
        Ok(s) if s == "ok" => {}
        Ok(s) => {
            return Err(unusable(
                path,
                format!("SQLite's integrity check says: {s}"),
            ));
        }
        Err(e) => return Err(unusable(path, format!("it is not a SQLite database ({e})"))),
    }
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| unusable(path, e.to_string()))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| unusable(path, e.to_string()))?;
    if app_id != APPLICATION_ID && (tables > 0 || app_id != 0) {
        return Err(unusable(
            path,
            "it belongs to another program (its SQLite application_id is not Ferry's)".into(),
        ));
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(StoreError::sql(path, "enabling WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(unusable(
            path,
            format!(
                "SQLite could not use write-ahead logging there (journal mode {mode}); \
                 the state directory must be on a local file system"
            ),
        ));
    }
    pragmas(&conn, path)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(StoreError::sql(path, "reading the schema version"))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(unusable(
            path,
            format!(
                "it was written by a newer Ferry (schema {version}, this one knows {known}); \
                 run the newer ferryd"
            ),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let n = i + 1;
        let batch = format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {n}; COMMIT;"
        );
        if let Err(e) = conn.execute_batch(&batch) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(StoreError::Sqlite {
                path: path.to_path_buf(),
                action: "applying a schema migration",
                source: e,
            });
        }
    }
    if !existed {
        tracing::info!(path = %path.display(), "created a new job store");
    }
    Ok(conn)
}

fn unusable(path: &Path, reason: String) -> StoreError {
    StoreError::Unusable {
        path: path.to_path_buf(),
        reason,
    }
}

/// The store holds credentials: only the daemon's user may read it.
fn restrict_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
