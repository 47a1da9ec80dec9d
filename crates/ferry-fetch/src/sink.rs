//! The staging-file writer of one fetch: buffers body chunks, writes and hashes them on the
//! blocking pool, and syncs on request, so the async side never blocks on the disk.
//!
//! The staging file is opened as the job's owner, and only if it is a regular file; it is
//! opened, written and synced on the owner's share of the blocking pool (`safe_open`).
//!
//! Not here: deciding when to sync or what a checkpoint says (`lib.rs` does), or creating and
//! renaming staging files (`staging.rs`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ferry_peer::pieces::{self, PieceHasher};
use sha2::{Digest, Sha256};

use crate::error::{FetchError, FetchErrorKind};
use crate::identity::FsIdentity;

/// Buffered bytes are written out once this much is pending: large writes amortise the hop to
/// the blocking pool; small enough that memory per transfer stays bounded.
const FLUSH_BYTES: u64 = 1024 * 1024;

/// What the blocking pool works on; moved in and out of each blocking call.
struct Disk {
    file: File,
    /// `None` when nobody needs the content's SHA-256 (hashing a 1 GiB file costs a core for
    /// most of a second).
    hasher: Option<Hashes>,
}

/// What a sink hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hashing {
    /// Nothing.
    Off,
    /// The whole content's SHA-256.
    Whole,
    /// The whole content's SHA-256 and its piece hashes (`ferry_peer::pieces`), for content that
    /// may be published; `recorded` is the piece list checkpointed with the committed prefix.
    Pieces {
        /// The recorded piece list of the committed prefix (`None`: never recorded).
        recorded: Option<String>,
    },
}

/// The hashes of the bytes written, fed from the buffers received (never read back from disk,
/// except a committed prefix, which is checked against its recorded pieces).
#[derive(Clone)]
struct Hashes {
    whole: Sha256,
    pieces: Option<PieceHasher>,
}

impl Hashes {
    fn new(pieces: bool) -> Hashes {
        Hashes {
            whole: Sha256::new(),
            pieces: pieces.then(PieceHasher::new),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.whole.update(bytes);
        if let Some(p) = self.pieces.as_mut() {
            p.update(bytes);
        }
    }
}

/// Writer for one staging file.
pub(crate) struct Sink {
    path: PathBuf,
    /// Whose share of the blocking pool the disk work uses.
    identity: Option<FsIdentity>,
    /// `None` only while a blocking call owns it (or after that call's task died).
    disk: Option<Disk>,
    pending: Vec<Bytes>,
    pending_len: u64,
    /// Bytes written to the file (not necessarily synced).
    written: u64,
    /// Bytes known to be synced to disk.
    durable: u64,
    /// A second handle on the file, so a sync can run while writing goes on.
    sync_handle: std::sync::Arc<File>,
    /// A sync in progress: the bytes it covers, and its task.
    in_flight: Option<(u64, Slotted<io::Result<()>>)>,
    /// A write in progress (write-behind): its length, and the tasks that own the file and
    /// the hasher until they end. The body keeps arriving while the previous buffer is written
    /// and, on another thread, hashed.
    writing: Option<(u64, WriteTask, Option<HashTask>)>,
    /// The piece list of the bytes a sync in flight covers (taken when it started).
    in_flight_pieces: Option<String>,
    /// The piece list of the durable bytes, when pieces are hashed.
    durable_pieces: Option<String>,
    /// Whether every byte in the file is one this sink received or checked against its
    /// recorded piece: false after resuming a prefix whose pieces were never recorded.
    trusted: bool,
    /// The piece list the source advertised (a peer); each whole piece is checked on arrival.
    expect: Option<String>,
    /// Whole pieces checked against `expect` so far.
    checked: u64,
}

/// A background write: gives the file back with its outcome, and the hasher when it hashed
/// the buffer itself (small buffers: a second thread would cost more than it saves).
type WriteTask = Slotted<(File, Option<Option<Hashes>>, io::Result<()>)>;
/// Disk work started in the owner's share of the blocking pool; an error when it did not run.
type Slotted<T> = tokio::task::JoinHandle<io::Result<T>>;

/// Starts `f` in `identity`'s share of the blocking pool (`safe_open::in_slot`) right away,
/// not when first awaited, so the body keeps arriving while it runs. The file is a user's: a
/// write that hangs there (a stuck network file system) holds one of that owner's slots only.
fn spawn_in_slot<T: Send + 'static>(
    identity: Option<FsIdentity>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Slotted<T> {
    tokio::spawn(crate::safe_open::in_slot(identity, f))
}

/// The outcome of a [`Slotted`] task; `None` when it did not run or died.
async fn joined<T>(task: &mut Slotted<T>) -> Option<T> {
    task.await.ok().and_then(Result::ok)
}

/// A background hash: gives the hasher back.
type HashTask = tokio::task::JoinHandle<Option<Hashes>>;

impl Sink {
    /// Opens `path` (creating it, mode 0600, if missing; never truncating it), keeps the first
    /// `offset` bytes, drops anything past them, and (per `hash`) hashes the kept prefix.
    ///
    /// Returns the sink and whether the committed prefix was *lost*: a file shorter than
    /// `offset` cannot hold the bytes the caller believes are durable, and a prefix whose pieces
    /// do not hash to the recorded ones was changed by someone else, so the sink starts at 0.
    pub(crate) async fn open(
        path: &Path,
        offset: u64,
        identity: Option<FsIdentity>,
        hash: Hashing,
    ) -> Result<(Sink, bool), FetchError> {
        // Off the runtime threads even for a fresh file: the path is the user's, and an open
        // there may hang (a stuck network file system) however few calls it is.
        let owned = path.to_owned();
        let opened = crate::safe_open::blocking(identity, move || open_disk(&owned, offset, hash))
            .await
            .map_err(|_| broken(path))??;
        let Opened {
            disk,
            sync_handle,
            keep,
            lost,
            trusted,
        } = opened;
        let mut sink = Sink {
            path: path.to_owned(),
            identity,
            disk: Some(disk),
            pending: Vec::new(),
            pending_len: 0,
            written: keep,
            durable: keep,
            sync_handle: std::sync::Arc::new(sync_handle),
            in_flight: None,
            writing: None,
            in_flight_pieces: None,
            durable_pieces: None,
            trusted,
            expect: None,
            checked: 0,
        };
        sink.durable_pieces = sink.written_pieces();
        Ok((sink, lost))
    }

    /// Bytes accepted so far (written, being written or buffered): the offset of the next byte.
    pub(crate) fn position(&self) -> u64 {
        self.written + self.writing.as_ref().map_or(0, |(len, ..)| *len) + self.pending_len
    }

    /// Bytes synced to disk.
    pub(crate) fn durable(&self) -> u64 {
        self.durable
    }

    /// The piece list of the durable bytes, when pieces are hashed and every byte's provenance
    /// is established (`None` otherwise: such a file is never published).
    pub(crate) fn durable_pieces(&self) -> Option<String> {
        self.durable_pieces.clone().filter(|_| self.trusted)
    }

    /// The piece list of everything written (flushes first), on the same terms.
    pub(crate) async fn pieces(&mut self) -> Result<Option<String>, FetchError> {
        self.flush().await?;
        Ok(self.written_pieces().filter(|_| self.trusted))
    }

    /// Checks each whole piece, as it is hashed, against `list` (what the source advertised).
    pub(crate) fn expect_pieces(&mut self, list: Option<String>) {
        self.expect = list;
        self.checked = 0;
    }

    /// The first whole piece, not checked yet, that differs from the advertised list.
    fn check_expected(&mut self) -> Result<(), FetchError> {
        let (
            Some(want),
            Some(Disk {
                hasher: Some(h), ..
            }),
        ) = (&self.expect, &self.disk)
        else {
            return Ok(());
        };
        let Some(p) = h.pieces.as_ref() else {
            return Ok(());
        };
        while self.checked < p.whole() {
            let i = self.checked;
            if pieces::get(want, i) != p.piece(i) {
                return Err(FetchError::new(
                    ferry_proto::ErrorContext::RemoteFile,
                    FetchErrorKind::Sha256Mismatch,
                    false,
                    format!(
                        "piece {i} (bytes {}..) does not have the SHA-256 the source advertised for it",
                        i * pieces::PIECE_BYTES
                    ),
                ));
            }
            self.checked += 1;
        }
        Ok(())
    }

    /// Appends a chunk; once the buffer is large, it is written out in the background.
    pub(crate) async fn push(&mut self, chunk: Bytes) -> Result<(), FetchError> {
        self.pending_len += chunk.len() as u64;
        self.pending.push(chunk);
        if self.pending_len >= FLUSH_BYTES {
            self.write_behind().await?;
        }
        Ok(())
    }

    /// Starts writing and hashing the buffer on the blocking pool (two threads: on a fast link
    /// either alone can be slower than the network), after the previous write ended: at most
    /// one buffer is in flight, so memory stays bounded.
    async fn write_behind(&mut self) -> Result<(), FetchError> {
        self.finish_write().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.pending);
        let len = std::mem::take(&mut self.pending_len);
        let Disk { mut file, hasher } = self.disk.take().ok_or_else(|| broken(&self.path))?;
        match hasher {
            Some(mut h) if len >= FLUSH_BYTES => {
                let for_hash = chunks.clone();
                let hash = tokio::task::spawn_blocking(move || {
                    for c in &for_hash {
                        h.update(c);
                    }
                    Some(h)
                });
                let write = spawn_in_slot(self.identity, move || {
                    let r = chunks.iter().try_for_each(|c| file.write_all(c));
                    (file, None, r)
                });
                self.writing = Some((len, write, Some(hash)));
            }
            mut hasher => {
                // Small buffers are hashed inline: a second thread would cost more than it saves.
                let write = spawn_in_slot(self.identity, move || {
                    let r = chunks.iter().try_for_each(|c| {
                        if let Some(h) = hasher.as_mut() {
                            h.update(c);
                        }
                        file.write_all(c)
                    });
                    (file, Some(hasher), r)
                });
                self.writing = Some((len, write, None));
            }
        }
        Ok(())
    }

    /// Waits for the write in flight, if any.
    async fn finish_write(&mut self) -> Result<(), FetchError> {
        let Some((len, mut write, hash)) = self.writing.take() else {
            return Ok(());
        };
        let (file, inline, r) = joined(&mut write).await.ok_or_else(|| broken(&self.path))?;
        let hasher = match (inline, hash) {
            (Some(h), _) => h,
            (None, Some(task)) => task.await.map_err(|_| broken(&self.path))?,
            (None, None) => return Err(broken(&self.path)),
        };
        self.disk = Some(Disk { file, hasher });
        r.map_err(|e| FetchError::local_io(&self.path, "write", &e))?;
        self.written += len;
        self.check_expected()
    }

    /// Writes (and hashes) everything buffered, and waits until it is written.
    pub(crate) async fn flush(&mut self) -> Result<(), FetchError> {
        self.write_behind().await?;
        self.finish_write().await
    }

    /// Starts syncing everything written so far in the background, unless a sync is already
    /// running: the download goes on while the disk catches up, and [`Sink::sync_finished`]
    /// says which offset became durable.
    pub(crate) async fn start_sync(&mut self) -> Result<(), FetchError> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        self.flush().await?;
        self.in_flight_pieces = self.written_pieces();
        let file = self.sync_handle.clone();
        let task = spawn_in_slot(self.identity, move || file.sync_data());
        self.in_flight = Some((self.written, task));
        Ok(())
    }

    /// Whether a background sync is running.
    pub(crate) fn syncing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Waits for the background sync and returns the offset it made durable. Cancel-safe (the
    /// sync stays in flight); pending forever when none runs.
    pub(crate) async fn sync_finished(&mut self) -> Result<u64, FetchError> {
        let Some((_, task)) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        let outcome = joined(task).await;
        let covered = self.in_flight.take().map_or(0, |(c, _)| c);
        match outcome {
            Some(Ok(())) => {
                if covered >= self.durable {
                    self.durable = covered;
                    self.durable_pieces = self.in_flight_pieces.take();
                }
                Ok(self.durable)
            }
            Some(Err(e)) => Err(FetchError::local_io(&self.path, "sync", &e)),
            None => Err(broken(&self.path)),
        }
    }

    /// Flushes and syncs the file's data (bytes on disk before the offset
    /// covering them is reported).
    pub(crate) async fn sync(&mut self) -> Result<(), FetchError> {
        if self.in_flight.is_some() {
            self.sync_finished().await?;
        }
        self.finish_write().await?;
        if self.pending.is_empty() && self.durable == self.written {
            // Nothing written since the last sync (a checkpoint right after one).
            return Ok(());
        }
        // What is still buffered is written and synced in the same blocking call: a small
        // file's whole body costs one round trip to the pool.
        let chunks = std::mem::take(&mut self.pending);
        let len = std::mem::take(&mut self.pending_len);
        self.blocking("write and sync", move |disk| {
            for c in &chunks {
                if let Some(h) = disk.hasher.as_mut() {
                    h.update(c);
                }
                disk.file.write_all(c)?;
            }
            disk.file.sync_data()
        })
        .await?;
        self.written += len;
        self.durable = self.written;
        self.durable_pieces = self.written_pieces();
        self.check_expected()
    }

    /// The piece list of the bytes written, while no write is in flight.
    fn written_pieces(&self) -> Option<String> {
        self.disk
            .as_ref()
            .and_then(|d| d.hasher.as_ref())
            .and_then(|h| h.pieces.as_ref())
            .map(PieceHasher::list)
    }

    /// Drops every byte (the server forced a restart): truncate to zero, reset the hash, sync.
    pub(crate) async fn restart(&mut self) -> Result<(), FetchError> {
        // A sync or write of the old bytes must end first; they are being dropped anyway.
        if self.in_flight.is_some() {
            let _ = self.sync_finished().await;
        }
        self.finish_write().await?;
        self.pending.clear();
        self.pending_len = 0;
        self.blocking("truncate", |disk| {
            disk.file.set_len(0)?;
            disk.file.seek(SeekFrom::Start(0))?;
            if let Some(h) = disk.hasher.as_mut() {
                *h = Hashes::new(h.pieces.is_some());
            }
            disk.file.sync_data()
        })
        .await?;
        self.written = 0;
        self.durable = 0;
        // Every byte from now on is received by this sink.
        self.trusted = true;
        self.checked = 0;
        self.durable_pieces = self.written_pieces();
        Ok(())
    }

    /// Hex SHA-256 of everything written so far (flushes first); `None` when not hashing.
    pub(crate) async fn digest(&mut self) -> Result<Option<String>, FetchError> {
        self.flush().await?;
        let disk = self.disk.as_ref().ok_or_else(|| broken(&self.path))?;
        Ok(disk
            .hasher
            .as_ref()
            .map(|h| hex::encode(h.whole.clone().finalize())))
    }

    /// Runs `f` on the owner's share of the blocking pool with the file and hasher, mapping I/O errors to `LOCAL_IO`.
    async fn blocking<T: Send + 'static>(
        &mut self,
        action: &'static str,
        f: impl FnOnce(&mut Disk) -> io::Result<T> + Send + 'static,
    ) -> Result<T, FetchError> {
        let mut disk = self.disk.take().ok_or_else(|| broken(&self.path))?;
        let mut task = spawn_in_slot(self.identity, move || {
            let r = f(&mut disk);
            (disk, r)
        });
        let (disk, result) = joined(&mut task).await.ok_or_else(|| broken(&self.path))?;
        self.disk = Some(disk);
        result.map_err(|e| FetchError::local_io(&self.path, action, &e))
    }
}

/// What [`open_disk`] found.
struct Opened {
    disk: Disk,
    /// A second handle for syncs.
    sync_handle: File,
    /// The offset kept.
    keep: u64,
    /// Whether the committed prefix was lost (too short, or changed since it was recorded).
    lost: bool,
    /// Whether the kept bytes' provenance is established.
    trusted: bool,
}

/// Opens the staging file for [`Sink::open`], checking a kept prefix against its recorded
/// pieces when pieces are hashed. Runs as the job's owner.
fn open_disk(path: &Path, offset: u64, hash: Hashing) -> Result<Opened, FetchError> {
    let io = |action: &str| {
        let path = path.to_owned();
        let action = action.to_owned();
        move |e: io::Error| FetchError::local_io(&path, &action, &e)
    };
    // Never through a symlink planted at the staging name, and a regular file only: a FIFO
    // swapped in for the staging file fails here instead of hanging the transfer.
    let mut file = crate::safe_open::open_file(path, crate::safe_open::Access::ReadWriteCreate)
        .map_err(io("open"))?;
    let len = file.metadata().map_err(io("inspect"))?.len();
    let (mut keep, mut lost) = if len < offset {
        (0, true)
    } else {
        (offset, false)
    };
    // Bytes past the committed offset were written but never covered by a checkpoint:
    // after a crash they may be garbage, so they go.
    file.set_len(keep).map_err(io("truncate"))?;
    let (mut hasher, recorded) = match &hash {
        Hashing::Off => (None, None),
        Hashing::Whole => (Some(Hashes::new(false)), None),
        Hashing::Pieces { recorded } => (Some(Hashes::new(true)), Some(recorded.as_deref())),
    };
    // A prefix whose pieces were never recorded can still be resumed, but its bytes' origin
    // is unknown: the file will not be published.
    let trusted = match recorded {
        Some(r) => pieces::verify_plan(r, keep).is_ok(),
        None => true,
    };
    file.seek(SeekFrom::Start(0)).map_err(io("read"))?;
    let mut remaining = if hasher.is_some() { keep } else { 0 };
    // Sized to the prefix: a fresh file allocates nothing here (a 1 MiB buffer per file
    // would raise glibc's mmap threshold and grow every thread's arena).
    let mut buf = vec![0u8; usize::try_from(remaining.min(1024 * 1024)).unwrap_or(0)];
    while remaining > 0 {
        let want = usize::try_from(remaining.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file.read(&mut buf[..want]).map_err(io("read"))?;
        if n == 0 {
            return Err(FetchError::local_io(
                path,
                "read",
                &io::Error::from(io::ErrorKind::UnexpectedEof),
            ));
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&buf[..n]);
        }
        remaining -= n as u64;
    }
    if let (
        Some(Some(want)),
        Some(Hashes {
            pieces: Some(p), ..
        }),
        true,
    ) = (recorded, &hasher, trusted)
        && keep > 0
        && want.get(..p.list().len()) != Some(p.list().as_str())
    {
        // Someone else wrote into the staging file since the daemon recorded its pieces (its
        // owner, between a suspend and a resume): none of its bytes are ours any more.
        file.set_len(0).map_err(io("truncate"))?;
        file.sync_data().map_err(io("sync"))?;
        (keep, lost) = (0, true);
        hasher = hasher.map(|h| Hashes::new(h.pieces.is_some()));
    }
    file.seek(SeekFrom::Start(keep)).map_err(io("seek"))?;
    let sync_handle = file.try_clone().map_err(io("open"))?;
    Ok(Opened {
        disk: Disk { file, hasher },
        sync_handle,
        keep,
        lost,
        trusted,
    })
}

/// The error for a writer whose blocking task died (a panic in the pool, or runtime shutdown).
fn broken(path: &Path) -> FetchError {
    FetchError::local_io(
        path,
        "write",
        &io::Error::other("the file writer task stopped unexpectedly"),
    )
}
