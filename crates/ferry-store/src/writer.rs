//! The writer thread: group commit of queued operations, events published after commit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use ferry_proto::EventKind;
use rusqlite::{Connection, Savepoint, params};
use tokio::sync::{broadcast, oneshot};

use crate::StoreError;
use crate::rows::{CacheRow, EventRow, FileRow, HandlerRow, JobRow, OutboxRow};

/// The most operations one transaction carries.
const MAX_BATCH: usize = 2048;

type Finish = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;
type Op = Box<dyn FnOnce(&mut Tx<'_>) -> (bool, Finish) + Send>;

/// The handle to the writer thread; clone it freely.
#[derive(Clone)]
pub struct Writer {
    ops: std_mpsc::Sender<Op>,
    events: broadcast::Sender<Arc<EventRow>>,
}

/// An operation's result, available once its transaction committed.
#[must_use = "a write is durable only once its Commit resolves; wait on it, or drop it explicitly where durability is not awaited"]
pub struct Commit<T> {
    rx: oneshot::Receiver<Result<T, StoreError>>,
}

impl<T> Commit<T> {
    /// Waits until the operation is durable (or failed).
    pub async fn wait(self) -> Result<T, StoreError> {
        self.rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Blocking variant for threads outside the runtime.
    pub fn wait_blocking(self) -> Result<T, StoreError> {
        self.rx.blocking_recv().unwrap_or(Err(StoreError::Closed))
    }
}

/// The view of the open transaction that an operation gets.
pub struct Tx<'a> {
    sp: Savepoint<'a>,
    path: &'a Path,
    next_seq: u64,
    events: Vec<EventRow>,
    /// Job rows this operation rewrote; written once per batch (see [`Tx::update_job`]).
    jobs: Vec<JobRow>,
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Decode {
        what: "row",
        detail: e.to_string(),
    })
}

impl Tx<'_> {
    fn sql(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        StoreError::sql(self.path, action)
    }

    /// Runs one statement, prepared once per connection (thousands of small files make the
    /// same few statements hot; parsing them every time showed in profiles).
    fn exec(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
        action: &'static str,
    ) -> Result<usize, StoreError> {
        self.sp
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(args))
            .map_err(self.sql(action))
    }

    /// Inserts a new job row.
    pub fn insert_job(&mut self, job: &JobRow) -> Result<(), StoreError> {
        let body = json(job)?;
        self.exec(
            "INSERT INTO jobs (seq, id, owner_uid, state, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                job.seq as i64,
                job.id,
                job.owner_uid,
                job.state.as_str(),
                body
            ],
            "inserting a job",
        )
        .map(drop)
    }

    /// Rewrites a job row. Many operations of one batch rewrite the same job (one per finished
    /// file of a job of small files), so the row is written once, in its last version, just
    /// before the batch commits; an operation that fails takes its rewrites with it.
    pub fn update_job(&mut self, job: &JobRow) -> Result<(), StoreError> {
        self.jobs.push(job.clone());
        Ok(())
    }

    /// Deletes a job, its files, events and outbox entries (history retention).
    pub fn delete_job(&mut self, job_id: &str) -> Result<(), StoreError> {
        for sql in [
            "DELETE FROM files WHERE job_id = ?1",
            "DELETE FROM outbox WHERE job_id = ?1",
            "DELETE FROM events WHERE job_id = ?1",
            "DELETE FROM jobs WHERE id = ?1",
        ] {
            self.exec(sql, params![job_id], "deleting a job")?;
        }
        Ok(())
    }

    /// Inserts or replaces file rows.
    pub fn put_files(&mut self, job_id: &str, files: &[FileRow]) -> Result<(), StoreError> {
        let mut stmt = self
            .sp
            .prepare_cached(
                "INSERT OR REPLACE INTO files (job_id, file_index, body, staging, upload_session) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(StoreError::sql(self.path, "writing files"))?;
        for f in files {
            let session = f.upload_session.as_ref().map(|v| v.to_string());
            stmt.execute(params![
                job_id,
                f.file_index as i64,
                json(f)?,
                f.temp_path,
                session
            ])
            .map_err(StoreError::sql(self.path, "writing files"))?;
        }
        Ok(())
    }

    /// Inserts or replaces a peer-cache entry.
    pub fn put_cache_entry(&mut self, row: &CacheRow) -> Result<(), StoreError> {
        let body = json(row)?;
        self.exec(
            "INSERT OR REPLACE INTO cache_entries (key, body) VALUES (?1, ?2)",
            params![row.key, body],
            "writing a cache entry",
        )
        .map(drop)
    }

    /// Deletes peer-cache entries.
    pub fn delete_cache_entries(&mut self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.exec(
                "DELETE FROM cache_entries WHERE key = ?1",
                params![key],
                "deleting a cache entry",
            )?;
        }
        Ok(())
    }

    /// Appends an event; its `seq` is returned and it is published after the commit. A
    /// `progress` event replaces the job's earlier ones: they only say how far it was, and a
    /// job transferring for weeks would otherwise grow the log by one row a second.
    pub fn append_event(
        &mut self,
        job_id: &str,
        owner_uid: u32,
        time: &str,
        kind: EventKind,
    ) -> Result<u64, StoreError> {
        let seq = self.next_seq;
        let body = json(&kind)?;
        self.exec(
                "INSERT INTO events (seq, time, job_id, owner_uid, kind, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![seq as i64, time, job_id, owner_uid, kind.name(), body],
                "appending an event",
            )?;
        if matches!(kind, EventKind::Progress { .. }) {
            self.exec(
                "DELETE FROM events WHERE job_id = ?1 AND kind = 'progress' AND seq < ?2",
                params![job_id, seq as i64],
                "replacing a progress event",
            )?;
        }
        self.next_seq += 1;
        self.events.push(EventRow {
            seq,
            time: time.to_owned(),
            job_id: job_id.to_owned(),
            owner_uid,
            kind,
        });
        Ok(seq)
    }

    /// Inserts or updates an owed notification.
    pub fn put_outbox(&mut self, row: &OutboxRow) -> Result<(), StoreError> {
        let body = json(row)?;
        self.exec(
            "INSERT OR REPLACE INTO outbox (id, job_id, body) VALUES (?1, ?2, ?3)",
            params![row.id as i64, row.job_id, body],
            "writing the outbox",
        )
        .map(drop)
    }

    /// Removes owed notifications by id.
    pub fn delete_outbox(&mut self, ids: &[u64]) -> Result<(), StoreError> {
        for id in ids {
            self.exec(
                "DELETE FROM outbox WHERE id = ?1",
                params![*id as i64],
                "removing from the outbox",
            )?;
        }
        Ok(())
    }

    /// Registers or replaces a handler.
    pub fn put_handler(&mut self, h: &HandlerRow) -> Result<(), StoreError> {
        let body = json(h)?;
        self.exec(
            "INSERT OR REPLACE INTO handlers (uid, name, body) VALUES (?1, ?2, ?3)",
            params![h.uid, h.name, body],
            "registering a handler",
        )
        .map(drop)
    }

    /// Removes a handler; returns whether it existed.
    pub fn delete_handler(&mut self, uid: u32, name: &str) -> Result<bool, StoreError> {
        self.exec(
            "DELETE FROM handlers WHERE uid = ?1 AND name = ?2",
            params![uid, name],
            "removing a handler",
        )
        .map(|n| n > 0)
    }
}

impl Writer {
    pub(crate) fn start(conn: Connection, path: &Path) -> Result<Writer, StoreError> {
        // Room for every statement `Tx` runs, so none is parsed twice.
        conn.set_prepared_statement_cache_capacity(32);
        let next_seq: i64 = conn
            .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM events", [], |r| {
                r.get(0)
            })
            .map_err(StoreError::sql(path, "reading the event log"))?;
        let (ops, rx) = std_mpsc::channel::<Op>();
        let (events, _) = broadcast::channel(4096);
        let publish = events.clone();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("ferry-store".into())
            .spawn(move || run(conn, path, rx, next_seq.max(1) as u64, publish))
            .map_err(|e| StoreError::Unusable {
                path: PathBuf::from("writer thread"),
                reason: e.to_string(),
            })?;
        Ok(Writer { ops, events })
    }

    /// Queues an operation; it runs in the next transaction and its result is delivered after
    /// that transaction commits. A failing operation is rolled back alone (savepoint).
    pub fn submit<T, F>(&self, f: F) -> Commit<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |t: &mut Tx<'_>| {
            let outcome = f(t);
            let ok = outcome.is_ok();
            let finish: Finish = Box::new(move |commit: Result<(), &StoreError>| {
                let r = match (outcome, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(StoreError::Decode {
                        what: "commit",
                        detail: e.to_string(),
                    }),
                };
                let _ = tx.send(r);
            });
            (ok, finish)
        });
        if let Err(std_mpsc::SendError(op)) = self.ops.send(op) {
            drop(op);
        }
        Commit { rx }
    }

    /// Subscribes to events as they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventRow>> {
        self.events.subscribe()
    }

    /// Waits until everything queued so far is committed (used at shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.submit(|_| Ok(())).wait().await
    }
}

fn run(
    mut conn: Connection,
    path: PathBuf,
    rx: std_mpsc::Receiver<Op>,
    mut next_seq: u64,
    publish: broadcast::Sender<Arc<EventRow>>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let seq_before = next_seq;
        let mut finishers: Vec<Finish> = Vec::with_capacity(batch.len());
        let mut committed_events = Vec::new();
        let mut rewrites: HashMap<String, JobRow> = HashMap::new();
        let outcome = (|| -> Result<(), StoreError> {
            let mut txn = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(StoreError::sql(&path, "starting a transaction"))?;
            let mut ops = batch.drain(..);
            for op in ops.by_ref() {
                let sp = match txn.savepoint() {
                    Ok(sp) => sp,
                    Err(e) => {
                        // Could not even open a savepoint: fail the rest of the batch.
                        let err = StoreError::sql(&path, "opening a savepoint")(e);
                        let (_, fin) = op_fail(op, &path, &mut next_seq);
                        finishers.push(fin);
                        return Err(err);
                    }
                };
                let mut tx = Tx {
                    sp,
                    path: &path,
                    next_seq,
                    events: Vec::new(),
                    jobs: Vec::new(),
                };
                let (ok, fin) = op(&mut tx);
                let Tx {
                    sp,
                    events,
                    next_seq: seq,
                    jobs,
                    ..
                } = tx;
                if ok {
                    sp.commit()
                        .map_err(StoreError::sql(&path, "releasing a savepoint"))?;
                    committed_events.extend(events);
                    next_seq = seq;
                    rewrites.extend(jobs.into_iter().map(|j| (j.id.clone(), j)));
                } else {
                    drop(sp); // rolls back this operation only
                }
                finishers.push(fin);
            }
            rewrite_jobs(&txn, &path, rewrites.values())?;
            txn.commit().map_err(StoreError::sql(&path, "committing"))
        })();
        match &outcome {
            Ok(()) => {
                for f in finishers {
                    f(Ok(()));
                }
                for e in committed_events {
                    let _ = publish.send(Arc::new(e));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "a store transaction failed");
                next_seq = seq_before;
                for f in finishers {
                    f(Err(e));
                }
                for op in batch {
                    let (_, fin) = op_fail(op, &path, &mut next_seq);
                    fin(Err(e));
                }
            }
        }
    }
}

/// Writes the batch's job rewrites (the last version of each job).
fn rewrite_jobs<'a>(
    conn: &Connection,
    path: &Path,
    jobs: impl Iterator<Item = &'a JobRow>,
) -> Result<(), StoreError> {
    let action = "updating a job";
    let mut stmt = conn
        .prepare_cached("UPDATE jobs SET owner_uid = ?2, state = ?3, body = ?4 WHERE id = ?1")
        .map_err(StoreError::sql(path, action))?;
    for job in jobs {
        stmt.execute(params![
            job.id,
            job.owner_uid,
            job.state.as_str(),
            json(job)?
        ])
        .map_err(StoreError::sql(path, action))?;
    }
    Ok(())
}

/// Runs nothing for an op that cannot get a transaction: builds its finisher only.
fn op_fail(op: Op, path: &Path, next_seq: &mut u64) -> (bool, Finish) {
    // The op needs a Tx to produce its finisher; give it one on a throwaway in-memory database
    // so that its caller still receives an error instead of waiting forever.
    match Connection::open_in_memory() {
        Ok(mut scratch) => match scratch.savepoint() {
            Ok(sp) => {
                let mut tx = Tx {
                    sp,
                    path,
                    next_seq: *next_seq,
                    events: Vec::new(),
                    jobs: Vec::new(),
                };
                op(&mut tx)
            }
            Err(_) => (false, Box::new(|_| {})),
        },
        Err(_) => (false, Box::new(|_| {})),
    }
}
