//! The content this host serves to peers: a private copy of each validated file in the cache
//! directory (named by its key), indexed in the job store, evicted by age and size.
//!
//! A copy, not a link to the delivered file: the owner may change or delete their file after
//! `complete`, and the cache must keep serving exactly the bytes it validated. The copy is
//! hashed while it is written and kept only when every piece matches the piece hashes recorded
//! from the network at transfer, and the whole matches the SHA-256.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_fetch::identity::{FsIdentity, as_owner};
use ferry_peer::evict;
use ferry_proto::EventKind;
use ferry_proto::cache::CacheEntry;
use ferry_store::{CacheRow, Reader};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{PeerCache, unix_ms};
use crate::error::DaemonError;

/// What the cache holds.
pub(super) struct Index {
    dir: PathBuf,
    entries: BTreeMap<String, CacheRow>,
}

/// A validated file to copy into the cache.
#[derive(Debug, Clone)]
pub(super) struct Publish {
    /// The content key.
    pub key: String,
    /// The readable validator.
    pub validator: String,
    /// The URL.
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 recorded when the file was transferred.
    pub sha256: String,
    /// Piece hashes recorded from the bytes as they arrived.
    pub pieces: String,
    /// The job's owner.
    pub owner_uid: u32,
    /// The job whose file this entry came from.
    pub job_id: String,
    /// The file's index.
    pub file_index: u64,
    /// Where its bytes are now (staging file, or the delivered file after complete).
    pub source: PathBuf,
    /// Who the source is read as (system mode: the owner).
    pub identity: Option<FsIdentity>,
}

impl Index {
    /// Opens the directory (created 0700) and the index, dropping entries whose file is gone or
    /// has another size, or that have no piece hashes (published before the bytes' origin was
    /// recorded); their keys are returned, to delete from the store. Files no entry names (left
    /// by a crash mid-copy) are deleted.
    pub(super) fn open(dir: &Path, reader: &Reader) -> Result<(Index, Vec<String>), DaemonError> {
        std::fs::create_dir_all(dir).map_err(DaemonError::io("create the cache directory", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(DaemonError::io("restrict the cache directory", dir))?;
        let mut entries = BTreeMap::new();
        let mut stale = Vec::new();
        for row in reader.cache_entries()? {
            let len = std::fs::metadata(dir.join(&row.key)).map(|m| m.len()).ok();
            let proven = row
                .pieces
                .as_deref()
                .is_some_and(|p| ferry_peer::pieces::covers(p, row.size));
            if len == Some(row.size) && proven {
                entries.insert(row.key.clone(), row);
            } else {
                stale.push(row.key);
            }
        }
        if !stale.is_empty() {
            tracing::warn!(
                count = stale.len(),
                "dropping cache entries whose content is gone"
            );
        }
        let listing =
            std::fs::read_dir(dir).map_err(DaemonError::io("list the cache directory", dir))?;
        for item in listing.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if !entries.contains_key(&name) {
                let _ = std::fs::remove_file(item.path());
            }
        }
        let index = Index {
            dir: dir.to_path_buf(),
            entries,
        };
        Ok((index, stale))
    }

    fn meta(&self) -> (Vec<&String>, Vec<evict::Meta>) {
        self.entries
            .iter()
            .map(|(k, r)| {
                (
                    k,
                    evict::Meta {
                        size: r.size,
                        last_access: r.last_access,
                    },
                )
            })
            .unzip()
    }
}

fn entry_view(r: &CacheRow) -> CacheEntry {
    let at = |ms: u64| {
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(ms / 1000).unwrap_or(i64::MAX))
            .map(crate::clock::rfc3339)
            .unwrap_or_default()
    };
    CacheEntry {
        key: r.key.clone(),
        url: r.url.clone(),
        validator: r.validator.clone(),
        size: r.size,
        sha256: r.sha256.clone(),
        owner_uid: r.owner_uid,
        job_id: r.job_id.clone(),
        file_index: r.file_index,
        published: at(r.published),
        last_access: at(r.last_access),
        times_served: r.times_served,
    }
}

impl PeerCache {
    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The path of an entry's content.
    pub(super) fn content_path(&self, key: &str) -> PathBuf {
        self.index().dir.join(key)
    }

    /// An entry, if held.
    pub(super) fn entry(&self, key: &str) -> Option<CacheRow> {
        self.index().entries.get(key).cloned()
    }

    /// Records a use: the entry's age starts again (BITS: content age resets on access).
    pub(super) fn touch(&self, key: &str) {
        let row = {
            let mut index = self.index();
            let Some(r) = index.entries.get_mut(key) else {
                return;
            };
            r.last_access = unix_ms();
            r.times_served += 1;
            r.clone()
        };
        drop(self.store.submit(move |tx| tx.put_cache_entry(&row)));
        self.changed.notify_one();
    }

    /// Entries visible to `uid` (root: all), most recently used first.
    pub fn list(&self, uid: Option<u32>) -> Vec<CacheEntry> {
        let index = self.index();
        let mut rows: Vec<&CacheRow> = index
            .entries
            .values()
            .filter(|r| uid.is_none_or(|u| r.owner_uid == u))
            .collect();
        rows.sort_by(|a, b| b.last_access.cmp(&a.last_access).then(a.key.cmp(&b.key)));
        rows.into_iter().map(entry_view).collect()
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (u64, u64) {
        let index = self.index();
        (
            index.entries.len() as u64,
            index.entries.values().map(|r| r.size).sum(),
        )
    }

    /// Whether `key` is held.
    pub fn holds(&self, key: &str) -> bool {
        self.index().entries.contains_key(key)
    }

    /// Copies a validated file into the cache in the background (publication is best effort:
    /// a failure is logged, and the file is simply not shared).
    pub(super) fn publish(self: &Arc<Self>, p: Publish) {
        if p.size > self.cfg.max_size_bytes || self.holds(&p.key) {
            return;
        }
        let pc = self.clone();
        tokio::spawn(async move {
            let dir = pc.index().dir.clone();
            let job = p.clone();
            // On the owner's share of the blocking pool: the source is the owner's file.
            let copied =
                ferry_fetch::safe_open::in_slot(p.identity, move || copy_in(&dir, &job)).await;
            match copied {
                Ok(Ok(())) => pc.admit(p),
                Ok(Err(why)) => {
                    tracing::warn!(key = %p.key, url = %p.url, why, "not published to the peer cache");
                }
                Err(e) => tracing::warn!(error = %e, "the cache copy task failed"),
            }
        });
    }

    /// Re-hashes the copy of `key` in the background (a peer reported wrong bytes) and evicts
    /// it when it no longer matches; one check per key at a time.
    pub(super) fn verify(self: &Arc<Self>, key: &str) {
        let Some(entry) = self.entry(key) else {
            return;
        };
        if !self.verifying().insert(entry.key.clone()) {
            return;
        }
        let (pc, path) = (self.clone(), self.content_path(key));
        tokio::spawn(async move {
            let hashed = tokio::task::spawn_blocking(move || hash_file(&path)).await;
            pc.verifying().remove(&entry.key);
            let sha = match hashed {
                Ok(Ok(sha)) => Some(sha),
                Ok(Err(e)) => {
                    tracing::warn!(key = %entry.key, error = %e, "cannot read cached content");
                    None
                }
                Err(_) => return,
            };
            if sha.as_deref() != Some(entry.sha256.as_str()) {
                pc.remove(|r| r.key == entry.key, "corrupt");
            }
        });
    }

    fn verifying(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.verifying.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a copied entry to the index and the store, then evicts what no longer fits.
    fn admit(&self, p: Publish) {
        let now = unix_ms();
        let row = CacheRow {
            key: p.key.clone(),
            url: p.url,
            validator: p.validator,
            size: p.size,
            sha256: p.sha256,
            pieces: Some(p.pieces),
            owner_uid: p.owner_uid,
            job_id: p.job_id.clone(),
            file_index: p.file_index,
            published: now,
            last_access: now,
            times_served: 0,
        };
        self.index().entries.insert(row.key.clone(), row.clone());
        let kind = EventKind::PeerCache {
            action: "published".into(),
            file_index: p.file_index,
            key: Some(p.key),
            peer: None,
            bytes: p.size,
            waited_ms: 0,
            detail: None,
        };
        let (id, owner, time) = (p.job_id, p.owner_uid, crate::clock::now_rfc3339());
        drop(self.store.submit(move |tx| {
            tx.put_cache_entry(&row)?;
            tx.append_event(&id, owner, &time, kind).map(drop)
        }));
        self.evict_now();
        self.changed.notify_one();
    }

    /// Removes entries matching `pick` (content first from the index, so nothing serves it),
    /// logging why; returns how many and their bytes.
    pub fn remove(&self, pick: impl Fn(&CacheRow) -> bool, reason: &str) -> (u64, u64) {
        let (gone, dir): (Vec<CacheRow>, PathBuf) = {
            let mut index = self.index();
            let keys: Vec<String> = index
                .entries
                .values()
                .filter(|r| pick(r))
                .map(|r| r.key.clone())
                .collect();
            let gone = keys
                .iter()
                .filter_map(|k| index.entries.remove(k))
                .collect();
            (gone, index.dir.clone())
        };
        self.forget(gone, &dir, reason)
    }

    /// Evicts by age and size now.
    pub(super) fn evict_now(&self) {
        let now = unix_ms();
        let max_age = u64::try_from(self.cfg.max_age.as_millis()).unwrap_or(u64::MAX);
        let mut by_reason: Vec<(Vec<CacheRow>, &str)> = Vec::new();
        let dir = {
            let mut index = self.index();
            let plan = {
                let (keys, meta) = index.meta();
                evict::plan(&meta, self.cfg.max_size_bytes, max_age, now)
                    .into_iter()
                    .filter_map(|(i, r)| keys.get(i).map(|k| ((*k).clone(), r)))
                    .collect::<Vec<_>>()
            };
            for reason in [evict::Reason::Age, evict::Reason::Size] {
                let rows = plan
                    .iter()
                    .filter(|(_, r)| *r == reason)
                    .filter_map(|(k, _)| index.entries.remove(k))
                    .collect();
                by_reason.push((rows, reason.as_str()));
            }
            index.dir.clone()
        };
        for (rows, reason) in by_reason {
            self.forget(rows, &dir, reason);
        }
    }

    /// Drops removed entries from the store and the disk, with an `evicted` event each.
    fn forget(&self, rows: Vec<CacheRow>, dir: &Path, reason: &str) -> (u64, u64) {
        if rows.is_empty() {
            return (0, 0);
        }
        let bytes = rows.iter().map(|r| r.size).sum();
        let count = rows.len() as u64;
        for r in &rows {
            if let Err(e) = std::fs::remove_file(dir.join(&r.key))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(key = %r.key, error = %e, "cannot delete cached content");
            }
            tracing::info!(key = %r.key, url = %r.url, reason, "evicted from the peer cache");
        }
        let time = crate::clock::now_rfc3339();
        let reason = reason.to_owned();
        drop(self.store.submit(move |tx| {
            let keys: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
            tx.delete_cache_entries(&keys)?;
            for r in &rows {
                let kind = EventKind::PeerCache {
                    action: "evicted".into(),
                    file_index: r.file_index,
                    key: Some(r.key.clone()),
                    peer: None,
                    bytes: r.size,
                    waited_ms: 0,
                    detail: Some(reason.clone()),
                };
                tx.append_event(&r.job_id, r.owner_uid, &time, kind)?;
            }
            Ok(())
        }));
        (count, bytes)
    }
}

/// The SHA-256 of a file (lowercase hex).
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
}

/// Copies the source (opened as its owner, never through a symlink, a regular file only: a
/// FIFO swapped in for it is refused without blocking) into `dir/<key>`, hashing as it goes;
/// keeps it only if size and SHA-256 match what was transferred.
fn copy_in(dir: &Path, p: &Publish) -> Result<(), String> {
    let mut src = as_owner(p.identity, || {
        ferry_fetch::safe_open::open_file(&p.source, ferry_fetch::safe_open::Access::ReadNoFollow)
    })
    .map_err(|e| format!("cannot open {}: {e}", p.source.display()))?;
    let tmp = dir.join(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let mut hasher = Sha256::new();
        let mut pieces = ferry_peer::pieces::PieceHasher::new();
        let mut checked = 0u64;
        let mut buf = vec![0u8; 1024 * 1024];
        let mut len = 0u64;
        loop {
            let n = src
                .read(&mut buf)
                .map_err(|e| format!("cannot read {}: {e}", p.source.display()))?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            hasher.update(chunk);
            pieces.update(chunk);
            // Each piece is checked once complete, so a changed file stops the copy early.
            while checked < pieces.whole() {
                if pieces.piece(checked) != ferry_peer::pieces::get(&p.pieces, checked) {
                    return Err(format!(
                        "piece {checked} of {} is not the bytes the daemon received from the network",
                        p.source.display()
                    ));
                }
                checked += 1;
            }
            dst.write_all(chunk)
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            len += n as u64;
        }
        let sha = hex::encode(hasher.finalize());
        if len != p.size || !sha.eq_ignore_ascii_case(&p.sha256) || pieces.list() != p.pieces {
            return Err(format!(
                "{} changed since it was transferred ({len} bytes, SHA-256 {sha})",
                p.source.display()
            ));
        }
        dst.sync_all()
            .map_err(|e| format!("cannot sync {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(&p.key))
            .map_err(|e| format!("cannot rename {}: {e}", tmp.display()))?;
        ferry_fetch::staging::sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Evicts entries as they age out: sleeps until the next expiry (no timer without entries, so
/// an idle daemon stays idle), and re-plans whenever entries change.
pub(super) async fn expire(pc: Arc<PeerCache>, shutdown: CancellationToken) {
    loop {
        let next = {
            let index = pc.index();
            let (_, meta) = index.meta();
            let max_age = u64::try_from(pc.cfg.max_age.as_millis()).unwrap_or(u64::MAX);
            evict::next_expiry(&meta, max_age)
        };
        let sleep = next.map(|at| std::time::Duration::from_millis(at.saturating_sub(unix_ms())));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = pc.changed.notified() => continue,
            _ = async {
                match sleep {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => pc.evict_now(),
        }
    }
}
